"""A real MLflow tracking server on loopback for tests and benchmarks, plus a small fault-injecting proxy.

``MlflowServer(root).start()`` runs ``mlflow server`` (the executable next to ``sys.executable``) with a
SQLite store and an artifacts folder under ``root``, waits for ``/health`` and ``stop()`` ends it.
``FaultProxy`` forwards HTTP (optionally HTTPS) to an upstream and can answer the first N requests with an
error status, drop answers of chosen requests after forwarding them, or demand credentials.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Callable, Optional


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_executable() -> str:
    exe = pathlib.Path(sys.executable).with_name("mlflow")
    if not exe.exists():
        raise RuntimeError(f"mlflow is not installed next to {sys.executable}")
    return str(exe)


class MlflowServer:
    """``mlflow server`` with a SQLite store under ``root``; restartable on the same port and store."""

    def __init__(self, root: pathlib.Path, port: Optional[int] = None) -> None:
        self.root = pathlib.Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.root / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "MlflowServer":
        (self.root / "artifacts").mkdir(exist_ok=True)
        cmd = [
            mlflow_executable(), "server",
            "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        env = dict(os.environ)
        env.pop("MLFLOW_TRACKING_URI", None)
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # MLflow's GenAI job runner: unused here
        log = open(self.log_path, "ab")
        # Its own process group: the server starts worker processes that stop() must end too.
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer /health within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        # Worker processes of the server's group that outlive it are ended too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # Wait until the port is free again so that a restart can bind it.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.1)
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FaultProxy:
    """HTTP(S) proxy on loopback in front of ``upstream`` (``http://127.0.0.1:PORT``).

    fail_first: answer the first N requests with ``fail_status`` (and ``Retry-After``) without forwarding.
    drop_answer: a predicate on (method, path); a matching request is forwarded, then answered 503 as if
      the answer was lost on the way (each predicate match counts once unless it keeps returning True).
    basic_auth: "user:password" that requests must carry, else 401.
    refuse: a predicate on (method, path, body); a matching request is answered 403 PERMISSION_DENIED
      without forwarding it (for as long as the predicate says so).
    certfile/keyfile: serve HTTPS with this certificate.
    delay: seconds to wait before forwarding each request (a slow server).
    """

    def __init__(self, upstream: str, fail_first: int = 0, fail_status: int = 503, retry_after: Optional[str] = "0",
                 drop_answer: Optional[Callable[[str, str], bool]] = None, basic_auth: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None, delay: float = 0.0,
                 refuse: Optional[Callable[[str, str, bytes], bool]] = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.drop_answer = drop_answer
        self.basic_auth = basic_auth
        self.delay = delay
        self.refuse = refuse
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: Optional[dict] = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    n = len(proxy.requests)
                    inject = n < proxy.fail_first
                if proxy.basic_auth is not None:
                    want = "Basic " + base64.b64encode(proxy.basic_auth.encode()).decode()
                    if self.headers.get("Authorization") != want:
                        with proxy.lock:
                            proxy.requests.append((self.command, self.path, 401))
                        self._answer(401, b'{"error_code": "UNAUTHENTICATED", "message": "bad credentials"}',
                                     {"Content-Type": "application/json"})
                        return
                if proxy.refuse is not None and proxy.refuse(self.command, self.path, body):
                    with proxy.lock:
                        proxy.requests.append((self.command, self.path, 403))
                    self._answer(403, b'{"error_code": "PERMISSION_DENIED", "message": "refused by the proxy"}',
                                 {"Content-Type": "application/json"})
                    return
                if inject:
                    with proxy.lock:
                        proxy.requests.append((self.command, self.path, proxy.fail_status))
                    headers = {"Content-Type": "text/plain"}
                    if proxy.retry_after is not None:
                        headers["Retry-After"] = proxy.retry_after
                    self._answer(proxy.fail_status, b"injected failure", headers)
                    return
                if proxy.delay:
                    time.sleep(proxy.delay)
                host = self.upstream_host
                conn = http.client.HTTPConnection(host[0], host[1], timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                conn.close()
                dropped = proxy.drop_answer is not None and proxy.drop_answer(self.command, self.path)
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, 503 if dropped else r.status))
                if dropped:
                    self._answer(503, b"answer lost", {"Retry-After": "0"})
                    return
                out = {k: v for k, v in r.getheaders() if k.lower() not in ("transfer-encoding", "connection",
                                                                               "content-length")}
                self._answer(r.status, data, out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        up = self.upstream.split("://", 1)[1].split("/", 1)[0]
        host, port = up.rsplit(":", 1)
        Handler.upstream_host = (host, int(port))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def statuses(self) -> list[int]:
        with self.lock:
            return [s for _, _, s in self.requests]

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def self_signed_cert(folder: pathlib.Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 made with the openssl command line: (certfile, keyfile)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


_shared: Optional[MlflowServer] = None


def shared_server(root: pathlib.Path) -> MlflowServer:
    """One server per test process, shared by every module that asks (stopped when the process exits)."""
    global _shared
    if _shared is None:
        import atexit

        _shared = MlflowServer(root).start()
        atexit.register(_shared.stop)
    return _shared
