"""Text in, labels out: the public featurizer, scikit-learn-style prediction in Adapter and the MLflow pyfunc,
and `mlops serve` over real HTTP, all giving the same labels for the same texts."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mlops
import mlops.pyfunc

pytestmark = [
    pytest.mark.skipif("dolt" not in mlops.components, reason="built without the dolt component"),
    pytest.mark.filterwarnings("ignore:.*Any type hint:UserWarning"),  # MLflow's own note when pyfunc loads
]

INTENTS = {
    "refund": ["I want my money back for order {}", "please refund order {} it arrived broken",
               "refund request for invoice {}", "charge {} was wrong, refund it"],
    "shipping": ["where is my parcel {}", "package {} has not arrived yet", "track shipment {} please",
                 "delivery of order {} is late"],
    "login": ["cannot log in to account {}", "password reset for user {} fails", "locked out of login {}",
              "two factor code for account {} never comes"],
}
TEXTS = ["refund order 991 please, it arrived broken", "where is parcel 12", "I cannot log in", "", "ümlaut ç 42"]


def tickets():
    rows, i = [], 0
    for intent, patterns in INTENTS.items():
        for n in range(12):
            i += 1
            rows.append((i, patterns[n % len(patterns)].format(1000 + 7 * n), intent, 1 + i % 3))
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    src = mlops.DoltSource(str(tmp / "tickets.db"), create=True)
    src.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT, intent TEXT, priority INTEGER)")
    for r in tickets():
        src.execute("INSERT INTO tickets VALUES (?, ?, ?, ?)", r)
    src.commit("tickets")
    by_intent = src.dataset("tickets", label="intent", text="body", dimension=128, seed=5)
    by_priority = src.dataset("tickets", label="priority", text="body", dimension=128, seed=5)
    trainer = mlops.CudaTrainer(device="cpu", seed=1)
    specs = [mlops.AdapterSpec(name="acme", dataset=by_intent, epochs=60, learning_rate=0.05, validation_fraction=0),
             mlops.AdapterSpec(name="prio", dataset=by_priority, epochs=5, learning_rate=0.05, validation_fraction=0)]
    acme, prio = (t.adapter for t in trainer.fit(specs))
    return {"tmp": tmp, "src": src, "ds": by_intent, "acme": acme, "prio": prio}


def test_training_and_prediction_features_are_byte_identical(world):
    ds, acme = world["ds"], world["acme"]
    bodies = [r[1] for r in sorted(tickets())]
    f = mlops.Featurizer.from_settings(acme.featurizer)
    assert (f.kind, f.dimension, f.seed, f.text) == ("hashed-word-unigram-bigram", 128, 5, "body")
    assert acme.featurizer == ds.lineage["featurizer"] == f.settings
    assert f.transform(bodies).tobytes() == np.asarray(ds.X).tobytes()
    assert acme.text_featurizer.transform(bodies).tobytes() == np.asarray(ds.X).tobytes()
    assert mlops.Featurizer(dimension=128, seed=5).transform(bodies).tobytes() == np.asarray(ds.X).tobytes()
    # Predicting from the texts is predicting from the training rows.
    assert list(acme.predict(bodies)) == list(acme.predict(np.ascontiguousarray(ds.X)))
    with pytest.raises(mlops.ConfigError):
        mlops.Featurizer(kind="bag-of-words")
    with pytest.raises(mlops.DataError, match="one string"):
        f.transform("a single string")


def test_predict_returns_labels_typed_like_the_training_labels(world):
    pd = pytest.importorskip("pandas")
    acme, prio = world["acme"], world["prio"]
    assert acme.classes == ["login", "refund", "shipping"]
    labels = acme.predict(TEXTS)
    assert labels.dtype == object and all(isinstance(x, str) for x in labels)
    assert list(labels[:3]) == ["refund", "shipping", "login"]
    assert list(acme.predict(pd.Series(TEXTS))) == list(labels)
    assert list(acme.predict(pd.DataFrame({"id": range(5), "body": TEXTS}))) == list(labels)
    assert list(acme.predict(np.array(TEXTS))) == list(labels)
    proba = acme.predict_proba(TEXTS)
    assert proba.shape == (5, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert list(np.asarray(acme.classes, dtype=object)[proba.argmax(axis=1)]) == list(labels)

    assert prio.classes == [1, 2, 3] and all(type(c) is int for c in prio.classes)
    p = prio.predict(TEXTS)
    assert p.dtype == np.int64 and set(p) <= {1, 2, 3}
    back = mlops.Adapter.from_bytes(prio.to_bytes())
    assert back.classes == [1, 2, 3] and list(back.predict(TEXTS)) == list(p)

    with pytest.raises(mlops.DataError, match="body"):
        acme.predict(pd.DataFrame({"title": TEXTS, "other": TEXTS}))
    with pytest.raises(mlops.DataError, match="row 1"):
        acme.predict(["fine", 3])
    numeric = mlops.Adapter(2, 0, ["a", "b"], np.zeros(6, np.float32))
    assert not numeric.takes_text and numeric.text_featurizer is None
    with pytest.raises(mlops.DataError, match="numeric"):
        numeric.predict(["text"])
    assert list(numeric.predict(np.zeros((2, 2), np.float32))) == ["a", "a"]


def test_pyfunc_takes_text_like_the_adapter(world, tmp_path):
    pd = pytest.importorskip("pandas")
    acme = world["acme"]
    model_dir = write_model_dir(tmp_path / "acme", acme)
    model = mlops.pyfunc.load(model_dir)
    frame = pd.DataFrame({"body": TEXTS})
    assert list(model.predict(frame)) == list(acme.predict(TEXTS))
    assert list(model.predict(TEXTS)) == list(acme.predict(TEXTS))
    assert np.array_equal(model.predict_proba(frame), acme.predict_proba(TEXTS))
    mlflow = pytest.importorskip("mlflow")
    loaded = mlflow.pyfunc.load_model(str(model_dir))
    assert list(loaded.predict(frame)) == list(acme.predict(TEXTS))


@pytest.mark.slow
def test_mlflow_models_predict_on_a_text_adapter(world, tmp_path):
    pytest.importorskip("mlflow")
    acme = world["acme"]
    model_dir = write_model_dir(tmp_path / "acme", acme)
    inp = tmp_path / "input.json"
    inp.write_text(json.dumps({"dataframe_split": {"columns": ["body"], "data": [[t] for t in TEXTS]}}))
    out = tmp_path / "out.json"
    subprocess.run([sys.executable, "-m", "mlflow", "models", "predict", "-m", str(model_dir), "-i", str(inp), "-o", str(out),
                    "-t", "json", "--env-manager", "local"], check=True, capture_output=True, timeout=300)
    got = json.loads(out.read_text())
    got = got["predictions"] if isinstance(got, dict) else got
    assert [g if isinstance(g, str) else g.get("prediction", g) for g in got] == list(acme.predict(TEXTS))


# ---- mlops serve --------------------------------------------------------------------------------------


def write_model_dir(root: pathlib.Path, adapter) -> pathlib.Path:
    """An MLflow model directory as Run.log_adapter lays it out: MLmodel naming this package's loader."""
    root.mkdir(parents=True, exist_ok=True)
    adapter.save(root / "adapter.safetensors")
    digest = hashlib.sha256((root / "adapter.safetensors").read_bytes()).hexdigest()
    (root / "MLmodel").write_text("artifact_path: model\nflavors:\n  python_function:\n"
                                  "    data: \"adapter.safetensors\"\n    loader_module: mlops.pyfunc\n"
                                  f"  mlops:\n    weights_sha256: \"{digest}\"\n")
    return root


