"""``mlops mlflow-server``: a local MLflow tracking server for a quick start, as ``mlflow ui`` starts one, in
the foreground (Ctrl-C stops it) or in the background (``--stop`` ends it)."""

from __future__ import annotations

import os
import signal

import mlops

from .common import EXIT_OK, _print_json, _progress
from .serve import _port


def _announce(args, server) -> None:
    if args.format == "json":
        _print_json({"url": server.url, "directory": str(server.directory), "pid": server.pid})
    else:
        print(server.url, flush=True)
    _progress(f"MLflow at {server.url} (runs and models in {server.directory}; log {server.log_path}); "
              f"for the next commands: export MLFLOW_TRACKING_URI={server.url}")


def _cmd_mlflow_server(args) -> int:
    from .. import local_server

    if args.stop:
        stopped = local_server.stop_background(args.dir)
        _progress(f"stopped the MLflow server of {args.dir} (process {stopped})" if stopped
                  else f"no MLflow server of {args.dir} was running")
        return EXIT_OK
    server = local_server.MlflowServer(args.dir, port=args.port or None, workers=args.workers)
    if args.port and not local_server._port_free(args.port):
        raise mlops.ConfigError(f"[mlops.config] port {args.port} on 127.0.0.1 is in use: pass --port "
                                "(0: any free port), or stop what listens there")
    if args.background:
        server.start_background()
        _announce(args, server)
        _progress(f"stop it with: mlops mlflow-server --dir {args.dir} --stop")
        return EXIT_OK

    def stop(_signo, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with server:
        _announce(args, server)
        _progress("Ctrl-C stops it")
        try:
            code = server.wait()
        except KeyboardInterrupt:
            _progress("stopping")
            return EXIT_OK
    raise mlops.MlopsError(f"[mlops.error] the MLflow server exited with {code}; see {server.log_path}")


def add_commands(sub) -> None:
    p = sub.add_parser(
        "mlflow-server", help="start a local MLflow tracking server (for a quick start)",
        description="Run MLflow's tracking server on 127.0.0.1 with its runs, models and artifacts in DIR "
                    "(a SQLite store in write-ahead-log mode), as `mlflow ui` does. In the foreground by default "
                    "(Ctrl-C stops it); --background starts it, prints its URL and returns; --stop ends it. For a "
                    "team, run MLflow as a service of its own and point MLFLOW_TRACKING_URI at it.")
    p.add_argument("--dir", default=os.environ.get("MLOPS_MLFLOW_DIR") or "mlruns",
                   help="where the store, the artifacts and server.log live (env MLOPS_MLFLOW_DIR)")
    p.add_argument("--port", type=_port, default=5000, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--workers", type=int, default=1, help="server processes")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--background", action="store_true",
                   help="start it, print its URL and return; it runs until --stop")
    g.add_argument("--stop", action="store_true", help="stop the server --background started for --dir")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    p.set_defaults(func=_cmd_mlflow_server)
