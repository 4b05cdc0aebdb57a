"""The pipeline end to end against real DoltLite and a real MLflow tracking server."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pathlib
import socketserver
import sys
import threading
import urllib.request

import pytest

import mlops

sys.path.insert(0, os.path.dirname(__file__))
from mariadb_server import available as mariadb_available  # noqa: E402
from mlflow_server import mlflow_on  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.mlflow,
    pytest.mark.slow,
]

CUSTOMERS = 6
IMAGE = "registry.example.com/adapters"


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory):
    with mlflow_on("sqlite", tmp_path_factory.mktemp("mlflow"), workers=2) as s:
        yield s


@pytest.fixture(scope="module")
def mariadb_server(tmp_path_factory):
    """MLflow with its store on MariaDB; started only by the tests that run on both backends."""
    with mlflow_on("mariadb", tmp_path_factory.mktemp("mlflow-mariadb"), workers=2) as s:
        yield s


@pytest.fixture
def server(request):
    """The MLflow server of the test's backend: SQLite unless parametrized with `backend`."""
    backend = getattr(request, "param", "sqlite")
    return request.getfixturevalue(f"{backend}_server")


ON_BOTH_BACKENDS = pytest.mark.parametrize("server", [
    "sqlite",
    pytest.param("mariadb", marks=[pytest.mark.mysql, pytest.mark.skipif(not mariadb_available(), reason="mariadbd is not installed")]),
], indirect=True)


@pytest.fixture
def world(tmp_path, server, request):
    """A fresh database with CUSTOMERS text adapters, and a pipeline on its own experiment names."""
    from mlops import demo

    uri = f"doltlite:{tmp_path / 'data.db'}"
    source = mlops.DoltSource(uri, create=True)
    demo.init_demo(source, customers=CUSTOMERS, rows_per_customer=40, seed=3, epochs=3)
    # Model names are global in MLflow's registry: prefix them per test so tests do not see each other.
    node = request.node.name
    prefix = node.replace("[", "-").replace("]", "")[:32] + "-" + hashlib.sha256(node.encode()).hexdigest()[:6] + "-"
    for i in range(1, CUSTOMERS + 1):
        source.execute("UPDATE adapters SET name = ? WHERE name = ?", (prefix + demo.customer_name(i), demo.customer_name(i)))
    source.commit("Prefix adapter names for this test")
    tracker = mlops.MlflowTracker(server.url)
    trainer = mlops.CudaTrainer(device="cpu", seed=0)

    def make_pipeline(tracker_uri: str | None = None, record_threads: int = 1):
        t = tracker if tracker_uri is None else mlops.MlflowTracker(tracker_uri)
        return mlops.Pipeline(source, t, trainer, mlops.load_catalog_table(source),
                              experiment=prefix + "adapters", releases_experiment=prefix + "releases",
                              code_commit="c0de", record_threads=record_threads)

    # Adapter names carry the prefix; the customers in the data do not.
    return {"source": source, "tracker": tracker, "prefix": prefix, "make": make_pipeline, "uri": uri,
            "tmp": tmp_path, "name": lambda i: prefix + demo.customer_name(i), "customer": demo.customer_name}


def upsert(source, tmp: pathlib.Path, rows, message="Analyst change"):
    from mlops import demo

    path = tmp / f"change-{abs(hash(message))}.csv"
    demo.write_csv(path, rows)
    return source.import_csv("tickets", str(path), primary_key=["id"], message=message, mode="upsert")


def tickets_of(source, customer: str):
    t = source.query("SELECT id, customer, body, intent FROM tickets WHERE customer = ? ORDER BY id", (customer,)).to_numpy()
    return list(zip(*(t[k] for k in ("id", "customer", "body", "intent"))))


def versions_of(tracker, name):
    return tracker.search_model_versions(f"name = '{name}'")


