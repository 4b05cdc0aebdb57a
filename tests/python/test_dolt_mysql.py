"""DoltSource's MySQL path (libmysqlclient) against a real MariaDB started by a fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import mlops

sys.path.insert(0, os.path.dirname(__file__))
from mariadb_server import DATABASE, PASSWORD, USER, MariaDB, available  # noqa: E402

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif("dolt" not in mlops.components, reason="built without the dolt component"),
    pytest.mark.skipif(not available(), reason="mariadbd is not installed (Debian package mariadb-server)"),
]


@pytest.fixture(scope="module")
def server():
    with MariaDB() as m:
        yield m


@pytest.fixture
def src(server):
    return mlops.DoltSource(server.uri_with_password)


def fill(server, table="feat", n=100, sleep=False):
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cols = ", ".join(f"f{i} DOUBLE" for i in range(4))
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, {cols}, label INT)")
        rows = [(i, i * 0.5, i * 1.0, -i * 1.0, 0.25, i % 3) for i in range(n)]
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s)", rows)
    conn.close()


def test_connects_and_reports_a_server_without_version_control(src, server):
    assert src.backend == "mysql"
    assert PASSWORD not in src.uri and "***" in src.uri
    assert src.query("SELECT 1 + ? AS v", (41,)).column("v")[0] == 42
    with pytest.raises(mlops.DataSourceError, match="without Dolt"):
        src.head()
    with pytest.raises(mlops.DataSourceError, match="at=None"):
        src.dataset("feat", label="label", features=["f0"])


def test_password_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("MLOPS_DOLT_PASSWORD", PASSWORD)
    s = mlops.DoltSource(server.uri)
    assert s.query("SELECT CURRENT_USER() AS u").column("u")[0].startswith("mlops@")


def test_wrong_password_is_a_clear_error_without_the_password(server):
    wrong = "Wr0ng-pa55word"
    with pytest.raises(mlops.DataSourceError) as e:
        mlops.DoltSource(server.uri.replace("mlops@", f"mlops:{wrong}@"))
    msg = str(e.value)
    assert "Access denied" in msg and wrong not in msg
    assert f"127.0.0.1:{server.port}" in msg


def test_unix_socket_and_timeouts_in_the_uri(server):
    uri = f"mysql://mlops:{PASSWORD}@localhost/training?unix_socket={server.socket}&connect-timeout=5&read-timeout=30"
    s = mlops.DoltSource(uri)
    assert s.query("SELECT 7 AS v").column("v")[0] == 7


def test_every_column_type_and_nulls(src):
    src.execute("DROP TABLE IF EXISTS types")
    src.execute(
        "CREATE TABLE types (id INT PRIMARY KEY, ti TINYINT, bi BIGINT, ub BIGINT UNSIGNED, fl FLOAT, db DOUBLE,"
        " de DECIMAL(10,3), vc VARCHAR(300), tx TEXT, bl BLOB, vb VARBINARY(16), d DATE, dt DATETIME, js JSON)")
    long_text = "ü" * 500
    src.execute("INSERT INTO types VALUES (1, -5, 9007199254740993, 42, 1.5, 2.25, 12.345, 'short', ?, ?, ?,"
                " '2024-02-29', '2024-02-29 12:34:56', '{\"a\": 1}')", (long_text, bytes(range(256)) * 4, b"\x00\xff"))
    src.execute("INSERT INTO types (id) VALUES (2)")
    t = src.query("SELECT * FROM types ORDER BY id")
    assert t.types == {"id": "int64", "ti": "int64", "bi": "int64", "ub": "int64", "fl": "float64", "db": "float64",
                       "de": "float64", "vc": "text", "tx": "text", "bl": "bytes", "vb": "bytes", "d": "text",
                       "dt": "text", "js": "text"}
    c = t.to_numpy()
    assert c["ti"][0] == -5 and c["bi"][0] == 9007199254740993 and c["ub"][0] == 42
    assert c["fl"][0] == 1.5 and c["db"][0] == 2.25 and abs(c["de"][0] - 12.345) < 1e-12
    assert c["tx"][0] == long_text and c["bl"][0] == bytes(range(256)) * 4 and c["vb"][0] == b"\x00\xff"
    assert c["d"][0] == "2024-02-29" and c["dt"][0] == "2024-02-29 12:34:56"
    assert json.loads(c["js"][0]) == {"a": 1}
    for name in t.names[1:]:
        assert t.null_mask(name).tolist() == [False, True], name


def test_dataset_unpinned_from_mysql(src, server):
    fill(server, n=50)
    ds = src.dataset("feat", label="label", features=["f0", "f1", "f2", "f3"], at=None, where="id < ?", params=(30,))
    assert ds.X.shape == (30, 4) and ds.classes == ["0", "1", "2"]
    np.testing.assert_allclose(ds.X[:, 0], np.arange(30) * 0.5)
    lin = ds.lineage
    assert lin["commit"] == "" and PASSWORD not in json.dumps(lin) and "ORDER BY `id`" in lin["query"]
    assert src.count("feat", at=None) == 50
    with pytest.raises(mlops.DataError, match="no column 'zz'"):
        src.dataset("feat", label="label", features=["zz"], at=None)


# Tickets arrive in every language: CJK, emoji (4-byte UTF-8) and combining marks, as labels and as text. On a
# latin1 server or database (MariaDB's own defaults) the inserts fail with "Incorrect string value".
WORLD_TEXT = [(1, "配送が遅れています", "物流"), (2, "包裹还没到 📦", "物流"),
              (3, "환불해 주세요 💳", "결제"), (4, "Café crème, s'il vous plaît", "결제")]


def test_cjk_and_emoji_text_round_trips_through_insert_query_and_dataset(src):
    src.execute("DROP TABLE IF EXISTS tickets")
    src.execute("CREATE TABLE tickets (id INT PRIMARY KEY, body TEXT, topic VARCHAR(40))")
    for row in WORLD_TEXT:
        src.execute("INSERT INTO tickets VALUES (?, ?, ?)", row)
    got = src.query("SELECT id, body, topic FROM tickets ORDER BY id").to_numpy()
    assert list(zip(got["id"].tolist(), got["body"], got["topic"])) == WORLD_TEXT
    found = src.query("SELECT id FROM tickets WHERE body = ?", ("包裹还没到 📦",)).column("id")
    assert found.tolist() == [2]
    assert src.count("tickets", where="topic = ?", params=("결제",), at=None) == 2

    ds = src.dataset("tickets", label="topic", text="body", dimension=64, seed=1, at=None)
    assert ds.classes == sorted({t for _, _, t in WORLD_TEXT})
    assert [ds.classes[i] for i in ds.y] == [t for _, _, t in WORLD_TEXT]
    expected = mlops.Featurizer(dimension=64, seed=1).transform([b for _, b, _ in WORLD_TEXT])
    np.testing.assert_array_equal(ds.X, expected)


def test_injection_attempts_are_bound_or_rejected(src, server):
    fill(server, n=10)
    assert src.count("feat", where="CAST(label AS CHAR) = ?", params=("1' OR '1'='1",), at=None) == 0
    with pytest.raises(mlops.ConfigError):
        src.count("feat`; DROP TABLE feat; --", at=None)
    with pytest.raises(mlops.DataError, match="no column"):
        src.dataset("feat", label="label", features=["f0` FROM feat; DROP TABLE feat; -- "], at=None)
    assert src.count("feat", at=None) == 10
    t = src.query("SELECT ? AS v", ("Robert'); DROP TABLE feat;--",))
    assert t.column("v")[0] == "Robert'); DROP TABLE feat;--"
    assert src.count("feat", at=None) == 10


def test_read_is_retried_after_kill_connection(server):
    fill(server, table="slow", n=1500)
    src = mlops.DoltSource(server.uri_with_password, max_retries=2)
    result = {}

    def run():
        try:
            # SLEEP makes the server take a few seconds, so the kill lands mid-read.
            result["ds"] = src.dataset("slow", label="label", features=["f0", "f1"], at=None,
                                       where="SLEEP(0.001) = 0")
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    killed = 0
    deadline = time.monotonic() + 20
    while killed == 0 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.3)
        killed = server.kill_connections_of()
    thread.join(120)
    assert killed >= 1
    assert "error" not in result, result.get("error")
    ds = result["ds"]
    assert ds.rows == 1500
    np.testing.assert_allclose(ds.X[:, 0], np.arange(1500) * 0.5)


def test_no_retries_left_is_a_data_source_error(server):
    fill(server, table="slow2", n=800)
    src = mlops.DoltSource(server.uri_with_password, max_retries=0)
    errors = []

    def run():
        try:
            src.dataset("slow2", label="label", features=["f0"], at=None, where="SLEEP(0.002) = 0")
        except mlops.DataSourceError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    killed = 0
    while killed == 0 and thread.is_alive():
        time.sleep(0.2)
        killed = server.kill_connections_of()
    thread.join(60)
    assert killed >= 1 and len(errors) == 1
    assert "gave up after 1 attempts" in str(errors[0]) and PASSWORD not in str(errors[0])
    assert src.count("slow2", at=None) == 800  # the next call connects again


@pytest.mark.slow
def test_large_result_is_streamed_not_buffered(server):
    """The peak memory of a 400,000-row read stays near the size of the arrays it returns."""
    conn = server.connect(local_infile=True)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS big")
        cur.execute("CREATE TABLE big (id INT PRIMARY KEY, " + ", ".join(f"f{i} DOUBLE" for i in range(16)) +
                    ", label INT)")
        cur.execute("INSERT INTO big SELECT seq, " + ", ".join(f"seq * {i + 1} / 7" for i in range(16)) +
                    ", seq % 5 FROM seq_0_to_399999")
    conn.close()
    code = textwrap.dedent(f"""
        import resource, mlops
        s = mlops.DoltSource({server.uri_with_password!r})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ds = s.dataset("big", label="label", features=[f"f{{i}}" for i in range(16)], at=None)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(ds.rows, (after - before) * 1024, ds.X.nbytes + ds.y.nbytes)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    rows, grew, final = int(out[0]), int(out[1]), int(out[2])
    assert rows == 400_000
    # The arrays plus at most 1.3x their size on top; a result buffered on the client (18 binary columns per
    # row, about 3x the arrays) would not fit under that.
    assert grew < 2.3 * final, (grew, final)


