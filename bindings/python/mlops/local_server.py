"""A local MLflow tracking server for demos, notebooks and tests: started on a free loopback port with a
SQLite store and an artifacts folder under one directory, stopped by ``close()`` or the ``with`` block.

It runs the real ``mlflow server`` (the PyPI package ``mlflow``) from the same environment as Python.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_executable() -> str:
    beside = pathlib.Path(sys.executable).with_name("mlflow")
    if beside.exists():
        return str(beside)
    found = shutil.which("mlflow")
    if not found:
        raise FileNotFoundError("the 'mlflow' command is not installed (pip install mlflow)")
    return found


class MlflowServer:
    """``mlflow server`` on 127.0.0.1, its state in ``directory`` (kept after stopping).

    ``frontend``: "gunicorn" (MLflow's Flask app in gunicorn's sync workers) or "uvicorn" (``mlflow
    server``'s default). ``workers``: server processes; writes to the one SQLite file take turns either
    way. MLflow's GenAI job runner is off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION says otherwise.
    """

    def __init__(self, directory: str | os.PathLike, port: int | None = None, timeout: float = 120.0,
                 workers: int = 1, frontend: str = "gunicorn"):
        if frontend not in ("gunicorn", "uvicorn"):
            raise ValueError(f"frontend must be 'gunicorn' or 'uvicorn', not {frontend!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.frontend = frontend
        self.directory = pathlib.Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.directory / "server.log"
        self._timeout = timeout
        self.workers = workers
        self._process: subprocess.Popen | None = None

    def start(self) -> "MlflowServer":
        cmd = [
            _mlflow_executable(), "server",
            "--backend-store-uri", f"sqlite:///{self.directory / 'mlflow.db'}",
            "--artifacts-destination", str(self.directory / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
        ]
        if self.frontend == "gunicorn":
            # MLflow's Flask app under gunicorn answers a tracking call in about half the time of the
            # uvicorn front end (bench/pipeline); a long artifact transfer may take up to 10 minutes.
            cmd += ["--gunicorn-opts", "--timeout 600"]
        log = open(self.log_path, "ab")
        env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="false")
        # MLflow's job runner (GenAI evaluation jobs) starts seven consumer processes that import MLflow
        # and then poll the store; tracking and the registry do not use it. Set the variable to keep it.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        self._process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self._process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.close()
        raise TimeoutError(f"mlflow server did not answer on {self.url} within {self._timeout:.0f} s; see {self.log_path}")

    def close(self) -> None:
        p, self._process = self._process, None
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
