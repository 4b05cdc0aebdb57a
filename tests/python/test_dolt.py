"""DoltSource on embedded DoltLite, from the `doltlite` wheel (found without importing it)."""

from __future__ import annotations

import contextlib
import http.server
import math
import os
import sqlite3
import ssl
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

import mlops

pytestmark = pytest.mark.skipif("dolt" not in mlops.components, reason="built without the dolt component")


@pytest.fixture
def src(tmp_path):
    return mlops.DoltSource(str(tmp_path / "train.db"), create=True)


def make_rows(src, n=10, start=0):
    for i in range(start, start + n):
        src.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (i, i * 0.5, float(i % 3), "odd" if i % 2 else "even"))


@pytest.fixture
def filled(src):
    src.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a REAL, b REAL, label TEXT)")
    make_rows(src)
    first = src.commit("ten rows")
    return src, first


def test_python_sqlite3_and_doltlite_live_in_one_process(tmp_path):
    before = sqlite3.sqlite_version
    plain = sqlite3.connect(":memory:")
    plain.execute("CREATE TABLE x (v)")
    plain.execute("INSERT INTO x VALUES (1)")
    s = mlops.DoltSource(str(tmp_path / "a.db"), create=True)
    s.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v REAL)")
    s.execute("INSERT INTO t VALUES (1, 2.5)")
    c = s.commit("one")
    assert len(c.hash) == 40
    assert s.query("SELECT sqlite_version() AS v").column("v")[0] != ""
    # Python's SQLite is untouched: no dolt functions there, same version, still works.
    with pytest.raises(sqlite3.OperationalError):
        plain.execute("SELECT dolt_hashof('HEAD')")
    assert sqlite3.sqlite_version == before
    assert plain.execute("SELECT v FROM x").fetchall() == [(1,)]
    assert s.resolve("HEAD") == c.hash


def test_version_control_calls(filled):
    src, first = filled
    assert src.head() == first
    assert first.message == "ten rows"
    assert src.active_branch() == "main"
    assert src.branches() == ["main"]
    with pytest.raises(mlops.ConflictError, match="nothing to commit"):
        src.commit("empty")
    src.execute("UPDATE t SET a = 99 WHERE id = 1")
    with pytest.raises(mlops.ConfigError, match="Name <email>"):
        src.commit("edit", author="just a name")
    second = src.commit("edit", author="Ann Lee <ann@example.com>")
    assert second.author == "Ann Lee" and second.email == "ann@example.com"
    assert [c.hash for c in src.log(2)] == [second.hash, first.hash]
    assert src.resolve("HEAD~1") == first.hash
    assert src.resolve("main") == second.hash
    assert src.resolve(first.hash) == first.hash
    with pytest.raises(mlops.NotFoundError, match="nope"):
        src.resolve("nope")
    src.create_branch("exp", start=first.hash)
    assert src.branches() == ["exp", "main"]
    with pytest.raises(mlops.ConflictError):
        src.create_branch("exp")
    with pytest.raises(mlops.NotFoundError):
        src.create_branch("other", start="missing-ref")
    src.create_tag("v1", first.hash)
    assert src.tags() == ["v1"]
    assert src.resolve("v1") == first.hash
    with pytest.raises(mlops.ConflictError):
        src.create_tag("v1")
    src.checkout("exp")
    assert src.active_branch() == "exp"
    assert src.head().hash == first.hash
    with pytest.raises(mlops.NotFoundError):
        src.checkout("no-such-branch")
    src.checkout("main")
    assert src.commit_info("HEAD~1") == first


def test_pinned_dataset_reads_an_old_commit_after_the_branch_moved(filled):
    src, first = filled
    pinned = src.dataset("t", label="label", features=["a", "b"], at=first.hash)
    src.execute("UPDATE t SET a = 1000")
    # HEAD with uncommitted changes: still the committed rows, not the working set.
    assert src.dataset("t", label="label", features=["a", "b"]).digest == pinned.digest
    assert src.dataset("t", label="label", features=["a", "b"], at=None).X[0, 0] == 1000
    make_rows(src, 5, start=100)
    src.commit("moved on")
    again = src.dataset("t", label="label", features=["a", "b"], at=first.hash)
    assert again.rows == 10 and again.digest == pinned.digest
    X, y = again.X, again.y
    assert X.dtype == np.float32 and X.shape == (10, 2) and X.flags.c_contiguous
    assert not X.flags.writeable and not X.flags.owndata
    assert y.dtype == np.int32
    assert again.classes == ["even", "odd"]
    np.testing.assert_allclose(X[:, 0], np.arange(10) * 0.5)
    assert list(y) == [0, 1] * 5
    lin = again.lineage
    assert lin["commit"] == first.hash and lin["ref"] == first.hash
    assert lin["uri"].startswith("doltlite://") and lin["table"] == "t"
    assert first.hash in lin["query"] and lin["rows"] == 10 and lin["dropped_rows"] == 0
    assert lin["features"] == ["a", "b"] and lin["label"] == "label"
    now = src.dataset("t", label="label", features=["a"], where="id >= ?", params=(100,))
    assert now.rows == 5 and now.lineage["params"] == [100]
    assert now.lineage["commit"] == src.head().hash and now.lineage["ref"] == "HEAD"


