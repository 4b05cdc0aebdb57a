"""The scheduling examples are valid and call the `mlops` command the way it actually parses."""

import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import yaml

import mlops
from mlops import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "examples" / "github-actions").glob("*.yml"))
K8S_JOB = ROOT / "examples" / "kubernetes" / "train-indexed-job.yaml"

pytestmark = pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component")


def test_workflows_follow_the_github_actions_schema():
    assert WORKFLOWS, "no workflow examples found"
    exe = pathlib.Path(sys.executable).with_name("check-jsonschema")
    r = subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


EXAMPLE_VALUES = {"--shard": "0/1", "--version": "1", "--shards": "4"}


def mlops_invocations(text: str):
    """Every `mlops ...` command line in shell snippets, with ${{ }} expressions and $VARS given example
    values of the type their option takes."""
    for line in text.splitlines():
        line = line.strip()
        m = re.search(r"(?:^|\s)(mlops\s.*?)(?:\s>\s.*)?$", line)
        if not m or line.startswith("#") or "pip install" in line:
            continue
        cmd = re.sub(r"\$\{\{[^}]*\}\}|\$[A-Z_]+", "@EXPR@", m.group(1))
        argv = shlex.split(cmd)[1:]
        yield [EXAMPLE_VALUES.get(argv[i - 1], "x") if "@EXPR@" in a else a for i, a in enumerate(argv)]


def test_every_mlops_command_in_the_workflows_parses():
    parser = cli.build_parser()
    seen = set()
    for wf in WORKFLOWS:
        doc = yaml.safe_load(wf.read_text())
        for job in doc["jobs"].values():
            for step in job.get("steps", []):
                for argv in mlops_invocations(step.get("run", "")):
                    args = parser.parse_args(argv)  # SystemExit(2) on an unknown option
                    seen.add(args.command)
    assert {"plan", "train", "release", "rollback"} <= seen


def test_plan_feeds_train_through_the_matrix():
    doc = yaml.safe_load((ROOT / "examples" / "github-actions" / "adapters.yml").read_text())
    on = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads the key `on` as True
    assert {"repository_dispatch", "schedule", "workflow_dispatch"} <= set(on)
    train = doc["jobs"]["train"]
    assert train["needs"] == "plan"
    assert "self-hosted" in train["runs-on"] and "gpu" in train["runs-on"]
    assert train["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert doc["jobs"]["release"]["needs"] == ["plan", "train"]


def test_kubernetes_indexed_job_fans_out_the_same_shards():
    job = yaml.safe_load(K8S_JOB.read_text())
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["MLOPS_SHARDS"]) == spec["completions"]
    args = cli.build_parser().parse_args(container["command"][1:])
    assert args.command == "train" and args.plan == "/plan/plan.json"


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"MLOPS_SHARD": "2/5"}, (2, 5)),
        ({"JOB_COMPLETION_INDEX": "3", "MLOPS_SHARDS": "4"}, (3, 4)),
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}, (6, 8)),
        ({}, (0, 1)),
    ],
)
def test_shard_comes_from_the_scheduler_environment(monkeypatch, env, expected):
    for key in ("MLOPS_SHARD", "MLOPS_SHARDS", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID",
                "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.shard_from_environment(None, None) == expected


def test_bad_shards_are_config_errors(monkeypatch):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.delenv("MLOPS_SHARDS", raising=False)
    with pytest.raises(mlops.ConfigError, match="MLOPS_SHARDS"):
        cli.shard_from_environment(None, None)
    for bad in ("3/3", "-1/2", "a/b", "1"):
        with pytest.raises(mlops.ConfigError):
            cli.parse_shard(bad)