def test_tls_options_reach_the_client_library(server):
    # The fixture's server has no TLS: requiring it must fail clearly, and plain ssl-mode=DISABLED works.
    with pytest.raises(mlops.DataSourceError) as e:
        mlops.DoltSource(server.uri_with_password + "?ssl-mode=REQUIRED")
    assert "SSL" in str(e.value) or "TLS" in str(e.value)
    assert PASSWORD not in str(e.value)
    plain = mlops.DoltSource(server.uri_with_password + "?ssl-mode=DISABLED")
    assert plain.query("SELECT 1 AS one").column("one")[0] == 1
    with pytest.raises(mlops.ConfigError, match="ssl-mode"):
        mlops.DoltSource(server.uri_with_password + "?ssl-mode=SOMETIMES")


# ---- TLS against a server that offers it (certificates made by the fixture with OpenSSL) -------------------

@pytest.fixture(scope="module")
def tls_server():
    with MariaDB(tls=True) as m:
        yield m


def tls_uri(server, host: str, mode: str, ca: str) -> str:
    from urllib.parse import quote

    return (f"mysql://{USER}:{PASSWORD}@{host}:{server.port}/{DATABASE}"
            f"?ssl-mode={mode}&ssl-ca={quote(ca, safe='/')}")


def cipher(src) -> str:
    t = src.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    return t.column("Value")[0]


