"""Evaluation before release against real DoltLite and a real MLflow tracking server: stable held-out rows,
candidate against baseline at both data commits, the results in MLflow, and the gates a release applies."""

from __future__ import annotations

import hashlib
import json
import os
import sys

import pytest

import mlops

sys.path.insert(0, os.path.dirname(__file__))
from test_pipeline import ON_BOTH_BACKENDS, mariadb_server, server, sqlite_server  # noqa: E402,F401

pytestmark = [
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.mlflow,
    pytest.mark.slow,
]

IMAGE = "registry.example.com/adapters"


@pytest.fixture
def shop(tmp_path, server, request):
    """Three customers with enough rows that a label flip shows on their evaluation rows (30% held out)."""
    from mlops import demo

    source = mlops.DoltSource(f"doltlite:{tmp_path / 'data.db'}", create=True)
    demo.init_demo(source, customers=3, rows_per_customer=160, seed=5, epochs=12)
    node = request.node.name
    prefix = "ev-" + hashlib.sha256(node.encode()).hexdigest()[:10] + "-"
    defaults = json.loads(source.query("SELECT config FROM adapters WHERE name = '*'").to_numpy()["config"][0])
    defaults["eval_fraction"] = 0.3
    source.execute("UPDATE adapters SET config = ? WHERE name = '*'", (json.dumps(defaults),))
    for i in range(1, 4):
        source.execute("UPDATE adapters SET name = ? WHERE name = ?", (prefix + demo.customer_name(i), demo.customer_name(i)))
    source.commit("Prefix adapter names; hold out 30% for evaluation")
    tracker = mlops.MlflowTracker(server.url)

    def make():
        return mlops.Pipeline(source, tracker, mlops.CudaTrainer(device="cpu", seed=0), mlops.load_catalog_table(source),
                              experiment=prefix + "adapters", releases_experiment=prefix + "releases", code_commit="c0de")

    return {"source": source, "tracker": tracker, "make": make, "server": server, "tmp": tmp_path,
            "name": lambda i: prefix + demo.customer_name(i), "customer": demo.customer_name}


def set_gate(source, name: str, **fields) -> None:
    config = json.loads(source.query("SELECT config FROM adapters WHERE name = ?", (name,)).to_numpy()["config"][0])
    config.update(fields)
    source.execute("UPDATE adapters SET config = ? WHERE name = ?", (json.dumps(config), name))
    source.commit(f"Gate of {name}: {fields}")


def swap_top_intents(source, customer: str) -> tuple[str, str]:
    """The analyst's mistake: the two most common intents of one customer swapped."""
    t = source.query("SELECT intent, COUNT(*) AS n FROM tickets WHERE customer = ? GROUP BY intent ORDER BY n DESC, intent",
                     (customer,)).to_numpy()
    a, b = str(t["intent"][0]), str(t["intent"][1])
    source.execute("UPDATE tickets SET intent = CASE WHEN intent = ? THEN ? ELSE ? END WHERE customer = ? AND intent IN (?, ?)",
                   (a, b, a, customer, a, b))
    return a, b


def evaluation_ids(source, customer: str, name: str, at: str) -> set[int]:
    """Ids of the evaluation rows (the feature column is the id itself)."""
    ds = source.dataset("tickets", label="intent", features=["id"], where="customer = ?", params=(customer,), at=at,
                        holdout="evaluation", holdout_salt=name, holdout_fraction=0.3)
    return {int(v) for v in ds.X[:, 0]}


