"""MlflowTracker under faults: a server restart in the middle of logging, injected 503/429 answers, lost
answers of creates, bad credentials, and HTTPS with a self-signed certificate."""

from __future__ import annotations

import time
import uuid

import pytest

import mlops

pytestmark = [
    pytest.mark.mlflow,
    pytest.mark.skipif(not hasattr(mlops, "MlflowTracker"), reason="built without MLflow support"),
]

from mlflow_server import FaultProxy, MlflowServer, self_signed_cert, shared_server  # noqa: E402


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    return shared_server(tmp_path_factory.mktemp("mlflow-server"))

@pytest.fixture
def own_server(tmp_path):
    """A server of the test's own, to stop and start again on the same port and store."""
    server = MlflowServer(tmp_path / "own").start()
    yield server
    server.close()


FAST = dict(max_retries=4, backoff_factor=0.05, backoff_jitter=0.0)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.mark.slow
def test_server_restart_loses_no_metric_and_duplicates_none(own_server, tmp_path):
    server = own_server
    spool = tmp_path / "spool"
    tracker = mlops.MlflowTracker(server.url, max_retries=1, backoff_factor=0.05, backoff_jitter=0,
                                  timeout=5, outage_retry_seconds=0.2, queue_capacity=500, spool_dir=spool)
    exp = unique("restart")
    run = tracker.start_run(exp, run_name="through-restart")
    steps = 300
    for step in range(100):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / steps}, step=step)
    run.flush()
    server.stop()
    # The server is gone: logging goes on, and what cannot be delivered lands in the spool file.
    for step in range(100, 200):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / steps}, step=step)
    deadline = time.monotonic() + 30
    while not list(spool.glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(spool.glob("*.jsonl")), "undelivered batches were not spooled"
    server.start()
    for step in range(200, steps):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / steps}, step=step)
    run.end()

    check = mlops.MlflowTracker(server.url)
    for key in ("loss", "acc"):
        points = check.metric_history(run.id, key)
        assert sorted(p["step"] for p in points) == list(range(steps)), key
    runs = check.search_runs([check.experiment_id(exp)])
    assert len(runs) == 1
    assert runs[0].status == "FINISHED"
    assert not list(spool.glob("*.jsonl"))  # delivered, so removed


def test_injected_503_and_429_are_retried(mlflow_server):
    for status in (503, 429):
        with FaultProxy(mlflow_server.url, fail_first=3, fail_status=status, retry_after="0") as proxy:
            tracker = mlops.MlflowTracker(proxy.url, **FAST)
            with tracker.start_run(unique("retry")) as run:
                run.log_metric("x", 1.0, step=1)
            assert proxy.statuses()[:3] == [status] * 3
            assert len(mlops.MlflowTracker(mlflow_server.url).metric_history(run.id, "x")) == 1


def test_retry_after_is_honoured(mlflow_server):
    with FaultProxy(mlflow_server.url, fail_first=1, fail_status=503, retry_after="1") as proxy:
        tracker = mlops.MlflowTracker(proxy.url, max_retries=2, backoff_factor=0.0, backoff_jitter=0.0)
        t0 = time.monotonic()
        tracker.experiment_id(unique("after"))
        assert time.monotonic() - t0 >= 0.9


def test_retries_run_out_with_a_clear_error(mlflow_server):
    with FaultProxy(mlflow_server.url, fail_first=100, fail_status=503) as proxy:
        tracker = mlops.MlflowTracker(proxy.url, max_retries=2, backoff_factor=0.0, backoff_jitter=0.0)
        with pytest.raises(mlops.TrackingError) as e:
            tracker.experiment_id(unique("out"))
        assert e.value.http_status == 503
        assert len(proxy.requests) == 3


def test_lost_create_answer_leaves_no_ghost_run(mlflow_server):
    lost = {"n": 0}

    def drop(method: str, path: str) -> bool:
        if path.endswith("/runs/create") and lost["n"] < 2:
            lost["n"] += 1
            return True
        return False

    with FaultProxy(mlflow_server.url, drop_answer=drop) as proxy:
        tracker = mlops.MlflowTracker(proxy.url, **FAST)
        exp = unique("ghost")
        run = tracker.start_run(exp, run_name="only-one")
        run.end()
    assert lost["n"] == 1  # the first answer was lost; the retry found the run instead of creating another
    direct = mlops.MlflowTracker(mlflow_server.url)
    runs = direct.search_runs([direct.experiment_id(exp)])
    assert [r.run_id for r in runs] == [run.id]


def _register_through(mlflow_server, tmp_path, drop, prefix="lostlookup"):
    """Registers a fresh run's model through a FaultProxy dropping the answers `drop` picks: (name, version or
    None, the TrackingError or None)."""
    name = unique(prefix)
    (tmp_path / "w.bin").write_bytes(b"\0" * 16)
    with FaultProxy(mlflow_server.url, drop_answer=drop) as proxy:
        tracker = mlops.MlflowTracker(proxy.url, **FAST)
        with tracker.start_run(unique(prefix)) as run:
            run.log_artifact(tmp_path / "w.bin", "model")
        try:
            return name, tracker.register(name, run), None
        except mlops.TrackingError as e:
            return name, None, e


