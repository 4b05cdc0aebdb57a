"""Concurrent recording checked against every account the server gives of it.

``record_and_check`` trains and records a catalog of adapters with ``Pipeline(record_threads=N)`` while
another thread keeps listing the registry page by page, then compares every version the client was told
about (the train report) with the server's REST answers (one search per adapter, and paged listings) and
with the rows of the store's own ``model_versions`` table. Used by tests/python/test_recording_stress.py
and bench/pipeline/stress.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import mlops
from mlflow_server import MlflowServer, store_model_versions


def make_source(uri: str, adapters: int, rows_per_adapter: int = 6) -> mlops.DoltSource:
    """A DoltLite table `readings` (4 REAL features, an integer label, a `customer` key) with
    `rows_per_adapter` rows for each of `adapters` customers, committed."""
    import csv
    import pathlib
    import random
    import tempfile

    rng = random.Random(7)
    source = mlops.DoltSource(uri, create=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "readings.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "customer", "f0", "f1", "f2", "f3", "label"])
            for i in range(adapters * rows_per_adapter):
                feats = [round(rng.gauss(0, 1), 3) for _ in range(4)]
                w.writerow([i, f"c{i % adapters:05d}"] + feats + [(i // adapters) % 2])
        source.import_csv("readings", str(path), primary_key=["id"], message="readings")
    return source


def catalog(prefix: str, adapters: int) -> mlops.Catalog:
    return mlops.Catalog.from_dict({
        "defaults": {"table": "readings", "label": "label", "features": ["f0", "f1", "f2", "f3"], "epochs": 1,
                     "batch_size": 8, "validation_fraction": 0.0,
                     "eval_fraction": 0.0},  # three rows of each label: all of them train
        "adapters": [{"name": f"{prefix}c{c:05d}", "where": "customer = ?", "params": [f"c{c:05d}"]}
                     for c in range(adapters)],
    })


@dataclass
class Outcome:
    adapters: int
    record_seconds: float
    lost: list = field(default_factory=list)          # told about, absent from an account
    duplicated: list = field(default_factory=list)    # more than one version of an adapter
    mismatched: list = field(default_factory=list)    # an account disagrees with what the client was told
    listing_misses: list = field(default_factory=list)  # a paged listing left out a version the store held
    listing_repeats: list = field(default_factory=list)  # a paged listing gave one version twice
    listings: int = 0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched or self.listing_misses or self.listing_repeats)


def _listing_watch(tracker: mlops.MlflowTracker, server: MlflowServer, prefix: str, stop: threading.Event,
                   out: Outcome) -> None:
    """Lists the adapters' versions in pages of 7 while they are being recorded: each listing must hold
    every version the store held before the listing began, and each once."""
    while not stop.is_set():
        before = {(n, v) for n, v, _, _ in store_model_versions(server) if n.startswith(prefix)}
        listed = [(m.name, m.version) for m in tracker.search_model_versions(f"name LIKE '{prefix}%'", page_size=7)]
        out.listings += 1
        missing = sorted(before - set(listed))
        if missing:
            out.listing_misses.append(missing)
        repeated = sorted({v for v in listed if listed.count(v) > 1})
        if repeated:
            out.listing_repeats.append(repeated)
        time.sleep(0.05)


def record_and_check(server: MlflowServer, source: mlops.DoltSource, prefix: str, adapters: int,
                     threads: int, watch: bool = True) -> Outcome:
    tracker = mlops.MlflowTracker(server.url)
    pipe = mlops.Pipeline(source, tracker, mlops.CudaTrainer(device="cpu", seed=0), catalog(prefix, adapters),
                          experiment=prefix + "adapters", releases_experiment=prefix + "releases",
                          code_commit="stress", record_threads=threads)
    plan = pipe.plan()
    stop = threading.Event()
    outcome = Outcome(adapters=adapters, record_seconds=0.0)
    watcher = threading.Thread(target=_listing_watch, args=(mlops.MlflowTracker(server.url), server, prefix, stop, outcome))
    if watch:
        watcher.start()
    try:
        report = pipe.train(plan)
    finally:
        stop.set()
        if watch:
            watcher.join()
    outcome.record_seconds = report.record_seconds
    assert report.failed == 0, [i for i in report.items if i["status"] == "failed"][:3]
    told = {i["name"]: (i["version"], i["run_id"]) for i in report.items}
    names = sorted(told)
    assert names == sorted(f"{prefix}c{c:05d}" for c in range(adapters)), "the report does not cover the catalog"

    # The server's REST answers: one search per adapter, and one paged listing of them all.
    per_name = {n: [(m.version, m.run_id, m.status) for m in tracker.search_model_versions(f"name = '{n}'")] for n in names}
    listed: dict[str, list] = {}
    for m in tracker.search_model_versions(f"name LIKE '{prefix}%'", page_size=50):
        listed.setdefault(m.name, []).append((m.version, m.run_id, m.status))
    # The store's own table.
    stored: dict[str, list] = {}
    for n, v, run_id, status in store_model_versions(server):
        if n.startswith(prefix):
            stored.setdefault(n, []).append((v, run_id, status))

    for n in names:
        want = [(told[n][0], told[n][1], "READY")]
        for account, got in (("REST search", per_name.get(n, [])), ("REST listing", listed.get(n, [])),
                             ("store", stored.get(n, []))):
            if not got:
                outcome.lost.append((account, n, told[n]))
            elif len(got) > 1:
                outcome.duplicated.append((account, n, got))
            elif got != want:
                outcome.mismatched.append((account, n, got, want))
    extra = (set(listed) | set(stored)) - set(names)
    outcome.mismatched += [("unknown adapter", n) for n in sorted(extra)]
    return outcome
