"""Running the example workflows with nektos/act in host mode, against real local services.

``Act`` runs one workflow of ``examples/github-actions`` from a scratch repository that holds it under
.github/workflows (as a user's repository would), every runner label mapped to this machine
(``-P LABEL=-self-hosted``), the remote actions replaced by the stand-ins under tests/act/actions through
``--local-repository``, the event payload, repository variables and secrets from files. Artifacts that the
stand-ins upload land under ``artifacts/<run id>/<name>/``.

``Registry`` is the distribution registry (Debian's docker-registry) on 127.0.0.1, on a port the kernel
chose, read back from its log. ``container_env`` makes `docker` mean podman (Debian's podman-docker) for
the workflows' build and push steps, with runc and the registry allowed over plain HTTP on loopback.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from typing import Mapping, Optional, Sequence

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "examples" / "github-actions"
STANDINS = ROOT / "tests" / "act" / "actions"
# Remote action -> stand-in folder (what each keeps is in its action.yml).
LOCAL_ACTIONS = {
    "actions/checkout@v7": "checkout",
    "actions/setup-python@v7": "setup-python",
    "actions/upload-artifact@v7": "upload-artifact",
    "actions/download-artifact@v8": "download-artifact",
}
RUNNER_LABELS = ("ubuntu-latest", "self-hosted", "linux", "gpu")


def tool(name: str) -> str:
    """A tool from the project's venv or PATH; a skip where it is missing, a failure in CI (CI=true)."""
    exe = pathlib.Path(sys.executable).with_name(name)
    found = str(exe) if exe.is_file() else shutil.which(name)
    if not found:
        message = f"{name} is not installed (make setup installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


class Registry:
    """docker-registry serving from a folder, on 127.0.0.1 with a port chosen by binding port 0."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.proc: Optional[subprocess.Popen] = None
        self.host = ""

    def start(self) -> "Registry":
        exe = tool("docker-registry")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
                          f"    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
                          "http:\n  addr: 127.0.0.1:0\n")
        with open(self.root / "registry.log", "w") as log:
            self.proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, REGISTRY_HTTP_SECRET=os.urandom(16).hex()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.host:
            m = re.search(r"listening on (127\.0\.0\.1:\d+)", (self.root / "registry.log").read_text())
            if m:
                self.host = m.group(1)
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
        if not self.host:
            self.stop()
            raise AssertionError("docker-registry did not start:\n" + (self.root / "registry.log").read_text()[-3000:])
        while time.monotonic() < deadline:  # listening is logged just before serving: wait for /v2/
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"docker-registry on {self.host} does not answer /v2/")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
netns = "host"

[engine]
runtime = "runc"
"""


def container_env(folder: pathlib.Path, registry: Registry) -> dict:
    """Environment under which `docker` is podman (runc, host network, the loopback registry over HTTP)
    and skopeo reads the same registry settings: PATH starts with a folder holding both."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "containers.conf").write_text(CONTAINERS_CONF)
    (folder / "registries.conf").write_text(
        'unqualified-search-registries = []\n\n[[registry]]\n'
        f'location = "{registry.host}"\ninsecure = true\n')
    shim = folder / "bin"
    shim.mkdir(exist_ok=True)
    podman_docker = pathlib.Path("/usr/bin/docker")
    if not podman_docker.is_file() or "podman" not in podman_docker.read_text(errors="replace"):
        message = "podman-docker (docker as podman) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if not (shim / "docker").exists():
        (shim / "docker").symlink_to(podman_docker)
    # Debian 12's skopeo (1.9) takes another registries.conf only as an option, not from the environment.
    (shim / "skopeo").write_text(f'#!/bin/sh\nexec {tool("skopeo")} --registries-conf "$CONTAINERS_REGISTRIES_CONF" "$@"\n')
    (shim / "skopeo").chmod(0o755)
    return {"PATH": f"{shim}:{os.environ['PATH']}", "CONTAINERS_CONF": str(folder / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(folder / "registries.conf"), "BUILDAH_FORMAT": "docker"}


class Act:
    """One workflow under act, from a scratch repository in ``root``."""

    def __init__(self, root: pathlib.Path, workflow: str, env: Optional[Mapping[str, str]] = None,
                 files: Sequence[str] = ()) -> None:
        self.root = root
        self.workflow = workflow
        self.env = dict(env or {})
        self.repo = root / "repo"
        self.artifacts = root / "artifacts"
        if not self.repo.exists():
            self._make_repo(files)

    def _make_repo(self, files: Sequence[str]) -> None:
        """A git repository with the workflow under .github/workflows, plus ``files`` of this checkout."""
        (self.repo / ".github" / "workflows").mkdir(parents=True)
        shutil.copy(WORKFLOWS / self.workflow, self.repo / ".github" / "workflows" / self.workflow)
        for f in files:
            dest = self.repo / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest)
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
        for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "workflow"]):
            subprocess.run(git + cmd, cwd=self.repo, check=True, capture_output=True)

    def run(self, event: str, payload: dict, variables: Mapping[str, str] = {},
            secrets: Mapping[str, str] = {}, job: Optional[str] = None, timeout: float = 280) -> subprocess.CompletedProcess:
        """act EVENT with ``payload``; with ``job``, that job and the jobs it needs. Every act run is run 1, so
        the artifacts of earlier runs are removed first."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        for p in self.artifacts.iterdir():
            shutil.rmtree(p)
        event_file, var_file, secret_file = (self.root / n for n in ("event.json", "vars.env", "secrets.env"))
        event_file.write_text(json.dumps(payload))
        var_file.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
        secret_file.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
        cmd = [tool("act"), event, "-W", f".github/workflows/{self.workflow}", "-e", str(event_file),
               "--var-file", str(var_file), "--secret-file", str(secret_file)]
        for label in RUNNER_LABELS:
            cmd += ["-P", f"{label}=-self-hosted"]
        for action, folder in LOCAL_ACTIONS.items():
            cmd += ["--local-repository", f"{action}={STANDINS / folder}"]
        if job:
            cmd += ["-j", job]
        # pip: no byte-compiling of what it installs, no asking the index for a newer pip.
        env = dict(os.environ, MLOPS_ACT_ARTIFACTS=str(self.artifacts), PIP_NO_COMPILE="1",
                   PIP_DISABLE_PIP_VERSION_CHECK="1", **self.env)
        # The workflows' steps must not see this test process's own settings.
        for name in ("MLOPS_DATA", "MLFLOW_TRACKING_URI", "MLOPS_WHEEL", "VIRTUAL_ENV", "PYTHONPATH"):
            env.pop(name, None)
        venv_bin = str(pathlib.Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
        started = time.monotonic()
        r = subprocess.run(cmd, cwd=self.repo, env=env, capture_output=True, text=True, timeout=timeout)
        r.seconds = time.monotonic() - started
        (self.root / f"act-{event}.log").write_text(r.stdout + r.stderr)
        return r

    def artifact(self, name: str) -> pathlib.Path:
        found = list(self.artifacts.glob(f"*/{name}"))
        assert len(found) == 1, f"artifact {name!r}: found {found}"
        return found[0]


def tail(r: subprocess.CompletedProcess, n: int = 6000) -> str:
    return (r.stdout + r.stderr)[-n:]
