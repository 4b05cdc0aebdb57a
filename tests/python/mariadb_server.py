"""A throwaway MariaDB server for tests and benchmarks: its own datadir and socket in a temp folder,
listening on 127.0.0.1 on a free port, with one database and one user with a password.

With `tls=True` it also listens on 127.0.0.2 and offers TLS with a certificate made here with OpenSSL: a
test CA (`ca`) signs a server certificate for IP 127.0.0.1 only, so a client verifying the host name is
refused at 127.0.0.2; `other_ca` is a second CA that signed nothing of this server's."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import pymysql

USER = "mlops"
PASSWORD = "pw-Zq8vK3u"
DATABASE = "training"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return shutil.which("mariadbd", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")) is not None


class MariaDB:
    """Start with `start()`, stop with `stop()` (or use as a context manager)."""

    def __init__(self, base: Optional[Path] = None, buffer_pool: str = "256M", tls: bool = False) -> None:
        self._own_base = base is None
        self.base = Path(base or tempfile.mkdtemp(prefix="mlops-mariadb-"))
        self.datadir = self.base / "data"
        self.socket = str(self.base / "mysqld.sock")
        self.port = _free_port()
        self.buffer_pool = buffer_pool
        self.proc: Optional[subprocess.Popen] = None
        self.tls = tls
        self.certs = self.base / "certs"
        self.ca = str(self.certs / "ca.pem")
        self.other_ca = str(self.certs / "other-ca.pem")

    @property
    def uri(self) -> str:
        """URI without the password (it comes from MLOPS_DOLT_PASSWORD or is added by the caller)."""
        return f"mysql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def uri_with_password(self) -> str:
        return f"mysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def store_uri(self, name: str, charset: Optional[str] = "utf8mb4") -> str:
        """Grants the test user database `name` and returns its SQLAlchemy URI (an MLflow store). The database
        is created here with `charset` (its binary collation); with None it is left for the user to create."""
        conn = self.root()
        with conn.cursor() as cur:
            if charset is not None:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET {charset} COLLATE {charset}_bin")
            for host in ("localhost", "127.0.0.1"):
                cur.execute(f"GRANT ALL ON `{name}`.* TO '{USER}'@'{host}'")
        conn.close()
        return f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def root(self) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)

    def connect(self, **kw) -> pymysql.connections.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                               database=DATABASE, autocommit=True, **kw)

    def _make_certificates(self) -> list[str]:
        """A CA, a server certificate it signs for IP:127.0.0.1, and an unrelated CA; the server's options."""
        from certificates import make_test_ca

        made = make_test_ca(self.certs)
        return [f"--ssl-ca={made.ca}", f"--ssl-cert={made.cert}", f"--ssl-key={made.key}"]

    def start(self) -> "MariaDB":
        bindir = "/usr/sbin"
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if install is None:
            raise RuntimeError("mariadb-install-db not found (install the Debian package mariadb-server)")
        self.datadir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [install, "--no-defaults", f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
             "--user=root", "--skip-test-db"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        mariadbd = shutil.which("mariadbd", path=bindir + ":" + os.environ.get("PATH", "")) or "mysqld"
        tls = self._make_certificates() if self.tls else []
        # mariadbd cannot bind port 0 and report it (0 means its default, 3306): it gets a port that was free a
        # moment ago, and another when something took that one in between.
        for attempt in range(8):
            if attempt:
                self.port = _free_port()
            conn = self._launch(mariadbd, tls)
            if conn is not None:
                break
        else:
            raise RuntimeError(f"mariadbd found no free port in 8 tries:\n{self._log_tail()}")
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            for host in ("localhost", "127.0.0.1", "127.0.0.2"):
                cur.execute(f"CREATE USER '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
                cur.execute(f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'{host}'")
        conn.close()
        return self

    def _log_tail(self) -> str:
        path = self.base / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _launch(self, mariadbd: str, tls: list[str]) -> Optional[pymysql.connections.Connection]:
        """Starts mariadbd on self.port; a root connection once it answers, None when the port was taken."""
        bind = "127.0.0.1,127.0.0.2" if self.tls else "127.0.0.1"
        log = self.base / "error.log"
        log.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--port={self.port}", f"--bind-address={bind}", "--user=root", *tls,
             f"--pid-file={self.base / 'mysqld.pid'}", f"--log-error={log}",
             f"--innodb-buffer-pool-size={self.buffer_pool}", "--skip-log-bin", "--max-allowed-packet=256M",
             "--local-infile=1", "--innodb-flush-log-at-trx-commit=2",
             # Customers write in every language: the server's defaults are utf8mb4, not MariaDB's latin1.
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                tail = self._log_tail()
                if "Address already in use" in tail or "Bind on TCP/IP port" in tail:
                    return None
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}:\n{tail}")
            # The unix socket comes after the TCP port is bound: an answer here is this server on self.port.
            if self._answers():
                return self.root()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mariadbd did not answer within 90 s")
            time.sleep(0.2)

    def _answers(self) -> bool:
        # A plain socket probe (closed at once), so no half-made client connection is left to the GC.
        if not os.path.exists(self.socket):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(self.socket)
                return len(probe.recv(4)) == 4  # the server's greeting packet header
            except OSError:
                return False

    def kill_connections_of(self, user: str = USER) -> int:
        """KILL CONNECTION every connection of `user` that is running a query; returns how many."""
        killed = 0
        conn = self.root()
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s AND command <> 'Sleep'", (user,))
            for (pid,) in cur.fetchall():
                cur.execute(f"KILL CONNECTION {int(pid)}")
                killed += 1
        conn.close()
        return killed

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "MariaDB":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
