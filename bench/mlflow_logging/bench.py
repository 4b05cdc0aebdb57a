"""Metric logging throughput: mlops.MlflowTracker vs MLflow's own Python client, same local server.

Workload: RUNS runs x STEPS steps x METRICS metrics (default 100 x 100 x 10 = 100,000 points), timed
from the first run's start until every point is on the server (each run ended, which waits for
delivery). Each contender gets a fresh `mlflow server` of its own (SQLite store, on loopback), warmed up with
that contender's own client, so none is timed against a store the others have filled:

  mlops         MlflowTracker, asynchronous batched logging (run.log_metrics per step, run.end())
  mlflow (a)    MlflowClient.log_metric per value
  mlflow (b)    MlflowClient.log_batch per step
  mlflow (c)    mlflow.log_metrics(..., synchronous=False) per step, mlflow.end_run()

(a) and (b) send one request per call, so they are timed on a fraction of the runs (--runs-a, --runs-b)
and scaled linearly to the full workload; the table says so. Every contender's points are counted
back from the server afterwards (outside the timing).

Run: python bench/mlflow_logging/bench.py [--runs 100 --steps 100 --metrics 10]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))

from mlflow_server import FaultProxy, MlflowServer  # noqa: E402


def metrics_at(step: int, n: int) -> dict[str, float]:
    return {f"m{i}": float(step * n + i) * 1e-3 for i in range(n)}


def count_points(tracker, run_ids: list[str], n_metrics: int) -> int:
    return sum(len(tracker.metric_history(rid, f"m{i}")) for rid in run_ids for i in range(n_metrics))


def bench_mlops(url: str, runs: int, steps: int, n: int, spool: str) -> tuple[float, list[str]]:
    import mlops

    tracker = mlops.MlflowTracker(url, spool_dir=spool)
    ids = []
    t0 = time.perf_counter()
    for r in range(runs):
        run = tracker.start_run("bench-mlops", run_name=f"r{r}")
        for step in range(steps):
            run.log_metrics(metrics_at(step, n), step=step)
        run.end()
        ids.append(run.id)
    return time.perf_counter() - t0, ids


def bench_mlflow_client(url: str, experiment: str, runs: int, steps: int, n: int, log_step) -> tuple[float, list[str]]:
    """MlflowClient, one run after the other; `log_step(client, run_id, step, metrics)` logs one step."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    ids = []
    t0 = time.perf_counter()
    for r in range(runs):
        rid = client.create_run(exp_id, run_name=f"{experiment}-{r}").info.run_id
        for step in range(steps):
            log_step(client, rid, step, metrics_at(step, n))
        client.set_terminated(rid)
        ids.append(rid)
    return time.perf_counter() - t0, ids


def log_per_value(client, rid: str, step: int, metrics: dict[str, float]) -> None:
    for k, v in metrics.items():
        client.log_metric(rid, k, v, step=step)


