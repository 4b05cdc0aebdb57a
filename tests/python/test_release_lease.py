"""The release lease on a real MLflow server: a paused holder's late alias write does not stay, a holder
slower than its time-to-live keeps the lease by renewing it, and expiry follows MLflow's clock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import mlops

pytestmark = [
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.mlflow,
    pytest.mark.slow,
]

sys.path.insert(0, os.path.dirname(__file__))
from mlflow_server import FaultProxy  # noqa: E402
from test_release_race import IMAGE, own_source, production  # noqa: E402

# A release in a process of its own (so that it can be paused), printing its report or its conflict.
HOLDER = r"""
import json, sys
import mlops
data, url, prefix, ttl = sys.argv[1:5]
source = mlops.DoltSource(data)
pipe = mlops.Pipeline(source, mlops.MlflowTracker(url), mlops.CudaTrainer(device="cpu"),
                      mlops.load_catalog_table(source), experiment=prefix + "adapters",
                      releases_experiment=prefix + "releases", code_commit="c0de", record_threads=1,
                      release_lease_seconds=float(ttl))
try:
    report = pipe.release(image="registry.example.com/adapters")
    print(json.dumps({"complete": report.complete, "md5": report.md5}))
except mlops.ConflictError as e:
    print(json.dumps({"conflict": str(e)}))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from mlops.local_server import MlflowServer

    with MlflowServer(tmp_path_factory.mktemp("mlflow-lease")) as s:
        yield s