def test_integer_labels_sort_numerically(src):
    src.execute("CREATE TABLE n (id INTEGER PRIMARY KEY, f REAL, lab INTEGER)")
    for i, lab in enumerate([10, 2, 2, 33, 10]):
        src.execute("INSERT INTO n VALUES (?, ?, ?)", (i, float(i), lab))
    src.commit("n")
    ds = src.dataset("n", label="lab", features=["f"])
    assert ds.classes == ["2", "10", "33"]
    assert list(ds.y) == [1, 0, 0, 2, 1]


def test_invalid_rows_are_named_or_dropped_and_counted(filled):
    src, _ = filled
    src.execute("UPDATE t SET label = NULL WHERE id = 3")
    src.execute("UPDATE t SET b = NULL WHERE id = 4")
    src.execute("UPDATE t SET a = 'abc' WHERE id = 6")
    src.commit("dirty")
    with pytest.raises(mlops.DataError) as e:
        src.dataset("t", label="label", features=["a", "b"])
    msg = str(e.value)
    assert "'t'" in msg and "'label'" in msg and "id=3" in msg
    with pytest.raises(mlops.DataError, match=r"'b'.*id=4"):
        src.dataset("t", label="label", features=["a", "b"], where="id <> 3")
    with pytest.raises(mlops.DataError, match=r"'a'.*id=6.*not numeric"):
        src.dataset("t", label="label", features=["a", "b"], where="id > 4")
    ds = src.dataset("t", label="label", features=["a", "b"], drop_invalid=True)
    assert ds.rows == 7 and ds.lineage["dropped_rows"] == 3
    with pytest.raises(mlops.DataError, match="no column 'nope'"):
        src.dataset("t", label="label", features=["a", "nope"])
    with pytest.raises(mlops.NotFoundError):
        src.dataset("t", label="label", features=["a"], at="no-such-ref")
    with pytest.raises(mlops.ConfigError):
        src.dataset("t", label="label")
    with pytest.raises(mlops.ConfigError):
        src.dataset("t; DROP TABLE t", label="label", features=["a"])


def test_text_column_is_featurized(src):
    src.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT, topic TEXT)")
    rows = [(1, "cheap flights to Paris", "travel"), (2, "GPU kernels and CUDA streams", "tech"),
            (3, "hotel deals in Rome", "travel")]
    for r in rows:
        src.execute("INSERT INTO docs VALUES (?, ?, ?)", r)
    src.commit("docs")
    ds = src.dataset("docs", label="topic", text="body", dimension=256, seed=3)
    assert ds.X.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(ds.X, axis=1), 1.0, rtol=1e-5)
    assert ds.lineage["featurizer"] == {"kind": "hashed-word-unigram-bigram", "dimension": 256, "seed": 3,
                                        "text": "body"}
    assert ds.lineage["text"] == "body" and ds.lineage["features"] == []
    other_seed = src.dataset("docs", label="topic", text="body", dimension=256, seed=4)
    assert other_seed.digest != ds.digest


# Tickets arrive in every language: CJK, emoji (4-byte UTF-8) and combining marks, as labels and as text.
WORLD_TEXT = [(1, "配送が遅れています", "物流"), (2, "包裹还没到 📦", "物流"),
              (3, "환불해 주세요 💳", "결제"), (4, "Café crème, s'il vous plaît", "결제")]


