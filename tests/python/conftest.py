"""Shared pytest fixtures. Servers (MariaDB, MLflow) are started by fixtures of their own test modules."""

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO
