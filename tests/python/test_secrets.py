"""Secrets stay secret: for passwords and tokens drawn from the whole printable range ('#', '/', '?', '@',
':' and '%' included), the secret never appears in a message, a lineage, a run tag, an MLflow dataset
input, a model artifact, the safetensors metadata, a commit message or the command line's output. Real
DoltLite, MariaDB and MLflow servers where the path needs them."""

from __future__ import annotations

import base64
import gc
import http.server
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import uuid
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import mlops

sys.path.insert(0, os.path.dirname(__file__))

dolt = pytest.mark.skipif("dolt" not in mlops.components, reason="built without the dolt component")

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
# "Qz" makes every secret a string that no message holds by chance; the rest is any printable text.
secrets_ = st.text(alphabet=PRINTABLE, min_size=6, max_size=40).map(lambda s: "Qz" + s)
TOKEN_KEYS = ["token", "access_token", "X-Amz-Signature", "X-Amz-Credential", "sig", "api_key", "password",
              "client_secret", "X-Goog-Signature"]


def hidden(secret: str, *texts: str) -> bool:
    forms = {secret, quote(secret, safe=""), quote(secret)}
    return not any(f in t for f in forms for t in texts)


def no_escapes(secret: str) -> bool:
    """A password written raw in a URI is percent-decoded: one holding %XX is a different password."""
    return re.search("%[0-9A-Fa-f]{2}", secret) is None


@settings(max_examples=400, deadline=None)
@given(secret=secrets_, key=st.sampled_from(TOKEN_KEYS), user=st.sampled_from(["u", "bob", "a.b-c"]))
def test_property_redaction_hides_passwords_and_tokens(secret, key, user):
    for uri in (f"mysql://{user}:{secret}@db.example:3306/training?branch=main",
                f"https://{user}:{secret}@h.example/x.csv",
                f"ftp://{user}:{secret}@h.example/x.csv",
                f"http://{user}:{quote(secret, safe='')}@h.example:8080/x",
                f"https://h.example/x.csv?gid=0&{key}={quote(secret, safe='')}",
                f"https://h.example/x.csv?{key}={quote(secret, safe='')}&gid=0#f",
                f"https://h.example/cb#{key}={quote(secret, safe='')}"):
        shown = mlops.redact_uri(uri)
        assert hidden(secret, shown), (uri, shown)
        assert "h.example" in shown or "db.example" in shown


@dolt
@settings(max_examples=150, deadline=None)
@given(secret=secrets_, port=st.sampled_from(["1", "notaport", "70000", ""]))
def test_property_dolt_uri_errors_never_show_the_password(secret, port):
    uri = f"mysql://bob:{secret}@127.0.0.1{':' + port if port else ''}/training?connect-timeout=1"
    try:
        src = mlops.DoltSource(uri)
    except mlops.MlopsError as e:
        assert hidden(secret, str(e), e.detail), str(e)
    else:  # something answered on the default port: what it shows is still redacted
        assert hidden(secret, src.uri, repr(src))


@pytest.mark.skipif(not hasattr(mlops, "MlflowTracker"), reason="built without MLflow support")
@settings(max_examples=100, deadline=None)
@given(secret=secrets_, key=st.sampled_from(TOKEN_KEYS))
def test_property_tracking_uri_never_shows_the_password(refused_url, secret, key):
    host = refused_url.split("//", 1)[1]
    t = mlops.MlflowTracker(f"http://alice:{secret}@{host}/?{key}={quote(secret, safe='')}", max_retries=0)
    assert hidden(secret, t.tracking_uri)
    with pytest.raises(mlops.TrackingError) as e:
        t.experiment_id("x")
    assert hidden(secret, str(e.value)) and host in str(e.value)


def test_ftp_and_other_schemes_are_not_file_paths(tmp_path):
    if "dolt" not in mlops.components:
        pytest.skip("built without the dolt component")
    src = mlops.DoltSource(f"doltlite:{tmp_path / 'd.db'}", create=True)
    for link in ("ftp://user:pw-Qz91@files.example/x.csv", "s3://bucket/x.csv?X-Amz-Signature=Qz91sig",
                 "file://other-host/x.csv"):
        with pytest.raises(mlops.ConfigError) as e:
            src.import_csv("t", link, primary_key=["id"], message="m")
        msg = str(e.value)
        assert "Qz91" not in msg and ("is not supported" in msg or "local path only" in msg), msg
    # file:///abs/path is a path.
    (tmp_path / "a b.csv").write_text("id,v\n1,x\n")
    src.import_csv("t", f"file://{quote(str(tmp_path / 'a b.csv'))}", primary_key=["id"], message="from a file URI")
    assert src.query("SELECT v FROM t").column("v")[0] == "x"


# ---- CSV links over HTTP: mlops sync --------------------------------------------------------------------

class CsvServer:
    """Serves one CSV at any path; with `auth`, only to a request with that basic-auth user and password."""

    def __init__(self, body: bytes, auth: tuple[str, str] | None = None):
        expected = None if auth is None else "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                if expected is not None and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    return subprocess.run([sys.executable, "-m", "mlops", *args], env=env, cwd=cwd, capture_output=True, text=True)