def test_cjk_and_emoji_text_round_trips_through_insert_query_dataset_and_diff(src):
    src.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT, topic TEXT)")
    for row in WORLD_TEXT:
        src.execute("INSERT INTO tickets VALUES (?, ?, ?)", row)
    first = src.commit("tickets 🎫")
    assert src.head().message == "tickets 🎫"
    got = src.query("SELECT id, body, topic FROM tickets ORDER BY id").to_numpy()
    assert list(zip(got["id"].tolist(), got["body"], got["topic"])) == WORLD_TEXT
    found = src.query("SELECT id FROM tickets WHERE body = ?", ("包裹还没到 📦",)).column("id")
    assert found.tolist() == [2]

    ds = src.dataset("tickets", label="topic", text="body", dimension=64, seed=1)
    assert ds.classes == sorted({t for _, _, t in WORLD_TEXT})
    assert [ds.classes[i] for i in ds.y] == [t for _, _, t in WORLD_TEXT]
    # The rows read from the store featurize exactly as the same Python strings do at prediction time.
    expected = mlops.Featurizer(dimension=64, seed=1).transform([b for _, b, _ in WORLD_TEXT])
    np.testing.assert_array_equal(ds.X, expected)

    src.execute("UPDATE tickets SET body = ? WHERE id = 1", ("配送が遅れています 🚚",))
    src.execute("INSERT INTO tickets VALUES (5, ?, ?)", ("Доставка задерживается", "物流"))
    src.commit("more")
    d = src.diff(first.hash, "HEAD", "tickets")
    assert (d.added, d.modified, d.removed) == (1, 1, 0)
    rows = d.rows.to_numpy()
    changed = {int(k): (f, t) for k, f, t in zip(rows["to_id"], rows["from_body"], rows["to_body"])}
    assert changed[1] == ("配送が遅れています", "配送が遅れています 🚚")
    assert changed[5] == (None, "Доставка задерживается")
    only = src.diff(first.hash, "HEAD", "tickets", where="topic = ?", params=("物流",))
    assert (only.added, only.modified, only.removed) == (1, 1, 0)


def test_float32_blob_column_is_a_feature_block(src):
    src.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, emb BLOB, w REAL, lab INTEGER)")
    for i in range(4):
        vec = np.arange(3, dtype=np.float32) + i
        src.execute("INSERT INTO e VALUES (?, ?, ?, ?)", (i, vec.tobytes(), 0.5, i % 2))
    src.commit("emb")
    ds = src.dataset("e", label="lab", features=["emb", "w"])
    assert ds.X.shape == (4, 4)
    np.testing.assert_array_equal(ds.X[2], [2, 3, 4, 0.5])
    src.execute("INSERT INTO e VALUES (9, ?, 1.0, 0)", (struct.pack("<2f", 1, 2),))
    src.commit("short vector")
    with pytest.raises(mlops.DataError, match=r"'emb'.*id=9.*8 bytes"):
        src.dataset("e", label="lab", features=["emb", "w"])


def test_diff_counts_rows_and_applies_the_filter_to_both_sides(filled):
    src, first = filled
    src.execute("UPDATE t SET a = 100 WHERE id = 2")   # leaves the slice a < 50
    src.execute("UPDATE t SET b = 7 WHERE id = 1")     # stays in the slice
    src.execute("DELETE FROM t WHERE id = 9")
    src.execute("INSERT INTO t VALUES (20, 1, 1, 'even')")
    src.commit("changes")
    d = src.diff(first.hash, "HEAD", "t")
    assert (d.added, d.modified, d.removed) == (1, 2, 1)
    assert d.from_commit == first.hash and d.to_commit == src.head().hash
    cols = d.rows.to_numpy()
    assert set(cols["diff_type"]) == {"added", "modified", "removed"}
    assert "from_a" in cols and "to_a" in cols
    s = src.diff(first.hash, "HEAD", "t", where="a < ?", params=(50,))
    assert (s.added, s.modified, s.removed) == (1, 1, 2)
    kinds = dict(zip(s.rows.column("from_id").tolist(), s.rows.column("diff_type")))
    assert kinds[2.0] == "removed"
    assert src.count("t", at=first.hash) == 10
    assert src.count("t", where="label = ?", params=("even",)) == 6
    with pytest.raises(mlops.NotFoundError, match="missing"):
        src.count("missing")
    src.execute("INSERT INTO t VALUES (21, 1, 1, 'odd')")  # uncommitted: HEAD's count is unchanged
    assert src.count("t") == 10 and src.count("t", at=None) == 11


