"""The command line's promises on a real MLflow server: what train, release, lineage, releases and diff-release
print when they work; exit codes 5 (some adapters failed), 6 (release incomplete) and 130 (interrupted);
MLOPS_MLFLOW_THREADS; release --build-context; progress bars on a terminal and plain lines elsewhere."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pathlib
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios

import pytest

import mlops

pytestmark = [
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.mlflow,
]

sys.path.insert(0, os.path.dirname(__file__))
from mlflow_server import FaultProxy  # noqa: E402

IMAGE = "registry.example.com/adapters"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of this module's own: `mlops releases` lists every release in its experiment."""
    from mlops.local_server import MlflowServer

    with MlflowServer(tmp_path_factory.mktemp("mlflow-cli")) as s:
        yield s


def own_data(tmp_path: pathlib.Path, prefix: str, customers: int = 3, rows: int = 20) -> tuple[str, list[str]]:
    """A DoltLite demo database whose adapter names start with `prefix` (model names are global in MLflow)."""
    from mlops import demo

    uri = f"doltlite:{tmp_path / 'data.db'}"
    source = mlops.DoltSource(uri, create=True)
    demo.init_demo(source, customers=customers, rows_per_customer=rows, seed=3, epochs=1)
    names = []
    for i in range(1, customers + 1):
        names.append(prefix + demo.customer_name(i))
        source.execute("UPDATE adapters SET name = ? WHERE name = ?", (names[-1], demo.customer_name(i)))
    source.commit("Own names")
    return uri, names


def set_default_epochs(data: str, epochs: int) -> None:
    source = mlops.DoltSource(data)
    defaults = json.loads(source.query("SELECT config FROM adapters WHERE name = '*'").column("config")[0])
    defaults["epochs"] = epochs
    source.execute("UPDATE adapters SET config = ? WHERE name = '*'", (json.dumps(defaults),))
    source.commit(f"Train every adapter {epochs} epochs")


