"""Pipeline commands: ``plan``, ``train``, ``evaluate``, ``release``, ``rollback``, ``lineage``, ``releases``,
``diff-release`` and ``build-context``."""

from __future__ import annotations

import json
import os
import pathlib

import mlops

from .common import (EXIT_HELD_BACK, EXIT_INCOMPLETE, EXIT_OK, EXIT_PARTIAL, UsageError, _add_image_options, _env,
                     _pipeline, _positive_int, _print_json, _progress, _read_text, _shard_argument,
                     _version_number, _version_or_alias, shard_from_environment)
from .data import _cmd_plan_against
from .deltas import print_release_diff


def _matrix(plan, shards: int) -> dict:
    include = []
    for i in range(shards):
        items = plan.shard(i, shards)
        if items:
            include.append({"shard": f"{i}/{shards}", "adapters": len(items), "rows": sum(x.rows for x in items)})
    return {"include": include}


def _cmd_plan_evaluate(args) -> int:
    """--evaluate: fit the adapters the plan at --at finds stale in memory and evaluate each against the
    production version it would replace; nothing is recorded and no alias moves."""
    from .. import review

    pipe = _pipeline(args, args.at)
    _progress(f"planning at {args.at}")
    plan = pipe.plan(at=args.at)
    _progress(f"fitting {_count(len(plan.stale()), 'stale adapter')} in memory and evaluating them")
    report = pipe.preview(plan)
    if args.format == "json":
        _print_json({"at": args.at, "commit": plan.commit, "against": args.against or "main", **report.to_dict()})
    else:
        print(review.evaluation_markdown(report.to_dict(), args.at, plan.commit, args.against or "main"), end="")
    return EXIT_HELD_BACK if report.failed else EXIT_OK


def _cmd_plan(args) -> int:
    if args.evaluate:
        if args.format == "github-matrix":
            raise UsageError("--evaluate prints markdown or json, not a github-matrix")
        return _cmd_plan_evaluate(args)
    if args.against:
        return _cmd_plan_against(args)
    if args.format == "markdown":
        raise UsageError("--format markdown is for --against")
    pipe = _pipeline(args, args.at)
    _progress(f"planning at {args.at}")
    plan = pipe.plan(at=args.at)
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(plan.to_dict(), sort_keys=True), encoding="utf-8")
    stale = plan.stale()
    if args.format == "json":
        _print_json(plan.to_dict())
    elif args.format == "github-matrix":
        matrix = _matrix(plan, args.shards)
        _print_json(matrix)
        out = os.environ.get("GITHUB_OUTPUT")
        if out:
            with open(out, "a", encoding="utf-8") as f:
                f.write(f"matrix={json.dumps(matrix, separators=(',', ':'))}\n")
                f.write(f"commit={plan.commit}\n")
                f.write(f"stale={len(stale)}\n")
    else:
        _print_plan_table(plan)
    return EXIT_OK


def _state(item) -> str:
    if item.stale:
        return "stale"
    return "trained, awaiting release" if item.awaiting_release else "up to date"