def test_plan_train_release_change_retrain_rollback(world):
    pipe, source, tracker, name = world["make"](), world["source"], world["tracker"], world["name"]
    customer = world["customer"]

    plan = pipe.plan(at="main")
    assert len(plan.items) == CUSTOMERS
    assert all(i.stale and i.reasons == ["never trained"] for i in plan.items)
    assert plan.commit == source.resolve("main") and all(i.rows == 40 for i in plan.items)

    report = pipe.train(plan)
    assert report.failed == 0
    assert sorted(i["name"] for i in report.items) == sorted(name(i) for i in range(1, CUSTOMERS + 1))
    assert all(i["status"] == "trained" and i["version"] == 1 for i in report.items)

    first = pipe.release(image=IMAGE)
    assert first.complete and first.image == f"{IMAGE}:{first.md5}"
    assert dict(first.manifest) == {name(i): 1 for i in range(1, CUSTOMERS + 1)}
    assert first.md5 == mlops.ReleaseManifest({name(i): 1 for i in range(1, CUSTOMERS + 1)}).md5
    assert tracker.get_by_alias(name(1), "production").version == 1
    assert not pipe.plan(at="main").stale()

    # An analyst relabels one ticket of customer 2 and adds one for customer 5.
    t2 = tickets_of(source, customer(2))[0]
    new_label = "billing" if t2[3] != "billing" else "shipping"
    upsert(source, world["tmp"], [(t2[0], t2[1], t2[2], new_label), (99999, customer(5), "the drone box arrived damaged", "shipping")])
    plan2 = pipe.plan(at="main")
    stale = {i.name: i for i in plan2.stale()}
    assert set(stale) == {name(2), name(5)}
    assert stale[name(2)].modified == 1 and stale[name(5)].added == 1
    assert stale[name(2)].reasons == ["data changed (+0 ~1 -0 rows)"]
    assert stale[name(2)].trained_commit == plan.commit

    # Two shards together train exactly the stale adapters, once each.
    shard_items = [{i.name for i in plan2.shard(k, 2)} for k in range(2)]
    assert shard_items[0] | shard_items[1] == set(stale) and not shard_items[0] & shard_items[1]
    reports = [pipe.train(plan2, shard=(k, 2)) for k in range(2)]
    assert sorted(i["name"] for r in reports for i in r.items) == sorted(stale)

    second = pipe.release(image=IMAGE)
    assert second.md5 != first.md5 and second.previous == first.md5
    assert second.manifest[name(2)] == 2 and second.manifest[name(1)] == 1
    assert sorted(second.moved) == sorted(stale)
    d = pipe.diff_releases(first.md5, second.md5)
    assert sorted(d.changed) == sorted([(name(2), 1, 2), (name(5), 1, 2)])

    # Lineage leads from the release back to the exact data and code.
    info = pipe.lineage(name(2), "production")
    assert info["version"] == 2
    assert json.dumps(info).count(plan2.commit) >= 1 and "c0de" in json.dumps(info)

    # Roll one model back: a new release with a new MD5, and staging no longer re-ships the withdrawn version.
    rolled = pipe.rollback(model=name(2), version=1)
    assert rolled.complete and rolled.manifest[name(2)] == 1
    assert rolled.md5 not in (first.md5, second.md5)
    assert tracker.get_by_alias(name(2), "production").version == 1
    assert pipe.release(image=IMAGE).md5 == rolled.md5

    # Restore a whole release.
    back = pipe.rollback(release=first.md5)
    assert back.complete and back.md5 == first.md5
    assert pipe.current_manifest() == first.manifest
    # Newest first, each release once: restoring the first release does not record it again.
    assert [r["md5"] for r in pipe.releases()] == [rolled.md5, second.md5, first.md5]

    # A Docker build context needs the wheel the image installs (test_image.py builds and runs one); without
    # it nothing is written.
    ctx = world["tmp"] / "image"
    with pytest.raises(mlops.ConfigError, match="does not exist"):
        pipe.write_build_context(ctx, first.md5, wheel=world["tmp"] / "mlops_dolt-0.1.0-cp311-cp311-linux_x86_64.whl")
    assert not ctx.exists()
    # Without a wheel: the release folder that `mlops serve DIR` reads, and no Dockerfile.
    assert pipe.write_build_context(ctx, first.md5) == first.image
    assert (ctx / "manifest.json").read_text() == first.manifest.to_json()
    assert list((ctx / "models" / name(3)).rglob("MLmodel"))
    assert json.loads((ctx / "lineage.json").read_text())[name(3)]["version"] == 1
    assert not (ctx / "Dockerfile").exists() and not (ctx / "wheels").exists()