def log_batch_per_step(client, rid: str, step: int, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    client.log_batch(rid, metrics=[Metric(k, v, ts, step) for k, v in metrics.items()])


def bench_mlflow_async(url: str, runs: int, steps: int, n: int) -> tuple[float, list[str]]:
    import mlflow

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench-c")
    ids = []
    t0 = time.perf_counter()
    for r in range(runs):
        with mlflow.start_run(run_name=f"c{r}") as run:
            for step in range(steps):
                mlflow.log_metrics(metrics_at(step, n), step=step, synchronous=False)
        ids.append(run.info.run_id)
    return time.perf_counter() - t0, ids


def bench_slow_server(url: str, points: int, capacity: int, delay: float, spool: str) -> tuple[float, float, str]:
    """Logs `points` metric points through a proxy that delays every request; returns the seconds, the
    growth of the process's peak RSS in MiB, and the run id."""
    import mlops

    with FaultProxy(url, delay=delay) as proxy:
        tracker = mlops.MlflowTracker(proxy.url, queue_capacity=capacity, spool_dir=spool)
        run = tracker.start_run("bench-slow")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        per_step = 10
        for step in range(points // per_step):
            run.log_metrics(metrics_at(step, per_step), step=step)
        run.end()
        seconds = time.perf_counter() - t0
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return seconds, grown, run.id


def quiet(fn, *args):
    """Calls fn(*args) with stdout discarded (MLflow's client prints a link for every run it ends)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--metrics", type=int, default=10)
    ap.add_argument("--runs-a", type=int, default=2, help="runs timed for (a); scaled to --runs")
    ap.add_argument("--runs-b", type=int, default=10, help="runs timed for (b); scaled to --runs")
    ap.add_argument("--runs-c", type=int, default=None, help="runs timed for (c) (default: all)")
    ap.add_argument("--slow-points", type=int, default=300000, help="points logged through a slow server")
    ap.add_argument("--slow-delay", type=float, default=0.05, help="seconds the slow server adds per request")
    ap.add_argument("--slow-capacity", type=int, default=10000, help="queue capacity for the slow-server run")
    ap.add_argument("--verify", type=int, default=3, help="runs per contender whose points are counted back")
    args = ap.parse_args()
    runs, steps, n = args.runs, args.steps, args.metrics
    total = runs * steps * n

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    rows = []
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        import mlops

        def contender(name: str, warm_up, timed_runs: int, timed) -> None:
            """`warm_up(url)` untimed, then `timed(url)` -> (seconds, run ids), on a fresh server; the points
            of a sample of the runs are counted back from the server."""
            with MlflowServer(pathlib.Path(tmp) / f"server-{len(rows)}") as server:
                quiet(warm_up, server.url)  # the fresh server's first requests pay for imports and table setup
                time.sleep(2)
                seconds, ids = quiet(timed, server.url)
                check = mlops.MlflowTracker(server.url)
                sample = list(dict.fromkeys(ids[: args.verify] + ids[-1:]))
                got = count_points(check, sample, n)
                want = len(sample) * steps * n
                if got != want:
                    raise SystemExit(f"{name}: {got} of {want} points on the server")
            scaled = seconds * runs / timed_runs
            rows.append((name, timed_runs, seconds, scaled))
            print(f"  {name:<28} {timed_runs:>4} runs in {seconds:8.2f} s (verified {got} points)", flush=True)

        spool = os.path.join(tmp, "spool")
        print(f"workload: {runs} runs x {steps} steps x {n} metrics = {total:,} points; a fresh server per contender")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        contender("mlops MlflowTracker", lambda url: bench_mlops(url, 3, 10, n, spool), runs,
                  lambda url: bench_mlops(url, runs, steps, n, spool))
        rss_mlops = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        contender("mlflow (a) log_metric", lambda url: bench_mlflow_client(url, "warm", 1, 10, n, log_per_value),
                  args.runs_a, lambda url: bench_mlflow_client(url, "bench-a", args.runs_a, steps, n, log_per_value))
        contender("mlflow (b) log_batch/step", lambda url: bench_mlflow_client(url, "warm", 1, 10, n, log_batch_per_step),
                  args.runs_b, lambda url: bench_mlflow_client(url, "bench-b", args.runs_b, steps, n, log_batch_per_step))
        runs_c = args.runs_c or runs
        contender("mlflow (c) synchronous=False", lambda url: bench_mlflow_async(url, 1, 10, n), runs_c,
                  lambda url: bench_mlflow_async(url, runs_c, steps, n))
        with MlflowServer(pathlib.Path(tmp) / "slow") as server:
            slow = bench_slow_server(server.url, args.slow_points, args.slow_capacity, args.slow_delay, spool)
            check = mlops.MlflowTracker(server.url)
            slow_points = sum(len(check.metric_history(slow[2], f"m{i}")) for i in range(10))
        if slow_points != args.slow_points:
            raise SystemExit(f"slow server: {slow_points} of {args.slow_points} points arrived")

    base = rows[0][3]
    print()
    print(f"{'contender':<30}{'timed runs':>11}{'timed s':>10}{'s for all':>11}{'points/s':>12}{'mlops faster':>14}")
    for name, timed, secs, scaled in rows:
        note = "" if timed == runs else "  (scaled from timed runs)"
        print(f"{name:<30}{timed:>11}{secs:>10.2f}{scaled:>11.2f}{total / scaled:>12,.0f}{scaled / base:>13.1f}x{note}")
    print(f"\npeak RSS after the mlops contender: {rss_mlops / 1024:.0f} MiB (before: {rss0 / 1024:.0f} MiB)")
    print(f"slow server (+{args.slow_delay * 1000:.0f} ms per request): {args.slow_points:,} points, queue capacity "
          f"{args.slow_capacity:,}: {slow[0]:.1f} s, all delivered; peak RSS grew {slow[1]:.1f} MiB")


if __name__ == "__main__":
    main()