def _print_plan_table(plan) -> None:
    """One row per adapter under a header: its state, the production and staged versions, and why."""
    stale = plan.stale()
    waiting = sum(1 for i in plan.items if i.awaiting_release)
    print(f"plan at {plan.ref} = {plan.commit}: {_count(len(stale), 'adapter')} of {len(plan.items)} stale"
          + (f", {waiting} trained, awaiting release (mlops release)" if waiting else ""))
    header = ("ADAPTER", "STATE", "PRODUCTION", "STAGED", "WHY")
    rows = [(i.name, _state(i), f"v{i.production_version}" if i.production_version else "none",
             f"v{i.staging_version}" if i.staging_version else "", "; ".join(i.reasons)) for i in plan.items]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header) - 1)]
    for r in [header, *rows]:
        print(("  ".join(f"{v:<{w}}" for v, w in zip(r, widths)) + "  " + r[-1]).rstrip())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cmd_train(args) -> int:
    index, count = shard_from_environment(args.shard, args.shards)
    trainer = mlops.CudaTrainer(device=args.device)
    _progress(f"device {trainer.device}: {trainer.device_reason}")
    if args.plan:
        text = _read_text(args.plan, "plan")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise mlops.DataError(f"[mlops.data] plan {args.plan!r} is not JSON: {e.msg} at line {e.lineno}, "
                                  f"column {e.colno} (write it with 'mlops plan -o')") from None
        if not isinstance(data, dict):
            raise mlops.DataError(f"[mlops.data] plan {args.plan!r} is not a JSON object (write it with 'mlops plan -o')")
        plan = mlops.Plan.from_dict(data)
        pipe = _pipeline(args, plan.commit, trainer)
    else:
        pipe = _pipeline(args, args.at, trainer)
        _progress(f"planning at {args.at}")
        plan = pipe.plan(at=args.at)
    mine = plan.shard(index, count)
    _progress(f"shard {index}/{count}: training {_count(len(mine), 'adapter')} at {plan.commit[:12]}")
    report = pipe.train(plan, shard=(index, count), progress=args.progress)
    if args.format == "json":
        _print_json(report.to_dict())
    else:
        _print_train_summary(report, index, count, args.verbose)
    return EXIT_PARTIAL if report.failed else EXIT_OK


def _print_train_summary(report, index: int, count: int, verbose: bool) -> None:
    """A summary of the shard; every failure by name (they need attention); each adapter with -v."""
    items = report.items
    by_status = {s: [i for i in items if i["status"] == s] for s in ("trained", "reused", "failed")}
    for item in items if verbose else by_status["failed"]:
        if item["status"] == "failed":
            print(f"  {item['name']}: FAILED {item['error']}")
        else:
            print(f"  {item['name']}: {item['status']} v{item['version']}"
                  + (f" val_accuracy={item['val_accuracy']:.3f}" if item["status"] == "trained" else ""))
    trained = by_status["trained"]
    accuracy = ""
    if trained:
        values = sorted(i["val_accuracy"] for i in trained)
        accuracy = (f"; val_accuracy min {values[0]:.3f}, median {values[len(values) // 2]:.3f}, "
                    f"max {values[-1]:.3f}")
    print(f"shard {index}/{count}: {len(trained)} trained, {len(by_status['reused'])} reused, "
          f"{len(by_status['failed'])} failed of {_count(len(items), 'adapter')}{accuracy} "
          f"(load {report.load_seconds:.1f} s, fit {report.fit_seconds:.1f} s, record {report.record_seconds:.1f} s)")


def _report_release(args, report) -> int:
    if args.format == "json":
        _print_json(report.to_dict())
    else:
        print(report.image)
        _progress(f"release {report.md5}: moved {len(report.moved)} alias(es)"
                  + (f", {len(report.pending)} pending: {report.error}" if report.pending else ""))
        if report.promoted:
            _progress("promoted: " + ", ".join(report.promoted))
        for kind, items in (("held back", report.held_back), ("shipped despite its gate", report.warned)):
            for h in items:
                kept = f"keeps v{h['kept_version']}" if h["kept_version"] else "left out"
                _progress(f"{kind}: {h['name']} v{h['candidate_version']} ({kept}): " + "; ".join(h["reasons"]))
    if not report.complete:
        return EXIT_INCOMPLETE
    return EXIT_HELD_BACK if report.held_back else EXIT_OK


