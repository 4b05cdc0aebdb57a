"""Time to build, serialise and hash a release manifest of 1,000 and 100,000 models.

mlops.ReleaseManifest (validation + canonical JSON + MD5 + SHA-256 in C++) side by side with the
reference form in plain Python (json.dumps(sort_keys, compact, ensure_ascii=False) + hashlib.md5), which
does no validation. Prints a table with the ratio; checks both give the same MD5.

    python bench/manifest/bench.py [--repeat 5]
"""

import argparse
import hashlib
import json
import statistics
import time

import mlops


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"mlops {mlops.__version__}: ReleaseManifest build + canonical JSON + md5 + sha256")
    print(f"{'models':>8} | {'mlops ms':>9} | {'python json+hashlib ms':>22} | {'ratio':>6} | {'from_json ms':>12} | md5 equal")
    for n in (1_000, 100_000):
        d = {f"customer-{i:06d}-ä": (i * 7919) % 1000 + 1 for i in range(n)}

        def ours():
            m = mlops.ReleaseManifest(d)
            return m.md5

        def reference():
            text = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            return hashlib.md5(text.encode("utf-8")).hexdigest()

        t_ours, _, md5_ours = best_of(ours, args.repeat)
        t_ref, _, md5_ref = best_of(reference, args.repeat)
        text = mlops.ReleaseManifest(d).to_json()
        t_parse, _, _ = best_of(lambda: mlops.ReleaseManifest.from_json(text, md5_ref), args.repeat)
        print(f"{n:>8} | {t_ours * 1e3:>9.2f} | {t_ref * 1e3:>22.2f} | {t_ref / t_ours:>5.2f}x | {t_parse * 1e3:>12.2f} | "
              f"{md5_ours == md5_ref}")
        if md5_ours != md5_ref:
            raise SystemExit("MD5 mismatch")


if __name__ == "__main__":
    main()
