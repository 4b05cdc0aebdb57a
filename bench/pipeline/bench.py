"""The whole job for many adapters against a local MLflow server: plan -> load -> fit -> record -> release.

Builds a DoltLite table of --rows rows (16 REAL features, integer label, a customer key) with --adapters
customers, one adapter each (`customer = ?`); for each backend of the MLflow server's store (SQLite,
MariaDB) plans, trains them all for 1 epoch (reading every slice, fitting, recording), releases, and
prints each stage. After the release it checks that the server holds exactly one version per adapter, by
its REST API and in its store's own table. Then it changes 3 customers' rows and plans again. Beside each
stage's time it prints the requests per adapter that the MLflow server answered (counted in its access
log), and the train stage's by endpoint.

    python bench/pipeline/bench.py [--adapters 1000] [--rows 1000000] [--backends sqlite,mariadb]

Targets: the whole job, plan through release, for 1,000 adapters on 1,000,000 rows <= 20 s on the SQLite
store and <= 25 s on MariaDB, with <= 4 requests per adapter; the plan after a change <= 5 s.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import pathlib
import random
import sys
import tempfile
import time

import mlops

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "python"))
from mlflow_server import mlflow_on, store_model_versions  # noqa: E402


def write_table(path: pathlib.Path, rows: int, adapters: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "customer"] + [f"f{i}" for i in range(16)] + ["label"])
        for i in range(rows):
            c = i % adapters
            feats = [round(rng.gauss(0, 1), 4) for _ in range(16)]
            label = int(feats[c % 16] + feats[(c + 1) % 16] > 0)
            w.writerow([i, f"c{c:05d}"] + feats + [label])


def record_with_mlflow_client(url: str, n: int, threads: int, work: pathlib.Path) -> float:
    """The anchor: the same requests per adapter as Pipeline.train's recording plus release's alias move,
    made with MLflow's Python client for the same `n` adapters on `threads` threads (as many as mlops's
    record threads), into a store of its own. Returns seconds per adapter."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # one "waiting for the version" line per version

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    exp = client.create_experiment("anchor-adapters")
    model_dir = work / "anchor-model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "adapter.safetensors").write_bytes(os.urandom(2200))
    # The lineage rides in MLmodel's metadata, as in mlops's model directory: three files.
    (model_dir / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlops.pyfunc\n"
                                       f"metadata: {json.dumps({'lineage': {'data_commit': 'x' * 32}})}\n")
    (model_dir / "requirements.txt").write_text("mlops\nnumpy\n")

    def record(i: int) -> None:
        name = f"anchor-{i:05d}"
        run = client.create_run(exp, run_name=name, tags={"mlops.adapter": name, "mlops.code.commit": "bench"})
        rid = run.info.run_id
        client.log_inputs(rid, [DatasetInput(Dataset(name="readings", digest="d" * 36, source_type="dolt",
                                                     source="{}", schema="{}", profile="{}"),
                                             tags=[InputTag("mlflow.data.context", "training")])])
        client.log_artifacts(rid, str(model_dir), "model")
        now = int(time.time() * 1000)
        client.log_batch(rid, metrics=[Metric(k, 0.5, now, 0) for k in ("loss", "val_loss", "val_accuracy")],
                         params=[Param(k, "1") for k in ("epochs", "batch_size", "learning_rate", "hidden",
                                                          "l2", "seed", "validation_fraction", "patience")],
                         tags=[RunTag(f"mlops.data.{k}", "v") for k in ("commit", "uri", "table", "digest", "rows")])
        client.set_terminated(rid)
        client.create_registered_model(name)
        v = client.create_model_version(name, f"{run.info.artifact_uri}/model", rid,
                                        tags={"mlops.fingerprint": "f" * 64, "mlops.data.commit": "c" * 32})
        client.set_registered_model_alias(name, "staging", v.version)
        client.set_registered_model_alias(name, "production", v.version)

    record(n)  # warm-up, untimed (as mlops's first requests open its connections)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(record, range(n)))
    return (time.perf_counter() - t0) / n