def test_lost_register_answer_leaves_no_extra_version(mlflow_server, tmp_path):
    lost = {"n": 0}

    def drop(method: str, path: str) -> bool:
        if path.endswith("/model-versions/create") and lost["n"] < 1:
            lost["n"] += 1
            return True
        return False

    name, v, err = _register_through(mlflow_server, tmp_path, drop, "ghostmodel")
    assert err is None and v.version == 1
    assert [m.version for m in mlops.MlflowTracker(mlflow_server.url).search_model_versions(f"name = '{name}'")] == [1]


def test_bad_credentials_give_a_clear_error_without_the_secret(mlflow_server):
    with FaultProxy(mlflow_server.url, basic_auth="alice:right-pw") as proxy:
        good = mlops.MlflowTracker(proxy.url, username="alice", password="right-pw")
        assert good.experiment_id(unique("auth"))
        bad = mlops.MlflowTracker(proxy.url, username="alice", password="wrong-pw-123")
        with pytest.raises(mlops.TrackingError) as e:
            bad.experiment_id(unique("auth"))
        assert e.value.http_status == 401
        assert "credentials" in str(e.value) and "wrong-pw-123" not in str(e.value)
        token = mlops.MlflowTracker(proxy.url, token="tok-secret-xyz")
        with pytest.raises(mlops.TrackingError) as e:
            token.experiment_id(unique("auth"))
        assert e.value.http_status == 401 and "tok-secret-xyz" not in str(e.value)


def test_basic_credentials_from_environment(monkeypatch, mlflow_server):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "env-pw")
    with FaultProxy(mlflow_server.url, basic_auth="alice:env-pw") as proxy:
        assert mlops.MlflowTracker(proxy.url).experiment_id(unique("envauth"))


def test_https_self_signed_refused_by_default_accepted_with_ca(mlflow_server, tmp_path, monkeypatch):
    cert, key = self_signed_cert(tmp_path)
    with FaultProxy(mlflow_server.url, certfile=cert, keyfile=key) as proxy:
        assert proxy.url.startswith("https://")
        with pytest.raises(mlops.TrackingError) as e:
            mlops.MlflowTracker(proxy.url, max_retries=0).experiment_id(unique("tls"))
        assert e.value.http_status == 0 and "certificate" in str(e.value).lower()
        trusted = mlops.MlflowTracker(proxy.url, server_cert_path=cert)
        with trusted.start_run(unique("tls")) as run:
            run.log_metric("x", 1.0)
        assert len(trusted.metric_history(run.id, "x")) == 1
        monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
        assert mlops.MlflowTracker(proxy.url).experiment_id(unique("tls"))


@pytest.mark.slow
def test_batches_spooled_at_exit_are_delivered_by_a_later_tracker(own_server, tmp_path):
    server = own_server
    spool = tmp_path / "spool"
    tracker = mlops.MlflowTracker(server.url, max_retries=0, timeout=5, outage_retry_seconds=0.2,
                                  flush_timeout=1.0, spool_dir=spool)
    run = tracker.start_run(unique("later"))
    run.log_metric("x", 0.0, step=0)
    run.flush()
    server.stop()
    for step in range(1, 50):
        run.log_metric("x", float(step), step=step)
    with pytest.raises(mlops.TrackingError):
        run.end()  # the server stays away longer than flush_timeout: kept on disk, and said so
    assert list(spool.glob("*.jsonl"))
    server.start()
    later = mlops.MlflowTracker(server.url, spool_dir=spool)
    assert later.deliver_spooled() >= 1
    assert not list(spool.glob("*.jsonl"))
    assert sorted(p["step"] for p in later.metric_history(run.id, "x")) == list(range(50))


def test_a_lost_create_answer_and_a_failed_lookup_do_not_create_twice(mlflow_server, tmp_path):
    # The create is applied but its answer is lost, and so is the answer of the lookup that should find it:
    # the lookup is asked again instead of taking its failure for "not created".
    seen = {"create": 0, "search": 0}

    def drop(method: str, path: str) -> bool:
        for key, suffix in (("create", "/model-versions/create"), ("search", "/model-versions/search")):
            if path.split("?")[0].endswith(suffix):
                seen[key] += 1
                return seen[key] <= (1 if key == "create" else 2)
        return False

    name, v, err = _register_through(mlflow_server, tmp_path, drop)
    assert err is None and v.version == 1
    assert seen["create"] == 1 and seen["search"] == 3
    assert [m.version for m in mlops.MlflowTracker(mlflow_server.url).search_model_versions(f"name = '{name}'")] == [1]


def test_a_lookup_that_never_answers_ends_in_a_tracking_error_without_a_second_version(mlflow_server, tmp_path):
    seen = {"create": 0}

    def drop(method: str, path: str) -> bool:
        if path.split("?")[0].endswith("/model-versions/create"):
            seen["create"] += 1
            return True
        return path.split("?")[0].endswith("/model-versions/search")

    name, v, err = _register_through(mlflow_server, tmp_path, drop)
    assert v is None and "not creating it again" in str(err)
    assert seen["create"] == 1
    assert len(mlops.MlflowTracker(mlflow_server.url).search_model_versions(f"name = '{name}'")) == 1