def environment(data: str, tracking_uri: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    env.update(MLOPS_DATA=data, MLFLOW_TRACKING_URI=tracking_uri, MLOPS_CATALOG="table:adapters", MLOPS_DEVICE="cpu",
               **extra)
    return env


def cli(env: dict, *args: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "mlops", *args], env=env, capture_output=True, text=True, **kw)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def canonical_md5(manifest: dict) -> str:
    """The release id as DESIGN.md defines it, computed here without the library."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.md5(text.encode()).hexdigest()


def test_success_output_of_train_release_lineage_releases_and_diff_release(server, tmp_path):
    data, names = own_data(tmp_path, "out-")
    env = environment(data, server.url)
    r = cli(env, "train", "--no-progress", "-v")
    assert r.returncode == 0, r.stderr
    for name in names:
        assert re.search(rf"^  {name}: trained v1 val_accuracy=\d\.\d{{3}}$", r.stdout, re.M), r.stdout
    assert re.search(r"^shard 0/1: 3 trained, 0 reused, 0 failed of 3 adapters; val_accuracy min ", r.stdout.splitlines()[-1])

    first = canonical_md5({n: 1 for n in names})
    r = cli(env, "release", "--image", IMAGE)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{IMAGE}:{first}\n"
    assert f"release {first}: moved 3 alias(es)" in r.stderr

    source = mlops.DoltSource(data)
    row = source.query("SELECT config FROM adapters WHERE name = ?", (names[1],)).column("config")[0]
    config = json.loads(row)
    config["epochs"] = 2
    source.execute("UPDATE adapters SET config = ? WHERE name = ?", (json.dumps(config), names[1]))
    data_commit = source.commit("One more epoch for one adapter").hash
    r = cli(env, "train", "--no-progress")
    assert r.returncode == 0 and r.stdout.startswith("shard 0/1: 1 trained, 0 reused, 0 failed of 1 adapter;"), r.stdout + r.stderr
    second = canonical_md5({names[0]: 1, names[1]: 2, names[2]: 1})
    r = cli(env, "release", "--image", IMAGE)
    assert r.returncode == 0 and r.stdout == f"{IMAGE}:{second}\n", r.stdout + r.stderr

    # releases: newest first, one line each with the model count and the image.
    r = cli(env, "releases")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2, r.stdout
    for line, md5 in zip(lines, (second, first)):
        assert re.fullmatch(rf"{md5}  \S+\s+3 models  {re.escape(IMAGE)}:{md5}", line), line
    as_json = json.loads(cli(env, "releases", "--format", "json").stdout)
    assert [x["md5"] for x in as_json] == [second, first]
    assert as_json[0]["manifest"] == {names[0]: 1, names[1]: 2, names[2]: 1}

    r = cli(env, "diff-release", first, second)
    assert r.returncode == 0 and r.stdout.startswith(f"~ {names[1]} 1 -> 2  (gate pass)\n"), r.stdout + r.stderr
    assert re.search(r"^    new data \w{12}, n=\d+: accuracy \d\.\d{3} -> \d\.\d{3} ", r.stdout, re.M), r.stdout
    d = json.loads(cli(env, "diff-release", first, second, "--format", "json").stdout)
    assert (d["from"], d["to"], d["added"], d["removed"], list(d["changed"])) == (first, second, {}, {}, [names[1]])
    assert (d["changed"][names[1]]["old_version"], d["changed"][names[1]]["new_version"]) == (1, 2)
    assert cli(env, "diff-release", second, second).stdout == "no changes\n"

    # lineage: one "key: value" line per field, sorted, leading back to the data commit that trained it.
    r = cli(env, "lineage", names[1])
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert list(fields) == sorted(fields)
    assert fields["version"] == "2"
    assert data_commit in r.stdout
    info = json.loads(cli(env, "lineage", names[1], "1", "--format", "json").stdout)
    assert info["version"] == 1 and data_commit not in json.dumps(info)


def test_exit_5_when_an_adapter_cannot_be_recorded(server, tmp_path):
    data, names = own_data(tmp_path, "partial-")
    victim = names[1]

    def refuse(method: str, path: str, body: bytes) -> bool:
        return method == "POST" and path.endswith("/runs/create") and f'"{victim}"'.encode() in body

    with FaultProxy(server.url, refuse=refuse) as proxy:
        r = cli(environment(data, proxy.url), "train", "--no-progress")
    assert r.returncode == 5, r.stdout + r.stderr
    assert re.search(rf"^  {victim}: FAILED ", r.stdout, re.M), r.stdout
    assert r.stdout.splitlines()[-1].startswith("shard 0/1: 2 trained, 0 reused, 1 failed of 3 adapters;")


def test_exit_6_when_a_release_cannot_move_every_alias_and_0_when_run_again(server, tmp_path):
    data, names = own_data(tmp_path, "incomplete-")
    env = environment(data, server.url)
    assert cli(env, "train", "--no-progress").returncode == 0
    victim = names[2]

    def refuse(method: str, path: str, body: bytes) -> bool:
        return (method == "POST" and path.endswith("/registered-models/alias") and f'"{victim}"'.encode() in body
                and b'"production"' in body)

    with FaultProxy(server.url, refuse=refuse) as proxy:
        r = cli(environment(data, proxy.url), "release", "--image", IMAGE, "--format", "json")
    assert r.returncode == 6, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["complete"] is False and victim in json.dumps(report["pending"]), report
    tracker = mlops.MlflowTracker(server.url)
    with pytest.raises(mlops.NotFoundError):
        tracker.get_by_alias(victim, "production")
    r = cli(env, "release", "--image", IMAGE, "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["complete"] is True, r.stdout + r.stderr
    assert tracker.get_by_alias(victim, "production").version == 1


def test_exit_130_when_interrupted(server, tmp_path):
    data, _ = own_data(tmp_path, "interrupt-", customers=4, rows=400)
    set_default_epochs(data, 400)
    p = subprocess.Popen([sys.executable, "-m", "mlops", "train", "--no-progress"],
                         env=environment(data, server.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        while "training 4 adapters" not in said:  # the training has started
            line = p.stderr.readline()
            assert line, f"train ended before training: {said}"
            said += line
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()  # also when an assertion above failed: no pipe is left to a later test's GC
        p.stderr.close()
    assert p.returncode == 130, said + err
    assert "mlops: interrupted" in err and "Traceback" not in err, err


def test_mlflow_threads_from_the_environment(server, tmp_path):
    data, names = own_data(tmp_path, "threads-", customers=6)
    r = cli(environment(data, server.url, MLOPS_MLFLOW_THREADS="0"), "train", "--no-progress")
    assert r.returncode == 2 and "--mlflow-threads" in r.stderr and "'0'" in r.stderr, r.stderr
    # Each request to MLflow takes 50 ms longer: recording 6 adapters with 4 threads has several at once.
    with FaultProxy(server.url, delay=0.05) as proxy:
        r = cli(environment(data, proxy.url, MLOPS_MLFLOW_THREADS="4"), "train", "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    assert proxy.max_in_flight >= 2, proxy.max_in_flight


def test_release_build_context_without_a_wheel_records_nothing(server, tmp_path):
    data, _ = own_data(tmp_path, "ctx-")
    env = environment(data, server.url)
    assert cli(env, "train", "--no-progress").returncode == 0
    missing = tmp_path / "mlops_dolt-0.0.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    r = cli(env, "release", "--image", IMAGE, "--build-context", str(tmp_path / "ctx"), "--wheel", str(missing))
    assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
    assert not (tmp_path / "ctx").exists()
    tracker = mlops.MlflowTracker(server.url)
    with pytest.raises(mlops.NotFoundError):
        tracker.get_by_alias("ctx-customer-001", "production")


@pytest.mark.slow
def test_release_build_context_writes_the_context_of_the_release(server, tmp_path, wheel):
    data, names = own_data(tmp_path, "ctx2-")
    env = environment(data, server.url)
    assert cli(env, "train", "--no-progress").returncode == 0
    ctx = tmp_path / "ctx"
    r = cli(env, "release", "--image", IMAGE, "--build-context", str(ctx), "--wheel", str(wheel))
    assert r.returncode == 0, r.stderr
    md5 = canonical_md5({n: 1 for n in names})
    assert r.stdout == f"{IMAGE}:{md5}\n" and "build context written to" in r.stderr
    assert json.loads((ctx / "manifest.json").read_text()) == {n: 1 for n in names}
    assert f"{IMAGE}:{md5}" in (ctx / "Dockerfile").read_text()
    assert (ctx / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    for n in names:
        assert list((ctx / "models" / n).rglob("MLmodel")), n


def read_all(fd: int, proc: subprocess.Popen) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_progress_bars_on_a_terminal_and_plain_lines_in_a_log(server, tmp_path):
    data, _ = own_data(tmp_path, "progress-")
    env = environment(data, server.url)
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    p = subprocess.Popen([sys.executable, "-m", "mlops", "train"], env=env, stdout=subprocess.DEVNULL,
                         stderr=secondary)
    os.close(secondary)
    try:
        shown = read_all(primary, p).decode("utf-8", "replace")
    finally:
        os.close(primary)
        p.wait(timeout=300)
    assert p.returncode == 0, shown
    # A bar is redrawn in place: carriage returns, and bars that reach 100 %.
    assert "\r" in shown
    for stage in ("loading datasets", "training", "recording in MLflow"):
        assert re.search(rf"{stage}: 100%\|█+\|", shown), (stage, shown)
    assert "[mlops] training:" not in shown

    # Into a log (not a terminal): one plain line per stage, no bar.
    set_default_epochs(data, 2)
    r = cli(env, "train")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "█" not in r.stderr
    assert re.search(r"^\[mlops\] loading datasets: 3/3 adapters$", r.stderr, re.M), r.stderr
    assert re.search(r"^\[mlops\] recording in MLflow: 3/3 adapters$", r.stderr, re.M), r.stderr