def test_query_returns_typed_columns_with_nulls(filled):
    src, first = filled
    src.execute("CREATE TABLE ty (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB)")
    src.execute("INSERT INTO ty VALUES (1, 5, 1.5, 'x', ?)", (b"\x00\x01",))
    src.execute("INSERT INTO ty VALUES (2, NULL, NULL, NULL, NULL)")
    t = src.query("SELECT i, r, s, b FROM ty ORDER BY id")
    assert t.types == {"i": "int64", "r": "float64", "s": "text", "b": "bytes"}
    cols = t.to_numpy()
    assert math.isnan(cols["i"][1]) and cols["r"][0] == 1.5
    assert list(cols["s"]) == ["x", None] and list(cols["b"]) == [b"\x00\x01", None]
    assert list(t.null_mask("i")) == [False, True]
    df = t.to_pandas()
    assert str(df["i"].dtype) == "Int64" and df["i"].isna().tolist() == [False, True]
    old = src.query("SELECT COUNT(*) AS n FROM t", at=first.hash)
    assert old.column("n")[0] == 10
    injected = src.query("SELECT COUNT(*) AS n FROM t WHERE label = ?", ("x' OR '1'='1",))
    assert injected.column("n")[0] == 0
    with pytest.raises(TypeError):
        src.query("SELECT ?", (object(),))


def test_reopen_after_another_writer_commits(tmp_path):
    path = str(tmp_path / "shared.db")
    reader = mlops.DoltSource(path, create=True)
    reader.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a REAL, b REAL, label TEXT)")
    make_rows(reader, 4)
    first = reader.commit("four")
    assert reader.dataset("t", label="label", features=["a"]).rows == 4
    writer = mlops.DoltSource(path)
    make_rows(writer, 3, start=50)
    second = writer.commit("seven")
    assert reader.head().hash == second.hash
    assert reader.dataset("t", label="label", features=["a"]).rows == 7
    assert reader.dataset("t", label="label", features=["a"], at=first.hash).rows == 4
    assert reader.diff(first.hash, second.hash, "t").added == 3


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_import_csv_creates_commits_and_upserts(src, tmp_path):
    c1 = src.import_csv("iris", write(tmp_path / "a.csv", "id,petal,species\n1,0.5,setosa\n2,1.5,versicolor\n"),
                        primary_key=["id"], message="import iris")
    assert c1.message == "import iris" and src.head() == c1
    assert src.query('SELECT type FROM pragma_table_info(\'iris\') ORDER BY cid').column("type").tolist() == \
        ["INTEGER", "REAL", "TEXT"]
    c2 = src.import_csv("iris", write(tmp_path / "b.csv", "id,petal,species\n2,9.5,versicolor\n3,2.5,virginica\n"),
                        primary_key=["id"], message="upsert", mode="upsert")
    assert src.count("iris") == 3 and c2.hash != c1.hash
    assert src.diff(c1.hash, c2.hash, "iris").added == 1
    c3 = src.import_csv("iris", tmp_path / "b.csv", primary_key=["id"], message="replace")
    assert src.count("iris") == 2 and c3.hash != c2.hash
    same = src.import_csv("iris", tmp_path / "b.csv", primary_key=["id"], message="no change")
    assert same == c3  # nothing changed: no new commit
    with pytest.raises(mlops.ConfigError):
        src.import_csv("iris", tmp_path / "b.csv", primary_key=["id"], message="m", mode="merge")


@pytest.mark.parametrize(
    "content, match",
    [
        ("id,v\n1,a\n2\n", "line 3"),
        (b"id,v\n1,a\n2,\xff\xfe\n", "line 3.*UTF-8"),
        ("id,v\n1,a\n2,b\n1,c\n", "line 4.*duplicate.*line 2"),
        ("id,v\n1,a\n,b\n", "line 3.*empty"),
    ],
)
def test_import_csv_failure_commits_nothing_and_leaves_the_working_set(src, tmp_path, content, match):
    base = src.import_csv("k", write(tmp_path / "ok.csv", "id,v\n7,x\n"), primary_key=["id"], message="base")
    src.execute("INSERT INTO k VALUES (8, 'pending')")  # uncommitted work stays as it was
    with pytest.raises(mlops.DataError, match=match):
        src.import_csv("k", write(tmp_path / "bad.csv", content), primary_key=["id"], message="bad")
    assert src.head() == base
    assert src.query("SELECT id, v FROM k ORDER BY id").to_numpy()["v"].tolist() == ["x", "pending"]


