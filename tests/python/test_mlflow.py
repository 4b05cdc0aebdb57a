"""MlflowTracker against a real MLflow server (started by a session fixture), read back through the REST
API and through MLflow's own Python client."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import subprocess
import threading
import uuid

import numpy as np
import pytest

import mlops
import mlops.pyfunc

pytestmark = [
    pytest.mark.mlflow,
    pytest.mark.skipif(not hasattr(mlops, "MlflowTracker"), reason="built without MLflow support"),
    # Importing mlflow.pyfunc warns about its own type hints; not ours to fix.
    pytest.mark.filterwarnings("ignore:.*Any type hint:UserWarning"),
]

from mlflow_server import MlflowServer, shared_server  # noqa: E402


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    return shared_server(tmp_path_factory.mktemp("mlflow-server"))


@pytest.fixture
def tracker(mlflow_server, tmp_path):
    return mlops.MlflowTracker(mlflow_server.url, spool_dir=tmp_path / "spool")


@pytest.fixture
def client(mlflow_server):
    mlflow = pytest.importorskip("mlflow")
    return mlflow.MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def write_adapter(path: pathlib.Path, d: int, classes: list[str], hidden: int = 0, featurizer: dict | None = None,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """A weights file in the trainer's safetensors layout (mlops.adapter.v1)."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    if hidden:
        t = {"W1": rng.normal(size=(d, hidden)), "b1": rng.normal(size=hidden),
             "W2": rng.normal(size=(hidden, k)), "b2": rng.normal(size=k)}
    else:
        t = {"W": rng.normal(size=(d, k)), "b": rng.normal(size=k)}
    t = {n: v.astype(np.float32) for n, v in t.items()}
    weights = np.concatenate([v.ravel() for v in t.values()])
    mlops.Adapter(d, hidden, classes, weights, featurizer=featurizer or {}, spec={"epochs": 3},
                  lineage={"data_commit": "abc"}).save(path)
    return t


def reference_predict(t: dict[str, np.ndarray], X: np.ndarray, classes: list[str]) -> np.ndarray:
    if "W1" in t:
        logits = np.maximum(X @ t["W1"] + t["b1"], 0) @ t["W2"] + t["b2"]
    else:
        logits = X @ t["W"] + t["b"]
    return np.asarray(classes, dtype=object)[np.argmax(logits, axis=1)]


def git_head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


# ---- configuration ------------------------------------------------------------------------------------