@ON_BOTH_BACKENDS
def test_label_flip_is_held_back_while_new_rows_ship(shop):
    import mlflow

    source, tracker, name, customer = shop["source"], shop["tracker"], shop["name"], shop["customer"]
    # Customer 3 demands more evaluation rows than it has: as a new adapter it fails the floor and stays out.
    set_gate(source, name(3), min_eval_rows=10_000)
    pipe = shop["make"]()
    assert pipe.catalog[name(3)].gate["min_eval_rows"] == 10_000
    assert pipe.train(pipe.plan(at="main")).failed == 0
    first = pipe.release(image=IMAGE)
    assert dict(first.manifest) == {name(1): 1, name(2): 1}
    assert sorted(first.promoted) == [name(1), name(2)]
    assert [(h["name"], h["kept_version"]) for h in first.held_back] == [(name(3), 0)]
    assert "fewer than min_eval_rows 10000" in first.held_back[0]["reasons"][0]
    with pytest.raises(mlops.NotFoundError):
        tracker.get_by_alias(name(3), "production")

    base_commit = source.resolve("main")
    ids_before = evaluation_ids(source, customer(2), name(2), base_commit)
    # The mistake for customer 1; genuinely new rows for customer 2 (and an unrelated relabel of one row).
    swap_top_intents(source, customer(1))
    source.execute("INSERT INTO tickets (id, customer, body, intent) "
                   "SELECT id + 100000, customer, body || ' thanks', intent FROM tickets WHERE customer = ?", (customer(2),))
    source.commit("Analyst change")
    ids_after = evaluation_ids(source, customer(2), name(2), source.resolve("main"))
    assert ids_before <= ids_after, "an evaluation row left the set after unrelated inserts"
    assert {i for i in ids_after if i < 100000} == ids_before

    assert pipe.train(pipe.plan(at="main")).failed == 0
    report = pipe.evaluate()
    flipped, grown = report.item(name(1)), report.item(name(2))
    assert flipped["verdict"] == "fail", flipped["reasons"]
    assert [e["role"] for e in flipped["evaluations"]] == ["candidate", "baseline"]
    at_base = flipped["evaluations"][1]
    assert at_base["commit"] == base_commit and at_base["comparison"]["high"] < -0.05
    assert at_base["comparison"]["rows"] == at_base["candidate"]["rows"] > 20
    assert grown["verdict"] == "pass", grown["reasons"]
    assert report.item(name(3))["verdict"] == "fail"  # retrained at the new commit, still new, still too few rows

    # Recorded where people look: the candidate's run and version, read with MLflow's own client.
    client = mlflow.MlflowClient(shop["server"].url)
    v2 = client.get_model_version(name(1), "2")
    assert v2.tags["mlops.eval.verdict"] == "fail"
    assert v2.tags["mlops.eval.baseline_version"] == "1"
    assert json.loads(v2.tags["mlops.eval.commits"])["baseline"] == base_commit
    assert set(json.loads(v2.tags["mlops.eval.rows_digest"])) == {"candidate", "baseline"}
    metrics = client.get_run(v2.run_id).data.metrics
    assert metrics["eval_baseline_data_accuracy"] < metrics["baseline_eval_baseline_data_accuracy"]
    assert metrics["eval_baseline_data_accuracy_delta_high"] < -0.05
    assert {"eval_accuracy", "eval_macro_f1", "eval_log_loss", "eval_rows", "baseline_eval_accuracy"} <= set(metrics)

    # enforce (the default): the flipped customer keeps its production version, the grown one ships; the
    # command line says so with its own exit code.
    from mlops.cli import EXIT_HELD_BACK, main

    rc = main(["release", "--image", IMAGE, "--data", f"doltlite:{shop['tmp'] / 'data.db'}",
               "--tracking-uri", shop["server"].url])
    assert rc == EXIT_HELD_BACK
    assert tracker.get_by_alias(name(1), "production").version == 1
    assert tracker.get_by_alias(name(1), "staging").version == 2
    assert tracker.get_by_alias(name(2), "production").version == 2
    held = pipe.release(image=IMAGE)
    assert dict(held.manifest) == {name(1): 1, name(2): 2}
    assert sorted((h["name"], h["candidate_version"], h["kept_version"]) for h in held.held_back) == [
        (name(1), 2, 1), (name(3), 2, 0)]
    assert any("points vs v1 on the baseline's data" in r for r in held.held_back[0]["reasons"])

    # warn ships every candidate and lists the failing ones; off does not evaluate at all.
    warned = pipe.release(image=IMAGE, gate="warn")
    assert dict(warned.manifest) == {name(1): 2, name(2): 2, name(3): 2}
    assert sorted(h["name"] for h in warned.warned) == [name(1), name(3)] and not warned.held_back
    off = pipe.release(image=IMAGE, gate="off")
    assert off.gate == "off" and off.md5 == warned.md5 and not off.warned and not off.held_back
    with pytest.raises(mlops.ConfigError, match="gate mode 'strict'"):
        pipe.release(image=IMAGE, gate="strict")