@contextlib.contextmanager
def csv_link(body: bytes, certificate: tuple[str, str] | None = None):
    """A spreadsheet's CSV export on loopback: yields its base URL (https with `certificate` = (cert, key));
    a path containing "missing" answers 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if "missing" in self.path:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if certificate:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if certificate else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_import_csv_from_an_http_url(src, tmp_path):
    with csv_link(b"id,score,label\n1,0.25,a\n2,0.75,b\n") as base:
        url = f"{base}/export?format=csv&token=s3cr3t"
        c = src.import_csv("sheet", url, primary_key=["id"], message="from sheet")
        assert src.count("sheet") == 2 and src.head() == c
        ds = src.dataset("sheet", label="label", features=["score"])
        assert ds.classes == ["a", "b"]
        with pytest.raises(mlops.DataSourceError) as e:
            src.import_csv("sheet", url.replace("export", "missing"), primary_key=["id"], message="gone")
        assert "404" in str(e.value) and "s3cr3t" not in str(e.value)
        assert src.head() == c


def test_sync_from_an_https_link_verifies_the_server(src, tmp_path, monkeypatch):
    """`mlops sync` with an https link (a spreadsheet's CSV export): verified against the CAs in SSL_CERT_FILE,
    refused when no trusted CA signed the server's certificate, with nothing committed."""
    sys.path.insert(0, os.path.dirname(__file__))
    from certificates import make_test_ca

    ca = make_test_ca(tmp_path / "certs")
    data = f"doltlite:{tmp_path / 'train.db'}"
    src.execute("CREATE TABLE keep (id INTEGER PRIMARY KEY)")
    before = src.commit("before")

    def sync(url, ca_file):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "SSL_CERT"))}
        if ca_file:
            env["SSL_CERT_FILE"] = ca_file
        return subprocess.run([sys.executable, "-m", "mlops", "sync", "sheet", url, "--primary-key", "id",
                               "--data", data, "-m", "from the sheet"], env=env, capture_output=True, text=True)

    with csv_link("id,score,label\n1,0.25,配送\n2,0.75,📦\n".encode(), (ca.cert, ca.key)) as base:
        url = f"{base}/export?format=csv&token=s3cr3t"
        for untrusted in (None, ca.other_ca):  # the system's CAs; a CA that did not sign it
            r = sync(url, untrusted)
            assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
            assert "certificate" in r.stderr.lower() and "s3cr3t" not in r.stderr, r.stderr
            assert src.head() == before
        r = sync(url, ca.ca)
        assert r.returncode == 0, r.stderr
        assert src.head().message == "from the sheet"
        got = src.query("SELECT id, label FROM sheet ORDER BY id").to_numpy()
        assert got["id"].tolist() == [1, 2] and list(got["label"]) == ["配送", "📦"]
        # The library call that sync makes, in this process.
        monkeypatch.setenv("SSL_CERT_FILE", ca.ca)
        src.import_csv("sheet2", url, primary_key=["id"], message="again")
        assert src.count("sheet2") == 2


def test_bad_uris_and_library_paths_are_config_errors(tmp_path):
    with pytest.raises(mlops.ConfigError):
        mlops.DoltSource("postgres://h/db")
    with pytest.raises(mlops.ConfigError):
        mlops.DoltSource(str(tmp_path / "x.db"), doltlite_lib=str(tmp_path / "missing.so"), create=True)
    s = mlops.DoltSource("doltlite:" + str(tmp_path / "rel.db"), create=True)
    assert s.backend == "doltlite" and s.uri == "doltlite://" + str(tmp_path / "rel.db")


def test_a_missing_database_file_is_not_found_unless_created_explicitly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # As on the command line: a typo in the path is an error naming it, not a new, empty database.
    for uri in ("doltlite:missing.db", str(tmp_path / "missing.db")):
        with pytest.raises(mlops.NotFoundError, match="missing.db.*does not exist.*create=True"):
            mlops.DoltSource(uri)
    assert list(tmp_path.iterdir()) == []
    made = mlops.DoltSource("doltlite:made.db", create=True)
    made.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    made.commit("one table")
    assert mlops.DoltSource("doltlite:made.db").head().message == "one table"


def test_an_empty_slice_is_refused_at_dataset_naming_the_filter(filled):
    src, first = filled
    with pytest.raises(mlops.DataError, match=r"table 't' at commit \w+: no row matches where 'label = \?' "
                                              r"with params \[\"customer-7\"\]"):
        src.dataset("t", label="label", features=["a", "b"], where="label = ?", params=("customer-7",), at="HEAD")
    src.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, a REAL, label TEXT)")
    with pytest.raises(mlops.DataError, match="table 'e' has no rows"):
        src.dataset("e", label="label", features=["a"], at=None)
    assert src.dataset("t", label="label", features=["a"], where="label = ?", params=("odd",)).rows == 5