def test_configuration_errors_are_typed(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(mlops.ConfigError, match="MLFLOW_TRACKING_URI"):
        mlops.MlflowTracker()
    with pytest.raises(mlops.ConfigError, match="http"):
        mlops.MlflowTracker("ftp://127.0.0.1:1")
    with pytest.raises(mlops.ConfigError, match="INSECURE_TLS"):
        mlops.MlflowTracker("https://127.0.0.1:1", insecure_tls=True, server_cert_path="/tmp/ca.pem")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "seven")
    with pytest.raises(mlops.ConfigError, match="MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        mlops.MlflowTracker("http://127.0.0.1:1")


def test_uri_from_environment(monkeypatch, mlflow_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url + "/")
    t = mlops.MlflowTracker()
    assert t.tracking_uri == mlflow_server.url
    assert t.experiment_id(unique("env"))


def test_unreachable_server_is_a_tracking_error_without_secrets(refused_url):
    host = refused_url.split("//", 1)[1]
    t = mlops.MlflowTracker(f"http://alice:hunter2@{host}", max_retries=1, backoff_factor=0.01,
                            backoff_jitter=0, password="s3cr3t-pw", username="alice")
    with pytest.raises(mlops.TrackingError) as e:
        t.experiment_id("x")
    assert e.value.http_status == 0
    assert "hunter2" not in str(e.value) and "s3cr3t-pw" not in str(e.value)
    assert host in str(e.value)


# ---- experiments and runs -----------------------------------------------------------------------------

def test_experiment_get_or_create_is_race_safe(mlflow_server):
    name = unique("race")
    ids, errors = [], []

    def worker():
        try:
            ids.append(mlops.MlflowTracker(mlflow_server.url).experiment_id(name))
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(set(ids)) == 1


def test_run_logging_reads_back_through_mlflow(tracker, client):
    exp = unique("exp")
    with tracker.start_run(exp, run_name="first", tags={"team": "ml"}) as run:
        run.log_params({"lr": 0.001, "epochs": 10, "name": "adapter"})
        run.log_param("lr", 0.001)  # the same value again is fine
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
        run.log_metric("nan_metric", float("nan"), step=0, timestamp=1234)
        run.set_tag("stage", "test")
    assert run.ended
    r = client.get_run(run.id)
    assert r.info.status == "FINISHED"
    assert r.info.run_name == "first"
    assert r.data.params == {"lr": "0.001", "epochs": "10", "name": "adapter"}
    assert r.data.tags["team"] == "ml" and r.data.tags["stage"] == "test"
    assert r.data.tags["mlflow.runName"] == "first"
    assert r.data.tags["mlflow.user"]
    assert r.data.tags["mlflow.source.type"] == "LOCAL"
    assert r.data.tags["mlflow.source.git.commit"] == git_head()
    assert r.data.tags["mlflow.source.git.dirty"] in ("true", "false")
    hist = client.get_metric_history(run.id, "loss")
    assert sorted((m.step, m.value) for m in hist) == [(s, 1.0 / (s + 1)) for s in range(5)]
    nan = client.get_metric_history(run.id, "nan_metric")
    assert len(nan) == 1 and math.isnan(nan[0].value) and nan[0].timestamp == 1234
    # The same through the tracker's own REST reads.
    assert len(tracker.metric_history(run.id, "acc")) == 5
    assert tracker.get_run(run.id).status == "FINISHED"


def test_context_manager_marks_failed_on_exception(tracker, client):
    with pytest.raises(RuntimeError, match="boom"):
        with tracker.start_run(unique("fail")) as run:
            run.log_metric("x", 1.0)
            raise RuntimeError("boom")
    r = client.get_run(run.id)
    assert r.info.status == "FAILED"
    assert [m.value for m in client.get_metric_history(run.id, "x")] == [1.0]


def test_end_killed_and_logging_after_end_is_an_error(tracker, client):
    run = tracker.start_run(unique("kill"))
    run.end("KILLED")
    assert client.get_run(run.id).info.status == "KILLED"
    with pytest.raises(mlops.ConfigError, match="ended"):
        run.log_metric("x", 1.0)
    with pytest.raises(mlops.ConfigError, match="FINISHED"):
        tracker.start_run(unique("kill")).end("DONE")


def test_param_with_another_value_is_a_conflict(tracker):
    with tracker.start_run(unique("params")) as run:
        run.log_param("lr", "0.1")
        with pytest.raises(mlops.ConflictError, match="lr"):
            run.log_param("lr", "0.2")


def test_bad_keys_and_values_are_data_errors(tracker):
    with tracker.start_run(unique("keys")) as run:
        with pytest.raises(mlops.DataError, match="metric key"):
            run.log_metric("bad$key", 1.0)
        with pytest.raises(mlops.DataError, match="6000"):
            run.log_param("long", "x" * 6001)
        with pytest.raises(TypeError, match="number"):
            run.log_metrics({"m": "not a number"})


def test_large_logs_are_split_within_mlflow_limits(tracker, client):
    with tracker.start_run(unique("limits")) as run:
        run.log_params({f"p{i:03d}": i for i in range(250)})
        run.set_tags({f"t{i:03d}": "v" * 7000 for i in range(150)})  # ~1 MB of tags: more than one request
        for step in range(30):
            run.log_metrics({f"m{i:02d}": float(i * step) for i in range(100)}, step=step)  # 3000 points
    r = client.get_run(run.id)
    assert len(r.data.params) == 250
    assert sum(1 for k in r.data.tags if k.startswith("t")) >= 150
    assert len(r.data.metrics) == 100
    assert len(client.get_metric_history(run.id, "m42")) == 30


def test_long_metric_history_reads_back_whole(tracker):
    # More than 1 MB of JSON in one answer.
    with tracker.start_run(unique("history")) as run:
        for step in range(15000):
            run.log_metric("long", step * 0.5, step=step, timestamp=1_700_000_000_000 + step)
    points = tracker.metric_history(run.id, "long")
    assert [p["step"] for p in sorted(points, key=lambda p: p["step"])] == list(range(15000))


def test_synchronous_mode_delivers_before_returning(mlflow_server, client):
    t = mlops.MlflowTracker(mlflow_server.url, async_logging=False)
    run = t.start_run(unique("sync"))
    run.log_metric("x", 2.0, step=3)
    assert [(m.step, m.value) for m in client.get_metric_history(run.id, "x")] == [(3, 2.0)]
    run.end()


@pytest.mark.parametrize("async_logging", [True, False])
def test_held_logging_reaches_the_server_whole_at_end(mlflow_server, client, async_logging):
    t = mlops.MlflowTracker(mlflow_server.url, async_logging=async_logging)
    run = t.start_run(unique("held"))
    run.hold_logging()
    run.log_params({f"p{i:03d}": i for i in range(150)})  # more params than one request may carry
    for epoch in range(3):
        run.log_metrics({"loss": 1.0 / (epoch + 1), "acc": 0.5 + epoch / 10}, step=epoch)
    run.set_tag("stage", "recorded")
    held = client.get_run(run.id)
    assert held.data.params == {} and held.data.metrics == {}
    assert "stage" not in held.data.tags
    run.end()
    r = client.get_run(run.id)
    assert r.info.status == "FINISHED"
    assert len(r.data.params) == 150 and r.data.tags["stage"] == "recorded"
    assert [(m.step, m.value) for m in client.get_metric_history(run.id, "loss")] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]


