"""The train fan-out on a real Slurm cluster: examples/slurm/submit.sh plans once, submits a job array of
train tasks (one shard each, one GPU each) and a release that waits for all of them; a failed shard holds
the release back until it is re-run alone.

The cluster is one node started by the fixture below (munged, slurmctld, slurmd as child processes),
with two GPUs that are character devices: Slurm hands them out, and ``device=auto`` must say that it
trains on the CPU. The data is ``mlops init-demo``'s, the tracking server a real MLflow server.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

import mlops
from mlops import cli

from mlflow_server import FaultProxy, shared_server  # noqa: E402
from slurm_cluster import SlurmCluster, SlurmUnavailable  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
SUBMIT = REPO / "examples" / "slurm" / "submit.sh"
CUSTOMERS = 6
SHARDS = 3
IMAGE = "registry.example.com/adapters"
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "PREEMPTED"}

needs_pipeline = pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component")


@pytest.mark.parametrize(
    "env, expected",
    [
        # `mlops submit slurm` gives the count: the array id is the shard, also in a re-run of one shard.
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "2",
          "MLOPS_SHARDS": "3"}, (2, 3)),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0",
          "MLOPS_SHARDS": "3"}, (0, 3)),
    ],
)
def test_a_rerun_task_trains_the_shard_of_its_array_id(monkeypatch, env, expected):
    for key in ("MLOPS_SHARD", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.shard_from_environment(None, None) == expected


@needs_pipeline
def test_bad_submissions_are_config_errors_before_anything_runs(tmp_path, capsys, monkeypatch, refused_url):
    assert cli.main(["submit", "slurm", "--workdir", str(tmp_path), "--rerun", "1"]) == cli.EXIT_ERROR
    assert "no chain was submitted" in capsys.readouterr().err
    monkeypatch.delenv("MLOPS_IMAGE", raising=False)
    # Checked before planning: no tracking server is asked (nothing listens at refused_url).
    assert cli.main(["submit", "slurm", "--workdir", str(tmp_path / "w"), "--tracking-uri", refused_url]) == 1
    assert "needs an image repository" in capsys.readouterr().err and not (tmp_path / "w").exists()
    assert cli.main(["submit", "slurm", "--workdir", str(tmp_path), "--image", "r", "--train-script",
                     str(tmp_path / "missing.sbatch")]) == cli.EXIT_ERROR
    assert "missing.sbatch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["submit", "slurm", "--rerun", "one"])


# ---- on a real cluster --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=2, gpus=2)
    try:
        cluster.start()
    except SlurmUnavailable as e:
        pytest.skip(f"the Slurm daemons cannot start here: {e}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory):
    """The tests' MLflow server behind a proxy that refuses to create the runs of the adapters in ``refused``."""
    refused: set[str] = set()

    def refuse(method: str, path: str, body: bytes) -> bool:
        return method == "POST" and path.endswith("/runs/create") and any(
            f'"{name}"'.encode() in body for name in refused)

    server = shared_server(tmp_path_factory.mktemp("mlflow"))
    with FaultProxy(server.url, refuse=refuse) as proxy:
        proxy.refused = refused
        yield proxy


@pytest.fixture
def world(tmp_path, mlflow, slurm, request, wheel):
    """Demo data made by `mlops init-demo`, adapters named for this test, and the environment of the chain."""
    data = f"doltlite:{tmp_path / 'data.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_", "SLURM_"))}
    env.update(slurm.env)
    env.update(PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", MLOPS_DATA=data,
               MLFLOW_TRACKING_URI=mlflow.url, MLOPS_IMAGE=IMAGE, SHARDS=str(SHARDS), WORKDIR=str(tmp_path),
               MLOPS_WHEEL=str(wheel))
    subprocess.run([sys.executable, "-m", "mlops", "init-demo", "--customers", str(CUSTOMERS), "--rows", "40"],
                   env=env, check=True, capture_output=True)
    # Model names are global in MLflow's registry: each test's adapters get a prefix of their own.
    prefix = "slurm-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:8] + "-"
    source = mlops.DoltSource(data)
    from mlops import demo

    for i in range(1, CUSTOMERS + 1):
        source.execute("UPDATE adapters SET name = ? WHERE name = ?", (prefix + demo.customer_name(i), demo.customer_name(i)))
    source.commit("Name the adapters for this test")
    names = [prefix + demo.customer_name(i) for i in range(1, CUSTOMERS + 1)]
    tracker = mlops.MlflowTracker(mlflow.url)
    pipe = mlops.Pipeline(source, tracker, mlops.CudaTrainer(device="cpu"), mlops.load_catalog_table(source))
    return {"env": env, "dir": tmp_path, "source": source, "tracker": tracker, "pipe": pipe, "names": names}