def _cmd_evaluate(args) -> int:
    drift = args.alias is not None or args.at is not None
    if drift and (args.against or not args.record):
        raise UsageError("--alias/--at evaluate the models under an alias on a later commit's data (drift) and record "
                         "nothing: --against and --no-record do not apply")
    at = (args.at or "main") if drift else "HEAD"
    pipe = _pipeline(args, at)  # the catalog of the commit evaluated at
    if drift:
        report = pipe.evaluate_at(alias=args.alias or "", at=at)
    else:
        report = pipe.evaluate(against=args.against or "", record=args.record)
    if args.format == "json":
        _print_json(report.to_dict())
    else:
        for item in report.items:
            versions = f"v{item['candidate_version']} vs " + (f"v{item['baseline_version']}"
                                                               if item["baseline_version"] else "none")
            if drift:
                versions = f"v{item['candidate_version']} under {report.against}"
            print(f"{item['name']}: {item['verdict']}" + (f" ({versions})" if item["candidate_version"] else ""))
            for ev in item["evaluations"]:
                c, b, d = ev["candidate"], ev["baseline"], ev["comparison"]
                line = f"  {ev['role']} data {ev['commit'][:12]}: n={c['rows']} accuracy {c['accuracy']:.3f}"
                if d["rows"]:
                    line += (f" vs {b['accuracy']:.3f}, delta {d['delta'] * 100:+.1f} points "
                             f"[{d['low'] * 100:+.1f}, {d['high'] * 100:+.1f}] at {d['confidence']:.0%}")
                print(line)
            for reason in item["reasons"]:
                print(f"  - {reason}")
    return EXIT_HELD_BACK if report.failed else EXIT_OK


def _cmd_release(args) -> int:
    from mlops.build_context import find_wheel, write_build_context

    if not args.image:
        raise UsageError("give the image repository: --image REPOSITORY or MLOPS_IMAGE")
    wheel = find_wheel(args.wheel) if args.build_context else None  # before anything is recorded
    pipe = _pipeline(args)
    report = pipe.release(image=args.image, alias=args.alias or "", gate=args.gate)
    if args.build_context and report.complete:
        write_build_context(pipe, args.build_context, report.md5, wheel=wheel, base_image=args.base_image or "")
        _progress(f"build context written to {args.build_context}")
    return _report_release(args, report)


def _cmd_rollback(args) -> int:
    pipe = _pipeline(args)
    if args.release:
        report = pipe.rollback(release=args.release)
    else:
        report = pipe.rollback(model=args.model, version=args.version)
    return _report_release(args, report)


def _cmd_lineage(args) -> int:
    pipe = _pipeline(args)
    info = pipe.lineage(args.name, args.version)
    if args.format == "json":
        _print_json(info)
    else:
        for key in sorted(info):
            print(f"{key}: {json.dumps(info[key], ensure_ascii=False) if isinstance(info[key], (dict, list)) else info[key]}")
    return EXIT_OK


def _cmd_releases(args) -> int:
    pipe = _pipeline(args)
    records = pipe.releases()
    if args.format == "json":
        _print_json(records)
    else:
        for r in records:
            print(f"{r['md5']}  {r['state']:<9} {_count(len(r['manifest']), 'model'):>11}  {r['image']}")
    return EXIT_OK


def _cmd_diff_release(args) -> int:
    print_release_diff(args, _pipeline(args).compare_releases(args.old, args.new))
    return EXIT_OK


def _cmd_build_context(args) -> int:
    from mlops.build_context import write_build_context

    pipe = _pipeline(args)
    print(write_build_context(pipe, args.directory, args.release or "", wheel=args.wheel,
                              base_image=args.base_image or ""))
    return EXIT_OK


