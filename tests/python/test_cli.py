"""The command line as a user meets it: usage errors exit 2, help shows each command's own options and their
defaults, init-demo leaves existing data alone, an unreachable MLflow server is reported within seconds, and
plan/train/release print what a reader needs (a table with a header, a summary, the image from MLOPS_IMAGE)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import pytest

import mlops

pipeline = pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component")

SETTINGS = ("MLOPS_SHARD", "MLOPS_SHARDS", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
            "SLURM_ARRAY_TASK_MIN", "MLFLOW_TRACKING_URI", "MLOPS_DATA", "MLOPS_CATALOG", "MLOPS_DEVICE", "MLOPS_IMAGE",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


def cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(extra)
    return env


def run_cli(*args, env=None, cwd=None, timeout=300):
    r = subprocess.run([sys.executable, "-m", "mlops", *args], env=env or cli_env(), cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- usage and help ---------------------------------------------------------------------------------


@pipeline
@pytest.mark.parametrize("args, says", [
    (["train", "--shard", "2/1"], "--shard"),
    (["train", "--shard", "one"], "--shard"),
    (["plan", "--format", "markdown"], "--against"),
    (["diff", "main"], "FROM..TO"),
    (["release"], "MLOPS_IMAGE"),
])
def test_usage_errors_exit_2_and_name_the_option(tmp_path, args, says):
    r = run_cli(*args, "--data", f"doltlite:{tmp_path / 'x.db'}", cwd=tmp_path)
    assert r.returncode == 2, r
    assert says in r.stderr
    assert list(tmp_path.iterdir()) == []


@pipeline
def test_help_shows_defaults_and_only_the_options_a_command_uses():
    def help_of(command):
        r = run_cli(command, "--help")
        assert r.returncode == 0, r.stderr
        return " ".join(r.stdout.split())

    train = help_of("train")
    assert "(default: auto)" in train and "(default: doltlite:mlops.db)" in train and "--mlflow-threads" in train
    for command in ("plan", "lineage", "releases", "serve"):
        text = help_of(command)
        assert "--device" not in text and "--mlflow-threads" not in text, command
        assert "(default: doltlite:mlops.db)" in text and "(default: table:adapters)" in text, command
    for command in ("init-demo", "sync", "merge"):
        text = help_of(command)
        assert "--catalog" not in text and "--tracking-uri" not in text and "--device" not in text, command
    assert "(default: 60)" in help_of("init-demo") and "--force" in help_of("init-demo")
    assert "(default: 5000)" in help_of("mlflow-server")


@pipeline
def test_help_never_shows_a_password_from_the_environment():
    r = run_cli("plan", "--help", env=cli_env(MLOPS_DATA="mysql://ci:s3cret-pw@db:3306/training"))
    assert r.returncode == 0 and "s3cret-pw" not in r.stdout and "mysql://" in r.stdout


def test_local_server_is_an_attribute_of_the_package():
    r = subprocess.run([sys.executable, "-c", "import mlops; print(mlops.local_server.MlflowServer.__name__)"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "MlflowServer", r.stderr


# ---- init-demo ---------------------------------------------------------------------------------------


@pipeline
def test_init_demo_on_existing_data_says_so_and_force_replaces_it(tmp_path):
    data = f"doltlite:{tmp_path / 'demo.db'}"
    first = run_cli("init-demo", "--customers", "3", "--rows", "10", "--data", data)
    assert first.returncode == 0, first.stderr
    head = mlops.DoltSource(data).head().hash

    again = run_cli("init-demo", "--customers", "2", "--rows", "10", "--data", data)
    assert again.returncode == 1
    assert "already holds demo tables" in again.stderr and "tickets (30 rows)" in again.stderr
    assert "--force" in again.stderr and "UNIQUE" not in again.stderr
    assert mlops.DoltSource(data).head().hash == head  # nothing changed

    forced = run_cli("init-demo", "--customers", "2", "--rows", "10", "--data", data, "--force")
    assert forced.returncode == 0, forced.stderr
    src = mlops.DoltSource(data)
    assert src.head().hash != head
    counts = src.query("SELECT (SELECT COUNT(*) FROM tickets) AS t, (SELECT COUNT(*) FROM adapters) AS a").to_numpy()
    assert (int(counts["t"][0]), int(counts["a"][0])) == (20, 3)  # 2 customers and the '*' defaults row


# ---- an MLflow server that answers nothing ---------------------------------------------------------------


@pipeline
def test_an_unreachable_mlflow_server_shows_within_2_s_and_gives_up_within_30_s(tmp_path):
    data = f"doltlite:{tmp_path / 'd.db'}"
    assert run_cli("init-demo", "--customers", "2", "--rows", "10", "--data", data).returncode == 0
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    first_retry = None
    lines = []
    with subprocess.Popen([sys.executable, "-m", "mlops", "plan", "--data", data, "--tracking-uri", url],
                          env=cli_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as p:
        for line in p.stderr:
            lines.append(line)
            if first_retry is None and "retry 1" in line:
                first_retry = time.monotonic() - start
        code = p.wait(timeout=60)
    took = time.monotonic() - start
    text = "".join(lines)
    assert first_retry is not None and first_retry < 2 + 2, text  # the interpreter's start is part of it
    assert url in text and "no answer" in text
    assert code == 1 and took < 30, (code, took, text)
    assert text.count("retry ") >= 2  # it did retry, and said so each time

    # MLflow's own settings rule when given: one retry, then the error.
    start = time.monotonic()
    r = run_cli("plan", "--data", data, "--tracking-uri", url,
                env=cli_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0.1"))
    assert r.returncode == 1 and "after 2 attempt(s)" in r.stderr and time.monotonic() - start < 15, r.stderr
    assert r.stderr.count("retry ") == 1


# ---- plan, train and release against a real MLflow server --------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    from mlflow_server import mlflow_on

    with mlflow_on("sqlite", tmp_path_factory.mktemp("mlflow-cli")) as server:
        yield server


def demo_data(path: pathlib.Path, prefix: str, customers: int = 3, seed: int = 2) -> str:
    """Demo data whose adapters are named PREFIX + customer (model names are global in MLflow)."""
    from mlops import demo

    data = f"doltlite:{path}"
    src = mlops.DoltSource(data, create=True)
    demo.init_demo(src, customers=customers, rows_per_customer=30, seed=seed, epochs=2)
    for i in range(1, customers + 1):
        src.execute("UPDATE adapters SET name = ? WHERE name = ?", (prefix + demo.customer_name(i), demo.customer_name(i)))
    src.commit("Prefix the adapter names")
    return data


def prefix_of(request) -> str:
    return "cli-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:8] + "-"


@pipeline
@pytest.mark.mlflow
def test_plan_table_train_summary_and_release_image_from_the_environment(mlflow_server, tmp_path, request):
    prefix = prefix_of(request)
    data = demo_data(tmp_path / "data.db", prefix)
    env = cli_env(MLOPS_DATA=data, MLFLOW_TRACKING_URI=mlflow_server.url, MLOPS_DEVICE="cpu",
                  MLOPS_IMAGE="registry.example.com/cli-adapters")

    r = run_cli("plan", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "3 adapters of 3 stale" in lines[0]
    assert lines[1].split()[:5] == ["ADAPTER", "STATE", "PRODUCTION", "STAGED", "WHY"]
    assert all(re.match(rf"{prefix}customer-00\d\s+stale\s+none\s+never trained$", line) for line in lines[2:]), lines

    r = run_cli("train", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("shard 0/1: 3 trained, 0 reused, 0 failed of 3 adapters")
    assert prefix not in r.stdout  # a summary, not a line per adapter

    r = run_cli("plan", env=env)
    assert "0 adapters of 3 stale, 3 trained, awaiting release" in r.stdout, r.stdout
    assert len(re.findall(r"trained, awaiting release\s+none\s+v1\s+never released$", r.stdout, re.M)) == 3, r.stdout

    r = run_cli("train", "-v", "--no-progress", env=env)  # nothing stale: nothing to do, said as much
    assert r.returncode == 0 and "0 trained, 0 reused, 0 failed of 0 adapters" in r.stdout, r.stdout

    r = run_cli("release", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("registry.example.com/cli-adapters:")
    image = r.stdout.strip()
    # The release folder `mlops serve --alias/--release` fetches names its image (its /version answer).
    source = mlops.DoltSource(data)
    pipe = mlops.Pipeline(source, mlops.MlflowTracker(mlflow_server.url), mlops.CudaTrainer(device="cpu"),
                          mlops.load_catalog_table(source))
    assert pipe.write_build_context(tmp_path / "release", image.rsplit(":", 1)[1]) == image
    assert mlops.Release.load(str(tmp_path / "release")).image == image
    r = run_cli("releases", env=env)
    assert re.search(r"^[0-9a-f]{32}  complete\s+3 models  registry\.example\.com/cli-adapters:", r.stdout, re.M), r.stdout
    r = run_cli("plan", env=env)
    assert "0 adapters of 3 stale" in r.stdout and "awaiting" not in r.stdout
    assert r.stdout.count("up to date") == 3

    # -v: a line per adapter.
    src = mlops.DoltSource(data)
    src.execute("UPDATE tickets SET body = body || ' please' WHERE customer = 'customer-001'")
    src.commit("Touch customer 1")
    r = run_cli("train", "-v", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^  {prefix}customer-001: trained v2 val_accuracy=\d\.\d+$", r.stdout, re.M), r.stdout


@pipeline
@pytest.mark.mlflow
def test_plan_names_the_other_data_source_a_version_came_from(mlflow_server, tmp_path, request):
    prefix = prefix_of(request)
    first = demo_data(tmp_path / "first.db", prefix, customers=2)
    tracker = mlops.MlflowTracker(mlflow_server.url)
    pipe = mlops.Pipeline(mlops.DoltSource(first), tracker, mlops.CudaTrainer(device="cpu"),
                          mlops.load_catalog_table(mlops.DoltSource(first)), code_commit="c0de")
    pipe.train(pipe.plan(at="main"))
    assert pipe.release(image="r.example/x").complete

    second = demo_data(tmp_path / "second.db", prefix, customers=2, seed=9)  # the same adapter names, other rows
    other = mlops.DoltSource(second)
    plan = mlops.Pipeline(other, tracker, mlops.CudaTrainer(device="cpu"), mlops.load_catalog_table(other),
                          code_commit="c0de").plan(at="main")
    for item in plan.items:
        assert item.stale
        assert any("trained on another data source" in r and "first.db" in r for r in item.reasons), item.reasons


@pipeline
@pytest.mark.mlflow
def test_train_report_and_plan_items_print_usefully(mlflow_server, tmp_path, request):
    prefix = prefix_of(request)
    source = mlops.DoltSource(demo_data(tmp_path / "data.db", prefix, customers=2))
    pipe = mlops.Pipeline(source, mlops.MlflowTracker(mlflow_server.url), mlops.CudaTrainer(device="cpu"),
                          mlops.load_catalog_table(source), code_commit="c0de")
    plan = pipe.plan(at="main")
    assert repr(plan.items[0]) == f"PlanItem(name='{prefix}customer-001', state='stale', production_version=0)"
    report = pipe.train(plan)
    assert re.fullmatch(r"TrainReport\(commit='[0-9a-z]{12}', shard=0/1, trained=2, reused=0, failed=0, "
                        r"load=\d+\.\ds, fit=\d+\.\ds, record=\d+\.\ds\)", repr(report)), repr(report)
    waiting = pipe.plan(at="main").items[0]
    assert waiting.awaiting_release and waiting.staging_version == 1 and not waiting.stale
    assert "state='awaiting release'" in repr(waiting) and "staging_version=1" in repr(waiting)
    assert repr(mlops.MlflowTracker(mlflow_server.url)) == f"MlflowTracker('{mlflow_server.url}')"


# ---- mlops mlflow-server ---------------------------------------------------------------------------------


@pytest.mark.mlflow
def test_mlflow_server_in_the_foreground_answers_until_stopped(tmp_path):
    import signal
    import urllib.request

    pytest.importorskip("mlflow")
    with subprocess.Popen([sys.executable, "-m", "mlops", "mlflow-server", "--port", "0", "--dir", str(tmp_path / "m")],
                          env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        try:
            url = p.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url + p.stderr.read()
            with urllib.request.urlopen(url + "/health", timeout=10) as r:
                assert r.status == 200
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=60) == 0
        finally:
            p.kill()
        assert "export MLFLOW_TRACKING_URI=" + url in p.stderr.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/health", timeout=5)
    r = run_cli("mlflow-server", "--dir", str(tmp_path / "m"), "--stop")
    assert r.returncode == 0 and "no MLflow server" in r.stderr