def test_flush_sends_what_was_held_and_stops_holding(mlflow_server, client):
    t = mlops.MlflowTracker(mlflow_server.url, async_logging=False)
    run = t.start_run(unique("held"))
    run.hold_logging()
    run.log_metric("x", 1.0, step=0)
    run.flush()
    assert [m.value for m in client.get_metric_history(run.id, "x")] == [1.0]
    run.log_metric("x", 2.0, step=1)  # no longer held: delivered before returning
    assert [m.value for m in client.get_metric_history(run.id, "x")] == [1.0, 2.0]
    run.end()
    with pytest.raises(mlops.ConfigError, match="ended"):
        run.hold_logging()


def test_register_recreates_a_model_deleted_since_it_was_seen(tracker, client, tmp_path):
    weights = tmp_path / "w.safetensors"
    write_adapter(weights, d=3, classes=["0", "1"])
    name = unique("gone")
    with tracker.start_run(unique("gone")) as run:
        run.log_model_file(weights, {})
    assert tracker.register(name, run).version == 1
    assert name in [m.name for m in tracker.search_registered_models(f"name = '{name}'")]
    client.delete_registered_model(name)  # by someone else
    assert tracker.register(name, run).version == 1
    assert client.get_model_version(name, "1").run_id == run.id


def test_search_runs_follows_pages(tracker):
    exp = unique("search")
    ids = set()
    for i in range(5):
        with tracker.start_run(exp, run_name=f"r{i}") as run:
            ids.add(run.id)
    eid = tracker.experiment_id(exp)
    found = tracker.search_runs([eid], page_size=2)
    assert {r.run_id for r in found} == ids
    assert len(tracker.search_runs([eid], filter="tags.`mlflow.runName` = 'r3'")) == 1