def write_release(folder: pathlib.Path, models: dict) -> str:
    """A build-context folder: manifest.json, lineage.json and models/<name>/model/."""
    manifest = mlops.ReleaseManifest({name: v for name, (v, _) in models.items()})
    for name, (version, adapter) in models.items():
        write_model_dir(folder / "models" / name / "model", adapter)
    (folder / "manifest.json").write_text(manifest.to_json())
    (folder / "lineage.json").write_text(json.dumps(
        {name: {"version": v, "data_commit": "d" * 40, "code_commit": "c" * 40} for name, (v, _) in models.items()}))
    return manifest.md5


class Http:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body=None, headers=None):
        data = json.dumps(body) if body is not None else None
        h = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        text = r.read().decode()
        return r.status, (json.loads(text) if r.getheader("Content-Type", "").startswith("application/json") else text), r


def start_serve(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "mlops", "serve", *args, "--port", "0", "--threads", "2"],
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    m = re.search(r"serving release (\w+) .* on http://[\d.]+:(\d+)", line)
    assert m, line + proc.stderr.read() if proc.poll() is not None else line
    return proc, int(m.group(2))


def test_mlops_serve_routes_switch_and_sigterm(world, tmp_path):
    pd = pytest.importorskip("pandas")
    acme, prio = world["acme"], world["prio"]
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    md5_a = write_release(a_dir, {"acme": (1, acme), "prio": (1, prio)})
    md5_b = write_release(b_dir, {"acme": (2, acme)})
    proc, port = start_serve([str(a_dir)], {"MLOPS_ADMIN_TOKEN": "t0ken"})
    try:
        c = Http(port)
        assert c.call("GET", "/ping")[0] == 200
        assert c.call("GET", "/health")[1]["status"] == "ok"
        assert c.call("GET", "/version")[1]["release"] == md5_a
        models = c.call("GET", "/models")[1]["models"]
        assert [(m["name"], m["version"], m["data_commit"]) for m in models] == [("acme", 1, "d" * 40), ("prio", 1, "d" * 40)]

        # MLflow's scoring protocol, each body form; the same labels as Adapter.predict and the pyfunc.
        want = list(acme.predict(TEXTS))
        frame = pd.DataFrame({"body": TEXTS})
        pyfunc = mlops.pyfunc.load(a_dir / "models" / "acme" / "model")
        assert list(pyfunc.predict(frame)) == want
        for body in ({"dataframe_split": json.loads(frame.to_json(orient="split"))},
                     {"dataframe_records": frame.to_dict(orient="records")},
                     {"instances": TEXTS}, {"inputs": {"body": TEXTS}}):
            status, reply, _ = c.call("POST", "/models/acme/invocations", body)
            assert status == 200 and reply == {"predictions": want}, body
        status, reply, _ = c.call("POST", "/models/prio/invocations", {"instances": TEXTS})
        assert reply["predictions"] == [int(x) for x in prio.predict(TEXTS)]
        status, reply, _ = c.call("POST", "/invocations/batch", {"requests": [
            {"model": "acme", "instances": TEXTS[:2]}, {"model": "prio", "inputs": TEXTS[2:]}]})
        assert status == 200 and reply["responses"][0]["predictions"] == want[:2]

        # Errors: JSON with the stable id and reason, never a crash.
        for body, path, status_want, reason in [
                ("{not json", "/models/acme/invocations", 400, "malformed_json"),
                ({"instances": ["x"]}, "/models/nobody/invocations", 404, "unknown_model"),
                ({"instances": [1, 2]}, "/models/acme/invocations", 400, "not_text"),
                ({"instances": ["x"] * 10001}, "/models/acme/invocations", 400, "too_many_rows")]:
            c.conn.request("POST", path, body=body if isinstance(body, str) else json.dumps(body),
                           headers={"Content-Type": "application/json"})
            r = c.conn.getresponse()
            err = json.loads(r.read())
            assert (r.status, err["reason"]) == (status_want, reason) and err["error_id"].startswith("mlops.")
            assert err["error_code"] == ("RESOURCE_DOES_NOT_EXIST" if status_want == 404 else "BAD_REQUEST")

        metrics = c.call("GET", "/metrics")[1]
        assert 'mlops_model_requests_total{model="acme",version="1"} 7' in metrics  # 4 forms + 1 batch + 2 refused
        assert 'mlops_model_errors_total{model="acme",version="1"} 2' in metrics

        # The admin route switches (token required); rollback is the same call.
        assert c.call("POST", "/admin/release", {"release": str(b_dir)})[0] == 401
        status, reply, _ = c.call("POST", "/admin/release", {"release": str(b_dir)}, {"Authorization": "Bearer t0ken"})
        assert status == 200 and reply["release"] == md5_b and reply["previous"] == md5_a
        assert c.call("GET", "/version")[1]["release"] == md5_b
        c.call("POST", "/admin/release", {"release": str(a_dir)}, {"Authorization": "Bearer t0ken"})
        assert c.call("GET", "/version")[1]["release"] == md5_a

        # SIGHUP re-reads the folder it was started with.
        os.rename(a_dir, tmp_path / "a-old")
        write_release(a_dir, {"acme": (9, acme)})
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while c.call("GET", "/version")[1]["release"] == md5_a and time.time() < deadline:
            time.sleep(0.05)
        assert c.call("GET", "/models")[1]["models"][0]["version"] == 9
        c.conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "stopped" in proc.stderr.read()
    proc.stderr.close()


