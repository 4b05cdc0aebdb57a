"""`make demo` itself: examples/run_demo.py run as the Makefile runs it (the installed package, the wheel in
dist/), in a working folder of its own. What a user relies on: exit status 0; the analyst's mislabelled
customer held back with its reason while the other two ship; `diff-release` showing the shipped models'
metric deltas; and the effects in MLflow, read back from the store the demo keeps."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

import mlops

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.mlflow,
    pytest.mark.slow,
]

MISLABELLED, SHIPPED = "customer-042", ["customer-007", "customer-023"]


def test_make_demo_holds_back_the_mislabelled_customer_and_shows_the_deltas(tmp_path):
    from mlops.local_server import MlflowServer

    work = tmp_path / "demo"
    r = subprocess.run([sys.executable, "examples/run_demo.py", "--work", str(work)], cwd=ROOT, capture_output=True,
                       text=True, timeout=1500)
    out = r.stdout
    assert r.returncode == 0, out[-4000:] + r.stderr[-4000:]
    assert "Traceback" not in r.stderr, r.stderr

    # The analyst's mistake, named; the release holds that customer back, with the gate's reason, and ships the rest.
    mistake = re.search(rf"by mistake every '(\w+)' ticket of {MISLABELLED} became '(\w+)'", out)
    assert mistake and mistake[1] != mistake[2], out
    held = re.search(rf"^held back: {MISLABELLED} v2 \(production keeps v1\): (.+)$", out, re.M)
    assert held and "a drop beyond max_drop" in held[1] and "n=" in held[1], out
    assert re.search(r"^held back: ", out, re.M).start() == held.start() and out.count("\nheld back: ") == 1
    assert f"shipped: {', '.join(SHIPPED)}\n" in out

    # diff-release between release 1 and 2: the two shipped models with their deltas, not the held-back one.
    section = out.split("$ mlops diff-release ", 1)[1].split("\n$ mlops ", 1)[0]
    for name in SHIPPED:
        assert f"~ {name} 1 -> 2  (gate pass)" in section, section
        block = section.split(f"~ {name} 1 -> 2")[1].split("\n~ ")[0]
        assert re.search(r"new data \w{12}, n=\d+: accuracy \d\.\d{3} -> \d\.\d{3} \([-+]\d+\.\d points "
                         r"\[[-+]\d+\.\d, [-+]\d+\.\d\] at 95%, p=[01]\.\d{3}\), macro-F1 .*, log loss ", block), block
    assert MISLABELLED not in section, section
    assert re.search(rf"^held back +{MISLABELLED}: keeps v1 in production; ", out, re.M), out

    # Effects, read back from the MLflow store the demo keeps: the held-back customer's production model is
    # still version 1 and its version 2 carries the failed verdict; the shipped ones moved (customer-007 was
    # then rolled back to version 1 by the demo's rollback step).
    with MlflowServer(work / "mlflow") as server:
        tracker = mlops.MlflowTracker(server.url)
        assert tracker.get_by_alias(MISLABELLED, "production").version == 1
        import mlflow

        client = mlflow.MlflowClient(server.url)
        assert client.get_model_version(MISLABELLED, "2").tags["mlops.eval.verdict"] == "fail"
        assert tracker.get_by_alias(SHIPPED[1], "production").version == 2
        assert tracker.get_by_alias(SHIPPED[0], "production").version == 1