def test_runs_read_back_typed_and_end_and_tag_by_id(tracker, client):
    exp = unique("typed")
    eid = tracker.experiment_id(exp)
    left = client.create_run(eid, run_name="left", tags={mlops.tags.FINGERPRINT: "fp"})  # a process that died
    client.log_param(left.info.run_id, "epochs", "3")
    client.log_metric(left.info.run_id, "loss", 0.5, step=0)
    client.log_metric(left.info.run_id, "loss", 0.25, step=1)
    (info,) = tracker.search_runs([eid], filter="attributes.status = 'RUNNING'")
    assert isinstance(info, mlops.RunInfo)
    assert (info.run_id, info.name, info.status, info.experiment_id) == (left.info.run_id, "left", "RUNNING", eid)
    assert info.tags[mlops.tags.FINGERPRINT] == "fp" and info.tags[mlops.tags.RUN_NAME] == "left"
    assert info.params == {"epochs": "3"} and info.metrics == {"loss": 0.25}
    assert info.start_time > 0 and info.end_time == 0

    tracker.end_run(info.run_id, "KILLED", end_time=info.start_time + 5)
    ended = tracker.get_run(info.run_id)
    assert (ended.status, ended.end_time) == ("KILLED", info.start_time + 5)
    assert client.get_run(info.run_id).info.status == "KILLED"
    with pytest.raises(mlops.ConfigError):
        tracker.end_run(info.run_id, "DONE")
    tracker.set_run_tag(info.run_id, mlops.tags.RELEASE_STATE, mlops.tags.STATE_COMPLETE)
    assert client.get_run(info.run_id).data.tags["mlops.release.state"] == "complete"
    with pytest.raises(mlops.NotFoundError):
        tracker.set_run_tag("0" * 32, "k", "v")


def test_bytes_upload_and_read_back_without_files(tracker, client, tmp_path):
    with tracker.start_run(unique("bytes")) as run:
        run.log_bytes(b"\x00\xffbinary", "blobs/raw.bin")
        run.log_bytes("text ü", "notes.txt")
    assert tracker.read_artifact(run.artifact_uri + "/blobs/raw.bin") == b"\x00\xffbinary"
    assert tracker.read_artifact(run.artifact_uri + "/notes.txt") == "text ü".encode()
    local = client.download_artifacts(run.id, "blobs/raw.bin", str(tmp_path))
    assert pathlib.Path(local).read_bytes() == b"\x00\xffbinary"
    with pytest.raises(mlops.NotFoundError):
        tracker.read_artifact(run.artifact_uri + "/absent.txt")
    with pytest.raises(TypeError):
        tracker.start_run(unique("bytes")).log_bytes(3, "x.txt")


def test_registered_models_are_typed(tracker, tmp_path):
    weights = tmp_path / "w.safetensors"
    write_adapter(weights, d=3, classes=["0", "1"])
    name = unique("typedreg")
    tracker.create_registered_model(name, tags={"owner": "team"}, description="adapters")
    with tracker.start_run(unique("typedreg")) as run:
        run.log_model_file(weights, {})
    tracker.set_alias(name, "production", tracker.register(name, run))
    model = tracker.get_registered_model(name)
    assert isinstance(model, mlops.RegisteredModel)
    assert (model.name, model.description, model.tags, model.aliases) == (name, "adapters", {"owner": "team"},
                                                                          {"production": 1})
    assert model.to_dict()["aliases"] == {"production": 1}
    with pytest.raises(mlops.NotFoundError):
        tracker.get_registered_model(name + "-absent")


def test_tag_names_come_from_the_library():
    assert mlops.tags.DATA_COMMIT == "mlops.data.commit"
    assert mlops.tags.RELEASE_MD5 == "mlops.release.md5"
    assert mlops.tags.model_sha256("model") == "mlops.model.model.sha256"


def test_errors_are_typed(tracker):
    with pytest.raises(mlops.NotFoundError):
        tracker.get_run("0" * 32)
    name = unique("dup")
    tracker.experiment_id(name)
    with pytest.raises(mlops.ConflictError):
        tracker.call("POST", "mlflow/experiments/create", {"name": name})
    with pytest.raises(mlops.TrackingError) as e:
        tracker.call("POST", "mlflow/runs/log-batch", {"metrics": [{"key": "x"}]})
    assert e.value.http_status == 400 and e.value.error_code == "INVALID_PARAMETER_VALUE"


