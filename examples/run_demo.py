"""The main job (`make demo`): the whole platform on the embedded defaults, through the `mlops` command.

1. create a DoltLite database with support tickets of 60 customers and one text adapter per customer;
2. start a local MLflow tracking server;
3. plan, train every adapter, record release 1;
4. an analyst changes tickets of 3 customers: the CSV is synced onto a branch, reviewed as a row diff with
   a preview of what merging it would retrain (exactly those 3), then merged into main;
5. plan again: exactly those 3 are stale; retrain them; record release 2 (a new MD5);
6. roll one model back (release 3);
7. serve release 2 with `mlops serve`, predict one customer's ticket over HTTP, switch the running server to
   release 3 with no failed request, and print a summary with the image tags and the MLflow address.

Everything lives under build/demo; the MLflow server is stopped at the end (its store is kept).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import mlops
from mlops import demo
from mlops.local_server import MlflowServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "demo"
IMAGE = "registry.example.com/adapters"
CUSTOMERS = 60
CHANGED = ["customer-007", "customer-023", "customer-042"]


def mlops_cmd(*args: str, env: dict, capture: bool = False) -> str:
    print(f"\n$ mlops {' '.join(args)}", flush=True)
    r = subprocess.run([sys.executable, "-m", "mlops", *args], env=env, text=True,
                       stdout=subprocess.PIPE if capture else None)
    if r.returncode != 0:
        raise SystemExit(f"demo: 'mlops {args[0]}' failed with exit code {r.returncode}")
    if capture:
        print(r.stdout, end="" if r.stdout.endswith("\n") else "\n")
    return r.stdout if capture else ""


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    data = f"doltlite:{WORK / 'data.db'}"
    with MlflowServer(WORK / "mlflow") as server:
        env = dict(os.environ, MLOPS_DATA=data, MLFLOW_TRACKING_URI=server.url, MLOPS_CATALOG="table:adapters",
                   PYTHONUNBUFFERED="1")
        print(f"MLflow tracking server: {server.url} (store {WORK / 'mlflow'})")

        mlops_cmd("init-demo", "--customers", str(CUSTOMERS), env=env)
        mlops_cmd("plan", env=env)
        mlops_cmd("train", env=env)
        first = json.loads(mlops_cmd("release", "--image", IMAGE, "--format", "json", env=env, capture=True))

        change = WORK / "analyst-change.csv"
        rows = demo.analyst_change(change, mlops.DoltSource(data), CHANGED)
        print(f"\nanalyst edited {rows} tickets of {', '.join(CHANGED)} in {change.name}")
        mlops_cmd("sync", "tickets", str(change), "--primary-key", "id", "-m", "Relabel and add tickets",
                  "--branch", "analyst-sync", env=env)
        mlops_cmd("diff", "main..analyst-sync", "--format", "markdown", "--full-json", str(WORK / "diff.json"),
                  env=env, capture=True)
        preview = json.loads(mlops_cmd("plan", "--at", "analyst-sync", "--against", "main", "--format", "json",
                                       env=env, capture=True))
        previewed = sorted(i["name"] for i in preview["items"] if i["stale"])
        if previewed != sorted(CHANGED):
            raise SystemExit(f"demo: expected the merge to touch exactly {CHANGED}, the preview says {previewed}")
        mlops_cmd("merge", "analyst-sync", "--into", "main", "--delete-branch", env=env)

        plan = json.loads(mlops_cmd("plan", "--format", "json", env=env, capture=True))
        stale = sorted(i["name"] for i in plan["items"] if i["stale"])
        print(f"stale after the change: {stale}")
        if stale != sorted(CHANGED):
            raise SystemExit(f"demo: expected exactly {CHANGED} to be stale, got {stale}")
        mlops_cmd("train", env=env)
        second = json.loads(mlops_cmd("release", "--image", IMAGE, "--format", "json", env=env, capture=True))
        mlops_cmd("diff-release", first["release"]["md5"], second["release"]["md5"], env=env)

        rolled = json.loads(mlops_cmd("rollback", "--model", CHANGED[0], "--version", "1", "--format", "json",
                                      env=env, capture=True))
        mlops_cmd("lineage", CHANGED[1], env=env)
        mlops_cmd("releases", env=env)
        context = WORK / "image"
        mlops_cmd("build-context", str(context), "--release", rolled["release"]["md5"], env=env)
        final = WORK / "image-release-2"
        mlops_cmd("build-context", str(final), "--release", second["release"]["md5"], env=env)

        print(f"\n$ mlops serve {final}   # release 2, then switched to release 3 while serving")
        ticket = demo.ticket_rows(CUSTOMERS, 120)
        text = next(body for _, cust, body, _ in ticket if cust == CHANGED[0])
        served = demo.serve_and_switch(final, context, CHANGED[0], text, env)
        print(f"{CHANGED[0]} ticket {text!r} -> intent {served['intent']!r}")
        print(f"/version before {served['before']['release']}, after {served['after']['release']}; "
              f"{served['sent']} requests during the switch, {served['failed']} failed; exit code {served['exit_code']}")
        if (served["before"]["release"] != second["release"]["md5"] or served["after"]["release"] !=
                rolled["release"]["md5"] or served["failed"] or served["exit_code"] != 0):
            raise SystemExit("demo: serving or the release switch did not go as expected")

        print("\n==== summary ====")
        print(f"adapters            {CUSTOMERS} (one per customer), data in {WORK / 'data.db'}")
        print(f"release 1           {first['release']['image']}")
        print(f"release 2           {second['release']['image']}  (retrained {', '.join(CHANGED)})")
        print(f"after rollback      {rolled['release']['image']}  ({CHANGED[0]} back to version 1)")
        print(f"build context       {context} (docker build -t {rolled['release']['image']} {context})")
        print(f"served              {CHANGED[0]} -> {served['intent']!r}; switched release 2 -> 3 under load, "
              f"{served['failed']} failed of {served['sent']}")
        print(f"MLflow              {server.url} while running; store kept in {WORK / 'mlflow'}")
        print(f"                    browse later: mlflow server --backend-store-uri sqlite:///{WORK / 'mlflow' / 'mlflow.db'}")
        print(f"time                {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