def test_rows_moving_between_slices_make_both_stale(world):
    pipe, source, name = world["make"](), world["source"], world["name"]
    pipe.train(pipe.plan())
    pipe.release(image=IMAGE)
    moved = tickets_of(source, world["customer"](3))[0]
    upsert(source, world["tmp"], [(moved[0], world["customer"](4), moved[2], moved[3])], message="Reassign a ticket")
    stale = {i.name: i for i in pipe.plan().stale()}
    assert set(stale) == {name(3), name(4)}
    assert stale[name(3)].removed == 1 and stale[name(4)].added == 1


def test_hyperparameter_change_makes_one_adapter_stale(world):
    pipe, source, name = world["make"](), world["source"], world["name"]
    pipe.train(pipe.plan())
    pipe.release(image=IMAGE)
    row = source.query("SELECT config FROM adapters WHERE name = ?", (name(6),)).to_numpy()["config"][0]
    config = json.loads(row)
    config["epochs"] = 5
    source.execute("UPDATE adapters SET config = ? WHERE name = ?", (json.dumps(config), name(6)))
    source.commit("More epochs for one customer")
    pipe = world["make"]()  # the catalog is read from the new commit
    stale = pipe.plan().stale()
    assert [(i.name, i.reasons) for i in stale] == [(name(6), ["hyperparameters changed"])]


def test_rerunning_a_shard_reuses_versions_instead_of_duplicating(world):
    pipe, tracker, name = world["make"](), world["tracker"], world["name"]
    plan = pipe.plan()
    first = pipe.train(plan, shard=(0, 2))
    # As after a crash: the same shard runs again from the same plan.
    again = pipe.train(plan, shard=(0, 2))
    assert {i["name"] for i in again.items} == {i["name"] for i in first.items}
    assert all(i["status"] == "reused" for i in again.items)
    assert [i["version"] for i in again.items] == [i["version"] for i in first.items]
    for item in first.items:
        assert len(versions_of(tracker, item["name"])) == 1
    # The other shard still trains its own adapters.
    other = pipe.train(plan, shard=(1, 2))
    assert all(i["status"] == "trained" for i in other.items)


@ON_BOTH_BACKENDS
def test_threaded_recording_registers_every_adapter_once_and_reports_progress(world):
    pipe, tracker = world["make"](record_threads=4), world["tracker"]
    events = []
    report = pipe.train(pipe.plan(), progress=lambda stage, done, total: events.append((stage, done, total)))
    assert report.failed == 0 and len(report.items) == CUSTOMERS
    for item in report.items:
        versions = versions_of(tracker, item["name"])
        assert [v.version for v in versions] == [item["version"]] == [1]
        assert versions[0].status == "READY"
        assert tracker.get_by_alias(item["name"], "staging").version == 1
        run = tracker.get_run(item["run_id"])
        assert set(run.params) >= {"epochs", "learning_rate"}
        assert set(run.metrics) >= {"loss", "val_accuracy"}
        assert run.status == "FINISHED"
    stages = [e[0] for e in events]
    assert stages == sorted(stages, key=["load", "fit", "record"].index)  # in order, each stage once
    for stage, expected_total in (("load", CUSTOMERS), ("record", CUSTOMERS)):
        mine = [e for e in events if e[0] == stage]
        assert mine[-1] == (stage, expected_total, expected_total)
        assert [e[1] for e in mine] == sorted(e[1] for e in mine)
    fit = [e for e in events if e[0] == "fit"]
    assert fit and fit[-1][1] == fit[-1][2] > 0
    release = pipe.release(image=IMAGE)
    assert release.complete and sorted(release.moved) == sorted(i["name"] for i in report.items)