def test_detect_source_info(monkeypatch, repo_root):
    info = mlops.detect_source_info(repo_root)
    assert info.commit == git_head()
    assert info.source_type == "LOCAL"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    monkeypatch.setenv("GITHUB_REF_NAME", "main")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example")
    monkeypatch.setenv("GITHUB_REPOSITORY", "team/adapters")
    gh = mlops.detect_source_info()
    assert (gh.commit, gh.branch, gh.repo_url, gh.source_type) == ("f" * 40, "main",
                                                                    "https://github.example/team/adapters", "JOB")
    assert gh.to_dict()["commit"] == "f" * 40


# ---- lineage ------------------------------------------------------------------------------------------

def make_dataset(rows: int = 40, d: int = 4, seed: int = 0) -> mlops.Dataset:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, d)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int32)
    lineage = {"commit": "c0ffee" * 6 + "abcd", "ref": "main", "uri": "mysql://bob:hunter2@127.0.0.1:3306/training",
               "table": "reviews", "query": "SELECT f0, f1, f2, f3, label FROM reviews WHERE tenant = ?",
               "params": ["acme"], "label": "label", "features": ["f0", "f1", "f2", "f3"]}
    return mlops.Dataset(X, y, classes=["neg", "pos"], lineage=lineage)


def test_log_dataset_records_input_and_tags(tracker, client):
    ds = make_dataset()
    with tracker.start_run(unique("data")) as run:
        run.log_dataset(ds)
    r = client.get_run(run.id)
    (inp,) = r.inputs.dataset_inputs
    assert inp.dataset.source_type == "dolt"
    assert inp.dataset.digest == ds.digest[:36] and len(inp.dataset.digest) == 36
    assert inp.dataset.name == "reviews"
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    source = json.loads(inp.dataset.source)
    assert source["commit"] == ds.lineage["commit"] and source["table"] == "reviews"
    assert source["query"] == ds.lineage["query"]
    assert "hunter2" not in inp.dataset.source and "hunter2" not in json.dumps(r.data.tags)
    tags = r.data.tags
    assert tags["mlops.data.commit"] == ds.lineage["commit"]
    assert tags["mlops.data.uri"] == "mysql://***@127.0.0.1:3306/training"
    assert tags["mlops.data.table"] == "reviews"
    assert tags["mlops.data.query_sha256"] == hashlib.sha256(ds.lineage["query"].encode()).hexdigest()



def test_runs_logging_the_same_dataset_at_once_all_record_it(tmp_path):
    """MLflow's log-inputs looks the dataset up and inserts it when missing, in two steps: runs that log the
    same data at the same moment, answered by several server workers, race to insert it, and the losers'
    first answer is an integrity error. Every run must still end with the dataset as its input."""
    mlflow = pytest.importorskip("mlflow")
    with MlflowServer(tmp_path / "mlflow", workers=4) as server:
        _log_the_same_dataset_at_once(mlops.MlflowTracker(server.url), mlflow.MlflowClient(server.url))


