"""Reading 1,000,000 rows of (id, 16 REAL features, integer label) into X (float32) and y (int32).

DoltLite: DoltSource.dataset vs pandas.read_sql through Python's sqlite3 after `import doltlite`.
MariaDB:  DoltSource.dataset vs pandas.read_sql through PyMySQL, and vs ConnectorX.

Every contender runs in its own subprocess, so its peak memory (ru_maxrss) is its own, and gets the same
treatment: it connects outside the timer, reads once untimed (a warm-up, whose peak memory growth is the
one shown), then reads `--repeat` times; the table shows the best of those.

    python bench/dolt_read/bench.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "python"))

FEATURES = [f"f{i}" for i in range(16)]

# One contender: prints {"seconds": best, "grew": bytes, "final": bytes, "rows": n}.
RUNNER = r"""
import json, resource, sys, time
import numpy as np
kind, target, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
feats = [f"f{i}" for i in range(16)]
sql = "SELECT id, " + ", ".join(feats) + ", label FROM t"
if kind == "mlops-doltlite" or kind == "mlops-mysql":
    import mlops
    src = mlops.DoltSource(target)
    at = "HEAD" if kind == "mlops-doltlite" else None
    def read():
        ds = src.dataset("t", label="label", features=feats, at=at)
        return ds, ds.X, ds.y
elif kind == "pandas-sqlite3":
    import doltlite  # noqa: F401  (swaps Python's SQLite engine for DoltLite)
    import sqlite3
    import pandas as pd
    conn = sqlite3.connect(target)
    def read():
        df = pd.read_sql(sql, conn)
        return df, df[feats].to_numpy(np.float32), df["label"].to_numpy(np.int32)
elif kind == "pandas-pymysql":
    import pandas as pd
    import sqlalchemy
    engine = sqlalchemy.create_engine(target.replace("mysql://", "mysql+pymysql://"))
    conn = engine.connect()
    def read():
        df = pd.read_sql(sqlalchemy.text(sql), conn)
        return df, df[feats].to_numpy(np.float32), df["label"].to_numpy(np.int32)
elif kind == "connectorx":
    import connectorx as cx
    def read():
        df = cx.read_sql(target, sql, return_type="pandas")
        return df, df[feats].to_numpy(np.float32), df["label"].to_numpy(np.int32)
else:
    raise SystemExit("unknown contender " + kind)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
keep, X, y = read()  # warm-up, untimed: its peak memory growth is the one reported
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
final = X.nbytes + y.nbytes
rows = len(y)
del keep, X, y
best = float("inf")
for i in range(repeat):
    t0 = time.perf_counter()
    keep, X, y = read()
    best = min(best, time.perf_counter() - t0)
    del keep, X, y
print(json.dumps({"seconds": best, "grew": grew, "final": final, "rows": rows}))
"""


def run(kind: str, target: str, repeat: int) -> dict:
    out = subprocess.run([sys.executable, "-c", RUNNER, kind, target, str(repeat)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_doltlite(path: Path, rows: int) -> None:
    code = r"""
import sys, doltlite, sqlite3, numpy as np
path, rows = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
conn = sqlite3.connect(path, isolation_level=None)
conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, " + ", ".join(f"f{i} REAL" for i in range(16)) + ", label INTEGER)")
conn.execute("BEGIN")
step = 100_000
for start in range(0, rows, step):
    n = min(step, rows - start)
    X = rng.standard_normal((n, 16))
    y = rng.integers(0, 5, n)
    conn.executemany("INSERT INTO t VALUES (" + ",".join("?" * 18) + ")",
                     ((start + i, *X[i].tolist(), int(y[i])) for i in range(n)))
conn.execute("COMMIT")
conn.execute("SELECT dolt_commit('-Am', 'bench data')")
"""
    subprocess.run([sys.executable, "-c", code, str(path), str(rows)], check=True)


def make_mariadb(server, rows: int) -> None:
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, " + ", ".join(f"f{i} DOUBLE" for i in range(16)) +
                    ", label INT)")
        cur.execute("INSERT INTO t SELECT seq, " + ", ".join(f"RAND({i + 1}) * 2 - 1" for i in range(16)) +
                    f", seq % 5 FROM seq_0_to_{rows - 1}")
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="timed reads of every contender after its warm-up (best is shown)")
    args = ap.parse_args()
    from mariadb_server import MariaDB

    results = []  # (group, contender, result, anchor name or None)
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        make_doltlite(db, args.rows)
        print(f"DoltLite file with {args.rows:,} rows built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        results.append(("DoltLite", "mlops DoltSource.dataset", run("mlops-doltlite", str(db), args.repeat)))
        results.append(("DoltLite", "pandas.read_sql (sqlite3 + doltlite)", run("pandas-sqlite3", str(db), args.repeat)))
        with MariaDB(Path(tmp) / "mariadb", buffer_pool="1G") as server:
            t0 = time.perf_counter()
            make_mariadb(server, args.rows)
            print(f"MariaDB table with {args.rows:,} rows built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            uri = server.uri_with_password
            results.append(("MariaDB", "mlops DoltSource.dataset", run("mlops-mysql", uri, args.repeat)))
            results.append(("MariaDB", "pandas.read_sql (PyMySQL)", run("pandas-pymysql", uri, args.repeat)))
            results.append(("MariaDB", "ConnectorX read_sql", run("connectorx", uri, args.repeat)))

    print(f"\nRead {args.rows:,} rows x (16 REAL features + integer label) into X float32, y int32")
    print("speed-up = contender seconds / mlops seconds (same source); extra = (peak RSS growth of the read")
    print("- bytes of the final X and y) / bytes of X and y; target: >= 5x pandas, >= 1x ConnectorX, extra <= 1.3x\n")
    print(f"{'source':9} {'contender':38} {'seconds':>8} {'mlops speed-up':>15} {'peak growth':>12} {'extra':>7}")
    mine = {}
    for group, name, r in results:
        if name.startswith("mlops"):
            mine[group] = r["seconds"]
        ratio = "" if name.startswith("mlops") else f"{r['seconds'] / mine[group]:.1f}x"
        extra = (r["grew"] - r["final"]) / r["final"]
        print(f"{group:9} {name:38} {r['seconds']:8.3f} {ratio:>15} {r['grew'] / 2**20:9.0f} MB {extra:6.2f}x")
        if r["rows"] != args.rows:
            raise SystemExit(f"{name} read {r['rows']} rows, expected {args.rows}")


if __name__ == "__main__":
    main()
