"""Real MLflow tracking servers for tests and benchmarks, a small fault-injecting proxy, and a look into
a server's own store.

``MlflowServer`` is the package's ``mlops.local_server.MlflowServer`` (SQLite or MariaDB store, one or
more workers, restartable on the same port and store; ``mariadb_server.MariaDB.store_uri`` makes a
database for it). ``store_model_versions(server)`` reads the registry's versions straight
from the store's tables, not through the REST API. ``FaultProxy`` forwards HTTP (optionally HTTPS) to an
upstream and can answer the first N requests with an error status, drop answers of chosen requests after
forwarding them, or demand credentials.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import pathlib
import sqlite3
import ssl
import subprocess
import threading
import time
from typing import Callable, Iterator, Optional

from mlops.local_server import MlflowServer, free_port  # noqa: F401  (re-exported for tests and benches)


@contextlib.contextmanager
def mlflow_on(backend: str, root: pathlib.Path, workers: int = 1, frontend: str = "gunicorn") -> Iterator[MlflowServer]:
    """A started MlflowServer under ``root`` whose store is on "sqlite" (a file under ``root``) or on
    "mariadb" (a MariaDB server of its own, started here and stopped with it)."""
    if backend == "sqlite":
        with MlflowServer(root, workers=workers, frontend=frontend) as server:
            yield server
    elif backend == "mariadb":
        from mariadb_server import MariaDB

        with MariaDB() as db, MlflowServer(root, workers=workers, frontend=frontend,
                                           backend_store_uri=db.store_uri("mlflow")) as server:
            yield server
    else:
        raise ValueError(f"backend must be 'sqlite' or 'mariadb', not {backend!r}")



@contextlib.contextmanager
def demo_releases(root: pathlib.Path) -> Iterator[dict]:
    """Two releases of a small demo (two customers; the second release retrains one) recorded in an MLflow
    server of their own under ``root``, so its releases experiment holds these two only. Yields the two
    ReleaseReports ("first", "second"), the server's "url", the DoltSource ("source") and the environment
    the ``mlops`` command needs to find them ("env")."""
    import os

    import mlops
    from mlops import demo

    with MlflowServer(root / "mlflow") as server:
        src = mlops.DoltSource(f"doltlite:{root / 'data.db'}", create=True)
        demo.init_demo(src, customers=2, rows_per_customer=40, seed=5, epochs=3)
        tracker = mlops.MlflowTracker(server.url)

        def pipeline():
            return mlops.Pipeline(src, tracker, mlops.CudaTrainer(device="cpu"), mlops.load_catalog_table(src),
                                  code_commit="c0de")

        pipe = pipeline()
        pipe.train(pipe.plan())
        first = pipe.release(image="registry.example.com/adapters")
        src.execute("UPDATE tickets SET body = body || ' again' WHERE id = "
                    "(SELECT MIN(id) FROM tickets WHERE customer = ?)", (demo.customer_name(2),))
        src.commit("Edit one ticket")
        pipe = pipeline()
        pipe.train(pipe.plan())
        second = pipe.release(image="registry.example.com/adapters")
        assert first.complete and second.complete and second.md5 != first.md5
        env = dict(os.environ, MLOPS_DATA=f"doltlite:{root / 'data.db'}", MLFLOW_TRACKING_URI=server.url)
        yield {"first": first, "second": second, "env": env, "url": server.url, "source": src}

def store_model_versions(server: MlflowServer) -> list[tuple[str, int, str, str]]:
    """Every model version in the server's store, read from its ``model_versions`` table directly:
    (name, version, run_id, status), sorted."""
    sql = "SELECT name, version, run_id, status FROM model_versions"
    if server.backend == "sqlite":
        conn = sqlite3.connect(server.backend_store_uri[len("sqlite:///"):])
        try:
            rows = conn.execute(sql).fetchall()
        finally:
            conn.close()
    elif server.backend == "mysql":
        import urllib.parse

        import pymysql

        u = urllib.parse.urlsplit(server.backend_store_uri)
        conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=urllib.parse.unquote(u.username or ""),
                               password=urllib.parse.unquote(u.password or ""), database=u.path.lstrip("/"))
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall()
        finally:
            conn.close()
    else:
        raise ValueError(f"no direct reader for a {server.backend} store")
    return sorted((str(n), int(v), str(r or ""), str(s)) for n, v, r, s in rows)


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
        self.in_flight = 0      # requests being forwarded now
        self.max_in_flight = 0  # the most at once so far
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
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    if proxy.delay:
                        time.sleep(proxy.delay)
                    host = self.upstream_host
                    conn = http.client.HTTPConnection(host[0], host[1], timeout=60)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    conn.close()
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1
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
        atexit.register(_shared.close)
    return _shared