def _log_the_same_dataset_at_once(tracker, client):
    exp = unique("same-data")
    for rnd in range(4):
        ds = make_dataset(seed=100 + rnd)  # new data each round: every round races to create the dataset
        runs = [tracker.start_run(exp) for _ in range(12)]
        gate = threading.Barrier(len(runs))
        errors = []

        def log(run):
            gate.wait()
            try:
                run.log_dataset(ds)
            except mlops.MlopsError as e:
                errors.append(str(e))

        threads = [threading.Thread(target=log, args=(r,)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for run in runs:
            run.end()
            (inp,) = client.get_run(run.id).inputs.dataset_inputs
            assert inp.dataset.digest == ds.digest[:36]

# ---- artifacts ----------------------------------------------------------------------------------------

def test_artifacts_upload_list_download(tracker, client, tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "nested" / "b.bin").write_bytes(bytes(range(256)) * 10)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    with tracker.start_run(unique("art")) as run:
        run.log_artifacts(src, "bundle")
        run.log_artifact(big)
        run.log_artifact(src / "a.txt", "single/dir")
    listing = {a.path: a for a in run.list_artifacts()}
    assert set(listing) == {"bundle", "big.bin", "single"}
    assert listing["bundle"].is_dir and listing["big.bin"].file_size == big.stat().st_size
    assert {a.path for a in run.list_artifacts("bundle")} == {"bundle/a.txt", "bundle/nested"}
    # Read back with MLflow's client and with the tracker, file and folder.
    got = pathlib.Path(client.download_artifacts(run.id, "bundle/nested/b.bin", str(tmp_path / "mlflow-dl")))
    assert got.read_bytes() == (src / "nested" / "b.bin").read_bytes()
    folder = run.download_artifacts("bundle", tmp_path / "dl")
    assert (pathlib.Path(folder) / "a.txt").read_text() == "alpha"
    assert (pathlib.Path(folder) / "nested" / "b.bin").read_bytes() == (src / "nested" / "b.bin").read_bytes()
    big_back = pathlib.Path(tracker.download_artifacts(run.artifact_uri + "/big.bin", tmp_path / "dl2"))
    assert hashlib.sha256(big_back.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    with pytest.raises(mlops.NotFoundError):
        run.download_artifacts("missing.txt", tmp_path / "dl3")
    assert not (tmp_path / "dl3" / "missing.txt").exists()
    with pytest.raises(mlops.ConfigError):
        run.log_artifact(tmp_path / "does-not-exist.txt")
    with pytest.raises(mlops.ConfigError, match=r"\.\."):
        run.download_artifacts("../other", tmp_path / "dl4")


# ---- models, registry, aliases, lineage ---------------------------------------------------------------

@pytest.mark.parametrize("hidden", [0, 5])
def test_model_loads_through_mlflow_pyfunc_by_alias(tracker, client, tmp_path, hidden, monkeypatch, mlflow_server):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    classes = ["cat", "dog", "fox"]
    weights = tmp_path / "adapter.safetensors"
    t = write_adapter(weights, d=4, classes=classes, hidden=hidden, seed=hidden)
    ds = make_dataset()
    name = unique("model")
    with tracker.start_run(unique("models")) as run:
        run.log_params({"hidden": hidden})
        run.log_dataset(ds)
        run.log_model_file(weights, {"adapter": name, "data_commit": ds.lineage["commit"]})
        run.log_metric("val_acc", 0.5, step=0)
        run.log_metric("val_acc", 0.9, step=1)
    assert {a.path for a in run.list_artifacts("model")} == {
        "model/MLmodel", "model/adapter.safetensors", "model/requirements.txt"}
    version = tracker.register(name, run)
    assert version.status == "READY" and version.version == 1 and version.run_id == run.id
    tracker.set_alias(name, "production", version)  # a ModelVersion stands for its number
    assert tracker.get_by_alias(name, "production").version == 1

    X = np.random.default_rng(1).normal(size=(25, 4)).astype(np.float32)
    model = mlflow.pyfunc.load_model(f"models:/{name}@production")
    pred = np.asarray(model.predict(X))
    assert list(pred) == list(reference_predict(t, X, classes))
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    assert list(model.predict(frame)) == list(pred)

    local = mlops.pyfunc.load(tmp_path / "adapter.safetensors")
    proba = local.predict_proba(X)
    assert proba.shape == (25, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert list(np.asarray(classes, dtype=object)[proba.argmax(axis=1)]) == list(pred)
    with pytest.raises(mlops.DataError, match="features"):
        local.predict(X[:, :3])

    lin = tracker.lineage(name, 1)
    assert lin["run_id"] == run.id and lin["version"] == 1
    assert lin["code_commit"] == git_head()
    assert lin["data_commit"] == ds.lineage["commit"]
    assert lin["table"] == "reviews" and lin["query"] == ds.lineage["query"]
    assert lin["digest"] == ds.digest
    assert lin["params"] == {"hidden": str(hidden)}
    assert lin["metrics"]["val_acc"] == 0.9
    # The lineage rides in MLmodel's metadata, where MLflow's own model reader finds it.
    logged = mlflow.models.Model.load(run.download_artifacts("model/MLmodel", tmp_path / "lin"))
    assert logged.metadata["lineage"]["adapter"] == name
    assert logged.metadata["lineage"]["run_id"] == run.id


def test_numeric_adapter_refuses_text_input_clearly(tmp_path):
    weights = tmp_path / "numeric.safetensors"
    write_adapter(weights, d=8, classes=["a", "b"], featurizer={"kind": "columns", "dimension": 8})
    model = mlops.pyfunc.load(weights)
    with pytest.raises(mlops.DataError, match="numeric feature columns"):
        model.predict(np.array([["some text"]], dtype=object))
    assert len(model.predict(np.zeros((2, 8), dtype=np.float32))) == 2
    bad = tmp_path / "bad.safetensors"
    from safetensors.numpy import save_file

    save_file({"W": np.zeros((2, 2), np.float32)}, str(bad), metadata={"format": "other"})
    with pytest.raises(mlops.IntegrityError, match="not an mlops adapter"):
        mlops.pyfunc.load(bad)

def test_registry_aliases_tags_and_pagination(tracker, client, tmp_path):
    weights = tmp_path / "w.safetensors"
    write_adapter(weights, d=3, classes=["0", "1"])
    name = unique("reg")
    tracker.create_registered_model(name, tags={"owner": "team"}, description="adapters")
    tracker.create_registered_model(name)  # exists: fine
    versions = []
    with tracker.start_run(unique("reg")) as run:
        run.log_model_file(weights, {})
    for _ in range(5):
        versions.append(tracker.register(name, run, tags={"batch": "1"}))
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    found = tracker.search_model_versions(f"name = '{name}'", page_size=2)
    assert sorted(v.version for v in found) == [1, 2, 3, 4, 5]
    assert all(v.tags.get("batch") == "1" for v in found)

    tracker.set_alias(name, "champion", 2)
    tracker.set_alias(name, "champion", 4)  # moving an alias is one call
    assert tracker.get_by_alias(name, "champion").version == 4
    assert client.get_model_version_by_alias(name, "champion").version == "4"
    tracker.delete_alias(name, "champion")
    with pytest.raises(mlops.NotFoundError, match="champion"):
        tracker.get_by_alias(name, "champion")
    with pytest.raises(mlops.TrackingError) as e:
        tracker.set_alias(name, "latest", 1)  # reserved by MLflow
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"

    tracker.set_registered_model_tag(name, "stage", "prod")
    tracker.set_model_version_tag(name, 3, "validated", "yes")
    assert client.get_registered_model(name).tags == {"owner": "team", "stage": "prod"}
    assert client.get_model_version(name, "3").tags["validated"] == "yes"
    assert tracker.get_model_version(name, 3).tags["validated"] == "yes"
    with pytest.raises(mlops.NotFoundError):
        tracker.get_model_version(name, 99)

    prefix = unique("fam")
    for i in range(3):
        tracker.create_registered_model(f"{prefix}-{i}")
    models = tracker.search_registered_models(f"name LIKE '{prefix}-%'", page_size=2)
    assert sorted(m.name for m in models) == [f"{prefix}-{i}" for i in range(3)]


def test_the_local_servers_sqlite_store_keeps_a_write_ahead_log(mlflow_server, tracker):
    """Every worker commits to the WAL (durable, fsync'd) instead of rewriting a rollback journal; the mode
    is kept in the file, and what the server confirmed is in the store for any reader."""
    import sqlite3

    if mlflow_server.backend != "sqlite":
        pytest.skip("the shared server is not on SQLite")
    name = "wal-" + uuid.uuid4().hex[:8]
    tracker.create_registered_model(name)
    db = sqlite3.connect(mlflow_server.backend_store_uri[len("sqlite:///"):])
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT name FROM registered_models WHERE name = ?", (name,)).fetchall() == [(name,)]
    finally:
        db.close()