def endpoint(path: str) -> str:
    """A request's path without /api/2.0/, an artifact's folders (one run's) shown as '...'."""
    path = path.removeprefix("/api/2.0/")
    if path.startswith("mlflow-artifacts/artifacts/"):
        return "mlflow-artifacts/artifacts/.../" + path.rsplit("/", 1)[-1]
    return path


def count_requests(server, marks: dict, adapters: int, requests: dict) -> None:
    """Fills ``requests`` with the server's answered requests per adapter for each stage between ``marks``
    (plan, train, release) and for the whole job, and prints the train stage's requests by endpoint."""
    stages = list(marks)
    whole = server.requests(marks["plan"], marks["end"])
    for stage, next_stage in zip(stages, stages[1:]):
        counted = server.requests(marks[stage], marks[next_stage])
        requests[stage] = sum(counted.values()) / adapters
        print(f"  {stage}: {sum(counted.values())} requests, {requests[stage]:.2f} per adapter", flush=True)
        if stage == "train":
            by_endpoint = collections.Counter()
            for (method, path), n in counted.items():
                by_endpoint[method, endpoint(path)] += n
            for (method, path), n in by_endpoint.most_common():
                print(f"    {n / adapters:6.2f}  {method} {path}", flush=True)
    requests["whole job"] = sum(whole.values()) / adapters
    print(f"  whole job: {sum(whole.values())} requests, {requests['whole job']:.2f} per adapter", flush=True)


