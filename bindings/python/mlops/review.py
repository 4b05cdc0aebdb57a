"""Reviewing a data change like a pull request: sync onto a branch, row diffs, what a merge retrains.

Used by the ``mlops sync --branch``, ``diff``, ``plan --against`` and ``merge`` commands; every function
takes an open :class:`mlops.DoltSource`.
"""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
from typing import Any, Callable, Iterator, Sequence

import mlops

# Rows shown per table and change kind before the markdown summary says "... and N more".
MARKDOWN_ROWS = 10
# A markdown comment longer than this is cut to the counts (GitHub allows 65,536 characters).
MARKDOWN_LIMIT = 60_000


@contextlib.contextmanager
def on_branch(source, branch: str, start: str = "main") -> Iterator[bool]:
    """Makes `branch` active for the block (created from `start` when missing), then returns to the branch
    that was active. Yields whether the branch was created."""
    created = branch not in source.branches()
    if created:
        source.create_branch(branch, start)
    previous = source.active_branch()
    source.checkout(branch)
    try:
        yield created
    finally:
        if previous and previous != branch:
            source.checkout(previous)


def _value(v: Any) -> Any:
    """A cell as JSON: numbers and text as they are, bytes as their length, NaN as None."""
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _value(v.item())
    return v


def _columns(table) -> dict[str, list]:
    out = {}
    for name in table.names:
        values = table.column(name).tolist()
        mask = table.null_mask(name).tolist()
        out[name] = [None if null else _value(v) for v, null in zip(values, mask)]
    return out


def table_changes(diff) -> dict:
    """The rows of a :class:`mlops.Diff` as added rows, changed rows (old → new per column) and removed rows."""
    cols = _columns(diff.rows)
    names = [n[len("to_"):] for n in diff.rows.names if n.startswith("to_")]
    key = list(diff.key)
    added, changed, removed = [], [], []
    for i, kind in enumerate(cols.get("diff_type", [])):
        old = {n: cols[f"from_{n}"][i] for n in names if f"from_{n}" in cols}
        new = {n: cols[f"to_{n}"][i] for n in names}
        if kind == "added":
            added.append(new)
        elif kind == "removed":
            removed.append(old)
        else:
            side = new if all(new.get(k) is not None for k in key) else old
            changes = {n: [old.get(n), new[n]] for n in names if old.get(n) != new[n]}
            changed.append({"key": {k: side.get(k) for k in key}, "changes": changes})
    return {"table": diff.table, "key": key, "added": diff.added, "changed": diff.modified, "removed": diff.removed,
            "rows": {"added": added, "changed": changed, "removed": removed}}


def row_diff(source, from_ref: str, to_ref: str, tables: Sequence[str] | None = None, where: str | None = None,
             catalog=None) -> dict:
    """Row changes from `from_ref` to `to_ref` in `tables` (default: every table whose rows changed), with
    counts per adapter slice of `catalog` (adapters whose table changed). `where` filters one table's rows."""
    from_commit, to_commit = source.resolve(from_ref), source.resolve(to_ref)
    if tables is None:
        tables = source.changed_tables(from_commit, to_commit)
    if where and len(tables) != 1:
        raise mlops.ConfigError("[mlops.config] diff --where needs --table (the filter is on one table's columns)")
    report = {"from": from_ref, "to": to_ref, "from_commit": from_commit, "to_commit": to_commit, "tables": [],
              "adapters": []}
    for table in tables:
        report["tables"].append(table_changes(source.diff(from_commit, to_commit, table, where)))
    changed = {t["table"] for t in report["tables"]}
    for entry in catalog or []:
        if entry.table not in changed:
            continue
        d = source.diff(from_commit, to_commit, entry.table, entry.where or None, list(entry.params))
        if d.added or d.modified or d.removed:
            report["adapters"].append({"name": entry.name, "table": entry.table, "added": d.added,
                                       "changed": d.modified, "removed": d.removed})
    return report


def _fmt(v: Any) -> str:
    return "NULL" if v is None else json.dumps(v, ensure_ascii=False) if isinstance(v, str) else str(v)


