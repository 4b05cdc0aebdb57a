"""User mistakes on the command line end with a typed error and a documented exit code, never a traceback;
read-only commands create no files."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

import mlops

pipeline = pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component")


def run_cli(*args, env=None, cwd=None, stdin=None):
    full = dict(os.environ)
    for key in ("MLOPS_SHARD", "MLOPS_SHARDS", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                "SLURM_ARRAY_TASK_MIN", "MLFLOW_TRACKING_URI", "MLOPS_DATA", "MLOPS_CATALOG"):
        full.pop(key, None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "mlops", *args], env=full, cwd=cwd, input=stdin,
                          capture_output=True)


def stderr(r) -> str:
    text = r.stderr.decode("utf-8", "replace")
    assert "Traceback" not in text, text
    return text


def test_help_lists_every_exit_code():
    r = run_cli("--help")
    out = r.stdout.decode()
    assert r.returncode == 0
    for code, word in ((0, "ok"), (1, "mlops error"), (2, "usage"), (3, "integrity"), (4, "not found"),
                       (5, "train: some adapters failed"), (6, "release/rollback incomplete"), (7, "merge conflicts"),
                       (8, "another release or rollback holds the lease"), (130, "interrupted")):
        assert f"{code} {word}" in " ".join(out.split()), (code, out)


def test_manifest_create_refuses_a_name_given_twice():
    r = run_cli("manifest", "create", "a=1", "a=2")
    assert r.returncode == 1
    assert "[mlops.data]" in stderr(r) and "'a' is given twice" in stderr(r)
    assert r.stdout == b""


def test_manifest_names_must_fit_a_file_name_mlflow_and_docker():
    r = run_cli("manifest", "create", "x" * 256 + "=1")
    assert r.returncode == 1 and "at most 255" in stderr(r)
    for bad in ("../../etc", "a/b", "a:b"):
        r = run_cli("manifest", "create", f"{bad}=1")
        assert r.returncode == 1 and "[mlops.data]" in stderr(r), bad


@pytest.mark.parametrize("where", ["file", "stdin"])
def test_a_manifest_that_is_not_utf8_is_a_data_error(tmp_path: pathlib.Path, where):
    raw = b'{"caf\xe9":1}'
    if where == "file":
        path = tmp_path / "m.json"
        path.write_bytes(raw)
        r = run_cli("manifest", "hash", str(path))
    else:
        r = run_cli("manifest", "hash", "-", stdin=raw)
    assert r.returncode == 1, r
    assert "[mlops.data]" in stderr(r)


def test_a_catalog_that_is_not_utf8_or_repeats_a_key_is_a_data_error(tmp_path: pathlib.Path):
    entry = '{"name": "a", "table": "t", "label": "y", "text": "body"}'
    bad_utf8 = tmp_path / "bad.json"
    bad_utf8.write_bytes(b'{"adapters": [{"name": "caf\xe9", "table": "t", "label": "y", "text": "body"}]}')
    with pytest.raises(mlops.DataError, match="invalid JSON"):
        mlops.Catalog.load(str(bad_utf8))
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_bytes(b'[[adapters]]\nname = "caf\xe9"\ntable = "t"\nlabel = "y"\ntext = "body"\n')
    with pytest.raises(mlops.DataError):
        mlops.Catalog.load(str(bad_toml))
    dup = tmp_path / "dup.json"
    dup.write_text('{"adapters": [{"name": "a", "epochs": 3, "table": "t", "label": "y", "text": "body", "epochs": 9}]}')
    with pytest.raises(mlops.DataError, match="'epochs' appears twice"):
        mlops.Catalog.load(str(dup))
    dup.write_text('{"adapters": [' + entry + '], "adapters": []}')
    with pytest.raises(mlops.DataError, match="'adapters' appears twice"):
        mlops.Catalog.load(str(dup))
    ok = tmp_path / "ok.json"
    ok.write_text('{"adapters": [' + entry + ', {"name": "b", "table": "t", "label": "y", "text": "body"}]}')
    assert [e.name for e in mlops.Catalog.load(str(ok))] == ["a", "b"]


def test_a_catalog_name_longer_than_a_file_name_is_refused_where_it_enters():
    def catalog(name):
        return json.dumps({"adapters": [{"name": name, "table": "t", "label": "y", "text": "body"}]})

    with pytest.raises(mlops.DataError, match="at most 255"):
        mlops.Catalog.from_json(catalog("n" * 256))
    for bad in ("../x", "a/b", "m:1", 'q"uote'):
        with pytest.raises(mlops.DataError, match="name"):
            mlops.Catalog.from_json(catalog(bad))
    assert len(mlops.Catalog.from_json(catalog("n" * 255))) == 1


@pipeline
@pytest.mark.parametrize("content", [None, b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_train_plan_missing_or_not_json(tmp_path: pathlib.Path, content, refused_url):
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_bytes(content)
    r = run_cli("train", "--plan", str(path), "--tracking-uri", refused_url)
    assert r.returncode == (4 if content is None else 1), r
    assert str(path) in stderr(r)


@pipeline
@pytest.mark.parametrize("env, name", [
    ({"JOB_COMPLETION_INDEX": "0", "MLOPS_SHARDS": "abc"}, "MLOPS_SHARDS"),
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, "SLURM_ARRAY_TASK_ID"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "two"}, "SLURM_ARRAY_TASK_COUNT"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1.5"}, "SLURM_ARRAY_TASK_MIN"),
])
def test_shard_variables_that_are_not_numbers(env, name, refused_url):
    r = run_cli("train", "--tracking-uri", refused_url, env=env)
    assert r.returncode == 1, r
    assert "[mlops.config]" in stderr(r) and name in stderr(r)


@pipeline
@pytest.mark.parametrize("args", [
    ["lineage", "m", "99999999999999999999"],
    ["lineage", "m", "-3"],
    ["rollback", "--model", "m", "--version", "99999999999999999999"],
    ["init-demo", "--customers", "-5"],
    ["init-demo", "--rows", "0"],
    ["plan", "--shards", "0"],
    ["serve", "--port", "65536", "some-release"],
    ["serve", "--port", "http", "some-release"],
])
def test_out_of_range_numbers_are_usage_errors(args, tmp_path, refused_url):
    r = run_cli(*args, "--tracking-uri", refused_url, "--data", f"doltlite:{tmp_path / 'x.db'}", cwd=tmp_path)
    assert r.returncode == 2, r
    assert "expected" in stderr(r)
    assert list(tmp_path.iterdir()) == []


@pipeline
@pytest.mark.parametrize("command", [["plan"], ["lineage", "m"], ["releases"], ["diff-release", "a", "b"],
                                     ["train"], ["release", "--image", "r.io/x"], ["rollback", "--release", "ab"]])
def test_commands_that_only_read_data_create_no_database(tmp_path: pathlib.Path, command, refused_url):
    r = run_cli(*command, "--data", "doltlite:new.db", "--tracking-uri", refused_url, cwd=tmp_path)
    assert r.returncode == 4, r
    assert "new.db" in stderr(r) and "[mlops.not_found]" in stderr(r)
    assert list(tmp_path.iterdir()) == []


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly():
    entries = [f"model-{i:05d}=1" for i in range(20000)]  # far more than a pipe buffer
    with subprocess.Popen([sys.executable, "-m", "mlops", "manifest", "create", *entries],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        p.stdout.read(10)
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=60) == 0
    assert err == ""


@pipeline
def test_a_bad_port_in_the_environment_concerns_serve_only(tmp_path):
    r = run_cli("serve", "some-release", env={"MLOPS_PORT": "abc"}, cwd=tmp_path)
    assert r.returncode == 2 and "--port" in stderr(r) and "'abc'" in stderr(r)
    r = run_cli("manifest", "create", "a=1", env={"MLOPS_PORT": "abc"}, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.decode().strip() == '{"a":1}'


def test_check_env_names_every_missing_setting_and_never_a_value():
    """A CI job's first command: every unset or empty variable in one config error (exit 1), no values."""
    env = {"MLOPS_TEST_SET": "s3cret-value", "MLOPS_TEST_EMPTY": ""}
    r = run_cli("check-env", "MLOPS_TEST_SET", "MLOPS_TEST_EMPTY", "MLOPS_TEST_UNSET", "--what", "adapters.yml",
                "--hint", "repository variables", env=env)
    assert r.returncode == 1
    assert stderr(r).strip() == ("mlops: [mlops.config] adapters.yml needs MLOPS_TEST_EMPTY, MLOPS_TEST_UNSET: "
                                 "they are not set or empty (repository variables)")
    assert b"s3cret-value" not in r.stdout + r.stderr
    r = run_cli("check-env", "MLOPS_TEST_SET", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
