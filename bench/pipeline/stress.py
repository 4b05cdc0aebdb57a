"""Concurrent recording, repeated: are versions ever lost or duplicated, and how many threads are fastest?

For each backend (an MLflow server with --workers gunicorn workers, its store on SQLite or on MariaDB):
  1. --repeats times: train and record --adapters adapters with --threads client threads while another
     thread keeps listing the registry in pages, then compare every version the client was told about
     with the server's REST answers and its store's own table (tests/python/recording_check.py).
  2. record the same number of adapters with 1, 2, 4 and 8 threads and print the recording time of each.

    python bench/pipeline/stress.py [--backends sqlite,mariadb] [--repeats 10] [--adapters 200]
                                    [--threads 8] [--workers 4] [--sweep 1,2,4,8]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "python"))

from mlflow_server import mlflow_on  # noqa: E402
from recording_check import make_source, record_and_check  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,mariadb")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--adapters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--sweep", default="1,2,4,8", help="client thread counts timed ('' to skip)")
    args = ap.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        source = make_source(f"doltlite:{root / 'data.db'}", args.adapters)
        for backend in args.backends.split(","):
            with mlflow_on(backend, root / f"mlflow-{backend}", workers=args.workers) as server:
                print(f"{backend}: {args.repeats} x {args.adapters} adapters, {args.threads} threads, "
                      f"{args.workers} workers", flush=True)
                versions = 0
                for r in range(args.repeats):
                    t = time.perf_counter()
                    o = record_and_check(server, source, f"{backend}-r{r}-", args.adapters, args.threads)
                    versions += o.adapters
                    state = "clean" if o.clean else "NOT CLEAN"
                    print(f"  repeat {r + 1:2d}: record {o.record_seconds:6.2f} s, {o.listings:3d} paged listings "
                          f"while recording, {time.perf_counter() - t:5.1f} s in all: {state}", flush=True)
                    for what in ("lost", "duplicated", "mismatched", "listing_misses", "listing_repeats"):
                        for item in getattr(o, what)[:5]:
                            print(f"    {what}: {item}")
                    failures += not o.clean
                print(f"  {versions} versions checked against REST search, REST listing and the store's table", flush=True)
                for threads in [int(x) for x in args.sweep.split(",") if x]:
                    o = record_and_check(server, source, f"{backend}-t{threads}-", args.adapters, threads, watch=False)
                    failures += not o.clean
                    print(f"  {threads} thread{'s' if threads > 1 else ' '}: record + register {args.adapters} adapters "
                          f"{o.record_seconds:6.2f} s ({o.record_seconds / args.adapters * 1000:5.1f} ms each)"
                          f"{'' if o.clean else '  NOT CLEAN'}", flush=True)
    print("every repeat clean" if failures == 0 else f"{failures} runs NOT clean")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
