"""``mlops serve``: every adapter of a release over HTTP, from a build-context folder or from MLflow by
release MD5 or the production alias."""

from __future__ import annotations

import argparse
import json
import os
import pathlib

import mlops

from .common import EXIT_OK, _env, _pipeline, _positive_int, _progress


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535 (0: any free port), got {text!r}")
    return value


def _release_resolver(args):
    """Maps a release name to a folder: a folder as is; an MD5 or an alias through MLflow (downloaded once
    into the cache folder as a build context)."""
    pipe = None
    cache = pathlib.Path(args.cache or os.path.join(os.path.expanduser("~"), ".cache", "mlops", "releases"))

    def resolve(name: str) -> str:
        nonlocal pipe
        if os.path.isdir(name) or os.sep in name or name.startswith("."):
            return name  # a folder (a missing one is reported by the loader)
        if pipe is None:
            pipe = _pipeline(args)
        md5 = name.lower()
        if not all(c in "0123456789abcdef" for c in md5) or len(md5) < 6:
            # An alias: the release whose manifest is what the alias points at now.
            if name != "production":
                raise mlops.ConfigError(f"[mlops.config] {name!r} is neither a folder, a release MD5 nor the alias "
                                        "'production'")
            md5 = pipe.current_manifest().md5
        target = cache / md5
        if len(md5) < 32 or not (target / "manifest.json").is_file():
            staging = cache / f".{md5}.{os.getpid()}"
            pipe.write_build_context(str(staging), md5)
            md5 = json.loads((staging / "release.json").read_text())["md5"] if (staging / "release.json").is_file() \
                else mlops.ReleaseManifest.load(str(staging / "manifest.json")).md5
            target = cache / md5
            try:
                os.replace(staging, target)
            except OSError:
                import shutil

                shutil.rmtree(staging, ignore_errors=True)  # another process put the same release there first
        return str(target)

    return resolve


def _cmd_serve(args) -> int:
    given = [x for x in (args.directory, args.release, args.alias) if x]
    if len(given) > 1:
        raise mlops.ConfigError("[mlops.config] give one of DIR, --release MD5 or --alias NAME")
    target = given[0] if given else _env("MLOPS_RELEASE_DIR")
    if not target:
        raise mlops.ConfigError("[mlops.config] nothing to serve: give DIR, --release MD5 or --alias NAME "
                                "(or set MLOPS_RELEASE_DIR)")
    server = mlops.Server(target, host=args.host, port=args.port, threads=args.threads,
                          admin_token=_env("MLOPS_ADMIN_TOKEN"), image=args.image or _env("MLOPS_IMAGE", "") or "",
                          max_body_bytes=args.max_body_bytes, max_rows=args.max_rows,
                          max_connections=args.max_connections, resolver=_release_resolver(args))
    rel = server.release
    _progress(f"serving release {rel.md5} ({len(rel)} models, loaded in {rel.load_seconds:.2f} s) "
              f"on http://{args.host}:{server.port}")
    server.run()
    _progress("stopped")
    return EXIT_OK


def add_commands(command) -> None:
    p = command("serve", "serve every adapter of a release over HTTP",
                "Serve a release: MLflow's scoring protocol per model (POST /models/NAME/invocations), a batch "
                "route, /ping /health /version /models /metrics. SIGHUP reloads the release (an alias is looked "
                "up again); POST /admin/release switches to another (token from MLOPS_ADMIN_TOKEN); SIGTERM "
                "drains and exits 0.", _cmd_serve)
    p.add_argument("directory", nargs="?", metavar="DIR",
                   help="a build-context folder (manifest.json + models/; default: env MLOPS_RELEASE_DIR)")
    p.add_argument("--release", metavar="MD5", help="a recorded release, downloaded from MLflow")
    p.add_argument("--alias", metavar="NAME", help="the release the alias points at now (production)")
    p.add_argument("--host", default=_env("MLOPS_HOST", "127.0.0.1"), help="address to listen on (env MLOPS_HOST)")
    p.add_argument("--port", type=_port, default=_env("MLOPS_PORT", "8080"), help="port (env MLOPS_PORT; 0: any free)")
    p.add_argument("--threads", type=int, default=0, help="I/O threads (default: one per core)")
    p.add_argument("--image", help="image tag reported by /version (default: the release folder's, or env MLOPS_IMAGE)")
    p.add_argument("--max-body-bytes", type=_positive_int, default=8 << 20, help="largest request body (413 above)")
    p.add_argument("--max-rows", type=_positive_int, default=10000, help="most rows in one request (400 above)")
    p.add_argument("--max-connections", type=_positive_int, default=1024, help="most open connections (503 above)")
    p.add_argument("--cache", metavar="DIR", help="where releases fetched from MLflow are kept "
                                                   "(default ~/.cache/mlops/releases)")