def submit(world, *args: str) -> dict:
    r = subprocess.run([str(SUBMIT), "--format", "json", *args], env=world["env"], capture_output=True, text=True,
                       cwd=world["dir"])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait(slurm, job: str, until, timeout: float = 180.0) -> list[dict]:
    """Poll ``job``'s records (one per array task) until ``until(records)``; the records."""
    deadline = time.monotonic() + timeout
    while True:
        records = slurm.jobs(job)
        if until(records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job} did not get there within {timeout} s: {records}\n"
                                 f"{slurm.log_tail('slurmctld.log')}")
        time.sleep(0.5)


def ended(records) -> bool:
    return bool(records) and all(r["JobState"] in ENDED for r in records)


def train_tasks(slurm, chain: dict) -> dict:
    """{shard: the record of its latest attempt}"""
    out = {}
    for shard, attempts in chain["attempts"].items():
        job = attempts[-1]
        out[int(shard)] = next(r for r in slurm.jobs(job.split("_")[0]) if f"{r['ArrayJobId']}_{r['ArrayTaskId']}" == job)
    return out


def versions(world) -> dict:
    return {n: world["tracker"].search_model_versions(f"name = '{n}'") for n in world["names"]}


def releases_of(world) -> list:
    return [r for r in world["pipe"].releases() if r["manifest"] and set(r["manifest"]) <= set(world["names"])]


def device_line(visible: str) -> str:
    """What a task given CUDA_VISIBLE_DEVICES=visible says about its device: the CPU, as the fake GPU is
    no GPU. Slurm numbers its GPUs from 0, so on a host with GPUs of its own (never in CI) the number
    names a real one: then the task says what device="auto" says there."""
    probe = "import mlops; t = mlops.CudaTrainer(device='auto'); print(f'[mlops] device {t.device}: {t.device_reason}')"
    host = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    if "device cpu" in host:
        return "[mlops] device cpu: using the CPU: "
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=visible)
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout.strip()


def training_runs_end(world) -> int:
    tracker = world["tracker"]
    runs = tracker.search_runs([tracker.experiment_id("mlops-adapters")])
    mine = [r for r in runs if r.name in world["names"]]
    return max(r.end_time for r in mine)