def test_tls_verify_identity_with_the_servers_ca_connects_encrypted(tls_server):
    src = mlops.DoltSource(tls_uri(tls_server, "127.0.0.1", "VERIFY_IDENTITY", tls_server.ca))
    assert cipher(src)  # the server reports this session as encrypted
    src.execute("CREATE TABLE IF NOT EXISTS tls_t (id INT PRIMARY KEY, v DOUBLE)")
    src.execute("REPLACE INTO tls_t VALUES (1, 0.5)")
    assert src.count("tls_t", at=None) == 1
    assert PASSWORD not in src.uri


@pytest.mark.parametrize("mode", ["VERIFY_CA", "VERIFY_IDENTITY"])
def test_tls_a_certificate_from_another_ca_is_refused(tls_server, mode):
    with pytest.raises(mlops.DataSourceError) as e:
        mlops.DoltSource(tls_uri(tls_server, "127.0.0.1", mode, tls_server.other_ca))
    message = str(e.value)
    assert "cannot connect" in message and PASSWORD not in message
    assert f"127.0.0.1:{tls_server.port}" in message


def test_tls_a_host_name_the_certificate_does_not_name_is_refused(tls_server):
    # The certificate names IP 127.0.0.1 only; the same server answers at 127.0.0.2.
    wrong_host = tls_uri(tls_server, "127.0.0.2", "VERIFY_IDENTITY", tls_server.ca)
    with pytest.raises(mlops.DataSourceError) as e:
        mlops.DoltSource(wrong_host)
    assert "cannot connect" in str(e.value) and PASSWORD not in str(e.value)
    # Encrypted without checking the name, the same address connects: the refusal was the name.
    unchecked = mlops.DoltSource(wrong_host.replace("VERIFY_IDENTITY", "REQUIRED"))
    assert cipher(unchecked)


def test_evaluation_rows_are_the_same_keys_as_on_doltlite(src, server, tmp_path):
    fill(server, n=120)
    side = dict(label="label", features=["f0"], holdout="evaluation", holdout_salt="customer-7", holdout_fraction=0.3)
    held = src.dataset("feat", at=None, **side)
    lite = mlops.DoltSource(f"doltlite:{tmp_path / 'same.db'}", create=True)
    lite.execute("CREATE TABLE feat (id INTEGER PRIMARY KEY, f0 REAL, label INTEGER)")
    for i in range(120):
        lite.execute("INSERT INTO feat VALUES (?, ?, ?)", (i, i * 0.5, i % 3))
    lite.commit("the same rows")
    assert 20 < held.rows < 55
    np.testing.assert_array_equal(held.X[:, 0], lite.dataset("feat", **side).X[:, 0])
    train = src.dataset("feat", at=None, **{**side, "holdout": "train"})
    assert train.rows + held.rows == 120 and held.lineage["holdout"]["side"] == "evaluation"

    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS nokey")
        cur.execute("CREATE TABLE nokey (f0 DOUBLE, label INT)")
        cur.execute("INSERT INTO nokey VALUES (1.0, 1)")
    conn.close()
    with pytest.raises(mlops.DataError, match="'nokey' has no primary key"):
        src.dataset("nokey", at=None, **side)
