"""The release image is built and run: the demo's release context on a minimal Debian base, built with
podman, started, asked /health and one prediction; its labels carry the release.

Real tools from Debian: podman (with runc: crun cannot run here), mmdebstrap for the base. The base
(bookworm minbase with python3 and python3-venv, from the mirror apt is configured with) is imported as
localhost/mlops-test-base:bookworm; its tar is kept under ~/.cache/mlops so later runs skip mmdebstrap.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import subprocess
import sys

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
