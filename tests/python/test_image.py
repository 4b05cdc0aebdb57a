"""The release image is built and run: the demo's release context on a minimal Debian base, built with
podman, started, asked /health and one prediction; its labels carry the release.

Real tools from Debian: podman (with runc: crun cannot run here), mmdebstrap for the base. The base
(bookworm minbase with python3 and python3-venv, from the mirror apt is configured with) is imported as
localhost/mlops-test-base:bookworm; its tar is kept under ~/.cache/mlops so later runs skip mmdebstrap.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.request

import pytest

import mlops

sys.path.insert(0, str(pathlib.Path(__file__).parent))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "mlops"
BASE_IMAGE = "localhost/mlops-test-base:bookworm"
SUITE = "bookworm"

# Containers here cannot raise resource limits above the host's, and crun fails on this kind of cgroup
# setup; runc works.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""


def apt_mirror(suite: str = SUITE, etc: pathlib.Path = pathlib.Path("/etc/apt")) -> str:
    """The archive URI apt is configured with for `suite` (one-line .list files and deb822 .sources)."""
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*.list")) + \
        sorted((etc / "sources.list.d").glob("*.sources"))
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text()
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.split()
                if "deb" in fields.get("types", []) and suite in fields.get("suites", []) and fields.get("uris"):
                    if fields.get("enabled", ["yes"])[0].lower() != "no":
                        return fields["uris"][0]
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
                    return parts[1]
    raise RuntimeError(f"apt has no '{suite}' source in {etc}/sources.list*: cannot make the Debian base image")


class Podman:
    """podman with this project's containers.conf (runc, ulimits containers may have)."""

    def __init__(self, conf_dir: pathlib.Path) -> None:
        conf = conf_dir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))

    def __call__(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        r = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        return r


def make_base_tar(tar: pathlib.Path) -> None:
    """A minimal bookworm root file system with python3 and venv, from the configured mirror."""
    tar.parent.mkdir(parents=True, exist_ok=True)
    partial = tar.with_name(tar.name + f".{os.getpid()}.partial")
    mode = "root" if os.geteuid() == 0 else "unshare"
    cmd = ["mmdebstrap", f"--mode={mode}", "--variant=minbase", "--include=python3,python3-venv", "--format=tar",
           SUITE, str(partial), f"deb {apt_mirror()} {SUITE} main"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        partial.unlink(missing_ok=True)
        raise AssertionError(f"mmdebstrap failed ({r.returncode}):\n{r.stderr[-4000:]}")
    os.replace(partial, tar)


@pytest.fixture(scope="session")
def podman(tmp_path_factory) -> Podman:
    p = Podman(tmp_path_factory.mktemp("podman"))
    try:
        info = p("info", check=False, timeout=120)
    except FileNotFoundError:
        pytest.skip("podman is not installed")
    if info.returncode != 0:
        pytest.skip(f"podman cannot run containers here: {info.stderr.strip()[-500:]}")
    return p


@pytest.fixture(scope="session")
def base_image(podman) -> str:
    """localhost/mlops-test-base:bookworm, imported from the cached mmdebstrap tar (made once)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    tar = CACHE / f"debian-{SUITE}-minbase-python3.tar"
    if not tar.is_file():
        make_base_tar(tar)
    podman("import", "--change", "CMD [\"/bin/bash\"]", str(tar), BASE_IMAGE)
    return BASE_IMAGE


def test_the_base_image_runs_python_in_a_venv(podman, base_image):
    r = podman("run", "--rm", "--network", "host", base_image, "sh", "-c",
               "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import ssl, sys; print(sys.version_info[:2])'")
    assert r.stdout.strip().startswith("(3, "), r.stdout + r.stderr


def test_apt_mirror_reads_both_source_formats(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("# nothing\ndeb [arch=amd64] http://mirror.test/debian bookworm main\n")
    assert apt_mirror(etc=tmp_path) == "http://mirror.test/debian"
    (tmp_path / "sources.list").write_text("")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://other.test/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://other.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert apt_mirror(etc=tmp_path) == "http://other.test/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text("Types: deb\nURIs: http://x.test/\nSuites: trixie\n")
    with pytest.raises(RuntimeError, match="bookworm"):
        apt_mirror(etc=tmp_path)


# ---- the demo's release, its build context and its image --------------------------------------------------

@pytest.fixture(scope="session")
def release(tmp_path_factory):
    """Two releases of a small demo (the second retrains one customer), recorded in an MLflow server of this
    module's own (so the releases experiment holds these two only)."""
    from mlflow_server import demo_releases

    with demo_releases(tmp_path_factory.mktemp("image-release")) as recorded:
        yield {k: recorded[k] for k in ("first", "second", "env")}


def build_context(release, wheel, base: str | None, directory: pathlib.Path) -> str:
    cmd = [sys.executable, "-m", "mlops", "build-context", str(directory), "--release", release["second"].md5,
           "--wheel", str(wheel)]
    if base:
        cmd += ["--base-image", base]
    r = subprocess.run(cmd, env=release["env"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="session")
def context(release, wheel, tmp_path_factory):
    ctx = tmp_path_factory.mktemp("context") / "image"
    tag = build_context(release, wheel, None, ctx)
    return ctx, tag


def test_the_build_context_installs_only_what_it_ships(context, release, wheel):
    ctx, tag = context
    assert tag == release["second"].image
    dockerfile = (ctx / "Dockerfile").read_text()
    py = re.search(r"-cp(\d)(\d+)-", wheel.name)
    assert f"FROM python:{py[1]}.{py[2]}-slim-bookworm\n" in dockerfile
    installs = [line for line in dockerfile.replace("\\\n", " ").splitlines() if "pip install" in line]
    assert installs and all("--no-index" in i and "--require-hashes" in i for i in installs), installs
    # Every wheel in the context is pinned by its hash, this project's own among them.
    wheels = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ctx / "wheels").glob("*.whl")}
    assert wheels[wheel.name] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert any(n.startswith("numpy-") for n in wheels), wheels
    pins = {}
    for line in (ctx / "wheels" / "requirements.txt").read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s]+) --hash=sha256:([0-9a-f]{64})", line)
        assert m, line
        pins[m[1].lower().replace("_", "-")] = m[3]
    assert pins.get("mlops-dolt") == wheels[wheel.name]
    assert sorted(pins.values()) == sorted(wheels.values())
    assert "mlops" not in pins  # never the bare name
    assert re.search(r"^USER (?!0\b|root\b)\S+", dockerfile, re.M), dockerfile
    assert re.search(r"^EXPOSE \d+", dockerfile, re.M) and "/health" in dockerfile.split("HEALTHCHECK", 1)[1]
    assert re.search(r'^CMD \["mlops", ', dockerfile, re.M), dockerfile
    second = release["second"]
    assert f'LABEL "io.mlops.release.md5"="{second.md5}"' in dockerfile
    assert f'LABEL "io.mlops.release.previous"="{release["first"].md5}"' in dockerfile