def test_a_failing_progress_callback_still_records_every_trained_adapter(world):
    pipe, tracker = world["make"](record_threads=2), world["tracker"]

    def progress(stage, done, total):
        if stage == "record" and done == 1:
            raise RuntimeError("progress display broke")

    plan = pipe.plan()
    with pytest.raises(RuntimeError, match="progress display broke"):
        pipe.train(plan, progress=progress)
    for item in plan.items:
        assert len(versions_of(tracker, item.name)) == 1
        assert tracker.get_by_alias(item.name, "staging").version == 1
    assert all(i["status"] == "reused" for i in pipe.train(plan).items)


def test_one_adapters_bad_data_is_reported_and_the_rest_continue(world):
    pipe, source, name = world["make"](), world["source"], world["name"]
    # Customer 1's slice has a single class: its adapter cannot train.
    rows = tickets_of(source, world["customer"](1))
    upsert(source, world["tmp"], [(r[0], r[1], r[2], "billing") for r in rows], message="One class only")
    report = pipe.train(pipe.plan())
    failed = [i for i in report.items if i["status"] == "failed"]
    assert [i["name"] for i in failed] == [name(1)]
    assert "[mlops.data]" in failed[0]["error"] and name(1) in failed[0]["error"]
    assert sum(i["status"] == "trained" for i in report.items) == CUSTOMERS - 1