@dolt
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=secrets_, key=st.sampled_from(TOKEN_KEYS), password=secrets_)
def test_property_sync_keeps_link_secrets_out_of_history_and_output(tmp_path_factory, token, key, password):
    assume(no_escapes(password))
    tmp = tmp_path_factory.mktemp("sync")
    data = f"doltlite:{tmp / 'data.db'}"
    mlops.DoltSource(data, create=True).execute("CREATE TABLE seed (id INT PRIMARY KEY)")
    server = CsvServer(b"id,v\n1,one\n2,two\n", auth=("me", password))
    try:
        links = [f"http://127.0.0.1:{server.port}/export/x.csv?gid=0&{key}={quote(token, safe='')}",
                 f"http://me:{password}@127.0.0.1:{server.port}/export/x.csv"]
        for link in links:
            r = run_cli("sync", "t", link, "--primary-key", "id", "--data", data, "--format", "json", cwd=tmp)
            everything = r.stdout + r.stderr
            assert hidden(token, everything) and hidden(password, everything), everything
            if "token" in link or key in link:
                # Without the basic-auth password the server refuses: a typed error, nothing committed.
                assert r.returncode == 1 and "[mlops.data_source]" in r.stderr and "401" in r.stderr, r.stderr
            else:
                assert r.returncode == 0, r.stderr
                assert "Traceback" not in r.stderr
        src = mlops.DoltSource(data)
        messages = [c.message for c in src.log(limit=10)]
        assert "Sync t from x.csv" in messages
        assert hidden(token, *messages) and hidden(password, *messages)
        assert src.query("SELECT COUNT(*) AS n FROM t").column("n")[0] == 2
    finally:
        server.close()


@dolt
def test_a_message_naming_the_link_has_its_token_removed(tmp_path):
    server = CsvServer(b"id,v\n1,one\n")
    try:
        src = mlops.DoltSource(f"doltlite:{tmp_path / 'd.db'}", create=True)
        link = f"http://127.0.0.1:{server.port}/x.csv?X-Amz-Signature=Qz-sig-7781&gid=0"
        c = src.import_csv("t", link, primary_key=["id"], message=f"Import {link}")
        assert "Qz-sig-7781" not in c.message and "X-Amz-Signature=***" in c.message
        assert server.requests == ["/x.csv?X-Amz-Signature=Qz-sig-7781&gid=0"]
    finally:
        server.close()


# ---- A MySQL password through lineage, training, MLflow and the model's files ---------------------------

@pytest.fixture(scope="module")
def mariadb():
    from mariadb_server import MariaDB, available

    if "dolt" not in mlops.components or not available():
        pytest.skip("needs the dolt component and mariadbd")
    with MariaDB() as m:
        with m.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE feat (id INT PRIMARY KEY, f0 DOUBLE, f1 DOUBLE, label INT)")
            cur.executemany("INSERT INTO feat VALUES (%s, %s, %s, %s)",
                            [(i, i * 0.5, -i * 1.0, i % 2) for i in range(40)])
        yield m


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory):
    if not hasattr(mlops, "MlflowTracker"):
        pytest.skip("built without MLflow support")
    from mlflow_server import shared_server

    return shared_server(tmp_path_factory.mktemp("mlflow-secrets")).url


@pytest.mark.mysql
@pytest.mark.mlflow
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*Any type hint:UserWarning")
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=secrets_, encoded=st.booleans())
def test_property_a_password_never_reaches_lineage_tags_artifacts_or_metadata(mariadb, mlflow_url, tmp_path_factory,
                                                                             secret, encoded):
    assume(encoded or no_escapes(secret))
    mlflow = pytest.importorskip("mlflow")
    user = "u" + uuid.uuid4().hex[:10]
    with mariadb.root() as root, root.cursor() as cur:
        for host in ("127.0.0.1", "localhost"):
            cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, secret))
            cur.execute(f"GRANT ALL ON training.* TO '{user}'@'{host}'")
    written = quote(secret, safe="") if encoded else secret
    src = mlops.DoltSource(f"mysql://{user}:{written}@127.0.0.1:{mariadb.port}/training")
    ds = src.dataset("feat", label="label", features=["f0", "f1"], at=None)
    assert hidden(secret, src.uri, repr(src), json.dumps(ds.lineage))
    assert ds.lineage["uri"] == f"mysql://***@127.0.0.1:{mariadb.port}/training"
    try:
        src.dataset("missing", label="label", features=["f0"], at=None)
        raise AssertionError("expected a NotFoundError")
    except mlops.NotFoundError as e:
        message = str(e)
    assert hidden(secret, message)
    del src  # its connections go now, not when a traceback holding it is collected
    gc.collect()

    (trained,) = mlops.CudaTrainer(device="cpu", seed=0).fit(
        [mlops.AdapterSpec(name="secret-check", dataset=ds, epochs=1)])
    out = tmp_path_factory.mktemp("model")
    trained.adapter.save(str(out / "m.safetensors"))
    assert hidden(secret, (out / "m.safetensors").read_bytes().decode("latin-1"), json.dumps(trained.lineage))

    # The tracking URI carries a password too; MLflow's open server ignores it.
    tracker = mlops.MlflowTracker(mlflow_url.replace("http://", f"http://alice:{quote(secret, safe='')}@"))
    assert hidden(secret, tracker.tracking_uri)
    with tracker.start_run("secrets-" + uuid.uuid4().hex[:8]) as run:
        run.log_dataset(ds)
        run.log_adapter(trained)
    client = mlflow.MlflowClient(tracking_uri=mlflow_url)
    r = client.get_run(run.id)
    assert r.data.tags["mlops.data.uri"] == f"mysql://***@127.0.0.1:{mariadb.port}/training"
    sources = [i.dataset.source for i in r.inputs.dataset_inputs]
    assert sources and hidden(secret, json.dumps(r.data.tags), json.dumps(r.data.params), *sources)
    local = pathlib.Path(mlflow.artifacts.download_artifacts(run_id=run.id, artifact_path="",
                                                             tracking_uri=mlflow_url,
                                                             dst_path=str(tmp_path_factory.mktemp("art"))))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert any(p.name == "MLmodel" and b'"lineage"' in p.read_bytes() for p in files)
    for p in files:
        assert hidden(secret, p.read_bytes().decode("latin-1")), p
