"""The suite's own rules (conftest.py), checked on a small suite run with the same conftest: under CI a skip
fails the run unless the test is marked gpu; each test starts with the MLflow client state it found."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

HERE = pathlib.Path(__file__).resolve().parent


def run_suite(tmp_path: pathlib.Path, tests: str, ci: str | None) -> subprocess.CompletedProcess:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(tests))
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("MLFLOW_")}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           "-c", os.devnull, str(tmp_path)], env=env, capture_output=True, text=True, cwd=tmp_path)


SKIPPING = """
    import pytest

    @pytest.fixture
    def mariadb():
        pytest.skip("mariadbd is not installed")

    def test_needs_a_server(mariadb):
        pass

    @pytest.mark.skipif(True, reason="podman cannot run containers here")
    def test_needs_podman():
        pass

    @pytest.mark.gpu
    def test_needs_a_gpu():
        pytest.skip("no usable CUDA GPU")

    @pytest.mark.xfail(reason="known", strict=True)
    def test_known_failure():
        assert False
"""


def test_outside_ci_a_missing_component_is_a_skip(tmp_path):
    r = run_suite(tmp_path, SKIPPING, ci=None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 skipped, 1 xfailed" in r.stdout, r.stdout


def test_in_ci_a_missing_component_fails_the_run_and_only_gpu_tests_may_skip(tmp_path):
    r = run_suite(tmp_path, SKIPPING, ci="true")
    assert r.returncode == 1, r.stdout + r.stderr
    # A skip happens while setting the test up, so pytest counts the failed ones as errors.
    assert "1 skipped, 1 xfailed" in r.stdout and "2 errors" in r.stdout, r.stdout
    assert "skipped in CI, where only GPU tests may skip: mariadbd is not installed" in r.stdout
    assert "podman cannot run containers here" in r.stdout


def test_each_test_gets_back_the_mlflow_client_state_it_started_with(tmp_path):
    r = run_suite(tmp_path, """
        import os
        import mlflow

        def test_a_points_mlflow_at_its_own_server():
            mlflow.set_tracking_uri("http://127.0.0.1:1")
            mlflow.set_registry_uri("http://127.0.0.1:2")
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "1"

        def test_b_starts_with_the_default_again():
            assert os.environ.get("MLFLOW_TRACKING_URI") is None
            assert os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") is None
            assert not mlflow.get_tracking_uri().startswith("http://127.0.0.1:1")
            assert not mlflow.get_registry_uri().startswith("http://127.0.0.1:2")
    """, ci=None)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout + r.stderr