class InterceptingProxy:
    """Forwards to the MLflow server. `decide(method, path)` (called one request at a time) may instead
    answer 503 ("fail"), or hold the request without answering ("hang") until close()."""

    def __init__(self, target: str, decide):
        proxy = self
        self.target, self.decide = target, decide
        self.lock = threading.Lock()
        self.hanging = threading.Event()  # set once a request is being held
        self.closing = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                with proxy.lock:
                    action = proxy.decide(self.command, self.path)
                if action == "fail":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if action == "hang":
                    proxy.hanging.set()
                    proxy.closing.wait(300)
                    self.close_connection = True
                    return
                req = urllib.request.Request(proxy.target + self.path, data=body if body else None, method=self.command)
                for k in ("Content-Type", "Authorization"):
                    if self.headers.get(k):
                        req.add_header(k, self.headers[k])
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        status, data, ctype = r.status, r.read(), r.headers.get("Content-Type", "application/json")
                except urllib.error.HTTPError as e:
                    status, data, ctype = e.code, e.read(), e.headers.get("Content-Type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _forward

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class FailingProxy(InterceptingProxy):
    """Answers 503 to alias moves after the first `allow` of them, until `healthy` is set."""

    def __init__(self, target: str, allow: int):
        self.allow, self.healthy = allow, False
        super().__init__(target, self._decide)

    def _decide(self, method: str, path: str) -> str:
        if "registered-models/alias" in path and method in ("POST", "DELETE") and not self.healthy:
            if self.allow <= 0:
                return "fail"
            self.allow -= 1
        return "forward"



@ON_BOTH_BACKENDS
@pytest.mark.parametrize("kill_at", ["model-versions/create", "registered-models/alias"])
def test_a_shard_killed_while_recording_is_completed_by_a_rerun(world, server, kill_at):
    """`mlops train` is killed (SIGKILL) while its third adapter waits on the server: after the version
    is created but before its alias is set, or before the version exists. The re-run reuses what was
    registered, ends the abandoned run KILLED, and leaves exactly one version per adapter. The killed run
    records one adapter at a time (--mlflow-threads 1), so which adapters were registered when it died is
    known; the re-run records with the default number of threads."""
    import subprocess
    import sys

    tracker, name = world["tracker"], world["name"]
    seen = []

    def decide(method, path):
        if method == "POST" and kill_at in path:
            seen.append(path)
            if len(seen) == 3:
                return "hang"
        return "forward"

    proxy = InterceptingProxy(server.url, decide)
    env = dict(os.environ, MLOPS_DATA=world["uri"], MLOPS_CATALOG="table:adapters", MLOPS_DEVICE="cpu")
    cmd = [sys.executable, "-m", "mlops", "train", "--no-progress", "--format", "json"]
    try:
        child = subprocess.Popen(cmd + ["--mlflow-threads", "1"], env=dict(env, MLFLOW_TRACKING_URI=proxy.url),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not proxy.hanging.wait(120):
            child.kill()
            pytest.fail("train never reached the third registration: " + child.communicate()[1][-2000:])
        child.kill()
        child.communicate()  # reaps it and closes the pipe
    finally:
        proxy.close()

    rerun = subprocess.run(cmd, env=dict(env, MLFLOW_TRACKING_URI=server.url), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    status = sorted(i["status"] for i in report["items"])
    # Two adapters were registered with their staging alias before the kill: the re-run's plan shows them
    # "trained, awaiting release" and leaves them out. A third registered without its alias is reused.
    staged, half_done = 2, (1 if kill_at == "registered-models/alias" else 0)
    assert status == ["reused"] * half_done + ["trained"] * (CUSTOMERS - staged - half_done)
    assert len(report["abandoned_runs"]) == (0 if kill_at == "registered-models/alias" else 1)
    for i in range(1, CUSTOMERS + 1):
        versions = versions_of(tracker, name(i))
        assert len(versions) == 1, [v.version for v in versions]
        assert tracker.get_by_alias(name(i), "staging").version == versions[0].version
        run = tracker.get_run(versions[0].run_id)  # complete: params, metrics, model, and ended
        assert run.status == "FINISHED"
        assert run.params and run.metrics
    for run_id in report["abandoned_runs"]:
        run = tracker.get_run(run_id)
        assert run.status == "KILLED"
        assert not any(v.run_id == run_id for i in range(1, CUSTOMERS + 1) for v in versions_of(tracker, name(i)))


@pytest.mark.parametrize("threads", [1, 3])
def test_release_interrupted_by_the_server_is_completed_by_a_rerun(world, monkeypatch, threads):
    pipe, tracker, name = world["make"](), world["tracker"], world["name"]
    pipe.train(pipe.plan())
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    proxy = FailingProxy(world["tracker"].tracking_uri, allow=2)
    try:
        flaky = world["make"](proxy.url, record_threads=threads)
        report = flaky.release(image=IMAGE)
        assert not report.complete
        assert len(report.moved) == 2 and len(report.pending) == CUSTOMERS - 2
        assert "503" in report.error
        for n in report.moved:
            assert tracker.get_by_alias(n, "production").version == 1
        for n in report.pending:
            with pytest.raises(mlops.NotFoundError):
                tracker.get_by_alias(n, "production")
        proxy.healthy = True
        again = flaky.release(image=IMAGE)
        assert again.complete and again.md5 == report.md5
        assert sorted(again.moved) == sorted(report.pending)
        records = flaky.releases()
        assert [r["md5"] for r in records] == [report.md5]  # one release record, not two
        assert records[0]["state"] == "complete"
    finally:
        proxy.close()


def test_cli_plan_github_matrix_and_exit_codes(world, server, tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, MLOPS_DATA=world["uri"], MLFLOW_TRACKING_URI=server.url, MLOPS_CATALOG="table:adapters")
    out = tmp_path / "gh-output"
    env["GITHUB_OUTPUT"] = str(out)
    r = subprocess.run([sys.executable, "-m", "mlops", "plan", "--format", "github-matrix", "--shards", "4",
                        "-o", str(tmp_path / "plan.json")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    matrix = json.loads(r.stdout)
    assert sum(x["adapters"] for x in matrix["include"]) == CUSTOMERS
    assert {x["shard"] for x in matrix["include"]} <= {"0/4", "1/4", "2/4", "3/4"}
    written = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert json.loads(written["matrix"]) == matrix and written["stale"] == str(CUSTOMERS)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["commit"] == written["commit"]
    # One shard of that plan, two requests to MLflow at once, with progress bars on stderr.
    shard = matrix["include"][0]["shard"]
    r = subprocess.run([sys.executable, "-m", "mlops", "train", "--mlflow-threads", "2", "--plan",
                        str(tmp_path / "plan.json"), "--shard", shard, "--format", "json"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["items"] and all(i["status"] == "trained" for i in report["items"])
    n = len(report["items"])
    # stderr is a pipe, not a terminal: a plain line per stage when it completes, not a redrawn bar.
    assert f"[mlops] loading datasets: {n}/{n} adapters" in r.stderr
    assert f"[mlops] recording in MLflow: {n}/{n} adapters" in r.stderr and "\r" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "mlops", "plan", "--mlflow-threads", "0"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--mlflow-threads" in r.stderr
    r = subprocess.run([sys.executable, "-m", "mlops", "rollback", "--release", "feedfacecafe"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 4 and "[mlops.not_found]" in r.stderr
    r = subprocess.run([sys.executable, "-m", "mlops", "plan"], env=dict(env, MLFLOW_TRACKING_URI=""),
                       capture_output=True, text=True)
    assert r.returncode == 1 and "MLFLOW_TRACKING_URI" in r.stderr


@pytest.mark.filterwarnings("ignore:.*Any type hint:UserWarning")  # MLflow's note on untyped pyfunc input
def test_run_log_adapter_gives_a_model_mlflow_loads(server, tmp_path, monkeypatch):
    import numpy as np
    import mlflow.pyfunc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int32)
    ds = mlops.Dataset(X, y, classes=["no", "yes"])
    [trained] = mlops.CudaTrainer(device="cpu").fit([mlops.AdapterSpec(name="log-adapter", dataset=ds, epochs=40, batch_size=32, learning_rate=0.05)])
    tracker = mlops.MlflowTracker(server.url)
    with tracker.start_run("log-adapter", run_name="log-adapter") as run:
        run.log_adapter(trained)
    version = tracker.register("log-adapter-model", run, "model")
    tracker.set_alias("log-adapter-model", "champion", version)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)  # not mlflow.set_tracking_uri: it outlives the test
    model = mlflow.pyfunc.load_model("models:/log-adapter-model@champion")
    labels = trained.adapter.predict(X)
    got = np.asarray(model.predict(X))
    assert list(got) == list(labels) and set(labels) == {"no", "yes"}
    assert (np.asarray(labels) == np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")).mean() > 0.9


def test_fast_slice_diff_agrees_with_the_sql_diff(world, server):
    """`customer = ?` takes the pipeline's one-diff path, `customer IN (?)` the SQL path: same answers."""
    source, customer = world["source"], world["customer"]
    prefix = world["prefix"] + "twin-"
    defaults = {"table": "tickets", "label": "intent", "text": "body", "epochs": 2,
                "featurizer": {"dimension": 64}}
    catalog = mlops.Catalog.from_dict({"defaults": defaults, "adapters": [
        {"name": prefix + f"eq-{c}", "where": "customer = ?", "params": [customer(c)]} for c in (2, 3, 4)] + [
        {"name": prefix + f"in-{c}", "where": "customer IN (?)", "params": [customer(c)]} for c in (2, 3, 4)]})
    pipe = mlops.Pipeline(source, world["tracker"], mlops.CudaTrainer(device="cpu"), catalog,
                          experiment=prefix + "a", releases_experiment=prefix + "r", code_commit="c0de")
    tr = pipe.train(pipe.plan())
    assert tr.failed == 0, [i for i in tr.to_dict()["items"] if i["status"] == "failed"]
    rel = pipe.release(image=IMAGE)
    assert rel.complete, rel.to_dict()
    t2, t3 = tickets_of(source, customer(2)), tickets_of(source, customer(3))
    upsert(source, world["tmp"], [
        (t2[0][0], t2[0][1], t2[0][2] + " again", t2[0][3]),   # modified inside slice 2
        (t3[0][0], customer(4), t3[0][2], t3[0][3]),            # moved from slice 3 to slice 4
        (88888, customer(4), "new ticket", t3[0][3]),           # added to slice 4
    ], message="Mixed change")
    items = {i.name: i for i in pipe.plan().items}
    for c, expected in ((2, (0, 1, 0)), (3, (0, 0, 1)), (4, (2, 0, 0))):
        fast, sql = items[prefix + f"eq-{c}"], items[prefix + f"in-{c}"]
        assert (fast.added, fast.modified, fast.removed) == expected
        assert (sql.added, sql.modified, sql.removed) == expected
        assert fast.rows == sql.rows == len(tickets_of(source, customer(c)))