@needs_pipeline
@pytest.mark.mlflow
@pytest.mark.slow
def test_chain_trains_each_stale_adapter_once_at_the_planned_commit_then_releases(world, slurm):
    source = world["source"]
    # --dry-run plans and prints the chain; nothing is submitted.
    queued = slurm.run("squeue", "-h", "-o", "%i")
    r = subprocess.run([str(SUBMIT), "--dry-run"], env=world["env"], capture_output=True, text=True, check=True)
    assert "sbatch --parsable --array=0,1,2" in r.stdout and '--dependency=afterok:"${train%%;*}"' in r.stdout
    assert str(SUBMIT.parent / "train.sbatch") in r.stdout and str(SUBMIT.parent / "release.sbatch") in r.stdout
    # Without job scripts of its own, the chain runs this mlops on one GPU per train task.
    r = subprocess.run([sys.executable, "-m", "mlops", "submit", "slurm", "--dry-run", "--shards", "2", "--workdir",
                        str(world["dir"] / "plain")], env=world["env"], capture_output=True, text=True, check=True)
    assert "--array=0,1" in r.stdout and "--gres=gpu:1" in r.stdout and "-m mlops train --plan" in r.stdout
    assert "-m mlops release --image registry.example.com/adapters" in r.stdout
    assert slurm.run("squeue", "-h", "-o", "%i") == queued

    chain = submit(world)
    planned = source.resolve("main")
    assert chain["commit"] == planned and chain["shards"] == SHARDS and chain["indices"] == [0, 1, 2]
    assert chain["stale"] == CUSTOMERS
    # The branch moves while the chain runs: every task still trains at the planned commit.
    source.execute("UPDATE tickets SET intent = 'billing' WHERE id = 1")
    moved = source.commit("A relabel after the plan").hash
    assert moved != planned

    release = wait(slurm, chain["release_job"], ended)[0]
    tasks = train_tasks(slurm, chain)
    assert sorted(tasks) == [0, 1, 2] and all(t["JobState"] == "COMPLETED" for t in tasks.values()), tasks
    assert release["JobState"] == "COMPLETED", release

    by_name = versions(world)
    assert all(len(v) == 1 for v in by_name.values()), by_name
    for name, (v,) in by_name.items():
        assert world["tracker"].lineage(name, v.version)["data_commit"] == planned
        assert world["tracker"].get_run(v.run_id).tags["mlops.device"] == "cpu"

    (record,) = releases_of(world)
    assert record["manifest"] == {n: 1 for n in world["names"]} and record["state"] == "complete"
    assert record["time_ms"] >= training_runs_end(world)

    for shard, task in tasks.items():
        out = (world["dir"] / f"adapters-train-{task['ArrayJobId']}_{shard}.out").read_text()
        assert f"shard {shard}/{SHARDS}" in out
        # Slurm gave the task one of the (fake) GPUs; device=auto found no usable one and says so.
        gpus = out.split("GPUs ", 1)[1].split()[0]
        assert gpus in ("0", "1"), out
        assert device_line(gpus) in out, out


@needs_pipeline
@pytest.mark.mlflow
@pytest.mark.slow
def test_a_failed_shard_holds_the_release_until_it_is_rerun_alone(world, slurm, mlflow):
    victim = world["names"][1]
    mlflow.refused.add(victim)
    try:
        chain = submit(world)
        plan = mlops.Plan.from_dict(json.loads(pathlib.Path(chain["plan"]).read_text()))
        shard = next(i for i in range(SHARDS) if victim in {x.name for x in plan.shard(i, SHARDS)})
        # The release waits on a dependency that can no longer be met.
        wait(slurm, chain["release_job"], lambda r: r[0].get("Reason") == "DependencyNeverSatisfied")
        tasks = train_tasks(slurm, chain)
        assert tasks[shard]["JobState"] == "FAILED" and tasks[shard]["ExitCode"] == f"{cli.EXIT_PARTIAL}:0", tasks
        assert all(t["JobState"] == "COMPLETED" for i, t in tasks.items() if i != shard), tasks
        out = (world["dir"] / f"adapters-train-{tasks[shard]['ArrayJobId']}_{shard}.out").read_text()
        assert f"{victim}: FAILED" in out and "PERMISSION_DENIED" in out, out
        assert slurm.jobs(chain["release_job"])[0]["JobState"] == "PENDING"
        assert releases_of(world) == []
        assert versions(world)[victim] == []
    finally:
        mlflow.refused.discard(victim)

    # The tracking server is back: that shard alone runs again, and the waiting release follows it.
    again = submit(world, "--rerun", str(shard))
    assert len(again["attempts"][str(shard)]) == 2 and again["release_job"] == chain["release_job"]
    assert all(len(a) == 1 for i, a in again["attempts"].items() if i != str(shard))
    release = wait(slurm, chain["release_job"], ended)[0]
    assert train_tasks(slurm, again)[shard]["JobState"] == "COMPLETED"
    assert release["JobState"] == "COMPLETED", release

    by_name = versions(world)
    assert all(len(v) == 1 for v in by_name.values()), by_name
    (record,) = releases_of(world)
    assert record["manifest"] == {n: 1 for n in world["names"]} and record["state"] == "complete"
    assert record["time_ms"] >= training_runs_end(world)