def test_a_branch_preview_shows_what_merging_would_do_and_records_nothing(shop, capsys):
    """`mlops plan --at BRANCH --evaluate`: the stale adapters are fitted in memory and evaluated against
    production; the markdown names the one a merge would hold back; MLflow is left as it was."""
    from mlops import review
    from mlops.cli import EXIT_HELD_BACK, main

    source, tracker, name, customer = shop["source"], shop["tracker"], shop["name"], shop["customer"]
    pipe = shop["make"]()
    pipe.train(pipe.plan(at="main"))
    assert dict(pipe.release(image=IMAGE).manifest) == {name(1): 1, name(2): 1, name(3): 1}
    with review.on_branch(source, "analyst"):
        swap_top_intents(source, customer(1))
        source.execute("INSERT INTO tickets (id, customer, body, intent) SELECT id + 100000, customer, "
                       "body || ' thanks', intent FROM tickets WHERE customer = ?", (customer(2),))
        source.commit("Analyst change")

    def versions():
        return {name(i): [v.version for v in tracker.search_model_versions(f"name = '{name(i)}'")] for i in (1, 2, 3)}

    versions_before = versions()

    report = pipe.preview(pipe.plan(at="analyst"))
    assert [(i["name"], i["candidate_version"], i["baseline_version"]) for i in report.items] == [
        (name(1), 0, 1), (name(2), 0, 1)]
    assert report.item(name(1))["verdict"] == "fail" and report.item(name(2))["verdict"] == "pass"
    flipped = report.item(name(1))["evaluations"]
    assert [e["role"] for e in flipped] == ["candidate", "baseline"]
    assert flipped[1]["commit"] == source.resolve("main") and flipped[1]["comparison"]["high"] < -0.05

    rc = main(["plan", "--at", "analyst", "--against", "main", "--evaluate", "--data",
               f"doltlite:{shop['tmp'] / 'data.db'}", "--tracking-uri", shop["server"].url])
    out = capsys.readouterr().out
    assert rc == EXIT_HELD_BACK
    assert out.startswith("### Evaluation preview: merging `analyst`")
    assert "2 adapters would be retrained; **1 would be held back** by their gates." in out
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines() if line.startswith(f"| {name(1)}")
            or line.startswith(f"| {name(2)}")}
    assert rows[name(1)].endswith("| fail |") and rows[name(2)].endswith("| pass |")
    assert f"- `{name(1)}`:" in out and "points vs v1 on the baseline's data" in out
    assert name(3) not in out  # its slice did not change: nothing to preview

    # Nothing recorded, no alias moved.
    assert versions() == versions_before
    for i in (1, 2, 3):
        assert tracker.get_by_alias(name(i), "production").version == 1
        assert tracker.get_by_alias(name(i), "staging").version == 1


def test_an_evaluation_ref_pins_the_rows_both_versions_are_judged_on(shop):
    """eval_ref: a tag kept for a curated set. A label flip on main also flips main's evaluation rows, so the
    candidate looks fine there; on the curated rows it is held back. A ref that does not resolve is an error."""
    source, name, customer = shop["source"], shop["name"], shop["customer"]
    pipe = shop["make"]()
    pipe.train(pipe.plan(at="main"))
    pipe.release(image=IMAGE)
    source.create_tag("curated-1", "main")
    curated = source.resolve("curated-1")
    set_gate(source, name(1), eval_ref="curated-1")
    swap_top_intents(source, customer(1))
    source.commit("Analyst change")
    pipe = shop["make"]()
    assert pipe.catalog[name(1)].gate["eval_ref"] == "curated-1" and pipe.catalog[name(2)].gate["eval_ref"] == ""
    pipe.train(pipe.plan(at="main"))
    item = pipe.evaluate().item(name(1))
    assert [(e["role"], e["commit"]) for e in item["evaluations"]] == [("eval_ref", curated)]
    assert item["verdict"] == "fail" and item["evaluations"][0]["comparison"]["high"] < -0.05
    assert "on the evaluation ref curated-1" in item["reasons"][0]
    # Without the pin, both data commits are used; on main's own rows, relabelled like its training rows, the
    # candidate looks far better than on the curated ones.
    set_gate(source, name(1), eval_ref="")
    unpinned = shop["make"]().evaluate(record=False).item(name(1))
    assert [e["role"] for e in unpinned["evaluations"]] == ["candidate", "baseline"]
    assert unpinned["evaluations"][0]["candidate"]["accuracy"] > item["evaluations"][0]["candidate"]["accuracy"] + 0.1

    set_gate(source, name(1), eval_ref="no-such-tag")
    missing = shop["make"]().evaluate(record=False).item(name(1))
    assert missing["verdict"] == "error" and missing["evaluations"] == []
    assert "[mlops.not_found] the evaluation ref 'no-such-tag' of adapter " + name(1) in missing["error"]


