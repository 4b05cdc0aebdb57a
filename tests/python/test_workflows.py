"""The scheduling examples are valid and call the `mlops` command the way it actually parses."""

import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

import mlops
from mlops import cli
from mlops.cli import jobs as cli_jobs

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from act_runner import tool  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "examples" / "github-actions").glob("*.yml"))
# The workflows for the repository of a user's training code; release-wheel.yml is this project's own.
USER_WORKFLOWS = [w for w in WORKFLOWS if w.name != "release-wheel.yml"]
K8S_JOB = ROOT / "examples" / "kubernetes" / "train-indexed-job.yaml"

pytestmark = pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component")


def test_workflows_follow_the_github_actions_schema():
    assert WORKFLOWS, "no workflow examples found"
    exe = pathlib.Path(sys.executable).with_name("check-jsonschema")
    r = subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


ACTIONLINT_CONFIG = ROOT / "examples" / "github-actions" / ".github" / "actionlint.yaml"


def actionlint(*paths: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("actionlint"), "-config-file", str(ACTIONLINT_CONFIG), "-no-color",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_actionlint_finds_nothing_in_any_workflow():
    """Current major versions of every action, known runner labels, expressions and shell (shellcheck) that
    check out: actionlint prints nothing and exits 0."""
    assert shutil.which("shellcheck") or os.environ.get("CI") != "true", "shellcheck is not installed"
    r = actionlint(*WORKFLOWS)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stdout + r.stderr


def test_actionlint_reports_an_outdated_action_and_an_unlisted_runner_label(tmp_path):
    text = (ROOT / "examples" / "github-actions" / "adapters.yml").read_text()
    assert "actions/setup-python@v7" in text and "[self-hosted, linux, gpu]" in text
    broken = tmp_path / "adapters.yml"
    broken.write_text(text.replace("actions/setup-python@v7", "actions/setup-python@v5", 1)
                      .replace("[self-hosted, linux, gpu]", "[self-hosted, linux, tpu]"))
    r = actionlint(broken)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "actions/setup-python@v5" in r.stdout and 'label "tpu" is unknown' in r.stdout, r.stdout


EXAMPLE_VALUES = {"--shard": "0/1", "--version": "1", "--shards": "4"}


def mlops_invocations(text: str):
    """Every `mlops ...` command line in shell snippets, with ${{ }} expressions and $VARS given example
    values of the type their option takes."""
    for line in text.splitlines():
        line = line.strip()
        m = re.search(r"(?:^|\s)(mlops\s.*?)(?:\s>>?\s.*)?$", line)
        if not m or line.startswith("#") or "pip install" in line:
            continue
        cmd = re.sub(r'"\$\{\w+\[@\]\}"', "", m.group(1))  # "${options[@]}": options set above, if any
        cmd = re.sub(r"\$\{\{[^}]*\}\}|\$[A-Z_]+", "@EXPR@", cmd)
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
    assert {"plan", "train", "release", "rollback", "diff", "merge", "build-context", "check-env"} <= seen


def test_plan_feeds_train_through_the_matrix():
    doc = yaml.safe_load((ROOT / "examples" / "github-actions" / "adapters.yml").read_text())
    on = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads the key `on` as True
    assert {"repository_dispatch", "schedule", "workflow_dispatch"} <= set(on)
    train = doc["jobs"]["train"]
    assert train["needs"] == "plan"
    assert "self-hosted" in train["runs-on"] and "gpu" in train["runs-on"]
    assert train["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert doc["jobs"]["release"]["needs"] == ["plan", "train"]


def test_data_review_posts_the_diff_and_preview_then_merges_and_retrains():
    doc = yaml.safe_load((ROOT / "examples" / "github-actions" / "data-review.yml").read_text())
    on = doc[True] if True in doc else doc["on"]
    assert {"dolt-branch-synced", "dolt-branch-approved"} <= set(on["repository_dispatch"]["types"])
    assert {"branch", "merge"} <= set(on["workflow_dispatch"]["inputs"])
    parser = cli.build_parser()

    def commands(job):
        return [parser.parse_args(argv) for step in doc["jobs"][job]["steps"]
                for argv in mlops_invocations(step.get("run", ""))]

    review = doc["jobs"]["review"]
    runs = "\n".join(step.get("run", "") for step in review["steps"])
    check, check_branch, diff, plan, preview, trial = commands("review")
    assert (check.command, check_branch.command) == ("check-env", "check-env")
    assert (diff.command, diff.format) == ("diff", "markdown") and 'mlops diff "main..$BRANCH"' in runs
    assert (plan.command, plan.against, plan.format) == ("plan", "main", "markdown")
    # The evaluation preview, only where MLflow is configured; a would-be hold-back (exit 9) is a warning.
    assert (preview.command, preview.against, preview.evaluate) == ("plan", "main", True)
    step = next(s for s in review["steps"] if "--evaluate" in s.get("run", ""))
    assert step["if"] == "env.MLFLOW_TRACKING_URI != ''" and f'-eq {cli.EXIT_HELD_BACK}' in step["run"]
    assert (trial.command, trial.format) == ("merge", "json") and trial.into != "main"  # a trial merge
    assert runs.count('>> "$GITHUB_STEP_SUMMARY"') == 1 and runs.count(">> review.md") >= 2
    merge = doc["jobs"]["merge"]
    _, m = commands("merge")
    assert (m.command, m.into, m.format) == ("merge", "main", "json")
    merge_run = "\n".join(step.get("run", "") for step in merge["steps"])
    assert f'-eq {cli.EXIT_CONFLICT}' in merge_run  # conflicts are told apart from other failures
    assert "gh workflow run adapters.yml" in merge_run and merge["permissions"]["actions"] == "write"
    assert "merge" in merge["if"] and "merge" in review["if"]  # one or the other per event


# ---- expression references (what actionlint checks beyond the schema) ---------------------------------

CONTEXTS = {"github", "env", "vars", "secrets", "inputs", "needs", "steps", "matrix", "strategy", "job", "runner"}
FUNCTIONS = {"fromJSON", "toJSON", "format", "contains", "startsWith", "endsWith", "join", "hashFiles",
             "success", "failure", "always", "cancelled"}
# Contexts GitHub makes available where the expression sits.
WORKFLOW_LEVEL = {"github", "vars", "secrets", "inputs", "env"}
# What `mlops plan --format github-matrix` writes to $GITHUB_OUTPUT, and the keys of its matrix entries.
PLAN_OUTPUTS = {"matrix", "commit", "stale"}


def expressions(node, implicit=False):
    """Every ${{ }} expression under `node` (and the bare expression of an `if:`)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from expressions(v, implicit=(k == "if"))
    elif isinstance(node, list):
        for v in node:
            yield from expressions(v)
    elif isinstance(node, str):
        found = re.findall(r"\$\{\{(.*?)\}\}", node, re.S)
        yield from found
        if implicit and not found:
            yield node


def references(expr: str):
    """(name, property path) for every context reference and ('()', function) for every call."""
    expr = re.sub(r"'(?:[^']|'')*'", "''", expr)  # string literals
    for m in re.finditer(r"(?<![\w.])([A-Za-z_][\w-]*)((?:\.[A-Za-z_*][\w-]*)*)\s*(\()?", expr):
        name, path, call = m.group(1), m.group(2), m.group(3)
        if call:
            yield "()", name
        elif name not in ("true", "false", "null"):
            yield name, path.lstrip(".").split(".") if path else []


def step_outputs(step) -> set[str]:
    run = step.get("run", "")
    out = set(re.findall(r"(?:^|[\s\"'])([A-Za-z_][\w-]*)=[^\n]*>>\s*\"?\$GITHUB_OUTPUT", run, re.M))
    if re.search(r"mlops\s+plan\b.*--format\s+github-matrix", run):
        out |= PLAN_OUTPUTS
    return out


def reference_errors(doc) -> list[str]:
    errors = []
    on = doc[True] if True in doc else doc["on"]
    inputs = set(((on or {}).get("workflow_dispatch") or {}).get("inputs") or {}) if isinstance(on, dict) else set()
    jobs = doc["jobs"]
    matrix_keys_of_plan = set(cli_jobs._matrix(_FakePlan(), 1)["include"][0])
    workflow_env = set(doc.get("env") or {})

    def check(expr, where, allowed, job=None, needs=(), steps_before=(), matrix=None, env=()):
        for name, path in references(expr):
            if name == "()":
                if path not in FUNCTIONS:
                    errors.append(f"{where}: unknown function {path}() in {expr!r}")
                continue
            if name not in CONTEXTS:
                errors.append(f"{where}: unknown context {name!r} in {expr!r}")
            elif name not in allowed:
                errors.append(f"{where}: context {name!r} is not available here: {expr!r}")
            elif name == "inputs" and path and path[0] not in inputs:
                errors.append(f"{where}: no workflow_dispatch input {path[0]!r}")
            elif name == "env" and path and path[0] not in env:
                errors.append(f"{where}: env {path[0]!r} is not set at this level")
            elif name == "needs":
                if not path or path[0] not in needs:
                    errors.append(f"{where}: {expr!r} names a job that is not in needs {sorted(needs)}")
                elif len(path) >= 3 and path[1] == "outputs" and path[2] not in (jobs[path[0]].get("outputs") or {}):
                    errors.append(f"{where}: job {path[0]!r} has no output {path[2]!r}")
            elif name == "steps":
                ids = {s.get("id"): s for s in steps_before if s.get("id")}
                if not path or path[0] not in ids:
                    errors.append(f"{where}: no earlier step with id {path[0] if path else ''!r}")
                elif len(path) >= 3 and path[1] == "outputs" and path[2] not in step_outputs(ids[path[0]]):
                    errors.append(f"{where}: step {path[0]!r} does not write output {path[2]!r}")
            elif name == "matrix":
                if matrix is None:
                    errors.append(f"{where}: matrix used in a job without one")
                elif path and path[0] not in matrix:
                    errors.append(f"{where}: the matrix has no key {path[0]!r} (it has {sorted(matrix)})")

    for key in ("env", "concurrency", "run-name"):
        for expr in expressions(doc.get(key)):
            check(expr, key, WORKFLOW_LEVEL, env=set())
    for job_name, job in jobs.items():
        needs = job.get("needs", [])
        needs = {needs} if isinstance(needs, str) else set(needs)
        for n in needs - set(jobs):
            errors.append(f"jobs.{job_name}: needs unknown job {n!r}")
        strategy = job.get("strategy") or {}
        matrix = strategy.get("matrix")
        if isinstance(matrix, str) and re.search(r"fromJSON\(needs\.\w+\.outputs\.matrix\)", matrix):
            matrix = matrix_keys_of_plan
        elif isinstance(matrix, dict):
            keys = set(matrix) - {"include", "exclude"}
            for entry in matrix.get("include") or []:
                keys |= set(entry)
            matrix = keys
        job_level = {"github", "vars", "secrets", "inputs", "env", "needs", "strategy", "job", "runner"}
        job_env = workflow_env | set(job.get("env") or {})
        for key in ("if", "runs-on", "env", "strategy", "concurrency", "environment", "timeout-minutes"):
            allowed = job_level | ({"matrix"} if key not in ("if", "strategy") else set())
            for expr in expressions({key: job.get(key)}):
                check(expr, f"jobs.{job_name}.{key}", allowed, job_name, needs, (), matrix, workflow_env)
        steps = job.get("steps", [])
        for expr in expressions(job.get("outputs")):
            check(expr, f"jobs.{job_name}.outputs", job_level | {"steps", "matrix"}, job_name, needs, steps, matrix,
                  job_env)
        for i, step in enumerate(steps):
            env = job_env | set(step.get("env") or {})
            for expr in expressions(step):
                check(expr, f"jobs.{job_name}.steps[{i}]", job_level | {"steps", "matrix"}, job_name, needs,
                      steps[:i], matrix, env)
    return errors


class _FakePlan:
    def shard(self, i, n):
        class Item:
            rows = 1
        return [Item()]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_expressions_reference_what_exists(workflow):
    assert reference_errors(yaml.safe_load(workflow.read_text())) == []


def test_reference_check_catches_the_mistakes_it_looks_for():
    doc = yaml.safe_load((ROOT / "examples" / "github-actions" / "adapters.yml").read_text())
    text = yaml.safe_dump(doc)
    broken = [
        ("needs.plan.outputs.matrix) }}", "needs.plan.outputs.matrixx) }}"),   # an output the job lacks
        ("matrix.shard }}", "matrix.index }}"),                                # a key the matrix lacks
        ("steps.release.outputs.image", "steps.publish.outputs.image"),        # no such step id
        ("inputs.shards", "inputs.shard_count"),                               # no such input
        ("fromJSON(", "fromJson2("),                                           # unknown function
    ]
    for old, new in broken:
        assert old in text, old
        errors = reference_errors(yaml.safe_load(text.replace(old, new, 1)))
        assert errors, f"{old!r} -> {new!r} went unnoticed"


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


def test_kubernetes_trainer_image_installs_the_published_wheel():
    version = re.search(r"project\(mlops VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    dockerfile = (K8S_JOB.parent / "trainer.Dockerfile").read_text()
    assert re.search(rf"^ARG MLOPS_PACKAGE=mlops-dolt=={re.escape(version)}$", dockerfile, re.M), dockerfile
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs and all('"$MLOPS_PACKAGE"' in line and " . " not in line for line in installs), installs
    container = yaml.safe_load(K8S_JOB.read_text())["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith(f":{version}") and f"mlops-trainer:{version}" in dockerfile


def install_commands(text: str):
    return [line.strip() for line in text.splitlines() if re.search(r"\bpip\s+(install|download)\b", line)]


@pytest.mark.parametrize("workflow", USER_WORKFLOWS, ids=lambda p: p.name)
def test_workflows_install_the_published_distribution_not_a_source_build(workflow):
    """No `pip install .` (a compile that needs Debian -dev packages), never the bare name `mlops` (an
    unrelated package on the public index): the distribution by its own name, or its downloaded wheel."""
    doc = yaml.safe_load(workflow.read_text())
    package = (doc.get("env") or {}).get("MLOPS_PACKAGE", "")
    installs = [c for job in doc["jobs"].values() for s in job.get("steps", []) for c in install_commands(s.get("run", ""))]
    assert installs, f"{workflow.name} does not install mlops"
    version = re.search(r"project\(mlops VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert re.fullmatch(rf"mlops-dolt(\[[\w,]+\])?=={re.escape(version)}", package), package
    for cmd in installs:
        argv = shlex.split(cmd)
        args, targets = iter(argv[argv.index("pip") + 2:]), []
        for a in args:
            if a in ("-r", "--requirement"):
                targets.append(next(args))
            elif a in ("-d", "--dest", "-c", "--constraint", "-f", "--find-links"):
                next(args)
            elif not a.startswith("-"):
                targets.append(a)
        assert targets, cmd
        for target in targets:
            assert not re.match(r"\.(/|$)|mlops($|[^-])", target), f"{cmd}: installs {target!r}"
            if "mlops" in target.lower():
                assert target in ("${MLOPS_WHEEL:-$MLOPS_PACKAGE}", "dist/mlops_dolt-*.whl"), cmd
    # A wheel (path or URL) in the repository variable MLOPS_WHEEL replaces the published distribution.
    assert doc["env"]["MLOPS_WHEEL"] == "${{ vars.MLOPS_WHEEL }}"
    assert not re.search(r"apt(-get)? install[^\n]*-dev\b", workflow.read_text()), "Debian -dev packages are installed"


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