def run_job(backend: str, args, work: pathlib.Path, src: mlops.DoltSource, catalog: mlops.Catalog,
            requests: dict) -> dict:
    class Results(dict):
        def __setitem__(self, key, value):
            super().__setitem__(key, value)
            print(f"  {key}: {value:.2f} s", flush=True)

    results = Results()
    print(f"MLflow server: {backend} store, {args.frontend}, {args.server_workers} workers; "
          f"{args.threads} client threads", flush=True)
    with mlflow_on(backend, work / f"mlflow-{backend}", workers=args.server_workers, frontend=args.frontend) as server:
        tracker = mlops.MlflowTracker(server.url)
        trainer = mlops.CudaTrainer(device="cpu", seed=0)
        pipe = mlops.Pipeline(src, tracker, trainer, catalog, code_commit="bench", record_threads=args.threads)

        # Requests are counted at the server (its access log), stage by stage.
        marks = {"plan": server.log_mark(quiet=0.2)}
        t = time.perf_counter(); plan = pipe.plan(at="main"); results["plan"] = time.perf_counter() - t
        marks["train"] = server.log_mark(quiet=0.2)
        t = time.perf_counter(); rep = pipe.train(plan); total = time.perf_counter() - t
        assert rep.failed == 0, rep.to_dict()
        results["load (read every slice)"] = rep.load_seconds
        results["fit (1 epoch)"] = rep.fit_seconds
        results["record + register"] = rep.record_seconds
        results["train, other"] = total - rep.load_seconds - rep.fit_seconds - rep.record_seconds
        marks["release"] = server.log_mark(quiet=0.2)
        t = time.perf_counter(); rel = pipe.release(image="registry.example.com/bench"); results["release"] = time.perf_counter() - t
        assert rel.complete
        marks["end"] = server.log_mark(quiet=0.2)
        count_requests(server, marks, args.adapters, requests)
        # Exactly one version per adapter, by the REST API and in the store's own table, and the release
        # ships each adapter's version.
        versions = tracker.search_model_versions("", page_size=1000)
        assert sorted(v.name for v in versions) == sorted(catalog.names()), len(versions)
        stored = store_model_versions(server)
        assert sorted((n, v) for n, v, _, _ in stored) == sorted((v.name, v.version) for v in versions), len(stored)
        told = {i["name"]: i["version"] for i in rep.items}
        assert dict(rel.manifest) == told
        print(f"  one version per adapter: {len(versions)} by REST, {len(stored)} in the store, "
              f"{len(rel.manifest)} released", flush=True)

        # Three customers change; the plan must find exactly them.
        change = work / "change.csv"
        with open(change, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "customer"] + [f"f{i}" for i in range(16)] + ["label"])
            for c in (1, 2, 3):
                w.writerow([c, f"c{c:05d}"] + [0.5 + len(results)] * 16 + [1])
        src.import_csv("readings", str(change), primary_key=["id"], message="change", mode="upsert")
        t = time.perf_counter(); plan2 = pipe.plan(at="main"); results["plan (after a change)"] = time.perf_counter() - t
        assert sorted(i.name for i in plan2.stale()) == [f"c{c:05d}" for c in (1, 2, 3)], [i.name for i in plan2.stale()]
    if args.anchor:
        # On a server and store of its own, as mlops had: not after mlops has filled this one.
        with mlflow_on(backend, work / f"mlflow-anchor-{backend}", workers=args.server_workers,
                       frontend=args.frontend) as server:
            results["anchor (per adapter)"] = record_with_mlflow_client(server.url, args.adapters, args.threads, work)
    return dict(results)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--backends", default="sqlite,mariadb", help="MLflow store backends, comma-separated")
    ap.add_argument("--threads", type=int, default=None, help="Pipeline record_threads (default: the Pipeline's)")
    ap.add_argument("--server-workers", type=int, default=4, help="MLflow server worker processes")
    ap.add_argument("--frontend", default="gunicorn", choices=["gunicorn", "uvicorn"])
    ap.add_argument("--anchor", action="store_true",
                    help="also record the same adapters with MLflow's Python client on the same number of threads")
    args = ap.parse_args()
    if args.threads is None:
        args.threads = mlops.Pipeline.default_record_threads
    work = pathlib.Path(tempfile.mkdtemp(prefix="mlops-bench-pipeline-"))
    t = time.perf_counter()
    csv_path = work / "readings.csv"
    write_table(csv_path, args.rows, args.adapters)
    print(f"table: {args.rows:,} rows, {args.adapters} adapters, written in {time.perf_counter() - t:.1f} s", flush=True)
    catalog = mlops.Catalog.from_dict({
        "defaults": {"table": "readings", "label": "label", "features": [f"f{i}" for i in range(16)],
                     "epochs": 1, "batch_size": 256, "validation_fraction": 0.1},
        "adapters": [{"name": f"c{c:05d}", "where": "customer = ?", "params": [f"c{c:05d}"]}
                     for c in range(args.adapters)],
    })
    figures, requests = {}, {}
    for backend in args.backends.split(","):
        src = mlops.DoltSource(f"doltlite:{work / f'data-{backend}.db'}", create=True)
        src.import_csv("readings", str(csv_path), primary_key=["id"], message="readings")
        requests[backend] = {}
        figures[backend] = run_job(backend, args, work, src, catalog, requests[backend])

    stages = ["plan", "load (read every slice)", "fit (1 epoch)", "record + register", "train, other", "release"]
    print(f"\n{args.adapters} adapters, {args.rows:,} rows, {args.threads} record threads, "
          f"{args.server_workers} server workers")
    print(f"{'stage':<28}" + "".join(f"{b:>10}" for b in figures))
    for k in stages + ["plan (after a change)"]:
        print(f"{k:<28}" + "".join(f"{f[k]:>10.2f}" for f in figures.values()))
    print(f"{'whole job, plan..release':<28}" + "".join(f"{sum(f[k] for k in stages):>10.2f}" for f in figures.values())
          + "   (target <= 20 s SQLite, <= 25 s MariaDB)")
    print("requests per adapter, counted at the server:")
    for k in ("plan", "train", "release", "whole job"):
        print(f"  {k:<26}" + "".join(f"{r[k]:>10.2f}" for r in requests.values())
              + ("   (target <= 4)" if k == "whole job" else ""))
    if args.anchor:
        for b, f in figures.items():
            ours = (f["record + register"] + f["release"]) / args.adapters
            print(f"{b}: record + register + release per adapter: mlops {ours * 1000:.1f} ms, MLflow's client "
                  f"{f['anchor (per adapter)'] * 1000:.1f} ms ({f['anchor (per adapter)'] / ours:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
