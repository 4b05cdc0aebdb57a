"""DoltSource.datasets: every slice of a table in one scan, each exactly the single-slice dataset()."""

from __future__ import annotations

import csv
import os
import random
import sys

import numpy as np
import pytest

import mlops

sys.path.insert(0, os.path.dirname(__file__))
from mariadb_server import MariaDB, available  # noqa: E402

pytestmark = pytest.mark.skipif("dolt" not in mlops.components, reason="built without the dolt component")

FEATURES = ["f0", "f1", "f2"]


def assert_same(got: mlops.Dataset, want: mlops.Dataset) -> None:
    assert got.rows == want.rows and got.cols == want.cols
    np.testing.assert_array_equal(got.X, want.X)
    np.testing.assert_array_equal(got.y, want.y)
    assert got.classes == want.classes
    assert got.lineage == want.lineage
    assert got.digest == want.digest


def rows(n: int, customers: int, seed: int = 0) -> list[tuple]:
    """(id, customer, shard, f0, f1, f2, label, body): ids shuffled so that key order differs from
    insertion order, labels text with a slice-dependent set of classes."""
    rng = random.Random(seed)
    ids = list(range(n))
    rng.shuffle(ids)
    words = ["late", "refund", "box", "damaged", "login", "password", "invoice", "card"]
    out = []
    for k, i in enumerate(ids):
        c = rng.randrange(customers)
        labels = ["billing", "shipping", "account"][: 2 + c % 2]
        out.append((i, f"cust-{c}", c % 4, round(rng.gauss(0, 1), 3), round(rng.gauss(0, 1), 3), float(k % 7),
                    rng.choice(labels), " ".join(rng.choices(words, k=5))))
    return out


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slices")
    src = mlops.DoltSource(f"doltlite:{tmp / 'data.db'}", create=True)
    path = tmp / "t.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "customer", "shard", "f0", "f1", "f2", "label", "body"])
        w.writerows(rows(3000, 25))
    src.import_csv("t", str(path), primary_key=["id"], message="rows")
    first = src.resolve("HEAD")
    # A later commit moves rows between slices, so reading at `first` must not see it.
    src.execute("UPDATE t SET customer = 'cust-1' WHERE customer = 'cust-2' AND id % 2 = 0")
    src.commit("move rows")
    return src, first


def test_every_slice_equals_its_single_read_on_doltlite(lite):
    src, first = lite
    values = [f"cust-{c}" for c in range(25)] + ["nobody"]
    for at in ("HEAD", first):
        many = src.datasets("t", by="customer", values=values, label="label", features=FEATURES, at=at)
        assert list(many) == values
        for v in values[:-1]:
            one = src.dataset("t", label="label", features=FEATURES, where="customer = ?", params=(v,), at=at)
            assert_same(many[v], one)
        # A value with no rows: an empty slice among the others, where its own read is refused, naming it.
        assert many["nobody"].rows == 0
        with pytest.raises(mlops.DataError, match=r'no row matches where .customer = \?. with params \["nobody"\]'):
            src.dataset("t", label="label", features=FEATURES, where="customer = ?", params=("nobody",), at=at)
        assert sum(d.rows for d in many.values()) == 3000
    # The later commit changed what two slices hold.
    assert src.datasets("t", by="customer", values=["cust-2"], label="label", features=FEATURES)["cust-2"].rows < \
        src.datasets("t", by="customer", values=["cust-2"], label="label", features=FEATURES, at=first)["cust-2"].rows


def test_text_slices_and_integer_values(lite):
    src, _ = lite
    many = src.datasets("t", by="shard", values=[3, 0, 2], label="label", text="body", dimension=64, seed=5)
    assert list(many) == [3, 0, 2]
    for v in (3, 0, 2):
        assert_same(many[v], src.dataset("t", label="label", text="body", where="shard = ?", params=(v,),
                                         dimension=64, seed=5))
    # A float that is a whole number selects the same rows as the integer.
    assert many[0].rows == src.datasets("t", by="shard", values=[0.0], label="label", text="body",
                                        dimension=64, seed=5)[0.0].rows > 0


def test_invalid_rows_fail_or_are_dropped_per_slice(tmp_path):
    src = mlops.DoltSource(f"doltlite:{tmp_path / 'bad.db'}", create=True)
    src.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, c TEXT, f REAL, label INTEGER)")
    src.execute("INSERT INTO b VALUES (1, 'a', 1.0, 0), (2, 'a', NULL, 1), (3, 'b', 2.0, 1), (4, 'b', 3.0, 0), "
                "(5, 'z', NULL, NULL)")
    src.commit("rows")
    with pytest.raises(mlops.DataError, match=r"column 'f', row id=2"):
        src.datasets("b", by="c", values=["a", "b"], label="label", features=["f"])
    # A bad row outside the wanted slices is never looked at.
    src.datasets("b", by="c", values=["b"], label="label", features=["f"])
    many = src.datasets("b", by="c", values=["a", "b"], label="label", features=["f"], drop_invalid=True)
    for v in ("a", "b"):
        assert_same(many[v], src.dataset("b", label="label", features=["f"], where="c = ?", params=(v,), drop_invalid=True))
    assert many["a"].lineage["dropped_rows"] == 1 and many["b"].lineage["dropped_rows"] == 0


def test_bad_arguments_are_config_errors(lite):
    src, _ = lite
    with pytest.raises(mlops.ConfigError, match="given twice"):
        src.datasets("t", by="customer", values=["cust-1", "cust-1"], label="label", features=FEATURES)
    with pytest.raises(mlops.ConfigError, match="NULL"):
        src.datasets("t", by="customer", values=[None], label="label", features=FEATURES)
    with pytest.raises(mlops.ConfigError):
        src.datasets("t", by="", values=["x"], label="label", features=FEATURES)
    # A column name is quoted as a name, never run as SQL.
    with pytest.raises(mlops.DataError, match="no column 'customer; DROP TABLE t'"):
        src.datasets("t", by="customer; DROP TABLE t", values=["x"], label="label", features=FEATURES)
    assert src.count("t") == 3000
    with pytest.raises(mlops.DataError, match="no column 'nope'"):
        src.datasets("t", by="nope", values=["x"], label="label", features=FEATURES)
    assert src.datasets("t", by="customer", values=[], label="label", features=FEATURES) == {}


@pytest.mark.mysql
@pytest.mark.skipif(not available(), reason="mariadbd is not installed (Debian package mariadb-server)")
def test_every_slice_equals_its_single_read_on_a_mysql_server():
    with MariaDB() as server:
        conn = server.connect()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY, customer VARCHAR(32), shard INT, f0 DOUBLE, f1 DOUBLE, "
                        "f2 DOUBLE, label VARCHAR(16), body TEXT)")
            cur.executemany("INSERT INTO t VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows(2000, 12, seed=1))
        conn.close()
        src = mlops.DoltSource(server.uri_with_password)
        values = [f"cust-{c}" for c in range(12)]
        many = src.datasets("t", by="customer", values=values, label="label", features=FEATURES, at=None)
        for v in values:
            assert_same(many[v], src.dataset("t", label="label", features=FEATURES, where="customer = ?",
                                             params=(v,), at=None))
        assert sum(d.rows for d in many.values()) == 2000
        by_shard = src.datasets("t", by="shard", values=[1, 3], label="label", text="body", at=None, dimension=32)
        for v in (1, 3):
            assert_same(by_shard[v], src.dataset("t", label="label", text="body", where="shard = ?", params=(v,),
                                                 at=None, dimension=32))
