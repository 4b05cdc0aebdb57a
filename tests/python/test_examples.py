"""The numbered Python examples run and print what they promise."""

import hashlib
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_example(name: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "python" / name)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_01_manifest_prints_the_release_id():
    out = run_example("01_manifest.py")
    assert hashlib.md5(b'{"customer-1":3,"customer-2":7}').hexdigest() in out


def test_02_train_trains_and_reloads():
    out = run_example("02_train.py")
    accuracies = [float(line.split()[-1]) for line in out.splitlines() if "val_accuracy" in line]
    assert len(accuracies) == 3 and min(accuracies) > 0.8
    assert "first predictions:" in out
