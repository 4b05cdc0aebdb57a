"""Runs every benchmark under bench/ (each bench/<name>/bench.py) one after another."""

import pathlib
import subprocess
import sys

here = pathlib.Path(__file__).resolve().parent
failed = []
for script in sorted(here.glob("*/bench.py")):
    print(f"\n==== {script.parent.name} ====", flush=True)
    if subprocess.run([sys.executable, str(script)]).returncode != 0:
        failed.append(script.parent.name)
if failed:
    sys.exit(f"benchmarks failed: {', '.join(failed)}")