def test_mlops_serve_shadow_scores_a_candidate_off_the_response_path(world, tmp_path):
    """`mlops serve --shadow`: answers come from the served release; /shadow and /metrics count, per model,
    the rows on which the candidate's labels agree with the answers."""
    acme, prio = world["acme"], world["prio"]
    # The candidate was trained on a sheet where an analyst relabelled every shipping ticket as a refund.
    src = mlops.DoltSource(str(tmp_path / "relabelled.db"), create=True)
    src.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT, intent TEXT, priority INTEGER)")
    for i, body, intent, prio_ in tickets():
        src.execute("INSERT INTO tickets VALUES (?, ?, ?, ?)", (i, body, "refund" if intent == "shipping" else intent, prio_))
    src.commit("relabelled")
    ds = src.dataset("tickets", label="intent", text="body", dimension=128, seed=5)
    spec = mlops.AdapterSpec(name="acme", dataset=ds, epochs=60, learning_rate=0.05, validation_fraction=0)
    candidate = mlops.CudaTrainer(device="cpu", seed=1).fit([spec])[0].adapter
    texts = [t.format(n) for n, ts in enumerate(INTENTS.values()) for t in ts] + TEXTS
    agree = sum(a == b for a, b in zip(acme.predict(texts), candidate.predict(texts)))
    assert 0 < agree < len(texts), "the candidate must differ from production on some rows for this test to tell"
    prod_dir, cand_dir = tmp_path / "prod", tmp_path / "cand"
    md5_prod = write_release(prod_dir, {"acme": (1, acme), "prio": (1, prio)})
    md5_cand = write_release(cand_dir, {"acme": (2, candidate), "prio": (1, prio)})
    proc, port = start_serve([str(prod_dir), "--shadow", str(cand_dir)])
    try:
        assert f"shadow release {md5_cand}: 1 of 2 models" in proc.stderr.readline()
        c = Http(port)
        status, reply, r = c.call("POST", "/models/acme/invocations", {"instances": texts})
        assert status == 200 and reply["predictions"] == list(acme.predict(texts))
        assert r.getheader("X-Mlops-Release") == md5_prod
        assert c.call("POST", "/models/prio/invocations", {"instances": texts})[0] == 200  # same version: not shadowed
        deadline = time.time() + 20
        while (summary := c.call("GET", "/shadow")[1])["models"][0]["rows"] < len(texts) and time.time() < deadline:
            time.sleep(0.02)
        assert summary["release"] == md5_prod and summary["shadow"] == md5_cand
        assert summary["models"] == [{"model": "acme", "version": 1, "shadow_version": 2, "requests": 1,
                                      "rows": len(texts), "agree": agree, "disagree": len(texts) - agree,
                                      "agreement": agree / len(texts)}]
        metrics = c.call("GET", "/metrics")[1]
        assert (f'mlops_shadow_rows_total{{model="acme",version="1",shadow_version="2",outcome="disagree"}} '
                f'{len(texts) - agree}\n') in metrics
        c.conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc.stderr.close()


