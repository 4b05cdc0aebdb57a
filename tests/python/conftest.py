"""Shared pytest fixtures and rules. Servers (MariaDB, MLflow) are started by fixtures of their own test modules.

Rules for every test:
- In CI (CI=true or CI=1) a skip is a failure, except for tests marked `gpu`: a missing DoltLite, MariaDB,
  MLflow, Slurm or podman must turn the run red, not leave a green run that tested less.
- MLflow's client keeps its tracking and registry URIs in module globals and MLFLOW_* variables; each test
  gets back the ones it started with, so no test talks to another test's (stopped) server.
"""

import os
import pathlib
import re
import socket
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail") or item.get_closest_marker("gpu"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, where only GPU tests may skip: {reason}"


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def refused_url():
    """http://127.0.0.1:<port> where a connection is refused: the port is bound here and never listened on, so
    nothing else can take it while the tests run (a fixed port such as 9 may well have a listener)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


_MLFLOW_URI_MODULES = (("mlflow.tracking._tracking_service.utils", "_tracking_uri", "set_tracking_uri"),
                       ("mlflow.tracking._model_registry.utils", "_registry_uri", "set_registry_uri"))


def _mlflow_uris() -> list:
    return [getattr(sys.modules[m], attr, None) if m in sys.modules else None for m, attr, _ in _MLFLOW_URI_MODULES]


@pytest.fixture(autouse=True)
def _mlflow_client_state_is_restored():
    env = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    uris = _mlflow_uris()
    yield
    for (module, _, setter), before, after in zip(_MLFLOW_URI_MODULES, uris, _mlflow_uris()):
        if after != before:
            getattr(sys.modules[module], setter)(before)  # the setters also reset what caches the URI
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if k not in env:
            del os.environ[k]
    os.environ.update(env)


def _newest_source_mtime() -> float:
    newest = 0.0
    for folder in ("include", "lib", "bindings", "cmake"):
        for p in (REPO / folder).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts:
                newest = max(newest, p.stat().st_mtime)
    for name in ("CMakeLists.txt", "pyproject.toml"):
        newest = max(newest, (REPO / name).stat().st_mtime)
    return newest


@pytest.fixture(scope="session")
def wheel() -> pathlib.Path:
    """dist/mlops_dolt-<version>-<python>-manylinux_*_x86_64.whl, made by `make wheel` (which `make test-python`
    runs before pytest). Tests read it and never rebuild it; one older than the sources is refused."""
    version = re.search(r"project\(mlops VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text()).group(1)
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = sorted((REPO / "dist").glob(f"mlops_dolt-{version}-{py}-{py}-manylinux_*_x86_64.whl"))
    if not found:
        pytest.skip("no wheel in dist/: run `make wheel` (make test-python does)")
    assert len(found) == 1, f"expected one wheel in dist/, found {found}"
    if found[0].stat().st_mtime < _newest_source_mtime():
        pytest.fail(f"{found[0].name} is older than the sources: run `make wheel` (make test-python does)")
    return found[0]
