"""Reading 1,000 slices of a 1,000,000-row DoltLite table (id, customer, 16 REAL features, integer label).

Contenders, each in its own subprocess so that its peak memory (ru_maxrss) is its own:
  full    DoltSource.dataset: the whole table in one read (the anchor)
  slices  DoltSource.datasets(by="customer", values=1,000 customers): every slice in one pass
  single  DoltSource.dataset(where="customer = ?") once per slice (--single of them, scaled to all)

Prints the best wall time of --repeat runs, the slices/full ratio (target <= 2), and each contender's
peak memory growth over the size of the arrays it returns.

    python bench/dolt_read/slices.py [--rows 1000000] [--slices 1000] [--repeat 3] [--single 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEATURES = [f"f{i}" for i in range(16)]

RUNNER = r"""
import json, sys, time
import mlops
kind, target, repeat, slices, single = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
feats = [f"f{i}" for i in range(16)]
src = mlops.DoltSource(target)
values = [f"c{c:05d}" for c in range(slices)]
def read():
    if kind == "full":
        return [src.dataset("t", label="label", features=feats)]
    if kind == "slices":
        return list(src.datasets("t", by="customer", values=values, label="label", features=feats).values())
    return [src.dataset("t", label="label", features=feats, where="customer = ?", params=(v,)) for v in values[:single]]
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
# The peak RSS (VmHWM) is reset to the current RSS just before the first read, so its growth is that read's.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS")
best = float("inf")
grew = None
for _ in range(repeat):
    t = time.perf_counter(); out = read(); best = min(best, time.perf_counter() - t)
    final = sum(d.X.nbytes + d.y.nbytes for d in out)
    rows = sum(d.rows for d in out)
    if grew is None:
        grew = status("VmHWM") - base
    del out  # freed before the next read
print(json.dumps({"seconds": best, "grew": grew, "final": final, "rows": rows}))
"""


def make_table(path: Path, rows: int, slices: int) -> None:
    import mlops

    rng = random.Random(0)
    csv_path = path.with_suffix(".csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "customer"] + FEATURES + ["label"])
        for i in range(rows):
            feats = [round(rng.gauss(0, 1), 4) for _ in range(16)]
            w.writerow([i, f"c{i % slices:05d}"] + feats + [int(feats[0] > 0)])
    mlops.DoltSource(f"doltlite:{path}", create=True).import_csv("t", str(csv_path), primary_key=["id"], message="bench rows")
    csv_path.unlink()


def run(kind: str, target: str, repeat: int, slices: int, single: int) -> dict:
    r = subprocess.run([sys.executable, "-c", RUNNER, kind, target, str(repeat), str(slices), str(single)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--slices", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--single", type=int, default=20, help="single-slice reads timed (scaled to --slices)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slices.db"
        t = time.perf_counter()
        make_table(path, args.rows, args.slices)
        print(f"table: {args.rows:,} rows, {args.slices} customers ({time.perf_counter() - t:.0f} s to build)", flush=True)
        target = f"doltlite:{path}"
        res = {k: run(k, target, args.repeat, args.slices, args.single) for k in ("full", "slices")}
        res["single"] = run("single", target, 1, args.slices, args.single)
    full, slices, single = res["full"], res["slices"], res["single"]
    assert slices["rows"] == full["rows"] == args.rows, (slices["rows"], full["rows"])
    single_all = single["seconds"] * args.slices / args.single
    mib = 1 << 20
    print(f"{'contender':<44} {'seconds':>8} {'peak growth':>12} {'result':>9}")
    print(f"{'one full read (dataset)':<44} {full['seconds']:>8.2f} {full['grew'] / mib:>10.1f} M {full['final'] / mib:>7.1f} M")
    print(f"{f'{args.slices} slices in one pass (datasets)':<44} {slices['seconds']:>8.2f} "
          f"{slices['grew'] / mib:>10.1f} M {slices['final'] / mib:>7.1f} M")
    print(f"{f'{args.slices} single-slice reads (from {args.single})':<44} {single_all:>8.2f}")
    print(f"slices / full read: {slices['seconds'] / full['seconds']:.2f}x (target <= 2x); "
          f"one pass is {single_all / slices['seconds']:.0f}x faster than one read per slice; "
          f"peak growth over the result: {(slices['grew'] - slices['final']) / mib:+.1f} MiB")


if __name__ == "__main__":
    main()