def test_mlops_serve_against_hostile_clients(world, tmp_path):
    """The real `mlops serve` process: wrong admin tokens cost no thread, silent connections at the limit do not
    lock clients out, smuggled requests are refused, swapped weights are refused with the old release serving,
    a resolver failure is a typed 4xx without a traceback, and the limits are command-line flags."""
    import socket

    acme = world["acme"]
    a_dir, swapped = tmp_path / "a", tmp_path / "swapped"
    md5_a = write_release(a_dir, {"acme": (1, acme)})
    write_release(swapped, {"acme": (2, acme)})
    world["prio"].save(swapped / "models" / "acme" / "model" / "adapter.safetensors")  # another model's weights
    proc, port = start_serve([str(a_dir), "--max-connections", "4", "--header-timeout", "30"],
                              {"MLOPS_ADMIN_TOKEN": "t0ken", "MLFLOW_TRACKING_URI": ""})
    try:
        c = Http(port)

        def threads():
            return int(re.search(r"^process_threads (\d+)", c.call("GET", "/metrics")[1], re.M).group(1))

        before = threads()
        for _ in range(200):
            assert c.call("POST", "/admin/release", {"release": str(a_dir)}, {"Authorization": "Bearer nope"})[0] == 401
        assert threads() == before

        status, reply, _ = c.call("POST", "/admin/release", {"release": str(swapped)}, {"Authorization": "bearer t0ken"})
        assert status == 422 and reply["reason"] == "integrity", reply
        status, reply, _ = c.call("POST", "/admin/release", {"release": "no-such-alias"}, {"Authorization": "Bearer t0ken"})
        assert 400 <= status < 500 and "Traceback" not in json.dumps(reply) and "site-packages" not in json.dumps(reply)
        assert reply["error_code"] in ("BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST")
        assert c.call("GET", "/version")[1]["release"] == md5_a
        assert 'mlops_release_switches_total{result="failed"} 2' in c.call("GET", "/metrics")[1]
        c.conn.close()

        # Silent connections fill every slot (and more): clients are still answered.
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        fresh = Http(port)
        assert fresh.call("GET", "/health")[0] == 200
        status, reply, _ = fresh.call("POST", "/models/acme/invocations", {"instances": TEXTS})
        assert status == 200 and reply["predictions"] == list(acme.predict(TEXTS))
        fresh.conn.close()
        for s in silent:
            s.close()

        # A Transfer-Encoding other than chunked: 400 and close; the request hidden in the body is not answered.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /models/acme/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: gzip\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert got.startswith(b"HTTP/1.1 400") and got.count(b"HTTP/1.1") == 1

        # HEAD has no body; MLflow's CSV body and /invocations (one model) work.
        h = Http(port)
        h.conn.request("HEAD", "/health")
        r = h.conn.getresponse()
        assert r.status == 200 and r.read() == b"" and int(r.getheader("Content-Length")) > 0
        h.conn.request("POST", "/invocations", body="body\n" + "\n".join(f'"{t}"' for t in TEXTS[:3]) + "\n",
                       headers={"Content-Type": "text/csv; charset=utf-8"})
        r = h.conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["predictions"] == list(acme.predict(TEXTS[:3]))
        h.conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc.stderr.close()


