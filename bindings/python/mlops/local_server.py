"""A local MLflow tracking server for demos, notebooks, tests and benchmarks: started on a loopback port it
binds itself (port 0, read back from its log) with its backend store on SQLite (a file under one directory, the default) or on a database server
(MariaDB/MySQL through ``mysql+pymysql://``), an artifacts folder under the same directory, and one or
more worker processes; stopped by ``close()``/``stop()`` or the ``with`` block, and restartable on the
same port and store.

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
import re
import urllib.error
import urllib.request
from collections import Counter


def free_port() -> int:
    """A port that was free a moment ago (another process may take it before the caller binds it): only for
    servers that cannot bind port 0 themselves and report it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The line in which gunicorn or uvicorn names the address it bound.
_LISTENING = re.compile(rb"(?:Listening at: |Uvicorn running on )http://127\.0\.0\.1:(\d+)")

# One answered request in gunicorn's or uvicorn's access log: '... "POST /api/2.0/... HTTP/1.1" 200 ...'.
_ACCESS = re.compile(rb'"(GET|POST|PUT|PATCH|DELETE|HEAD) (/[^ "?]*)[^ "]* HTTP/[0-9.]+" (\d{3})')


def _mlflow_executable() -> str:
    beside = pathlib.Path(sys.executable).with_name("mlflow")
    if beside.exists():
        return str(beside)
    found = shutil.which("mlflow")
    if not found:
        raise FileNotFoundError("the 'mlflow' command is not installed (pip install mlflow)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class MlflowServer:
    """``mlflow server`` on 127.0.0.1, its state in ``directory`` (kept after stopping).

    ``backend_store_uri``: where runs and registered models live; None: a SQLite file
    ``directory/mlflow.db``. A database server is named the SQLAlchemy way, e.g.
    ``mysql+pymysql://user:password@127.0.0.1:3306/mlflow``: a missing database is created
    ``CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`` (MLflow's migrations compare names with ``utf8mb4_bin``), an
    existing one must already be utf8mb4 (``ConfigError`` otherwise); MLflow creates its tables at the first
    start. ``frontend``: "gunicorn" (MLflow's Flask app in gunicorn's sync workers)
    or "uvicorn" (``mlflow server``'s default). ``workers``: server processes; on SQLite (put in
    write-ahead-log mode at start) their writes take turns on the one file, on a database server they run
    side by side. MLflow's GenAI job runner is off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION says otherwise.
    """

    def __init__(self, directory: str | os.PathLike, port: int | None = None, timeout: float = 120.0,
                 workers: int = 1, frontend: str = "gunicorn", backend_store_uri: str | None = None):
        if frontend not in ("gunicorn", "uvicorn"):
            raise ValueError(f"frontend must be 'gunicorn' or 'uvicorn', not {frontend!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.frontend = frontend
        self.directory = pathlib.Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        # None: the server binds port 0 at its first start and start() reads the port back; a restart asks
        # for the same port again (held, refusing connections, while the server is stopped).
        self.port = port
        self._reserved: socket.socket | None = None
        self.log_path = self.directory / "server.log"
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.directory / 'mlflow.db'}"
        self._timeout = timeout
        self.workers = workers
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend(self) -> str:
        """The store's kind: "sqlite", "mysql", "postgresql", ... (the URI's scheme without its driver)."""
        return self.backend_store_uri.split(":", 1)[0].split("+", 1)[0]

    def start(self) -> "MlflowServer":
        (self.directory / "artifacts").mkdir(exist_ok=True)
        self._use_write_ahead_log()
        self._use_utf8mb4_database()
        cmd = [
            _mlflow_executable(), "server",
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", str(self.directory / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port or 0), "--workers", str(self.workers),
        ]
        if self.frontend == "gunicorn":
            # MLflow's Flask app under gunicorn answers a tracking call in about half the time of the
            # uvicorn front end (bench/pipeline); a long artifact transfer may take up to 10 minutes.
            # Its access log goes to the server's log, where requests() counts what the server answered.
            cmd += ["--gunicorn-opts", "--timeout 600 --access-logfile -"]
        log = open(self.log_path, "ab")
        log_start = log.tell()
        env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="false")
        env.pop("MLFLOW_TRACKING_URI", None)
        # MLflow's job runner (GenAI evaluation jobs) starts seven consumer processes that import MLflow
        # and then poll the store; tracking and the registry do not use it. Set the variable to keep it.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        # Its own process group: the server starts worker processes that close() must end too.
        self._process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory,
                                         start_new_session=True)
        log.close()
        deadline = time.monotonic() + self._timeout
        bound = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"mlflow server exited with {code}; see {self.log_path}:\n{self.log_tail()}")
            if bound is None:
                # Only this server's own report of its address counts: a health answer on a port it failed
                # to bind would come from someone else.
                bound = self._bound_port(log_start)
                if bound is None:
                    time.sleep(0.2)
                    continue
                if self.port and bound != self.port:
                    raise RuntimeError(f"mlflow server bound port {bound}, not {self.port}")
                self.port = bound
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.close()
        raise TimeoutError(f"mlflow server did not answer on {self.url} within {self._timeout:.0f} s; "
                           f"see {self.log_path}:\n{self.log_tail()}")

    def _bound_port(self, log_start: int) -> int | None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(log_start)
                found = _LISTENING.search(f.read())
        except OSError:
            return None
        return int(found.group(1)) if found else None

    def _use_write_ahead_log(self) -> None:
        """A SQLite store is put in write-ahead-log mode (kept in the file, so every worker's connection uses
        it): a commit appends to the log instead of rewriting a rollback journal, and readers do not wait for
        a writer (bench/pipeline)."""
        prefix = "sqlite:///"
        if not self.backend_store_uri.startswith(prefix) or self.backend_store_uri == prefix:
            return
        path = pathlib.Path(self.backend_store_uri[len(prefix):].split("?", 1)[0])
        path = path if path.is_absolute() else self.directory / path
        import sqlite3

        db = sqlite3.connect(path)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        finally:
            db.close()
        if mode != "wal":
            raise RuntimeError(f"the SQLite store {path} cannot use a write-ahead log (journal mode {mode})")

    def _use_utf8mb4_database(self) -> None:
        """A MySQL/MariaDB store lives in a utf8mb4 database: created so when missing, refused when it is not.

        MLflow's migrations compare with ``COLLATE utf8mb4_bin``, which a latin1 database (MariaDB's default)
        rejects halfway through the first start; names and tags in any language need utf8mb4 as well."""
        if self.backend != "mysql":
            return
        import urllib.parse

        import pymysql

        from . import _core

        u = urllib.parse.urlsplit(self.backend_store_uri)
        name = urllib.parse.unquote(u.path.lstrip("/"))
        if not name:
            raise _core.ConfigError(f"[mlops.config] the store {_core.redact_uri(self.backend_store_uri)} names "
                                    "no database")
        query = urllib.parse.parse_qs(u.query)
        conn = pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306,
                               user=urllib.parse.unquote(u.username or ""),
                               password=urllib.parse.unquote(u.password or ""),
                               unix_socket=(query.get("unix_socket") or [None])[0], autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
                            "WHERE SCHEMA_NAME = %s", (name,))
                row = cur.fetchone()
                if row is None:
                    quoted = name.replace("`", "``")
                    cur.execute(f"CREATE DATABASE `{quoted}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                elif row[0] != "utf8mb4":
                    raise _core.ConfigError(
                        f"[mlops.config] the MLflow store's database {name!r} uses the character set {row[0]}; "
                        f"MLflow needs utf8mb4: create it with CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                        "COLLATE utf8mb4_bin (or convert it with ALTER DATABASE before MLflow creates its tables)")
        finally:
            conn.close()

    def close(self) -> None:
        """Stops the server and its workers for good and lets its port go."""
        self._end_process()
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def stop(self) -> None:
        """Stops the server and its workers; its port stays reserved for start() (refusing connections, as a
        stopped server's port does) until then or close()."""
        self._end_process()
        self._reserve_port()

    def _end_process(self) -> None:
        """Ends the server's process group and waits until its port is free."""
        p, self._process = self._process, None
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                pass
        # Workers of the server's group that outlive it are ended too.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait()
        deadline = time.monotonic() + 15
        while self.port and not _port_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _reserve_port(self) -> None:
        """Binds the stopped server's port without listening: clients are refused as by a stopped server,
        and no other process takes the port before start() hands it back to the server."""
        if not self.port or self._reserved is not None:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return
        self._reserved = s

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group's), None when it is not running."""
        return self._process.pid if self._process is not None else None

    def wait(self) -> int:
        """Waits until the server exits by itself; returns its exit code."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.wait()

    def start_background(self) -> "MlflowServer":
        """Starts the server and leaves it running after this process ends: its process id goes to
        ``directory/server.pid``, where :func:`stop_background` finds it."""
        pid_file = self.directory / PID_FILE
        running = _running_pid(pid_file)
        if running:
            raise RuntimeError(f"an MLflow server of {self.directory} is already running (process {running}); "
                               f"stop it first")
        self.start()
        pid_file.write_text(f"{self._process.pid}\n{self.url}\n", encoding="utf-8")
        return self

    def log_mark(self, quiet: float = 0.0) -> int:
        """Where the server's log ends now: pass it to :meth:`requests` to count what comes after. A worker
        writes a request's access line just after answering it; with ``quiet`` > 0 the mark is taken once
        the log has not grown for that many seconds (at most 10 s of waiting)."""
        def size() -> int:
            try:
                return self.log_path.stat().st_size
            except OSError:
                return 0

        mark, deadline = size(), time.monotonic() + 10
        while quiet > 0 and time.monotonic() < deadline:
            time.sleep(quiet)
            now = size()
            if now == mark:
                break
            mark = now
        return mark

    def requests(self, since: int = 0, until: int | None = None) -> Counter:
        """The requests the server answered (its access log) between the log marks ``since`` and ``until``
        (None: now), counted by ``(method, path)``; the path without its query. Counted at the server, so a
        client's retries and every worker's requests are in it."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read() if until is None else f.read(max(0, until - since))
        return Counter((m.group(1).decode(), m.group(2).decode()) for m in _ACCESS.finditer(text))

    def log_tail(self, n: int = 4000) -> str:
        """The last ``n`` characters of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


PID_FILE = "server.pid"


def _running_pid(pid_file: pathlib.Path) -> int | None:
    try:
        pid = int(pid_file.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def stop_background(directory: str | os.PathLike) -> int | None:
    """Stops the server :meth:`MlflowServer.start_background` started for ``directory`` (and its workers);
    returns its process id, or None when none was running."""
    pid_file = pathlib.Path(directory).resolve() / PID_FILE
    pid = _running_pid(pid_file)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    pid_file.unlink(missing_ok=True)
    return pid


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
