"""The example GitHub Actions workflows run for real, under nektos/act in host mode (see act_runner.py).

adapters.yml: a workflow_dispatch plan with inputs, then a repository_dispatch run end to end: plan, three
train shards, release; the release image is built, pushed to a registry on loopback, pulled by its MD5 tag,
run, and asked for a prediction. rollback.yml: one model (a new image, pushed, pulled and run) and a whole
release (only when its image is in the registry). data-review.yml on a pull request: one markdown review,
failing on conflicts. A missing repository variable fails the first command with mlops's config error.
release-wheel.yml: its build and test jobs on a version tag.

The data is DoltLite in a temp folder, the tracker a local MLflow server, the package the wheel `make wheel`
built (given to the workflows in the repository variable MLOPS_WHEEL), the image base the Debian base that
test_image.py makes.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import urllib.request

import pytest

import mlops

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from act_runner import ROOT, Act, Registry, container_env, tail, tool  # noqa: E402
from test_image import base_image, podman, running  # noqa: E402,F401  (session fixtures: podman, the base)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component")]

CUSTOMERS = 3
JOB_SUCCEEDED = "🏁  Job succeeded"


@pytest.fixture(scope="module")
def world(tmp_path_factory, wheel, podman, base_image):  # noqa: F811
    """DoltLite data of three customers, an MLflow server, a registry, and the settings the workflows get."""
    from mlops import demo
    from mlops.local_server import MlflowServer

    tool("act")
    tool("skopeo")
    root = tmp_path_factory.mktemp("act")
    data = root / "data.db"
    src = mlops.DoltSource(f"doltlite:{data}", create=True)
    demo.init_demo(src, customers=CUSTOMERS, rows_per_customer=30, seed=3, epochs=3)
    with MlflowServer(root / "mlflow") as server, Registry(root / "registry") as registry:
        env = container_env(root / "containers", registry)
        variables = {
            "MLOPS_DATA": f"doltlite:{data}",
            "MLFLOW_TRACKING_URI": server.url,
            "IMAGE_REPOSITORY": f"{registry.host}/adapters",
            "MLOPS_WHEEL": f"{wheel}[dolt]",
            "MLOPS_DEVICE": "cpu",
            "MLOPS_BASE_IMAGE": base_image,
        }
        yield {"root": root, "src": src, "data": data, "server": server, "registry": registry, "env": env,
               "vars": variables, "tracker": mlops.MlflowTracker(server.url), "podman": podman}


def act(world, workflow: str) -> Act:
    return Act(world["root"] / workflow.removesuffix(".yml"), workflow, env=world["env"])


def registry_image(world, image: str) -> dict:
    """What the registry serves for ``image``: its digest and labels (skopeo, over HTTP on loopback)."""
    r = subprocess.run([tool("skopeo"), "inspect", "--tls-verify=false", f"docker://{image}"],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, **world["env"]))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def serve_and_predict(world, image: str, model: str) -> str:
    """Pulls ``image`` from the registry, runs it, and returns one prediction of ``model``."""
    podman = world["podman"]
    podman("rmi", "-f", image, check=False)  # the tag the build left here: this must come from the registry
    podman("pull", "--tls-verify=false", image, timeout=300)
    with running(podman, image, "mlops-act") as (base, _):
        req = urllib.request.Request(f"{base}/models/{model}/invocations",
                                     data=json.dumps({"inputs": ["my kettle will not turn on"]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            [prediction] = json.load(r)["predictions"]
        return prediction


def production(world) -> dict:
    from mlops import demo

    tracker = world["tracker"]
    return {demo.customer_name(i): int(tracker.get_by_alias(demo.customer_name(i), "production").version)
            for i in range(1, CUSTOMERS + 1)}


# ---- adapters.yml -------------------------------------------------------------------------------------------

def test_workflow_dispatch_plans_at_the_ref_and_shard_count_given(world):
    wf = act(world, "adapters.yml")
    r = wf.run("workflow_dispatch", {"inputs": {"ref": "main", "shards": "2"}}, world["vars"], job="plan")
    assert r.returncode == 0, tail(r)
    [line] = [ln for ln in r.stdout.splitlines() if '| {"include":' in ln]  # what mlops plan printed
    matrix = json.loads(line.split("| ", 1)[1])
    assert [e["shard"] for e in matrix["include"]] == ["0/2", "1/2"]
    assert sum(e["adapters"] for e in matrix["include"]) == CUSTOMERS
    plan = json.loads((wf.artifact("plan") / "plan.json").read_text())
    assert plan["commit"] == world["src"].resolve("main")


@pytest.fixture(scope="module")
def released(world):
    """adapters.yml from a repository_dispatch: its act result, the release it recorded and pushed."""
    wf = act(world, "adapters.yml")
    r = wf.run("repository_dispatch", {"action": "dolt-data-changed", "client_payload": {"ref": "main", "shards": "3"}},
               world["vars"])
    assert r.returncode == 0, tail(r)
    report = json.loads((wf.artifact("release") / "release.json").read_text())
    return {"act": r, "report": report, "release": report["release"]}


def test_repository_dispatch_trains_three_shards_and_releases(world, released):
    out = released["act"].stdout
    shards = sorted(set(re.findall(r"\[adapters/train-(\d)\s*\] " + JOB_SUCCEEDED, out)))
    assert shards == ["1", "2", "3"], out[-4000:]
    release = released["release"]
    assert released["report"]["complete"] and release["state"] == "complete"
    assert release["manifest"] == production(world) == {n: 1 for n in production(world)}
    assert release["image"] == f"{world['registry'].host}/adapters:{release['md5']}"
    assert release["md5"] == mlops.ReleaseManifest(release["manifest"]).md5


def test_the_pushed_image_is_the_release_and_serves_it(world, released):
    release, report = released["release"], released["report"]
    pushed = registry_image(world, release["image"])
    assert pushed["Digest"] == report["digest"]  # what the workflow reported is what the registry serves
    labels = pushed["Labels"]
    assert labels["io.mlops.release.md5"] == release["md5"]
    assert labels["io.mlops.release.models"] == str(CUSTOMERS)
    for name, version in release["manifest"].items():
        assert labels[f"io.mlops.model.{name}"].startswith(f"v{version} "), labels
    model = sorted(release["manifest"])[0]
    assert serve_and_predict(world, release["image"], model) in ("billing", "shipping", "returns", "technical", "account")


# ---- rollback.yml -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def second_release(world, released):
    """Two customers retrained on edited tickets and released (its image never built): production is v2 for
    them, v1 for the third."""
    from mlops import demo

    src = world["src"]
    for i in (1, 2):
        src.execute("UPDATE tickets SET body = body || ' again' WHERE id = (SELECT MIN(id) FROM tickets WHERE customer = ?)",
                    (demo.customer_name(i),))
    src.commit("Edit one ticket of two customers")
    pipe = mlops.Pipeline(src, world["tracker"], mlops.CudaTrainer(device="cpu"), mlops.load_catalog_table(src))
    pipe.train(pipe.plan())
    report = pipe.release(image=f"{world['registry'].host}/adapters")
    assert report.complete
    assert production(world) == {demo.customer_name(1): 2, demo.customer_name(2): 2, demo.customer_name(3): 1}
    return report


def test_rolling_one_model_back_pushes_the_new_release_image(world, second_release):
    from mlops import demo

    model = demo.customer_name(1)
    wf = act(world, "rollback.yml")
    r = wf.run("workflow_dispatch", {"inputs": {"release": "", "model": model, "version": "1"}}, world["vars"])
    assert r.returncode == 0, tail(r)
    report = json.loads((wf.artifact("rollback") / "rollback.json").read_text())
    release = report["release"]
    expected = {demo.customer_name(1): 1, demo.customer_name(2): 2, demo.customer_name(3): 1}
    assert release["manifest"] == expected == production(world)
    assert release["previous"] == second_release.md5
    pushed = registry_image(world, release["image"])
    assert pushed["Digest"] == report["digest"]
    assert pushed["Labels"]["io.mlops.release.md5"] == release["md5"]
    assert pushed["Labels"][f"io.mlops.model.{model}"].startswith("v1 ")
    assert serve_and_predict(world, release["image"], model) in ("billing", "shipping", "returns", "technical", "account")


def test_a_release_is_restored_only_when_its_image_is_in_the_registry(world, released, second_release):
    wf = act(world, "rollback.yml")
    before = production(world)
    # The second release was recorded but its image never built: nothing moves.
    r = wf.run("workflow_dispatch", {"inputs": {"release": second_release.md5}}, world["vars"])
    assert r.returncode != 0 and "Check that the release's image is in the registry" in r.stdout, tail(r)
    assert production(world) == before
    r = wf.run("workflow_dispatch", {"inputs": {"release": released["release"]["md5"]}}, world["vars"])
    assert r.returncode == 0, tail(r)
    assert production(world) == released["release"]["manifest"]


def test_a_missing_variable_fails_the_first_command_with_a_config_error(world):
    variables = {k: v for k, v in world["vars"].items() if k not in ("MLOPS_DATA", "MLFLOW_TRACKING_URI")}
    r = act(world, "rollback.yml").run("workflow_dispatch", {"inputs": {"release": "0" * 32}}, variables)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "mlops: [mlops.config] rollback.yml needs MLOPS_DATA, MLFLOW_TRACKING_URI" in out, tail(r)
    assert "Traceback" not in out
    assert "Restore a release" not in out  # nothing after the check ran


# ---- data-review.yml ----------------------------------------------------------------------------------------

def pull_request(branch: str) -> dict:
    return {"action": "opened", "number": 7,
            "pull_request": {"number": 7, "head": {"ref": branch}, "base": {"ref": "main"}}}


def branch_with_edit(src, branch: str, sql: str, params=()) -> None:
    active = src.active_branch()
    src.create_branch(branch, start="main")
    src.checkout(branch)
    try:
        src.execute(sql, params)
        src.commit(f"Edit on {branch}")
    finally:
        src.checkout(active)


def test_data_review_of_a_pull_request_writes_one_markdown_review(world):
    from mlops import demo

    src = world["src"]
    customer = demo.customer_name(3)
    branch_with_edit(src, "sheet-update", "UPDATE tickets SET body = body || ' (checked in the sheet)' WHERE id = "
                     "(SELECT MAX(id) FROM tickets WHERE customer = ?)", (customer,))
    main = src.resolve("main")
    r = act(world, "data-review.yml").run("pull_request", pull_request("sheet-update"), world["vars"])
    assert r.returncode == 0, tail(r)
    review = (act(world, "data-review.yml").artifact("data-review") / "review.md").read_text()
    assert "tickets" in review and customer in review  # the row diff and the adapter it retrains
    # The evaluation preview: the changed customer's adapter fitted in memory and judged against production.
    assert "### Evaluation preview: merging `sheet-update`" in review, review
    assert re.search(r"^\| " + re.escape(customer) + r" \|.*\| (pass|fail) \|$", review, re.M), review
    assert "sheet-update merges into main without conflicts." in review
    assert src.resolve("main") == main  # a review never moves main
    assert not [b for b in src.branches() if str(b).startswith("review/")]  # the trial merge is cleaned up


def test_data_review_fails_on_a_merge_conflict_and_lists_the_rows(world):
    from mlops import demo

    src = world["src"]
    row = "(SELECT MIN(id) FROM tickets WHERE customer = ?)"
    customer = (demo.customer_name(2),)
    branch_with_edit(src, "sheet-conflict", f"UPDATE tickets SET body = 'from the sheet' WHERE id = {row}", customer)
    src.execute(f"UPDATE tickets SET body = 'edited on main' WHERE id = {row}", customer)
    main = src.commit("Edit the same ticket on main").hash
    wf = act(world, "data-review.yml")
    r = wf.run("pull_request", pull_request("sheet-conflict"), world["vars"])
    assert r.returncode != 0
    assert "sheet-conflict conflicts with main" in r.stdout, tail(r)
    review = (wf.artifact("data-review") / "review.md").read_text()
    assert "### Conflicts with main" in review and '"tickets"' in review, review
    assert src.resolve("main") == main


# ---- release-wheel.yml --------------------------------------------------------------------------------------

def test_release_wheel_builds_a_manylinux_wheel_and_tries_it_in_a_fresh_venv(tmp_path):
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    version = re.search(r"project\(mlops VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    wf = Act(tmp_path, "release-wheel.yml", files=[f for f in listed if (ROOT / f).is_file()])
    # `-j test` runs test and the job it needs, build; not publish (linted only: it needs PyPI's OIDC).
    r = wf.run("push", {"ref": f"refs/tags/v{version}", "ref_type": "tag"}, job="test", timeout=540)
    assert r.returncode == 0, tail(r)
    # act pads job names to one width: "[release-wheel/test ]".
    assert re.search(r"\[release-wheel/build\s*\] " + JOB_SUCCEEDED, r.stdout) and "release-wheel/publish" not in r.stdout
    [built] = list(wf.artifact("wheel").glob("*.whl"))
    assert re.fullmatch(rf"mlops_dolt-{re.escape(version)}-cp3\d+-cp3\d+-manylinux_2_\d+_x86_64\.whl", built.name)
    assert re.search(r"\[release-wheel/test\s*\] " + JOB_SUCCEEDED, r.stdout) and f"| mlops {version} (" in r.stdout


def test_release_wheel_refuses_a_tag_that_is_not_the_version(tmp_path):
    wf = Act(tmp_path, "release-wheel.yml", files=["CMakeLists.txt"])
    r = wf.run("push", {"ref": "refs/tags/v9.9.9", "ref_type": "tag"}, job="build")
    assert r.returncode != 0
    assert "the tag v9.9.9 does not name the version in CMakeLists.txt" in r.stdout, tail(r)
