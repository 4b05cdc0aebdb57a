"""Data commands: ``init-demo``, ``sync`` (CSV into a table, optionally on a branch), ``diff`` (rows
between two refs), ``merge`` and ``plan --against`` (what a merge would make stale)."""

from __future__ import annotations

import sys

import mlops

from .common import EXIT_CONFLICT, EXIT_OK, UsageError, _catalog, _positive_int, _print_json, _progress, _source


def _cmd_init_demo(args) -> int:
    from .. import demo

    source = _source(args, create=True)
    existing = demo.existing_tables(source)
    if existing and not args.force:
        held = ", ".join(f"{table} ({rows} rows)" for table, rows in existing.items())
        raise mlops.ConfigError(f"[mlops.config] {source.uri} already holds demo tables: {held}; nothing was changed "
                                "(--force replaces them with new demo data)")
    _progress(("replacing" if existing else "creating") +
              f" demo data in {source.uri}: {args.customers} customers x {args.rows} tickets")
    commit = demo.init_demo(source, customers=args.customers, rows_per_customer=args.rows, seed=args.seed,
                            replace=bool(existing))
    if args.format == "json":
        _print_json({"commit": commit.hash, "customers": args.customers, "data": source.uri})
    else:
        print(f"demo data committed: {commit.hash}")
    return EXIT_OK


def _cmd_sync(args) -> int:
    source = _source(args, create=True)
    _progress(f"importing {mlops.redact_uri(args.csv)} into {args.table} ({args.mode})")

    def run():
        return source.import_csv(args.table, args.csv, primary_key=args.primary_key,
                                 message=args.message or f"Sync {args.table} from {mlops._core._uri_file_name(args.csv)}",
                                 mode=args.mode)

    commit = _sync_on_branch(args, source, run) if args.branch else run()
    if args.format == "json":
        _print_json({"commit": commit.hash, "table": args.table, "branch": args.branch or source.active_branch()})
    else:
        print(commit.hash)
    return EXIT_OK


def _sync_on_branch(args, source, run):
    from .. import review

    with review.on_branch(source, args.branch, args.start) as created:
        if created:
            _progress(f"created branch {args.branch} from {args.start}")
        return run()


def _cmd_diff(args) -> int:
    from .. import review

    from_ref, sep, to_ref = args.range.partition("..")
    if not sep or not from_ref or not to_ref:
        raise UsageError(f"diff needs FROM..TO (two refs), got {args.range!r}")
    source = _source(args)
    try:
        catalog = _catalog(args, source, to_ref)
    except mlops.NotFoundError:
        catalog = None  # no catalog at TO: no adapter slices to count
    report = review.row_diff(source, from_ref, to_ref, [args.table] if args.table else None, args.where, catalog)
    if args.format == "json":
        _print_json(report)
    elif args.format == "markdown":
        text, summarised = review.to_markdown(report, args.full_json)
        if summarised:
            review.write_json(args.full_json, report)
        print(text, end="")
    else:
        print(review.to_text(report))
    return EXIT_OK


def _cmd_plan_against(args) -> int:
    from .. import review

    source = _source(args)
    _progress(f"previewing a merge of {args.at} into {args.against}")
    report = review.plan_against(source, lambda at: _catalog(args, source, at), args.at, args.against)
    if args.format == "json":
        _print_json(report)
    elif args.format == "markdown":
        print(review.plan_markdown(report), end="")
    else:
        print(review.plan_text(report))
    return EXIT_OK


def _cmd_merge(args) -> int:
    source = _source(args)
    _progress(f"merging {args.branch} into {args.into}")
    try:
        result = source.merge(args.branch, message=args.message, into=args.into)
    except mlops.ConflictError as e:
        conflicts = getattr(e, "conflicts", None)
        if conflicts is None:
            raise
        if args.format == "json":
            _print_json({"merged": False, "branch": args.branch, "into": args.into, "conflicts": conflicts})
        else:
            print(f"mlops: {e}", file=sys.stderr)
            for table, keys in conflicts.items():
                print(f"conflict in {table}: " + "; ".join(f"({k})" for k in keys))
        return EXIT_CONFLICT
    if args.delete_branch:
        source.delete_branch(args.branch)
    if args.format == "json":
        _print_json({"merged": True, "branch": args.branch, "into": args.into, "commit": result.commit,
                     "fast_forward": result.fast_forward, "up_to_date": result.up_to_date})
    else:
        how = "already up to date" if result.up_to_date else "fast-forward" if result.fast_forward else "merge commit"
        print(f"{args.into} = {result.commit} ({how})")
    return EXIT_OK


def add_commands(command) -> None:
    p = command("init-demo", "create sample multi-customer text data and its adapter catalog",
                "Create the tables tickets and adapters (one text adapter per customer) and commit them. A "
                "database that already has them is left as it is unless --force is given.", _cmd_init_demo,
                options=("data",))
    p.add_argument("--customers", type=_positive_int, default=60, help="customers, one adapter each")
    p.add_argument("--rows", type=_positive_int, default=120, help="tickets per customer")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated tickets")
    p.add_argument("--force", action="store_true", help="replace the tables tickets and adapters when they exist")

    p = command("sync", "import a CSV file or http(s) CSV link into a table and commit",
                "Import a CSV (a file or an http(s) link such as a spreadsheet's CSV export) and make a Dolt commit. "
                "A bad row is reported with its line number and nothing is committed.", _cmd_sync, options=("data",))
    p.add_argument("table")
    p.add_argument("csv", help="file path or http(s) URL")
    p.add_argument("--primary-key", action="append", required=True, help="primary key column (repeat for several)")
    p.add_argument("--mode", choices=["replace", "upsert"], default="upsert")
    p.add_argument("-m", "--message", help="commit message")
    p.add_argument("--branch", help="commit onto this branch (created from --from when missing); the active "
                                    "branch stays as it was")
    p.add_argument("--from", dest="start", default="main", help="where a new --branch starts (default main)")

    p = command("diff", "show the rows a data change adds, changes and removes",
                "Rows added, changed (old -> new per column) and removed between two refs, with counts per table "
                "and per adapter slice. markdown fits a pull-request comment; a long diff is summarised and the "
                "full JSON written to --full-json.", _cmd_diff, formats=("table", "json", "markdown"),
                options=("data", "catalog"))
    p.add_argument("range", metavar="FROM..TO", help="two refs (branch, tag, HEAD~n, hash), e.g. main..analyst-sync")
    p.add_argument("--table", help="only this table (default: every table whose rows changed)")
    p.add_argument("--where", help="only rows matching this SQL condition on --table's columns (both sides)")
    p.add_argument("--full-json", default="mlops-diff.json",
                   help="markdown: where the full diff goes when the comment is summarised (default mlops-diff.json)")

    p = command("merge", "merge a data branch, or list its conflicts",
                "Merge NAME into --into: a fast-forward or a merge commit. On conflicting rows nothing is merged, "
                "the conflicting tables and keys are listed and the exit code is 7.", _cmd_merge, options=("data",))
    p.add_argument("branch", metavar="NAME")
    p.add_argument("--into", default="main", help="target branch (default main); the active branch stays")
    p.add_argument("-m", "--message", help="message of a merge commit")
    p.add_argument("--delete-branch", action="store_true", help="delete NAME after a successful merge")
