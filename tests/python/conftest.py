"""Shared pytest fixtures. Servers (MariaDB, MLflow) are started by fixtures of their own test modules."""

import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def wheel() -> pathlib.Path:
    """dist/mlops_dolt-<version>-<python>-manylinux_*_x86_64.whl, made by `make wheel` from the build folder of
    `make install` (so it costs packaging, not a compile)."""
    r = subprocess.run(["make", "-s", "wheel"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    version = re.search(r"project\(mlops VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text()).group(1)
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = sorted((REPO / "dist").glob(f"mlops_dolt-{version}-{py}-{py}-manylinux_*_x86_64.whl"))
    assert len(found) == 1, f"expected one wheel in dist/, found {found}"
    return found[0]