def test_a_build_context_without_a_wheel_is_a_config_error(release, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mlops", "build-context", str(tmp_path / "ctx"), "--wheel",
                        str(tmp_path / "missing.whl")], env=release["env"], capture_output=True, text=True)
    assert r.returncode == 1 and "--wheel" in r.stderr and "missing.whl" in r.stderr, r.stderr
    assert not (tmp_path / "ctx").exists()


@pytest.fixture(scope="session")
def image(podman, base_image, release, wheel, tmp_path_factory):
    ctx = tmp_path_factory.mktemp("context-on-base") / "image"
    build_context(release, wheel, base_image, ctx)
    tag = f"localhost/mlops-release-test:{release['second'].md5}"
    podman("build", "--pull=never", "--format", "docker", "--network", "host", "-t", tag, str(ctx), timeout=1200)
    yield tag
    podman("rmi", "-f", tag, check=False)


def test_the_image_carries_the_release_in_its_labels(podman, image, release):
    data = json.loads(podman("image", "inspect", image).stdout)[0]
    config = data["Config"]
    labels = config["Labels"]
    second, first = release["second"], release["first"]
    assert labels["io.mlops.release.md5"] == second.md5
    assert labels["io.mlops.release.previous"] == first.md5
    assert labels["io.mlops.release.models"] == str(len(second.manifest))
    for name, version in second.manifest.to_dict().items():
        assert re.fullmatch(rf"v{version} data=[0-9a-z]{{12}} code=c0de", labels[f"io.mlops.model.{name}"]), labels
    assert config["User"] not in ("", "0", "root") and "8080/tcp" in config["ExposedPorts"]
    health = {k.lower(): v for k, v in {**config, **data}.items()}.get("healthcheck") or {}
    assert "/health" in " ".join(health.get("Test", [])), data


_containers = itertools.count()


def wait_for_health(podman, name: str, timeout: float = 120) -> str:
    """Until the container ``name`` answers 200 on /health; returns its base URL. The server binds a free port
    itself (MLOPS_PORT=0) and names it in its first line, read from the container's log. Its log is in the
    failure when it stops first."""
    deadline, health, base = time.monotonic() + timeout, None, None
    while time.monotonic() < deadline and health is None:
        if base is None:
            said = podman("logs", name, check=False)
            found = re.search(r"serving release \S+ .* on http://[^:/]+:(\d+)", said.stdout + said.stderr)
            if found:
                base = f"http://127.0.0.1:{found.group(1)}"
        try:
            if base is None:
                raise OSError("not listening yet")
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                health = (r.status, r.read())
        except OSError:
            state = podman("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
            if state.stdout.strip() != "true":
                break
            time.sleep(0.3)
    logs = podman("logs", name, check=False)
    assert health and health[0] == 200, f"no /health answer; the container said:\n{logs.stdout}{logs.stderr}"
    return base


@contextlib.contextmanager
def running(podman, image: str, name: str):
    """The image started on the host network, on a port it binds itself; yields (its base URL, the container
    name) once it answers /health, removes it afterwards."""
    name = f"{name}-{os.getpid()}-{next(_containers)}"
    podman("run", "-d", "--name", name, "--network", "host", "-e", "MLOPS_PORT=0", image)
    try:
        base = wait_for_health(podman, name)
        yield base, name
    finally:
        podman("rm", "-f", name, check=False)


def test_the_release_image_serves_health_and_a_prediction(podman, image, release):
    with running(podman, image, "mlops-release-test") as (base, name):
        model, version = sorted(release["second"].manifest.to_dict().items())[0]
        body = json.dumps({"inputs": ["my kettle will not turn on"]}).encode()
        req = urllib.request.Request(f"{base}/models/{model}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            predictions = json.load(r)["predictions"]
        assert len(predictions) == 1 and predictions[0] in ("billing", "shipping", "returns", "technical", "account")
        # Served by the image's own user, not root.
        uid = podman("exec", name, "id", "-u").stdout.strip()
        assert uid not in ("", "0"), uid
