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


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
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
    server = mlops.Server(target, host=args.host, port=args.port, threads=args.threads, workers=args.workers,
                          admin_token=_env("MLOPS_ADMIN_TOKEN"), image=args.image or _env("MLOPS_IMAGE", "") or "",
                          max_body_bytes=args.max_body_bytes, max_header_bytes=args.max_header_bytes,
                          max_buffered_bytes=args.max_buffered_bytes, max_rows=args.max_rows,
                          max_connections=args.max_connections, header_timeout=args.header_timeout,
                          read_timeout=args.read_timeout, idle_timeout=args.idle_timeout,
                          drain_timeout=args.drain_timeout, resolver=_release_resolver(args),
                          shadow=args.shadow or "", shadow_queue=args.shadow_queue)
    rel = server.release
    _progress(f"serving release {rel.md5} ({len(rel)} models, loaded in {rel.load_seconds:.2f} s) "
              f"on http://{args.host}:{server.port}")
    if server.shadow is not None:
        versions = {m["name"]: m["version"] for m in server.shadow.models}
        shadowed = sum(1 for m in rel.models if versions.get(m["name"], m["version"]) != m["version"])
        _progress(f"shadow release {server.shadow.md5}: {shadowed} of {len(rel)} models scored again off the "
                  "response path (GET /shadow)")
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
    p.add_argument("--workers", type=int, default=0, help="scoring threads, apart from the I/O ones (default: one per core)")
    p.add_argument("--image", help="image tag reported by /version (default: the release folder's, or env MLOPS_IMAGE)")
    # Limits and deadlines: the defaults are the server's own (mlops::ServerOptions), read from the binding.
    d = mlops.Server.defaults()
    p.add_argument("--max-body-bytes", type=_positive_int, default=d["max_body_bytes"],
                   help="largest request body, 413 above (default: %(default)s)")
    p.add_argument("--max-header-bytes", type=_positive_int, default=d["max_header_bytes"],
                   help="largest request head, 431 above (default: %(default)s)")
    p.add_argument("--max-buffered-bytes", type=_positive_int, default=d["max_buffered_bytes"],
                   help="request bodies buffered by all connections together, 503 above (default: %(default)s)")
    p.add_argument("--max-rows", type=_positive_int, default=d["max_rows"],
                   help="most rows in one request, 400 above (default: %(default)s)")
    p.add_argument("--max-connections", type=_positive_int, default=d["max_connections"],
                   help="most open connections; idle ones are closed first to make room, then 503 "
                        "(default: %(default)s)")
    p.add_argument("--header-timeout", type=_positive_seconds, default=d["header_timeout"], metavar="SECONDS",
                   help="a new connection's first request head must arrive within this, any head once begun "
                        "too, else 408 (default: %(default)s)")
    p.add_argument("--read-timeout", type=_positive_seconds, default=d["read_timeout"], metavar="SECONDS",
                   help="a request body must arrive within this, else 408 (default: %(default)s)")
    p.add_argument("--idle-timeout", type=_positive_seconds, default=d["idle_timeout"], metavar="SECONDS",
                   help="a keep-alive connection idle this long between requests is closed (default: %(default)s)")
    p.add_argument("--drain-timeout", type=_positive_seconds, default=d["drain_timeout"], metavar="SECONDS",
                   help="on SIGTERM, how long requests in flight may finish (default: %(default)s)")
    p.add_argument("--shadow", metavar="RELEASE",
                   help="a second release (DIR, MD5 or alias) whose other versions of the served models score the "
                        "same rows off the response path; agreement in GET /shadow and /metrics")
    p.add_argument("--shadow-queue", type=_positive_int, default=d["shadow_queue"], metavar="N",
                   help="requests waiting for the shadow models; more are not shadowed (default: %(default)s)")
    p.add_argument("--cache", metavar="DIR", help="where releases fetched from MLflow are kept "
                                                   "(default ~/.cache/mlops/releases)")
