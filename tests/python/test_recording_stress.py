"""Loss-free concurrent recording: 200 adapters recorded by 8 client threads into an MLflow server with
several workers, on a SQLite store and on a MariaDB store, repeated; every version the client was told
about must be the one and only version the server's REST API and its store's own table hold, and paged
listings made while recording must never leave out a version the store already held."""

from __future__ import annotations

import os
import sys

import pytest

import mlops

sys.path.insert(0, os.path.dirname(__file__))
from mariadb_server import available  # noqa: E402
from mlflow_server import mlflow_on  # noqa: E402
from recording_check import make_source, record_and_check  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.mlflow,
    pytest.mark.slow,
]

ADAPTERS = 200
THREADS = 8
WORKERS = 4
ROUNDS = 2


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(f"doltlite:{tmp_path_factory.mktemp('stress') / 'data.db'}", ADAPTERS)


@pytest.mark.parametrize("backend", [
    "sqlite",
    pytest.param("mariadb", marks=[pytest.mark.mysql, pytest.mark.skipif(not available(), reason="mariadbd is not installed")]),
])
def test_concurrent_recording_loses_and_duplicates_no_version(backend, source, tmp_path):
    with mlflow_on(backend, tmp_path / "mlflow", workers=WORKERS) as server:
        for r in range(ROUNDS):
            outcome = record_and_check(server, source, f"r{r}-", ADAPTERS, THREADS)
            assert outcome.listings > 0
            assert outcome.lost == [] and outcome.duplicated == [] and outcome.mismatched == []
            assert outcome.listing_misses == [] and outcome.listing_repeats == []
