"""The main job (`make demo`): the whole platform on the embedded defaults, through the `mlops` command.

1. create a DoltLite database with support tickets of 60 customers and one text adapter per customer;
2. start a local MLflow tracking server;
3. plan, train every adapter, record release 1;
4. an analyst changes tickets of 3 customers: the CSV is synced onto a branch, reviewed as a row diff with
   a preview of what merging it would retrain (exactly those 3), then merged into main; for one of them the
   change is a mistake: every ticket of its most common intent relabelled as another intent;
5. plan again: exactly those 3 are stale; retrain them; record release 2 (a new MD5) with the evaluation gate
   enforced: the mislabelled customer is held back (its production model stays) and the other two ship;
   `mlops diff-release` shows each shipped model's metric deltas;
6. roll one model back (release 3);
7. serve release 2 with `mlops serve`, predict one customer's ticket over HTTP, switch the running server to
   release 3 with no failed request, and print a summary with the image tags and the MLflow address.

Everything lives under build/demo (or --work DIR); the MLflow server is stopped at the end (its store is kept).
"""

from __future__ import annotations

import argparse
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
MISLABELLED = "customer-042"  # one of CHANGED: its change flips the labels of one intent
SHIPPED = [c for c in CHANGED if c != MISLABELLED]
EXIT_HELD_BACK = 9  # mlops release: released with models held back


def mlops_cmd(*args: str, env: dict, capture: bool = False, exit_codes: tuple[int, ...] = (0,)) -> str:
    print(f"\n$ mlops {' '.join(args)}", flush=True)
    r = subprocess.run([sys.executable, "-m", "mlops", *args], env=env, text=True,
                       stdout=subprocess.PIPE if capture else None)
    if r.returncode not in exit_codes:
        raise SystemExit(f"demo: 'mlops {args[0]}' failed with exit code {r.returncode}")
    if capture:
        print(r.stdout, end="" if r.stdout.endswith("\n") else "\n")
    return r.stdout if capture else ""


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the demo: the whole platform on the embedded defaults.")
    parser.add_argument("--work", type=pathlib.Path, default=WORK, help=f"working folder, emptied first (default {WORK})")
    work = parser.parse_args().work.resolve()
    started = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = f"doltlite:{work / 'data.db'}"
    with MlflowServer(work / "mlflow") as server:
        env = dict(os.environ, MLOPS_DATA=data, MLFLOW_TRACKING_URI=server.url, MLOPS_CATALOG="table:adapters",
                   PYTHONUNBUFFERED="1")
        print(f"MLflow tracking server: {server.url} (store {work / 'mlflow'})")

        mlops_cmd("init-demo", "--customers", str(CUSTOMERS), env=env)
        mlops_cmd("plan", env=env)
        mlops_cmd("train", env=env)
        first = json.loads(mlops_cmd("release", "--image", IMAGE, "--format", "json", env=env, capture=True))

        change = work / "analyst-change.csv"
        rows, (intent, relabelled) = demo.analyst_change(change, mlops.DoltSource(data), CHANGED, flip=MISLABELLED)
        print(f"\nanalyst edited {rows} tickets of {', '.join(CHANGED)} in {change.name}; by mistake every "
              f"{intent!r} ticket of {MISLABELLED} became {relabelled!r}")
        mlops_cmd("sync", "tickets", str(change), "--primary-key", "id", "-m", "Relabel and add tickets",
                  "--branch", "analyst-sync", env=env)
        mlops_cmd("diff", "main..analyst-sync", "--format", "markdown", "--full-json", str(work / "diff.json"),
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
        second = json.loads(mlops_cmd("release", "--image", IMAGE, "--gate", "enforce", "--format", "json", env=env,
                                      capture=True, exit_codes=(0, EXIT_HELD_BACK)))
        held = {h["name"]: h for h in second["held_back"]}
        for h in second["held_back"]:
            print(f"held back: {h['name']} v{h['candidate_version']} (production keeps v{h['kept_version']}): "
                  + "; ".join(h["reasons"]))
        print(f"shipped: {', '.join(sorted(second['promoted']))}")
        if sorted(held) != [MISLABELLED] or sorted(second["promoted"]) != SHIPPED:
            raise SystemExit(f"demo: expected {MISLABELLED} held back and {SHIPPED} shipped, got held back "
                             f"{sorted(held)}, shipped {sorted(second['promoted'])}")
        deltas = mlops_cmd("diff-release", first["release"]["md5"], second["release"]["md5"], env=env, capture=True)
        if MISLABELLED in deltas or any(f"~ {c} 1 -> 2" not in deltas for c in SHIPPED):
            raise SystemExit(f"demo: diff-release should list {SHIPPED} with their deltas, not {MISLABELLED}")

        rolled = json.loads(mlops_cmd("rollback", "--model", CHANGED[0], "--version", "1", "--format", "json",
                                      env=env, capture=True))
        mlops_cmd("lineage", CHANGED[1], env=env)
        mlops_cmd("releases", env=env)
        context = work / "image"
        mlops_cmd("build-context", str(context), "--release", rolled["release"]["md5"], env=env)
        final = work / "image-release-2"
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
        print(f"adapters            {CUSTOMERS} (one per customer), data in {work / 'data.db'}")
        print(f"release 1           {first['release']['image']}")
        print(f"release 2           {second['release']['image']}  (retrained {', '.join(CHANGED)}; shipped "
              f"{', '.join(SHIPPED)})")
        print(f"held back           {MISLABELLED}: keeps v{held[MISLABELLED]['kept_version']} in production; "
              f"{held[MISLABELLED]['reasons'][0]}")
        print(f"after rollback      {rolled['release']['image']}  ({CHANGED[0]} back to version 1)")
        print(f"build context       {context} (docker build -t {rolled['release']['image']} {context})")
        print(f"served              {CHANGED[0]} -> {served['intent']!r}; switched release 2 -> 3 under load, "
              f"{served['failed']} failed of {served['sent']}")
        print(f"MLflow              {server.url} while running; store kept in {work / 'mlflow'}")
        print(f"                    browse later: mlflow server --backend-store-uri sqlite:///{work / 'mlflow' / 'mlflow.db'}")
        print(f"time                {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