def add_commands(command) -> None:
    p = command("plan", "list which adapters are stale and why",
                "Per adapter: up to date or stale (never trained, data slice changed, hyperparameters changed).",
                _cmd_plan, formats=("table", "json", "github-matrix", "markdown"))
    p.epilog = ("States: stale (to train, and why), trained, awaiting release (a staged version trained at this "
                "commit, newer than production: mlops release), up to date.")
    p.add_argument("--at", default="main", help="branch, tag or commit to plan at (default main)")
    p.add_argument("--against", metavar="BRANCH",
                   help="only what merging --at into BRANCH would make stale, and why (no MLflow needed)")
    p.add_argument("--shards", type=_positive_int, default=1, help="shard count for --format github-matrix")
    p.add_argument("-o", "--output", help="also write the plan as JSON here (for train --plan)")
    p.add_argument("--evaluate", action="store_true",
                   help="fit the stale adapters in memory and show, in markdown, what they would do against "
                        "production (delta, interval, gate verdict); records nothing; exit 9 when one would be "
                        "held back")

    p = command("train", "train the stale adapters of one shard",
                "Train one shard's stale adapters in one batched fit; each becomes an MLflow run, a registered "
                "version and the staging alias. The shard comes from --shard, MLOPS_SHARD, a Kubernetes indexed Job "
                "(JOB_COMPLETION_INDEX with --shards/MLOPS_SHARDS) or a Slurm array (SLURM_ARRAY_TASK_ID/COUNT).",
                _cmd_train, options=("data", "tracking", "catalog", "device", "threads"))
    p.add_argument("--shard", type=_shard_argument, help="INDEX/COUNT, 0-based (default 0/1)")
    p.add_argument("--shards", type=_positive_int, help="shard count when the index comes from the environment")
    p.add_argument("--at", default="main", help="ref to plan at when no --plan is given")
    p.add_argument("--plan", help="a plan written by 'mlops plan -o' (every shard then uses the same commit)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars on stderr (loading, training, recording)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="a line per adapter (status, version, validation accuracy); failures are always listed")

    p = command("release", "record a release of the staging versions and move the production aliases",
                "Record the manifest in MLflow (experiment mlops-releases, run named by its MD5) and move the aliases. "
                "Prints the image tag.", _cmd_release, options=("data", "tracking", "catalog", "threads"))
    p.add_argument("--image", default=_env("MLOPS_IMAGE"),
                   help="Docker repository, e.g. registry.example.com/adapters (env MLOPS_IMAGE)")
    p.add_argument("--alias", help="alias to move (default production)")
    p.add_argument("--build-context", metavar="DIR", help="also write a Docker build context for the release")
    p.add_argument("--gate", choices=("enforce", "warn", "off"), default="enforce",
                   help="enforce (default): hold back candidates that fail their gate (exit 9); warn: ship them and "
                        "list them; off: ship every candidate without evaluating")
    _add_image_options(p)

    p = command("evaluate", "score every candidate against the model it would replace",
                "Per adapter: the staging version and its baseline (--against, default production) on the same "
                "held-out rows at both data commits; accuracy, macro-F1, log loss, per-class recall, the paired "
                "change with its interval, and the gate's verdict, recorded on the candidate in MLflow. "
                "Exit 9 when a candidate fails its gate.", _cmd_evaluate)
    p.add_argument("--against", metavar="ALIAS", help="the baseline alias (default production)")
    p.add_argument("--no-record", dest="record", action="store_false", help="do not record the results in MLflow")
    p.add_argument("--alias", help="drift: score the models under this alias (default production) on the data at --at, "
                                   "beside their training data; records nothing")
    p.add_argument("--at", metavar="REF", help="drift: the branch, tag or commit to score at (default main)")

    p = command("rollback", "restore a release, or move one model back",
                "Restore a recorded release's aliases, or move one model's alias and record a new release.", _cmd_rollback,
                options=("data", "tracking", "catalog", "threads"))
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--release", metavar="MD5")
    g.add_argument("--model", metavar="NAME")
    p.add_argument("--version", type=_version_number, help="with --model: the version to restore")

    p = command("lineage", "show where a model version came from",
                "Code commit, data commit, source, query, digest, params and metrics of a model version.", _cmd_lineage)
    p.add_argument("name")
    p.add_argument("version", nargs="?", default="production", type=_version_or_alias,
                   help="version number or alias (default production)")

    command("releases", "list recorded releases, newest first", "List recorded releases, newest first.", _cmd_releases)

    p = command("diff-release", "compare two releases, with each changed model's metric deltas",
                "Models added (+), removed (-) and changed (~); for a changed model, the evaluation recorded between "
                "its two versions (mlops evaluate, mlops release): accuracy, macro-F1 and log loss of both on the same "
                "rows, n, the interval of the accuracy change and the gate's verdict.", _cmd_diff_release,
                formats=("text", "json", "markdown"))
    p.add_argument("old")
    p.add_argument("new")

    p = command("build-context", "write a Docker build context for a release",
                "A Dockerfile with OCI labels, the manifest, every model's artifacts, and the wheels the image "
                "installs (this project's and its dependencies', pinned by hash; nothing from an index).", _cmd_build_context)
    p.add_argument("directory")
    p.add_argument("--release", metavar="MD5", help="default: the newest release")
    _add_image_options(p)