def test_mlops_serve_shows_its_limits_and_their_defaults():
    r = subprocess.run([sys.executable, "-m", "mlops", "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    defaults = mlops.Server.defaults()
    for flag, key in [("--header-timeout", "header_timeout"), ("--read-timeout", "read_timeout"),
                      ("--idle-timeout", "idle_timeout"), ("--max-header-bytes", "max_header_bytes"),
                      ("--max-connections", "max_connections"), ("--max-buffered-bytes", "max_buffered_bytes")]:
        assert flag in text and f"(default: {defaults[key]})" in text, flag


def test_mlops_serve_needs_a_release():
    r = subprocess.run([sys.executable, "-m", "mlops", "serve", "/no/such/release", "--port", "0"],
                       capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "MLOPS_RELEASE_DIR"})
    assert r.returncode == 4 and "does not exist" in r.stderr


def test_mlops_serve_switches_under_concurrent_load_and_each_answer_names_its_release(world, tmp_path):
    """Four clients post while the admin route switches between two releases of the same model name whose
    adapters answer differently (text labels in A, integer labels in B): no request fails, every answer
    carries the release that made it (X-Mlops-Release), and an answer sent and received with no switch under
    way comes from the release in place at the time."""
    import threading

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    md5_a = write_release(a_dir, {"acme": (1, world["acme"])})
    md5_b = write_release(b_dir, {"acme": (2, world["prio"])})
    proc, port = start_serve([str(a_dir)], {"MLOPS_ADMIN_TOKEN": "t0ken"})
    epoch = [0]  # even: no switch under way (A after an even number of switches, B after an odd one)
    stop = threading.Event()
    failures, mismatches, answered = [], [], [0]
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"instances": TEXTS[:2]})
        while not stop.is_set():
            before = epoch[0]
            try:
                conn.request("POST", "/models/acme/invocations", body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                reply = r.read()
            except OSError as e:
                failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            after = epoch[0]
            if r.status != 200:
                failures.append((r.status, reply))
                continue
            from_a = isinstance(json.loads(reply)["predictions"][0], str)
            with lock:
                answered[0] += 1
                if from_a != (r.getheader("X-Mlops-Release") == md5_a):
                    mismatches.append((from_a, r.getheader("X-Mlops-Release")))
                if before == after and before % 2 == 0 and from_a != ((before // 2) % 2 == 0):
                    mismatches.append(("epoch", before, from_a))
        conn.close()

    try:
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        admin = Http(port)
        seen = []
        for i in range(12):
            # Each release answers a few requests before the next switch: waited for, not timed.
            target = answered[0] + 4
            give_up = time.monotonic() + 60
            while answered[0] < target and not failures and time.monotonic() < give_up:
                time.sleep(0.001)
            assert answered[0] >= target, (answered[0], failures)
            epoch[0] += 1
            status, reply, _ = admin.call("POST", "/admin/release", {"release": str(b_dir if i % 2 == 0 else a_dir)},
                                          {"Authorization": "Bearer t0ken"})
            epoch[0] += 1
            assert status == 200, reply
            seen.append(reply["release"])
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert seen == [md5_b, md5_a] * 6
        assert failures == [] and mismatches == []
        admin.conn.close()
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc.stderr.close()


# ---- mlops serve from MLflow: a release by MD5 or by the production alias -----------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two releases of a small demo recorded in an MLflow server of this module's own (the second retrains
    one customer), and the environment the CLI needs to find them."""
    sys.path.insert(0, os.path.dirname(__file__))
    from mlflow_server import demo_releases

    with demo_releases(tmp_path_factory.mktemp("serve-recorded")) as recorded:
        query = recorded["source"].query("SELECT body FROM tickets ORDER BY id LIMIT 6")
        yield dict(recorded, bodies=[str(b) for b in query.to_numpy()["body"]])


@pytest.mark.mlflow
@pytest.mark.slow
def test_mlops_serve_a_recorded_release_by_alias_and_md5(recorded, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    first, second, bodies = recorded["first"], recorded["second"], recorded["bodies"]
    env = dict(recorded["env"], MLOPS_ADMIN_TOKEN="t0ken")
    cache = tmp_path / "cache"
    proc, port = start_serve(["--alias", "production", "--cache", str(cache)], env)
    try:
        c = Http(port)
        # The alias names the newest release; every model answers as MLflow's own pyfunc of that version.
        version = c.call("GET", "/version")[1]
        assert version["release"] == second.md5
        models = c.call("GET", "/models")[1]["models"]
        assert {m["name"]: m["version"] for m in models} == dict(second.manifest.items())
        assert all(m["code_commit"] == "c0de" and m["data_commit"] for m in models)
        mlflow.set_tracking_uri(recorded["url"])
        for name, v in second.manifest.items():
            want = list(mlflow.pyfunc.load_model(f"models:/{name}/{v}").predict(bodies))
            status, reply, _ = c.call("POST", f"/models/{name}/invocations", {"instances": bodies})
            assert status == 200 and reply["predictions"] == want, name

        # Rolled back in MLflow, then SIGHUP: the alias is looked up again.
        r = subprocess.run([sys.executable, "-m", "mlops", "rollback", "--release", first.md5], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 60
        while c.call("GET", "/version")[1]["release"] != first.md5 and time.time() < deadline:
            time.sleep(0.1)
        assert c.call("GET", "/version")[1]["release"] == first.md5

        # The admin route takes a release MD5 (a prefix is enough) and fetches it from MLflow.
        status, reply, _ = c.call("POST", "/admin/release", {"release": second.md5[:12]}, {"Authorization": "Bearer t0ken"})
        assert status == 200 and (reply["release"], reply["previous"]) == (second.md5, first.md5)
        assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == sorted([first.md5, second.md5])
        c.conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc.stderr.close()

    # --release MD5 serves that release; an unknown MD5 is a typed not-found error, not a traceback.
    proc, port = start_serve(["--release", first.md5, "--cache", str(cache)], env)
    try:
        c = Http(port)
        assert c.call("GET", "/version")[1]["release"] == first.md5
        c.conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc.stderr.close()
    r = subprocess.run([sys.executable, "-m", "mlops", "serve", "--release", "feedfacecafe", "--port", "0",
                        "--cache", str(cache)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and "[mlops.not_found]" in r.stderr and "Traceback" not in r.stderr