def test_bad_gate_values_name_adapter_and_field():
    doc = {"defaults": {"table": "t", "label": "l", "text": "x", "confidence": 0.2},
           "adapters": [{"name": "a"}, {"name": "b", "max_drop": "lots", "eval_ref": 5}]}
    with pytest.raises(mlops.DataError) as e:
        mlops.Catalog.from_json(json.dumps(doc))
    assert "adapter 'a' (#1): field 'confidence': must be in [0.5, 0.999], got 0.2" in str(e.value)
    assert "adapter 'b' (#2): field 'max_drop': must be a number, got string" in str(e.value)
    assert "adapter 'b' (#2): field 'eval_ref': must be a string, got number" in str(e.value)


def test_production_models_on_todays_data_show_drift(shop):
    """`mlops evaluate --alias production --at main`: the released models scored on today's data beside the data
    they were trained on; the absolute floor decides, nothing is recorded."""
    from mlops.cli import EXIT_HELD_BACK, EXIT_NOT_FOUND, EXIT_USAGE, main

    source, tracker, name, customer = shop["source"], shop["tracker"], shop["name"], shop["customer"]
    set_gate(source, name(1), min_accuracy=0.7)
    pipe = shop["make"]()
    assert pipe.train(pipe.plan(at="main")).failed == 0
    assert not pipe.release(image=IMAGE).held_back
    trained_at = source.resolve("main")
    tags_before = tracker.get_model_version(name(1), 1).tags

    # Today's data: customer 1's two main intents trade labels; nothing is retrained.
    swap_top_intents(source, customer(1))
    today = source.commit("Relabel").hash
    report = pipe.evaluate_at(alias="production", at="main")
    assert (report.against, report.at) == ("production", today)
    drifted, steady = report.item(name(1)), report.item(name(2))
    assert drifted["candidate_version"] == 1 and drifted["verdict"] == "fail", drifted
    assert [(e["role"], e["commit"]) for e in drifted["evaluations"]] == [("current", today), ("trained", trained_at)]
    now, then = (e["candidate"] for e in drifted["evaluations"])
    assert now["accuracy"] < 0.7 <= then["accuracy"] and now["rows"] == then["rows"] > 20
    assert any("is below min_accuracy 0.700" in r for r in drifted["reasons"]), drifted["reasons"]
    assert any(r.endswith(f"{(now['accuracy'] - then['accuracy']) * 100:+.1f} points") for r in drifted["reasons"])
    # An untouched slice: the same rows, the same accuracy, and only the default floor (0) applies.
    assert steady["verdict"] == "pass"
    a, b = steady["evaluations"]
    assert a["candidate"]["accuracy"] == b["candidate"]["accuracy"] and a["rows_digest"] == b["rows_digest"]
    assert tracker.get_model_version(name(1), 1).tags == tags_before  # records nothing
    with pytest.raises(mlops.ConfigError, match="needs a data ref"):
        pipe.evaluate_at(alias="production", at="")
    assert {i["verdict"] for i in pipe.evaluate_at(alias="no-such-alias", at="main").items} == {"no model"}

    # The command line: exit 9 when a model fails its floor; --against does not mix with it; a bad ref is named.
    data = ["--data", f"doltlite:{shop['tmp'] / 'data.db'}", "--tracking-uri", shop["server"].url]
    assert main(["evaluate", "--alias", "production", "--at", "main", *data]) == EXIT_HELD_BACK
    assert main(["evaluate", "--at", "main", "--against", "production", *data]) == EXIT_USAGE
    assert main(["evaluate", "--at", "no-such-branch", *data]) == EXIT_NOT_FOUND