def _key_text(key: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in key.items())


def _row_text(row: dict, key: Sequence[str]) -> str:
    return _key_text({k: row.get(k) for k in key}) + ": " + ", ".join(
        f"{k}={_fmt(v)}" for k, v in row.items() if k not in key)


def _change_text(change: dict) -> str:
    return _key_text(change["key"]) + ": " + ", ".join(
        f"{col} {_fmt(old)} → {_fmt(new)}" for col, (old, new) in change["changes"].items())


def to_text(report: dict) -> str:
    lines = [f"diff {report['from']}..{report['to']} ({report['from_commit'][:12]}..{report['to_commit'][:12]})"]
    if not report["tables"]:
        lines.append("  no rows changed")
    for t in report["tables"]:
        lines.append(f"table {t['table']}: +{t['added']} added, ~{t['changed']} changed, -{t['removed']} removed")
        lines += [f"  + {_row_text(r, t['key'])}" for r in t["rows"]["added"]]
        lines += [f"  ~ {_change_text(c)}" for c in t["rows"]["changed"]]
        lines += [f"  - {_row_text(r, t['key'])}" for r in t["rows"]["removed"]]
    for a in report["adapters"]:
        lines.append(f"adapter {a['name']} ({a['table']}): +{a['added']} ~{a['changed']} -{a['removed']}")
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict, full_json: str | None = None, rows: int = MARKDOWN_ROWS) -> tuple[str, bool]:
    """A pull-request comment: counts per table and adapter slice, then up to `rows` rows of each kind
    per table. Returns (markdown, summarised); when summarised, the text points at `full_json`."""
    out = [f"### Data diff `{report['from']}..{report['to']}`", "",
           f"`{report['from_commit'][:12]}` → `{report['to_commit'][:12]}`", ""]
    if not report["tables"]:
        out.append("No rows changed.")
        return "\n".join(out) + "\n", False
    out += ["| table | added | changed | removed |", "|---|---:|---:|---:|"]
    out += [f"| {_md(t['table'])} | {t['added']} | {t['changed']} | {t['removed']} |" for t in report["tables"]]
    if report["adapters"]:
        out += ["", f"**Adapter slices changed: {len(report['adapters'])}**", "",
                "| adapter | table | added | changed | removed |", "|---|---|---:|---:|---:|"]
        out += [f"| {_md(a['name'])} | {_md(a['table'])} | {a['added']} | {a['changed']} | {a['removed']} |"
                for a in report["adapters"]]
    counts = list(out)
    summarised = False
    for t in report["tables"]:
        out += ["", f"#### {_md(t['table'])}", ""]
        for sign, kind, text in (("+", "added", lambda r, t=t: _row_text(r, t["key"])), ("~", "changed", _change_text),
                                 ("-", "removed", lambda r, t=t: _row_text(r, t["key"]))):
            items = t["rows"][kind]
            out += [f"- `{sign}` {_md(text(r))}" for r in items[:rows]]
            if len(items) > rows:
                summarised = True
                out.append(f"- … and {len(items) - rows} more {kind}")
    if len("\n".join(out)) > MARKDOWN_LIMIT:
        out, summarised = counts + ["", "Too many rows to show here."], True
    if summarised:
        out += ["", f"The full diff is in `{full_json}`." if full_json else "Run `mlops diff --format json` for every row."]
    return "\n".join(out) + "\n", summarised


