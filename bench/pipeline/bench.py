"""Plan, register and release for many adapters against a local MLflow server (training excluded).

Builds a DoltLite table of --rows rows (16 REAL features, integer label, a customer key) with --adapters
customers, one adapter each; trains them all for 1 epoch (the fit itself is timed separately and
excluded), releases, changes 3 customers' rows, plans again, retrains and releases. Prints each phase.

    python bench/pipeline/bench.py [--adapters 1000] [--rows 1000000]

Targets (issue): plan of 1,000 adapters over 1,000,000 rows <= 5 s; plan + register + release for
1,000 adapters <= 60 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import random
import tempfile
import time

import mlops
from mlops.local_server import MlflowServer


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


def record_with_mlflow_client(url: str, n: int, work: pathlib.Path) -> float:
    """The anchor: the same requests per adapter as Pipeline.train's recording plus release's alias move,
    made with MLflow's Python client one adapter after the other. Returns seconds per adapter."""
    import logging

    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # one "waiting for the version" line per version

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    exp = client.create_experiment("anchor-adapters")
    model_dir = work / "anchor-model"
    model_dir.mkdir()
    (model_dir / "adapter.safetensors").write_bytes(os.urandom(2200))
    (model_dir / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlops.pyfunc\n")
    (model_dir / "requirements.txt").write_text("mlops\nnumpy\n")
    (model_dir / "lineage.json").write_text(json.dumps({"data_commit": "x" * 32}))
    t0 = time.perf_counter()
    for i in range(n):
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
    return (time.perf_counter() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2, help="Pipeline record_threads (requests to MLflow at once)")
    ap.add_argument("--server-workers", type=int, default=2, help="MLflow server worker processes")
    ap.add_argument("--frontend", default="gunicorn", choices=["gunicorn", "uvicorn"])
    ap.add_argument("--anchor", type=int, default=100,
                    help="adapters recorded with MLflow's Python client for comparison (0: skip)")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="mlops-bench-pipeline-"))
    t = time.perf_counter()
    csv_path = work / "readings.csv"
    write_table(csv_path, args.rows, args.adapters)
    src = mlops.DoltSource(f"doltlite:{work / 'data.db'}")
    src.import_csv("readings", str(csv_path), primary_key=["id"], message="readings")
    catalog = mlops.Catalog.from_dict({
        "defaults": {"table": "readings", "label": "label", "features": [f"f{i}" for i in range(16)],
                     "epochs": 1, "batch_size": 256, "validation_fraction": 0.1},
        "adapters": [{"name": f"c{c:05d}", "where": "customer = ?", "params": [f"c{c:05d}"]}
                     for c in range(args.adapters)],
    })
    print(f"setup: {args.rows:,} rows, {args.adapters} adapters in {time.perf_counter() - t:.1f} s", flush=True)

    class Results(dict):
        def __setitem__(self, key, value):
            super().__setitem__(key, value)
            print(f"  {key}: {value:.2f} s", flush=True)

    results = Results()
    print(f"MLflow server: {args.frontend}, {args.server_workers} workers; {args.threads} client threads", flush=True)
    with MlflowServer(work / "mlflow", workers=args.server_workers, frontend=args.frontend) as server:
        tracker = mlops.MlflowTracker(server.url)
        trainer = mlops.CudaTrainer(device="cpu", seed=0)
        pipe = mlops.Pipeline(src, tracker, trainer, catalog, code_commit="bench", record_threads=args.threads)

        t = time.perf_counter(); plan = pipe.plan(at="main"); results["plan (all new)"] = time.perf_counter() - t
        t = time.perf_counter(); rep = pipe.train(plan); total = time.perf_counter() - t
        assert rep.failed == 0, rep.to_dict()
        results["train: load datasets"] = rep.load_seconds
        results["train: fit (excluded)"] = rep.fit_seconds
        results["train: record + register"] = rep.record_seconds
        t = time.perf_counter(); rel = pipe.release(image="registry.example.com/bench"); results["release"] = time.perf_counter() - t
        assert rel.complete
        # Every adapter has exactly one version on the server, and the release ships it.
        versions = tracker.search_model_versions("", page_size=1000)
        assert sorted(v.name for v in versions) == sorted(catalog.names()), len(versions)
        assert len(rel.manifest) == args.adapters

        # Three customers change; the plan must find exactly them.
        change = work / "change.csv"
        with open(change, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "customer"] + [f"f{i}" for i in range(16)] + ["label"])
            for c in (1, 2, 3):
                w.writerow([c, f"c{c:05d}"] + [0.5] * 16 + [1])
        src.import_csv("readings", str(change), primary_key=["id"], message="change", mode="upsert")
        t = time.perf_counter(); plan2 = pipe.plan(at="main"); results["plan (after a change)"] = time.perf_counter() - t
        assert sorted(i.name for i in plan2.stale()) == [f"c{c:05d}" for c in (1, 2, 3)], [i.name for i in plan2.stale()]
        anchor = record_with_mlflow_client(server.url, args.anchor, work) if args.anchor else None

    print(f"{'phase':<28} {'seconds':>8}")
    for k, v in results.items():
        print(f"{k:<28} {v:>8.2f}")
    excluded = results["train: fit (excluded)"]
    # Training is excluded: reading each adapter's rows and the fit itself are shown above, not summed.
    total_no_fit = results["plan (all new)"] + results["train: record + register"] + results["release"]
    print(f"{'plan + register + release':<28} {total_no_fit:>8.2f}   (target <= 60 s for 1,000 adapters)")
    print(f"{'plan after a change':<28} {results['plan (after a change)']:>8.2f}   (target <= 5 s for 1,000 adapters / 1M rows)")
    if anchor is not None:
        ours = (results["train: record + register"] + results["release"]) / args.adapters
        print(f"\nrecord + register + release, per adapter, same server:")
        print(f"  mlops Pipeline ({args.threads} thread{'s' if args.threads != 1 else ''})   {ours * 1000:7.1f} ms")
        print(f"  MLflow Python client ({args.anchor} adapters, one thread) {anchor * 1000:7.1f} ms"
              f"   mlops is {anchor / ours:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
