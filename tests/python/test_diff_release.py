"""`mlops diff-release OLD NEW` on a real MLflow server: each changed model's versions with the metric
changes its recorded evaluation measured (the same numbers MLflow's own client reads), in text, JSON and
markdown; a rollback reads the evaluation the other way round."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

import mlops

sys.path.insert(0, os.path.dirname(__file__))
from test_cli_promises import cli, environment  # noqa: E402
from test_evaluate import IMAGE, pytestmark, swap_top_intents  # noqa: E402,F401  (pytestmark: the same marks)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of this module's own: the command line uses the default experiments."""
    from mlops.local_server import MlflowServer

    with MlflowServer(tmp_path_factory.mktemp("mlflow-diff")) as s:
        yield s


def release(env: dict, *extra: str) -> str:
    r = cli(env, "release", "--image", IMAGE, "--format", "json", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)["release"]["md5"]


def test_diff_release_shows_each_changed_models_metric_deltas(server, tmp_path):
    import mlflow

    from mlops import demo

    data = f"doltlite:{tmp_path / 'data.db'}"
    source = mlops.DoltSource(data, create=True)
    demo.init_demo(source, customers=3, rows_per_customer=160, seed=5, epochs=12)
    defaults = json.loads(source.query("SELECT config FROM adapters WHERE name = '*'").column("config")[0])
    defaults["eval_fraction"] = 0.3
    source.execute("UPDATE adapters SET config = ? WHERE name = '*'", (json.dumps(defaults),))
    source.commit("Hold out 30% for evaluation")
    flipped, grown, same = (demo.customer_name(i) for i in (1, 2, 3))
    env = environment(data, server.url)
    assert cli(env, "train", "--no-progress").returncode == 0
    first = release(env)

    # A label flip for one customer, genuinely new rows for another; both ship (gate warn) so both show.
    swap_top_intents(source, flipped)
    source.execute("INSERT INTO tickets (id, customer, body, intent) "
                   "SELECT id + 100000, customer, body || ' thanks', intent FROM tickets WHERE customer = ?", (grown,))
    source.commit("Analyst change")
    assert cli(env, "train", "--no-progress").returncode == 0
    second = release(env, "--gate", "warn")

    r = cli(env, "diff-release", first, second)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"~ {flipped} 1 -> 2  (gate fail)" in lines and f"~ {grown} 1 -> 2  (gate pass)" in lines, r.stdout
    assert same not in r.stdout
    # The flip shows on the data the old version was judged on: accuracy falls, with n and the interval.
    block = r.stdout.split(f"~ {flipped}")[1].split("\n~ ")[0]
    old_data = re.search(r"old data (\w{12}), n=(\d+): accuracy (\d\.\d{3}) -> (\d\.\d{3}) \(([-+]\d+\.\d) points "
                         r"\[([-+]\d+\.\d), ([-+]\d+\.\d)\] at 95%, p=0\.\d{3}\), macro-F1 .* log loss ", block)
    assert old_data, block
    assert float(old_data[4]) < float(old_data[3]) and float(old_data[7]) < -5, block
    assert re.search(r"^    - accuracy .*a drop beyond max_drop 5$", block, re.M), block  # the gate's reason

    # JSON: the numbers MLflow recorded on the new version's run, read with MLflow's own client.
    d = json.loads(cli(env, "diff-release", first, second, "--format", "json").stdout)
    assert d["from"] == first and d["to"] == second and d["added"] == {} and d["removed"] == {}
    assert sorted(d["changed"]) == sorted([flipped, grown])
    c = d["changed"][flipped]
    assert (c["old_version"], c["new_version"], c["evaluation"], c["verdict"]) == (1, 2, "forward", "fail")
    metrics = mlflow.MlflowClient(server.url).get_run(
        mlflow.MlflowClient(server.url).get_model_version(flipped, "2").run_id).data.metrics
    new_data, at_old = c["changes"]
    assert (new_data["data"], at_old["data"]) == ("new", "old")
    assert at_old["rows"] == metrics["eval_baseline_data_rows"] > 20
    acc = at_old["metrics"]["accuracy"]
    assert acc["old"] == pytest.approx(metrics["baseline_eval_baseline_data_accuracy"])
    assert acc["new"] == pytest.approx(metrics["eval_baseline_data_accuracy"])
    assert acc["delta"] == pytest.approx(metrics["eval_baseline_data_accuracy_delta"])
    loss = at_old["metrics"]["log_loss"]
    assert loss["delta"] == pytest.approx(metrics["eval_baseline_data_log_loss"] -
                                          metrics["baseline_eval_baseline_data_log_loss"]) and loss["delta"] > 0
    assert at_old["metrics"]["macro_f1"]["delta"] < 0
    interval = at_old["accuracy_interval"]
    assert interval["high"] == pytest.approx(metrics["eval_baseline_data_accuracy_delta_high"])
    assert interval["high"] < -0.05
    assert interval["confidence"] == 0.95 and interval["p_value"] < 0.05
    assert d["changed"][grown]["verdict"] == "pass"

    # Markdown: one table row per evaluation, for the pull request or the release notes.
    md = cli(env, "diff-release", first, second, "--format", "markdown").stdout
    assert md.startswith(f"### Release `{first[:12]}` → `{second[:12]}`")
    rows = [line for line in md.splitlines() if line.startswith(f"| {flipped} |")]
    assert len(rows) == 1 and "| 1 → 2 | gate fail |" in rows[0], md
    assert f"| old `{at_old['commit'][:12]}` | {at_old['rows']} | {acc['old']:.3f} → {acc['new']:.3f} " in md, md
    assert re.search(rf"^- \*\*{flipped}\*\* \(fail\): accuracy .*a drop beyond max_drop 5$", md, re.M), md
    assert f"**{grown}**" not in md  # a pass's notes repeat the table

    # A rollback to the first release: the same evaluation read the other way round.
    r = cli(env, "rollback", "--release", first, "--format", "json")
    assert r.returncode == 0, r.stderr
    third = json.loads(r.stdout)["release"]["md5"]
    back = json.loads(cli(env, "diff-release", second, third, "--format", "json").stdout)["changed"][flipped]
    assert (back["old_version"], back["new_version"], back["evaluation"]) == (2, 1, "reversed")
    assert [x["data"] for x in back["changes"]] == ["new", "old"]
    rolled = back["changes"][0]["metrics"]["accuracy"]  # at the (now new) version 1's data
    assert rolled["delta"] == pytest.approx(-acc["delta"]) and rolled["old"] == pytest.approx(acc["new"])
    assert back["changes"][0]["accuracy_interval"]["low"] == pytest.approx(-interval["high"])
    text = cli(env, "diff-release", second, third).stdout
    assert f"~ {flipped} 2 -> 1  (rollback: from the evaluation of v2 against v1)" in text, text

    assert cli(env, "diff-release", second, second).stdout == "no changes\n"
    r = cli(env, "diff-release", first, "0123456789abcdef")
    assert r.returncode != 0 and "no release with MD5" in r.stderr, r.stderr