def _entry_changes(old, new) -> list[str]:
    a, b = old.to_dict(), new.to_dict()
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def plan_against(source, catalog_at: Callable[[str], Any], at: str, against: str = "main") -> dict:
    """What merging `at` into `against` would make stale: per adapter, the changes `at` brings since the two
    branches parted (new adapter, settings changed, rows of its slice added/changed/removed)."""
    base = source.merge_base(against, at)
    head = source.resolve(at)
    new_catalog, old_catalog = catalog_at(head), catalog_at(base)
    changed_tables = set(source.changed_tables(base, head))
    items = []
    for entry in new_catalog:
        reasons = []
        old = old_catalog[entry.name] if entry.name in old_catalog else None
        if old is None:
            reasons.append("new adapter")
        elif old != entry:
            reasons.append("settings changed: " + ", ".join(_entry_changes(old, entry)))
        if entry.table in changed_tables:
            d = source.diff(base, head, entry.table, entry.where or None, list(entry.params))
            if d.added or d.modified or d.removed:
                reasons.append(f"data slice changed: +{d.added} ~{d.modified} -{d.removed} rows")
        items.append({"name": entry.name, "stale": bool(reasons), "reasons": reasons})
    removed = [e.name for e in old_catalog if e.name not in new_catalog]
    return {"at": at, "against": against, "commit": head, "merge_base": base, "items": items,
            "removed_adapters": removed, "stale": sum(1 for i in items if i["stale"])}


def plan_text(report: dict) -> str:
    lines = [f"merging {report['at']} ({report['commit'][:12]}) into {report['against']} would make "
             f"{report['stale']} of {len(report['items'])} adapters stale"]
    stale = [i for i in report["items"] if i["stale"]]
    width = max((len(i["name"]) for i in stale), default=4)
    lines += [f"  {i['name']:<{width}}  {'; '.join(i['reasons'])}" for i in stale]
    lines += [f"  {name:<{width}}  removed from the catalog" for name in report["removed_adapters"]]
    return "\n".join(lines)


def plan_markdown(report: dict) -> str:
    lines = [f"### Retrain preview: merging `{report['at']}` into `{report['against']}`", "",
             f"{report['stale']} of {len(report['items'])} adapters would be retrained.", ""]
    stale = [i for i in report["items"] if i["stale"]]
    if stale:
        lines += ["| adapter | why |", "|---|---|"]
        lines += [f"| {_md(i['name'])} | {_md('; '.join(i['reasons']))} |" for i in stale]
    return "\n".join(lines) + "\n"


def _points(x: float) -> str:
    return f"{x * 100:+.1f}"


def evaluation_markdown(report: dict, at: str, commit: str, against: str) -> str:
    """What merging `at` would do to each affected model (Pipeline.preview's report as a dict): its accuracy
    on the held-out rows against the version it would replace, the paired interval and the gate's verdict."""
    items = report["items"]
    failing = [i for i in items if i["verdict"] in ("fail", "error")]
    lines = [f"### Evaluation preview: merging `{at}` ({commit[:12]}) into `{against}`", "",
             f"{len(items)} adapter{'s' if len(items) != 1 else ''} would be retrained; "
             + (f"**{len(failing)} would be held back** by their gates." if failing else "every one passes its gate."),
             ""]
    if items:
        lines += [f"| adapter | against | rows | accuracy | {report['against']} | delta (points) | verdict |",
                  "|---|---|---:|---:|---:|---|---|"]
    for item in items:
        base = f"v{item['baseline_version']}" if item["baseline_version"] else "new"
        evs = item["evaluations"] or [None]
        for ev in evs:
            if ev is None:
                lines.append(f"| {_md(item['name'])} | {base} | | | | | {item['verdict']} |")
                continue
            c, b, d = ev["candidate"], ev["baseline"], ev["comparison"]
            data = "" if ev["role"] == "candidate" else f" (on {against}'s data {ev['commit'][:12]})"
            delta = (f"{_points(d['delta'])} [{_points(d['low'])}, {_points(d['high'])}] at {d['confidence']:.0%}"
                     if d["rows"] else "")
            lines.append(f"| {_md(item['name'])}{_md(data)} | {base} | {c['rows']} | {c['accuracy']:.3f} | "
                         + (f"{b['accuracy']:.3f}" if d["rows"] else "") + f" | {delta} | {item['verdict']} |")
    reasons = [(i["name"], r) for i in failing for r in i["reasons"]]
    if reasons:
        lines += ["", "Why held back:", ""] + [f"- `{_md(name)}`: {_md(r)}" for name, r in reasons]
    return "\n".join(lines) + "\n"


def write_json(path: str, obj: dict) -> None:
    p = pathlib.Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1), encoding="utf-8")
    tmp.replace(p)
