"""Reviewing a data change on real DoltLite: sync to a branch, row diffs, the retrain preview, merge."""

from __future__ import annotations

import json

import pytest

import mlops

pytestmark = pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component")

from mlops import cli, demo, review  # noqa: E402


def run(capsys, *argv):
    """Runs the command line in this process; returns (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def repo(tmp_path):
    uri = f"doltlite:{tmp_path / 'data.db'}"
    src = mlops.DoltSource(uri, create=True)
    demo.init_demo(src, customers=4, rows_per_customer=20, seed=3, epochs=2)
    return uri, src


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def tickets(src, ref, where="1 = 1"):
    t = src.query(f"SELECT id, customer, intent FROM tickets WHERE {where} ORDER BY id", at=ref).to_numpy()
    return {int(i): (c, intent) for i, c, intent in zip(t["id"], t["customer"], t["intent"])}


def analyst_sheet(src, tmp_path):
    """Relabels ticket 1, adds ticket 1000 for customer-002, moves ticket 3 from customer-001 to customer-004."""
    rows = tickets(src, "main")
    c1, i1 = rows[1]
    c3, i3 = rows[3]
    assert c3 == "customer-001"
    body = lambda i: src.query("SELECT body FROM tickets WHERE id = ?", (i,)).column("body")[0]  # noqa: E731
    return write(tmp_path / "sheet.csv",
                 "id,customer,body,intent\n"
                 f"1,{c1},{body(1)},{'refund' if i1 != 'refund' else 'shipping'}\n"
                 f"3,customer-004,{body(3)},{i3}\n"
                 "1000,customer-002,my kettle arrived broken,refund\n")


def test_sync_to_a_branch_leaves_main_untouched(repo, tmp_path, capsys):
    uri, src = repo
    main_before = src.resolve("main")
    sheet = analyst_sheet(src, tmp_path)
    code, out, err = run(capsys, "sync", "tickets", sheet, "--primary-key", "id", "--branch", "analyst",
                         "--data", uri, "--format", "json")
    assert code == 0, err
    reply = json.loads(out)
    assert reply["branch"] == "analyst" and "created branch analyst from main" in err
    assert src.resolve("main") == main_before
    assert src.resolve("analyst") == reply["commit"] != main_before
    assert src.active_branch() == "main"
    assert src.merge_base("main", "analyst") == main_before
    assert tickets(src, "analyst")[1000] == ("customer-002", "refund")
    assert 1000 not in tickets(src, "main")
    # A second sync onto the existing branch commits on top of it.
    more = write(tmp_path / "more.csv", "id,customer,body,intent\n1001,customer-002,lamp flickers,repair\n")
    code, out, _ = run(capsys, "sync", "tickets", more, "--primary-key", "id", "--branch", "analyst", "--data", uri)
    assert code == 0 and src.resolve("analyst") == out.strip()
    assert src.commit_info("analyst~1").hash == reply["commit"]
    assert src.resolve("main") == main_before


def test_diff_every_format_counts_tables_and_adapter_slices(repo, tmp_path, capsys):
    uri, src = repo
    run(capsys, "sync", "tickets", analyst_sheet(src, tmp_path), "--primary-key", "id", "--branch", "analyst",
        "--data", uri)
    old = tickets(src, "main")

    code, out, err = run(capsys, "diff", "main..analyst", "--data", uri, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["from_commit"] == src.resolve("main") and report["to_commit"] == src.resolve("analyst")
    [t] = report["tables"]
    assert (t["table"], t["key"], t["added"], t["changed"], t["removed"]) == ("tickets", ["id"], 1, 2, 0)
    assert t["rows"]["added"][0]["id"] == 1000 and t["rows"]["added"][0]["intent"] == "refund"
    changes = {c["key"]["id"]: c["changes"] for c in t["rows"]["changed"]}
    assert changes[3] == {"customer": ["customer-001", "customer-004"]}
    assert list(changes[1]) == ["intent"] and changes[1]["intent"][0] == old[1][1]
    # Per adapter slice: ticket 3 left customer-001's slice and entered customer-004's.
    slices = {a["name"]: (a["added"], a["changed"], a["removed"]) for a in report["adapters"]}
    assert slices["customer-001"] == (0, 1, 1)  # ticket 1 relabelled (it is customer-001's), ticket 3 left
    assert slices["customer-004"] == (1, 0, 0)
    assert slices["customer-002"] == (1, 0, 0)
    assert "customer-003" not in slices

    code, out, _ = run(capsys, "diff", "main..analyst", "--data", uri, "--table", "tickets",
                       "--where", "customer = 'customer-001'", "--format", "json")
    [t] = json.loads(out)["tables"]
    assert (t["added"], t["changed"], t["removed"]) == (0, 1, 1)
    assert t["rows"]["removed"][0]["id"] == 3

    code, out, _ = run(capsys, "diff", "main..analyst", "--data", uri)
    assert code == 0
    assert "table tickets: +1 added, ~2 changed, -0 removed" in out
    assert '~ id=3: customer "customer-001" → "customer-004"' in out
    assert "adapter customer-004 (tickets): +1 ~0 -0" in out

    full = tmp_path / "full.json"
    code, out, _ = run(capsys, "diff", "main..analyst", "--data", uri, "--format", "markdown", "--full-json", full)
    assert code == 0
    assert "| tickets | 1 | 2 | 0 |" in out and "| customer-004 | tickets | 1 | 0 | 0 |" in out
    assert "→" in out and not full.exists()  # short: every row shown, no file

    code, _, err = run(capsys, "diff", "main", "--data", uri)
    assert code == 2 and "FROM..TO" in err  # a usage error
    code, _, err = run(capsys, "diff", "main..nope", "--data", uri)
    assert code == 4 and "nope" in err


def test_long_markdown_diff_is_summarised_with_the_full_json_in_a_file(repo, tmp_path, capsys):
    uri, src = repo
    rows = "".join(f"{2000 + i},customer-003,new ticket {i},refund\n" for i in range(25))
    sheet = write(tmp_path / "big.csv", "id,customer,body,intent\n" + rows)
    run(capsys, "sync", "tickets", sheet, "--primary-key", "id", "--branch", "bulk", "--data", uri)
    full = tmp_path / "diff.json"
    code, out, _ = run(capsys, "diff", "main..bulk", "--data", uri, "--format", "markdown", "--full-json", full)
    assert code == 0
    assert "… and 15 more added" in out and f"`{full}`" in out
    saved = json.loads(full.read_text())
    assert saved["tables"][0]["added"] == 25 and len(saved["tables"][0]["rows"]["added"]) == 25


def test_plan_against_main_shows_only_what_the_merge_changes(repo, tmp_path, capsys):
    uri, src = repo
    run(capsys, "sync", "tickets", analyst_sheet(src, tmp_path), "--primary-key", "id", "--branch", "analyst",
        "--data", uri)
    # On the branch, a setting of customer-003 changes too.
    with review.on_branch(src, "analyst"):
        src.execute("UPDATE adapters SET config = ? WHERE name = ?",
                    (json.dumps({"where": "customer = ?", "params": ["customer-003"], "epochs": 5}), "customer-003"))
        src.commit("customer-003: more epochs")
    # Meanwhile main moves on for customer-002's tickets: not the branch's doing, not in its preview.
    src.execute("DELETE FROM tickets WHERE id = (SELECT MIN(id) FROM tickets WHERE customer = 'customer-002')")
    src.commit("main: drop a customer-002 ticket")

    code, out, err = run(capsys, "plan", "--at", "analyst", "--against", "main", "--data", uri, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["merge_base"] == src.merge_base("main", "analyst")
    reasons = {i["name"]: i["reasons"] for i in report["items"] if i["stale"]}
    assert reasons["customer-001"] == ["data slice changed: +0 ~1 -1 rows"]
    assert reasons["customer-002"] == ["data slice changed: +1 ~0 -0 rows"]
    assert reasons["customer-003"] == ["settings changed: epochs"]
    assert reasons["customer-004"] == ["data slice changed: +1 ~0 -0 rows"]
    assert report["stale"] == 4 and report["removed_adapters"] == []

    code, out, _ = run(capsys, "plan", "--at", "analyst", "--against", "main", "--data", uri)
    assert code == 0 and "would make 4 of 4 adapters stale" in out
    code, out, _ = run(capsys, "plan", "--at", "analyst", "--against", "main", "--data", uri, "--format", "markdown")
    assert "| customer-003 | settings changed: epochs |" in out


def test_merge_clean_then_conflicting_with_exit_codes(repo, tmp_path, capsys):
    uri, src = repo
    run(capsys, "sync", "tickets", analyst_sheet(src, tmp_path), "--primary-key", "id", "--branch", "analyst",
        "--data", uri)
    branch_tip = src.resolve("analyst")
    code, out, err = run(capsys, "merge", "analyst", "--data", uri, "--format", "json", "--delete-branch")
    assert code == 0, err
    reply = json.loads(out)
    assert reply["fast_forward"] and reply["commit"] == branch_tip == src.resolve("main")
    assert "analyst" not in src.branches()
    assert tickets(src, "main")[1000] == ("customer-002", "refund")

    # The same ticket relabelled differently on a branch and on main.
    sheet = write(tmp_path / "x.csv", "id,customer,body,intent\n5,customer-001,box crushed,refund\n")
    run(capsys, "sync", "tickets", sheet, "--primary-key", "id", "--branch", "fix", "--data", uri)
    src.execute("UPDATE tickets SET intent = 'shipping', body = 'box crushed' WHERE id = 5")
    main_tip = src.commit("main relabels ticket 5").hash
    code, out, err = run(capsys, "merge", "fix", "--data", uri, "--format", "json")
    assert code == cli.EXIT_CONFLICT == 7, err
    assert json.loads(out) == {"merged": False, "branch": "fix", "into": "main", "conflicts": {"tickets": ["id=5"]}}
    assert src.resolve("main") == main_tip
    assert tickets(src, "main")[5][1] == "shipping"
    code, out, err = run(capsys, "merge", "fix", "--data", uri)
    assert code == 7 and "conflict in tickets: (id=5)" in out and "nothing was merged" in err

    with pytest.raises(mlops.ConflictError) as e:
        src.merge("fix")
    assert e.value.conflicts == {"tickets": ["id=5"]}
    assert src.resolve("main") == main_tip

    code, _, err = run(capsys, "merge", "no-such-branch", "--data", uri)
    assert code == 4 and "no-such-branch" in err

    # A branch that only adds rows elsewhere merges with a merge commit carrying the message.
    sheet = write(tmp_path / "y.csv", "id,customer,body,intent\n3000,customer-004,new,refund\n")
    run(capsys, "sync", "tickets", sheet, "--primary-key", "id", "--branch", "more", "--data", uri)
    src.execute("UPDATE tickets SET intent = 'repair' WHERE id = 7")
    src.commit("main edits ticket 7")
    code, out, _ = run(capsys, "merge", "more", "--data", uri, "-m", "Merge reviewed sheet")
    assert code == 0 and "(merge commit)" in out
    assert src.head().message == "Merge reviewed sheet"
    assert src.merge("more").up_to_date


def test_python_merge_api_on_doltlite(tmp_path):
    src = mlops.DoltSource(str(tmp_path / "m.db"), create=True)
    src.execute("CREATE TABLE k (a INTEGER, b TEXT, v REAL, PRIMARY KEY (a, b))")
    src.execute("INSERT INTO k VALUES (1, 'x', 1.0), (2, 'y', 2.0)")
    base = src.commit("base")
    src.create_branch("b")
    src.checkout("b")
    src.execute("UPDATE k SET v = 10 WHERE a = 2")
    src.commit("b")
    src.checkout("main")
    src.execute("UPDATE k SET v = 20 WHERE a = 2")
    src.commit("main")
    with pytest.raises(mlops.ConflictError, match="a=2, b='y'") as e:
        src.merge("b", message="m")
    assert list(e.value.conflicts) == ["k"] and len(e.value.conflicts["k"]) == 1
    assert src.merge_base("main", "b") == base.hash
    with pytest.raises(mlops.ConflictError, match="not merged"):
        src.delete_branch("b")
    src.delete_branch("b", force=True)
    assert src.branches() == ["main"]
    with pytest.raises(mlops.NotFoundError):
        src.delete_branch("b")
    with pytest.raises(mlops.NotFoundError):
        src.merge_base("main", "b")
