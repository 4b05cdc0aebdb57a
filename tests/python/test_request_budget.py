"""How many requests the MLflow server answers per adapter, counted in the server's own access log: the
recording of a first train() and a release each make a fixed set of requests per adapter and a few for the
whole job. A change that adds a request per adapter (a retry that is not needed, one file more, a tag set
on its own) fails here, whatever it does to the timings."""

from __future__ import annotations

import os
import sys
import urllib.request
from collections import Counter

import pytest

import mlops

sys.path.insert(0, os.path.dirname(__file__))
from mlflow_server import mlflow_on  # noqa: E402
from recording_check import make_source  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.mlflow,
]

ADAPTERS = 12

# Requests per adapter, by endpoint (artifact uploads by file name).
RECORD = {
    ("POST", "mlflow/runs/create"): 1,
    ("POST", "mlflow/runs/log-batch"): 1,  # params, every epoch's metrics, lineage tags
    ("POST", "mlflow/runs/log-inputs"): 1,
    ("PUT", "adapter.safetensors"): 1,
    ("PUT", "requirements.txt"): 1,
    ("PUT", "MLmodel"): 1,
    ("POST", "mlflow/registered-models/create"): 1,  # a new name: once
    ("POST", "mlflow/model-versions/create"): 1,
    ("POST", "mlflow/registered-models/alias"): 1,  # staging
    ("POST", "mlflow/runs/update"): 1,  # FINISHED
}
RELEASE = {
    ("GET", "adapter.safetensors"): 1,  # the candidate, evaluated
    ("POST", "mlflow/runs/log-batch"): 1,  # its eval_* metrics
    ("POST", "mlflow/model-versions/set-tag"): 7,  # the mlops.eval.* tags of its version (tags.hpp)
    ("POST", "mlflow/registered-models/alias"): 1,  # production
}
# Requests of the whole stage, whatever the number of adapters (searches, the experiment, the lease).
RECORD_FIXED = 8
RELEASE_FIXED = 24


def _endpoint(method: str, path: str) -> tuple:
    path = path.removeprefix("/api/2.0/")
    if path.startswith("mlflow-artifacts/artifacts/"):
        path = path.rsplit("/", 1)[-1]
    return method, path


def _by_endpoint(counted: Counter) -> Counter:
    out = Counter()
    for (method, path), n in counted.items():
        out[_endpoint(method, path)] += n
    return out


def _check(counted: Counter, per_adapter: dict, fixed: int) -> None:
    for key, n in per_adapter.items():
        assert counted[key] == n * ADAPTERS, (key, counted[key], dict(counted))
    # The release lease is renewed by time (a third of its time-to-live), not per adapter.
    renewals = counted[("PATCH", "mlflow/registered-models/update")]
    rest = sum(counted.values()) - renewals - sum(per_adapter.values()) * ADAPTERS
    assert rest <= fixed, dict(counted)


def test_the_server_log_counts_each_answered_request(tmp_path):
    with mlflow_on("sqlite", tmp_path / "mlflow") as server:
        mark = server.log_mark(quiet=0.2)
        for _ in range(3):
            urllib.request.urlopen(server.url + "/health", timeout=5).read()
        urllib.request.urlopen(server.url + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
                               timeout=5).read()
        end = server.log_mark(quiet=0.2)
        assert server.requests(mark, end) == Counter({("GET", "/health"): 3,
                                                      ("GET", "/api/2.0/mlflow/experiments/get-by-name"): 1})
        assert server.requests(end) == Counter()


def test_recording_and_releasing_make_a_fixed_number_of_requests_per_adapter(tmp_path):
    source = make_source(f"doltlite:{tmp_path / 'data.db'}", ADAPTERS, rows_per_adapter=40)
    catalog = mlops.Catalog.from_dict({
        "defaults": {"table": "readings", "label": "label", "features": ["f0", "f1", "f2", "f3"], "epochs": 2,
                     "batch_size": 8, "validation_fraction": 0.1, "eval_fraction": 0.25},
        "adapters": [{"name": f"c{c:05d}", "where": "customer = ?", "params": [f"c{c:05d}"]}
                     for c in range(ADAPTERS)],
    })
    with mlflow_on("sqlite", tmp_path / "mlflow", workers=2) as server:
        pipe = mlops.Pipeline(source, mlops.MlflowTracker(server.url), mlops.CudaTrainer(device="cpu", seed=0),
                              catalog, code_commit="budget", record_threads=4)
        plan = pipe.plan(at="main")
        start = server.log_mark(quiet=0.2)
        report = pipe.train(plan)
        assert report.failed == 0 and len(report.items) == ADAPTERS, report.to_dict()
        trained = server.log_mark(quiet=0.2)
        release = pipe.release(image="registry.example.com/budget")
        assert release.complete and len(release.manifest) == ADAPTERS
        released = server.log_mark(quiet=0.2)

        _check(_by_endpoint(server.requests(start, trained)), RECORD, RECORD_FIXED)
        _check(_by_endpoint(server.requests(trained, released)), RELEASE, RELEASE_FIXED)