class Releases:
    """Three adapters whose v1 is released (release `first`) and whose v2 is staged, in experiments of
    their own."""

    def __init__(self, server, tmp_path, prefix: str, seed: int) -> None:
        from mlops import demo

        self.prefix = prefix
        self.data = f"doltlite:{tmp_path / 'data.db'}"
        self.source = own_source(tmp_path, prefix, customers=3, rows=20, seed=seed)
        self.url = server.url
        self.tracker = mlops.MlflowTracker(server.url)
        self.names = [prefix + demo.customer_name(i) for i in range(1, 4)]
        p = self.pipe()
        p.train(p.plan(at="main"))
        self.first = p.release(image=IMAGE)
        assert self.first.complete
        defaults = json.loads(self.source.query("SELECT config FROM adapters WHERE name = '*'").column("config")[0])
        defaults["epochs"] += 1
        self.source.execute("UPDATE adapters SET config = ? WHERE name = '*'", (json.dumps(defaults),))
        self.source.commit("Train every adapter one more epoch")
        p = self.pipe()
        p.train(p.plan(at="main"))
        assert production(self.tracker, self.names) == self.v(1)

    def v(self, n: int) -> dict:
        return {name: n for name in self.names}

    def pipe(self, **kw):
        return mlops.Pipeline(self.source, self.tracker, mlops.CudaTrainer(device="cpu"),
                              mlops.load_catalog_table(self.source), experiment=self.prefix + "adapters",
                              releases_experiment=self.prefix + "releases", code_commit="c0de", **kw)

    def holder(self, url: str, ttl: float) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
        return subprocess.Popen([sys.executable, "-c", HOLDER, self.data, url, self.prefix, str(ttl)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def lease_model(self, generation: int) -> str:
        return f"mlops.lease.{hashlib.sha256((self.prefix + 'releases').encode()).hexdigest()[:16]}.{generation}"


class HeldAliasWrite:
    """For FaultProxy(refuse=...): holds the first request that moves a production alias until `go` is set,
    then lets it through (it is never refused)."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.go = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, method: str, path: str, body: bytes) -> bool:
        if method == "POST" and path.split("?")[0].endswith("/registered-models/alias") and b'"production"' in body:
            with self.lock:
                first = not self.held.is_set()
                self.held.set()
            if first:
                self.go.wait()
        return False

    def wait_held(self, process: subprocess.Popen) -> None:
        while not self.held.wait(0.1):
            assert process.poll() is None, process.communicate()


def landed(proxy: FaultProxy) -> bool:
    with proxy.lock:
        return any(m == "POST" and p.split("?")[0].endswith("/registered-models/alias") and s == 200
                   for m, p, s in proxy.requests)


@contextlib.contextmanager
def holder_at_its_first_alias_write(r: Releases, ttl: float):
    """A release process (time-to-live `ttl` seconds) whose first production alias write the proxy holds
    until `hold.go` is set. Yields (process, hold, proxy, result); `result` gets the process's JSON line."""
    hold = HeldAliasWrite()
    result: dict = {}
    with FaultProxy(r.url, refuse=hold) as proxy:
        a = r.holder(proxy.url, ttl)
        try:
            hold.wait_held(a)
            yield a, hold, proxy, result
        finally:
            hold.go.set()
            os.kill(a.pid, signal.SIGCONT)
            out, err = a.communicate()
    assert a.returncode == 0, err
    result.update(json.loads(out))


def test_a_paused_holders_late_alias_write_does_not_stay(server, tmp_path):
    r = Releases(server, tmp_path, "paused-", seed=11)
    with holder_at_its_first_alias_write(r, ttl=5) as (a, hold, proxy, result):
        os.kill(a.pid, signal.SIGSTOP)  # paused with its write on the way: no renewal either
        rollback = r.pipe(release_wait_seconds=300).rollback(release=r.first.md5)
        assert rollback.complete
        assert production(r.tracker, r.names) == r.v(1)
        hold.go.set()  # the write lands now, after the next holder was done
        while not landed(proxy):
            time.sleep(0.05)
        assert production(r.tracker, r.names) != r.v(1)
    assert "conflict" in result, result
    assert "was undone" in result["conflict"] and "nothing is reported complete" in result["conflict"]
    assert production(r.tracker, r.names) == r.v(1)  # what the rollback released, not a mix
    states = {rel["md5"]: rel["state"] for rel in r.pipe().releases()}
    assert states[r.first.md5] == "complete"
    assert [s for md5, s in states.items() if md5 != r.first.md5] == ["recording"]


def test_a_holder_slower_than_its_time_to_live_keeps_the_lease(server, tmp_path):
    r = Releases(server, tmp_path, "slow-", seed=12)
    with holder_at_its_first_alias_write(r, ttl=6) as (a, _, _, result):
        # Busy with its first alias write for twice its time-to-live while its renewals go on.
        with pytest.raises(mlops.ConflictError, match=f":{a.pid}:"):
            r.pipe(release_wait_seconds=12).rollback(release=r.first.md5)
    assert result.get("complete") is True, result
    assert production(r.tracker, r.names) == r.v(2)


def test_expiry_follows_mlflows_clock_not_the_time_a_holder_wrote(server, tmp_path):
    r = Releases(server, tmp_path, "clock-", seed=13)

    def fake_holder(generation: int, holder: str, ttl_ms: int, expires_ms: int) -> None:
        r.tracker.call("POST", "mlflow/registered-models/create", {
            "name": r.lease_model(generation),
            "tags": [{"key": "mlops.lease.holder", "value": holder},
                     {"key": "mlops.lease.ttl_ms", "value": str(ttl_ms)},
                     {"key": "mlops.lease.expires_ms", "value": str(expires_ms)}]})

    # Its clock a day behind: the expiry it wrote has long passed, but MLflow saw it a moment ago.
    fake_holder(2, "clock-behind:1:1", ttl_ms=600_000, expires_ms=int(time.time() * 1000) - 86_400_000)
    with pytest.raises(mlops.ConflictError, match="clock-behind"):
        r.pipe(release_wait_seconds=1).release(image=IMAGE)
    r.tracker.set_registered_model_tag(r.lease_model(2), "mlops.lease.released", "1")
    # Its clock a day ahead, then it died: it is free one time-to-live after MLflow last saw it.
    fake_holder(3, "clock-ahead:1:1", ttl_ms=1_500, expires_ms=int(time.time() * 1000) + 86_400_000)
    report = r.pipe(release_wait_seconds=120).release(image=IMAGE)
    assert report.complete
    assert production(r.tracker, r.names) == r.v(2)
