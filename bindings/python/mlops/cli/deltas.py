"""``diff-release`` output: the version changes between two releases and, per changed model, the metric
changes its recorded evaluation measured (Pipeline.compare_releases), as text, JSON or markdown."""

from __future__ import annotations

from .common import _print_json

_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "log_loss": "log loss"}


def _interval(change: dict) -> str:
    i = change.get("accuracy_interval")
    if not i:
        return ""
    level = f" at {i['confidence']:.0%}" if i["confidence"] else ""
    return f" [{i['low'] * 100:+.1f}, {i['high'] * 100:+.1f}]{level}, p={i['p_value']:.3f}"


def _metric(change: dict, key: str) -> str:
    m = change["metrics"].get(key)
    if m is None:
        return ""
    if key == "accuracy":
        return (f"accuracy {m['old']:.3f} -> {m['new']:.3f} ({m['delta'] * 100:+.1f} points"
                f"{_interval(change)})")
    return f"{_LABELS[key]} {m['old']:.3f} -> {m['new']:.3f} ({m['delta']:+.3f})"


def _evaluation_note(c: dict) -> str:
    if c["evaluation"] == "forward":
        return f"gate {c['verdict']}" if c["verdict"] else "evaluated"
    if c["evaluation"] == "reversed":
        return f"rollback: from the evaluation of v{c['old_version']} against v{c['new_version']}"
    return "no recorded evaluation between these versions"


def _print_text(d: dict) -> None:
    for name, version in d["added"].items():
        print(f"+ {name} {version}")
    for name, version in d["removed"].items():
        print(f"- {name} {version}")
    for name, c in d["changed"].items():
        print(f"~ {name} {c['old_version']} -> {c['new_version']}  ({_evaluation_note(c)})")
        for ch in c["changes"]:
            metrics = ", ".join(filter(None, (_metric(ch, k) for k in _LABELS)))
            print(f"    {ch['data']} data {ch['commit'][:12]}, n={ch['rows']}: {metrics}")
        for reason in c["reasons"] if c["verdict"] != "pass" else ():  # a pass's notes repeat the lines above
            print(f"    - {reason}")
    if not (d["added"] or d["removed"] or d["changed"]):
        print("no changes")


def _cell(change: dict, key: str) -> str:
    m = change["metrics"].get(key)
    if m is None:
        return ""
    if key == "accuracy":
        return f"{m['old']:.3f} → {m['new']:.3f} ({m['delta'] * 100:+.1f} pts{_interval(change)})"
    return f"{m['delta']:+.3f}"


def _print_markdown(d: dict) -> None:
    print(f"### Release `{d['from'][:12]}` → `{d['to'][:12]}`\n")
    if not (d["added"] or d["removed"] or d["changed"]):
        print("No changes.")
        return
    if d["changed"]:
        print("| model | version | evaluation | data | n | accuracy (change, interval) | Δ macro-F1 | Δ log loss |")
        print("|---|---|---|---|---:|---|---:|---:|")
        for name, c in d["changed"].items():
            head = f"| {name} | {c['old_version']} → {c['new_version']} | {_evaluation_note(c)} "
            if not c["changes"]:
                print(head + "| | | | | |")
            for ch in c["changes"]:
                print(head + f"| {ch['data']} `{ch['commit'][:12]}` | {ch['rows']} | {_cell(ch, 'accuracy')} "
                      f"| {_cell(ch, 'macro_f1')} | {_cell(ch, 'log_loss')} |")
                head = "| | | "
        print()
        for name, c in d["changed"].items():
            for reason in c["reasons"] if c["verdict"] not in ("pass", "") else ():
                print(f"- **{name}** ({c['verdict']}): {reason}")
    for title, key in (("Added", "added"), ("Removed", "removed")):
        if d[key]:
            print(f"{title}: " + ", ".join(f"{n} (v{v})" for n, v in d[key].items()))


def print_release_diff(args, d: dict) -> None:
    """Prints a compare_releases dict in args.format (text, json or markdown)."""
    if args.format == "json":
        _print_json(d)
    elif args.format == "markdown":
        _print_markdown(d)
    else:
        _print_text(d)
