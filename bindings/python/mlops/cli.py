"""The ``mlops`` command line.

Exit codes (stable, for scripts and CI):
  0  success
  1  an mlops error (the message names what is wrong)
  2  bad command-line usage
  3  integrity failure (a hash did not match)
  4  something named was not found
  5  train: some adapters failed (the others were trained and registered)
  6  release/rollback: incomplete (the server failed half-way; run the same command again to finish)
  7  conflict: merge: conflicting rows (nothing was merged; the conflicts are listed); release/rollback:
     another one holds the release lease, or the aliases changed under it (nothing reported complete)
 130 interrupted (Ctrl-C)
A reader that closes the output early (``mlops plan | head``) ends the command quietly with 0.

Pipeline commands read their settings from options or the environment:
  --data         MLOPS_DATA           Dolt URI (default doltlite:mlops.db)
  --tracking-uri MLFLOW_TRACKING_URI  MLflow server
  --catalog      MLOPS_CATALOG        a .json/.toml file, or table:NAME (default table:adapters)
  --device       MLOPS_DEVICE         auto | cpu | cuda | cuda:N (default auto)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Sequence

import mlops

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_NOT_FOUND = 4
EXIT_PARTIAL = 5
EXIT_INCOMPLETE = 6
EXIT_CONFLICT = 7
EXIT_RELEASE_RACE = 8
EXIT_INTERRUPTED = 130

EXIT_CODES = (
    "Exit codes: 0 ok; 1 mlops error; 2 usage; 3 integrity (hash mismatch); 4 not found; "
    "5 train: some adapters failed; 6 release/rollback incomplete (run it again); "
    "7 merge conflicts (nothing merged); 8 another release or rollback holds the lease, or the aliases changed "
    "under this one (nothing reported complete); 130 interrupted."
)


def _parse_entries(pairs: Sequence[str]) -> dict:
    entries = {}
    for pair in pairs:
        name, sep, version = pair.rpartition("=")
        if not sep or not name:
            raise mlops.DataError(f"[mlops.data] expected NAME=VERSION, got {pair!r}")
        if name in entries:
            raise mlops.DataError(f"[mlops.data] manifest entry {name!r} is given twice "
                                  f"({entries[name]} and {version}); name each model once")
        try:
            entries[name] = int(version)
        except ValueError:
            raise mlops.DataError(f"[mlops.data] manifest entry {name!r}: version {version!r} is not an integer") from None
    return entries


def _env_int(name: str, default: int = 0) -> int:
    text = _env(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise mlops.ConfigError(f"[mlops.config] {name} must be a whole number, got {text!r}") from None


def _read_text(path: str, what: str) -> str:
    """A UTF-8 text file, or a typed error naming it (missing, unreadable, not UTF-8)."""
    try:
        data = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise mlops.NotFoundError(f"[mlops.not_found] {what} {path!r} does not exist") from None
    except OSError as e:
        raise mlops.ConfigError(f"[mlops.config] cannot read {what} {path!r}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise mlops.DataError(f"[mlops.data] {what} {path!r} is not UTF-8 text (byte {e.start})") from None


def _read_manifest(path: str, expected_md5: str | None) -> mlops.ReleaseManifest:
    if path == "-":
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise mlops.DataError(f"[mlops.data] the manifest on standard input is not UTF-8 text (byte {e.start})") from None
        return mlops.ReleaseManifest.from_json(text, expected_md5)
    return mlops.ReleaseManifest.load(path, expected_md5)


def _manifest_summary(m: mlops.ReleaseManifest, repository: str | None) -> dict:
    out = {"md5": m.md5, "sha256": m.sha256, "models": len(m), "manifest": m.to_dict()}
    if repository:
        out["image"] = m.image_tag(repository)
    return out


def _cmd_manifest_create(args: argparse.Namespace) -> int:
    m = mlops.ReleaseManifest(_parse_entries(args.entries))
    if args.output:
        m.save(args.output)
    if args.format == "json":
        print(json.dumps(_manifest_summary(m, args.repository), ensure_ascii=False))
    else:
        print(m.to_json() if not args.output else m.md5)
        if args.repository:
            print(m.image_tag(args.repository))
    return EXIT_OK


def _cmd_manifest_hash(args: argparse.Namespace) -> int:
    m = _read_manifest(args.path, args.expect)
    if args.format == "json":
        print(json.dumps(_manifest_summary(m, args.repository), ensure_ascii=False))
    else:
        print(m.sha256 if args.sha256 else m.md5)
        if args.repository:
            print(m.image_tag(args.repository))
    return EXIT_OK


def _cmd_manifest_diff(args: argparse.Namespace) -> int:
    a = _read_manifest(args.old, None)
    b = _read_manifest(args.new, None)
    _print_diff(args, a.diff(b), a.md5, b.md5)
    return EXIT_OK


# ---- Pipeline commands ------------------------------------------------------------------------------


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def _progress(message: str) -> None:
    print(f"[mlops] {message}", file=sys.stderr, flush=True)


def _source(args, create: bool = False):
    """Only init-demo and sync write data; every other command needs the database to exist already."""
    return mlops.DoltSource(args.data, create=create)


def _catalog(args, source, at: str = "HEAD"):
    spec = args.catalog
    if spec.startswith("table:"):
        return mlops.load_catalog_table(source, at=at, table=spec[len("table:"):])
    return mlops.Catalog.load(spec)


def _pipeline(args, at: str = "HEAD", trainer=None):
    if not args.tracking_uri:
        raise mlops.ConfigError("[mlops.config] no MLflow server: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    source = _source(args)
    tracker = mlops.MlflowTracker(args.tracking_uri)
    trainer = trainer or mlops.CudaTrainer(device=args.device)
    catalog = _catalog(args, source, at)
    return mlops.Pipeline(source, tracker, trainer, catalog, record_threads=args.mlflow_threads)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


_MAX_VERSION = 2**63 - 1  # MLflow's version numbers are 64-bit


def _version_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_VERSION:
        raise argparse.ArgumentTypeError(f"expected a version number from 1 to {_MAX_VERSION}, got {text!r}")
    return value


def _version_or_alias(text: str) -> str:
    if text.strip().lstrip("+-").isdigit():
        _version_number(text)
        return str(int(text))
    return text


def parse_shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise mlops.ConfigError(f"[mlops.config] shard must look like INDEX/COUNT (0-based), got {text!r}") from None
    if not sep or n < 1 or not 0 <= i < n:
        raise mlops.ConfigError(f"[mlops.config] shard {text!r}: need 0 <= INDEX < COUNT")
    return i, n


def shard_from_environment(explicit: str | None, shards: int | None) -> tuple[int, int]:
    """--shard, else MLOPS_SHARD (i/n), else a Kubernetes indexed Job, else a Slurm array; default 0/1.

    A Slurm array task is shard SLURM_ARRAY_TASK_ID of --shards/MLOPS_SHARDS when a count is given, else
    shard ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT."""
    if explicit:
        return parse_shard(explicit)
    if _env("MLOPS_SHARD"):
        return parse_shard(os.environ["MLOPS_SHARD"])
    if _env("JOB_COMPLETION_INDEX"):
        count = shards or _env_int("MLOPS_SHARDS")
        if count < 1:
            raise mlops.ConfigError("[mlops.config] JOB_COMPLETION_INDEX is set: give the shard count with --shards or MLOPS_SHARDS")
        return parse_shard(f"{os.environ['JOB_COMPLETION_INDEX']}/{count}")
    if _env("SLURM_ARRAY_TASK_ID"):
        given = shards or _env_int("MLOPS_SHARDS")
        if given:
            # The count is fixed by whoever submitted (mlops submit slurm): the array ids are the shard
            # indices themselves, so a re-run of one shard alone (--array=2) still trains shard 2.
            return parse_shard(f"{_env_int('SLURM_ARRAY_TASK_ID')}/{given}")
        count = _env_int("SLURM_ARRAY_TASK_COUNT")
        first = _env_int("SLURM_ARRAY_TASK_MIN")
        if count < 1:
            raise mlops.ConfigError("[mlops.config] SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
        return parse_shard(f"{_env_int('SLURM_ARRAY_TASK_ID') - first}/{count}")
    return 0, 1


def _print_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None, sort_keys=True))


def _cmd_init_demo(args) -> int:
    from . import demo

    source = _source(args, create=True)
    _progress(f"creating demo data in {source.uri}: {args.customers} customers x {args.rows} tickets")
    commit = demo.init_demo(source, customers=args.customers, rows_per_customer=args.rows, seed=args.seed)
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
    from . import review

    with review.on_branch(source, args.branch, args.start) as created:
        if created:
            _progress(f"created branch {args.branch} from {args.start}")
        return run()


def _cmd_diff(args) -> int:
    from . import review

    from_ref, sep, to_ref = args.range.partition("..")
    if not sep or not from_ref or not to_ref:
        raise mlops.ConfigError(f"[mlops.config] diff needs FROM..TO (two refs), got {args.range!r}")
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
    from . import review

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


def _matrix(plan, shards: int) -> dict:
    include = []
    for i in range(shards):
        items = plan.shard(i, shards)
        if items:
            include.append({"shard": f"{i}/{shards}", "adapters": len(items), "rows": sum(x.rows for x in items)})
    return {"include": include}


def _cmd_plan(args) -> int:
    if args.against:
        return _cmd_plan_against(args)
    if args.format == "markdown":
        raise mlops.ConfigError("[mlops.config] plan --format markdown is for --against")
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
        print(f"plan at {plan.ref} = {plan.commit}: {len(stale)} of {len(plan.items)} adapters stale")
        width = max((len(i.name) for i in plan.items), default=4)
        for item in plan.items:
            state = "stale" if item.stale else "ok"
            why = "; ".join(item.reasons)
            print(f"  {item.name:<{width}}  {state:<5}  v{item.production_version or '-':<4} {why}")
    return EXIT_OK


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
    _progress(f"shard {index}/{count}: training {len(mine)} adapter(s) at {plan.commit[:12]}")
    report = pipe.train(plan, shard=(index, count), progress=args.progress)
    if args.format == "json":
        _print_json(report.to_dict())
    else:
        for item in report.items:
            if item["status"] == "failed":
                print(f"  {item['name']}: FAILED {item['error']}")
            else:
                print(f"  {item['name']}: {item['status']} v{item['version']}"
                      + (f" val_accuracy={item['val_accuracy']:.3f}" if item["status"] == "trained" else ""))
        print(f"shard {index}/{count}: {len(report.items) - report.failed} ok, {report.failed} failed")
    return EXIT_PARTIAL if report.failed else EXIT_OK


def _report_release(args, report) -> int:
    if args.format == "json":
        _print_json(report.to_dict())
    else:
        print(report.image)
        _progress(f"release {report.md5}: moved {len(report.moved)} alias(es)"
                  + (f", {len(report.pending)} pending: {report.error}" if report.pending else ""))
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


def _cmd_release(args) -> int:
    from mlops.build_context import find_wheel, write_build_context

    wheel = find_wheel(args.wheel) if args.build_context else None  # before anything is recorded
    pipe = _pipeline(args)
    report = pipe.release(image=args.image, alias=args.alias or "")
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
            print(f"{r['md5']}  {r['state']:<9} {len(r['manifest']):>4} models  {r['image']}")
    return EXIT_OK


def _cmd_diff_release(args) -> int:
    pipe = _pipeline(args)
    d = pipe.diff_releases(args.old, args.new)
    _print_diff(args, d, args.old, args.new)
    return EXIT_OK


def _print_diff(args, d, old_id: str, new_id: str) -> None:
    if args.format == "json":
        _print_json({"from": old_id, "to": new_id, "added": dict(d.added), "removed": dict(d.removed),
                     "changed": {n: [o, v] for n, o, v in d.changed}})
        return
    for name, version in d.added:
        print(f"+ {name} {version}")
    for name, version in d.removed:
        print(f"- {name} {version}")
    for name, old, new in d.changed:
        print(f"~ {name} {old} -> {new}")
    if not d:
        print("no changes")


def _cmd_build_context(args) -> int:
    from mlops.build_context import write_build_context

    pipe = _pipeline(args)
    print(write_build_context(pipe, args.directory, args.release or "", wheel=args.wheel,
                              base_image=args.base_image or ""))
    return EXIT_OK


def _release_resolver(args):
    """Maps a release name to a folder: a folder as is; an MD5 or an alias through MLflow (downloaded once
    into the cache folder as a build context)."""
    pipe = None
    cache = pathlib.Path(args.cache or os.path.join(os.path.expanduser("~"), ".cache", "mlops", "releases"))

    def resolve(name: str) -> str:
        nonlocal pipe
        if os.path.isdir(name) or os.sep in name or name.startswith("."):
            return name  # a folder (a missing one is reported by the loader)
        if pipe is None:
            pipe = _pipeline(args)
        md5 = name.lower()
        if not all(c in "0123456789abcdef" for c in md5) or len(md5) < 6:
            # An alias: the release whose manifest is what the alias points at now.
            if name != "production":
                raise mlops.ConfigError(f"[mlops.config] {name!r} is neither a folder, a release MD5 nor the alias "
                                        "'production'")
            md5 = pipe.current_manifest().md5
        target = cache / md5
        if len(md5) < 32 or not (target / "manifest.json").is_file():
            staging = cache / f".{md5}.{os.getpid()}"
            pipe.write_build_context(str(staging), md5)
            md5 = json.loads((staging / "release.json").read_text())["md5"] if (staging / "release.json").is_file() \
                else mlops.ReleaseManifest.load(str(staging / "manifest.json")).md5
            target = cache / md5
            try:
                os.replace(staging, target)
            except OSError:
                import shutil

                shutil.rmtree(staging, ignore_errors=True)  # another process put the same release there first
        return str(target)

    return resolve


def _cmd_serve(args) -> int:
    given = [x for x in (args.directory, args.release, args.alias) if x]
    if len(given) > 1:
        raise mlops.ConfigError("[mlops.config] give one of DIR, --release MD5 or --alias NAME")
    target = given[0] if given else _env("MLOPS_RELEASE_DIR")
    if not target:
        raise mlops.ConfigError("[mlops.config] nothing to serve: give DIR, --release MD5 or --alias NAME "
                                "(or set MLOPS_RELEASE_DIR)")
    server = mlops.Server(target, host=args.host, port=args.port, threads=args.threads,
                          admin_token=_env("MLOPS_ADMIN_TOKEN"), image=args.image or _env("MLOPS_IMAGE", "") or "",
                          max_body_bytes=args.max_body_bytes, max_rows=args.max_rows,
                          max_connections=args.max_connections, resolver=_release_resolver(args))
    rel = server.release
    _progress(f"serving release {rel.md5} ({len(rel)} models, loaded in {rel.load_seconds:.2f} s) "
              f"on http://{args.host}:{server.port}")
    server.run()
    _progress("stopped")
    return EXIT_OK


def _shard_list(text: str) -> list[int]:
    try:
        indices = [int(x) for x in text.split(",")]
    except ValueError:
        indices = [-1]
    if any(i < 0 for i in indices):
        raise argparse.ArgumentTypeError(f"expected shard indices like 1 or 0,2, got {text!r}")
    return indices


def _job_environment(args) -> dict:
    """The environment of submitted jobs: this one, with the pipeline options given on the command line."""
    env = dict(os.environ, MLOPS_DATA=args.data, MLOPS_CATALOG=args.catalog, MLOPS_DEVICE=args.device,
               MLOPS_MLFLOW_THREADS=str(args.mlflow_threads))
    if args.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = args.tracking_uri
    return env


def _cmd_submit_slurm(args) -> int:
    from . import slurm

    workdir = pathlib.Path(args.workdir)
    if args.rerun:
        chain = slurm.rerun(workdir, args.rerun, env=_job_environment(args))
        _progress(f"shard(s) {','.join(map(str, args.rerun))} submitted again at {chain['commit'][:12]}; "
                  f"release job {chain['release_job']} waits for them")
    else:
        plan_path = workdir / "plan.json"
        slurm.check_options(args.shards, str(plan_path), args.image, args.train_script, args.release_script)
        workdir.mkdir(parents=True, exist_ok=True)
        pipe = _pipeline(args, args.at)
        _progress(f"planning at {args.at}")
        plan = pipe.plan(at=args.at)
        plan_path.write_text(json.dumps(plan.to_dict(), sort_keys=True), encoding="utf-8")
        chain = slurm.new_chain(plan, args.shards, str(plan_path), args.image, args.train_script,
                                args.release_script, args.sbatch_option or ())
        if args.dry_run:
            print(slurm.chain_commands(chain), end="")
            return EXIT_OK
        chain = slurm.submit(chain, workdir, env=_job_environment(args))
    if args.format == "json":
        _print_json(chain)
    elif not chain["indices"]:
        print(f"plan at {chain['ref']} = {chain['commit']}: nothing stale, nothing submitted")
    else:
        train = sorted({a[-1].split("_")[0] for a in chain["attempts"].values()})
        print(f"plan at {chain['ref']} = {chain['commit']}: {chain['stale']} stale adapter(s), "
              f"shards {','.join(map(str, chain['indices']))} of {chain['shards']}")
        print(f"train job(s) {','.join(train)}, release job {chain['release_job']}")
    return EXIT_OK


def _add_submit_parser(sub, add_pipeline_options) -> None:
    submit = sub.add_parser("submit", help="submit the plan/train/release chain to a job scheduler",
                            description="Plan once, then hand the training fan-out and the release to a scheduler.")
    schedulers = submit.add_subparsers(dest="scheduler", metavar="SCHEDULER")
    p = schedulers.add_parser(
        "slurm", help="a Slurm job array of train tasks and a release after all of them",
        description="Plan at --at (the plan, and so the data commit, is written to WORKDIR/plan.json), then sbatch a "
                    "job array with one train task per shard that has work (each on one GPU) and a release job with "
                    "--dependency=afterok on the array. The job ids go to WORKDIR/chain.json. When a shard fails the "
                    "release waits; --rerun I submits shard I again with the same plan and makes the release wait "
                    "for it instead.")
    add_pipeline_options(p)
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default text)")
    p.add_argument("--at", default="main", help="branch, tag or commit to plan at (default main)")
    p.add_argument("--shards", type=_positive_int, default=4, help="shard count (default 4)")
    p.add_argument("--image", default=_env("MLOPS_IMAGE"), help="Docker repository for the release (env MLOPS_IMAGE)")
    p.add_argument("--workdir", default=".", help="folder for plan.json, chain.json and the jobs' output (default .)")
    p.add_argument("--train-script", help="batch script for a train task (default: mlops train, --gres=gpu:1)")
    p.add_argument("--release-script", help="batch script for the release (default: mlops release)")
    p.add_argument("--sbatch-option", action="append", metavar="OPTION",
                   help="extra sbatch option for every job, e.g. --sbatch-option=--partition=gpu (repeat for more)")
    p.add_argument("--dry-run", action="store_true", help="write the plan and print the sbatch commands; submit nothing")
    p.add_argument("--rerun", type=_shard_list, metavar="I[,J...]",
                   help="submit these shards of the chain in WORKDIR again; the release then waits for them")
    p.set_defaults(func=_cmd_submit_slurm)
    submit.set_defaults(func=lambda _args: (submit.print_help(), EXIT_USAGE)[1])


def _add_image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wheel", metavar="PATH",
                   help="the mlops-dolt wheel the image installs (env MLOPS_WHEEL; default: this version's wheel "
                        "in ./dist, as `make wheel` builds it)")
    p.add_argument("--base-image", metavar="IMAGE",
                   help="image to build on, with python3 and venv (default: python:<the wheel's Python>-slim-bookworm)")


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=_env("MLOPS_DATA", "doltlite:mlops.db"),
                   help="Dolt URI: doltlite:PATH or mysql://user@host:port/db (env MLOPS_DATA)")
    p.add_argument("--tracking-uri", default=_env("MLFLOW_TRACKING_URI"),
                   help="MLflow tracking server (env MLFLOW_TRACKING_URI)")
    p.add_argument("--catalog", default=_env("MLOPS_CATALOG", "table:adapters"),
                   help="adapter catalog: a .json/.toml file or table:NAME (env MLOPS_CATALOG)")
    p.add_argument("--device", default=_env("MLOPS_DEVICE", "auto"), help="auto | cpu | cuda | cuda:N (env MLOPS_DEVICE)")
    p.add_argument("--mlflow-threads", type=_positive_int, default=_env("MLOPS_MLFLOW_THREADS", "1"),
                   help="requests to MLflow at once when recording adapters and moving aliases "
                        "(env MLOPS_MLFLOW_THREADS; default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="Versioned training data, batched adapter training, lineage and hash-named releases.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version",
                        version=f"mlops {mlops.__version__} ({', '.join(mlops.components) or 'core only'})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    man = sub.add_parser("manifest", help="create, hash and compare release manifests",
                         description="Release manifests: model name -> version, named by the MD5 of their canonical JSON.")
    man_sub = man.add_subparsers(dest="manifest_command", metavar="ACTION")

    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")

    create = man_sub.add_parser("create", parents=[fmt], help="build a manifest from NAME=VERSION pairs",
                                description="Build a manifest and print its canonical JSON (or save it).")
    create.add_argument("entries", nargs="*", metavar="NAME=VERSION")
    create.add_argument("-o", "--output", help="write the manifest here atomically and print its MD5")
    create.add_argument("--repository", help="also print the image tag REPOSITORY:<md5>")
    create.set_defaults(func=_cmd_manifest_create)

    hsh = man_sub.add_parser("hash", parents=[fmt], help="verify a manifest file and print its MD5",
                             description="Read a manifest (a file or - for standard input), validate it, print its MD5.")
    hsh.add_argument("path", help="manifest file, or - for standard input")
    hsh.add_argument("--expect", metavar="MD5", help="fail with exit code 3 unless the MD5 is this")
    hsh.add_argument("--sha256", action="store_true", help="print the SHA-256 instead of the MD5")
    hsh.add_argument("--repository", help="also print the image tag REPOSITORY:<md5>")
    hsh.set_defaults(func=_cmd_manifest_hash)

    diff = man_sub.add_parser("diff", parents=[fmt], help="compare two manifests",
                              description="List models added (+), removed (-) and changed (~) from OLD to NEW.")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.set_defaults(func=_cmd_manifest_diff)

    man.set_defaults(func=lambda _args: (man.print_help(), EXIT_USAGE)[1])

    if not hasattr(mlops, "Pipeline"):
        return parser  # built without the Dolt and MLflow components

    def command(name, help_text, description, func, formats=("text", "json")):
        p = sub.add_parser(name, help=help_text, description=description)
        _add_pipeline_options(p)
        p.add_argument("--format", choices=list(formats), default=formats[0], help=f"output format (default {formats[0]})")
        p.set_defaults(func=func)
        return p

    p = command("init-demo", "create sample multi-customer text data and its adapter catalog",
                "Create the tables tickets and adapters (one text adapter per customer) and commit them.", _cmd_init_demo)
    p.add_argument("--customers", type=_positive_int, default=60)
    p.add_argument("--rows", type=_positive_int, default=120, help="tickets per customer")
    p.add_argument("--seed", type=int, default=0)

    p = command("sync", "import a CSV file or http(s) CSV link into a table and commit",
                "Import a CSV (a file or an http(s) link such as a spreadsheet's CSV export) and make a Dolt commit. "
                "A bad row is reported with its line number and nothing is committed.", _cmd_sync)
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
                "full JSON written to --full-json.", _cmd_diff, formats=("table", "json", "markdown"))
    p.add_argument("range", metavar="FROM..TO", help="two refs (branch, tag, HEAD~n, hash), e.g. main..analyst-sync")
    p.add_argument("--table", help="only this table (default: every table whose rows changed)")
    p.add_argument("--where", help="only rows matching this SQL condition on --table's columns (both sides)")
    p.add_argument("--full-json", default="mlops-diff.json",
                   help="markdown: where the full diff goes when the comment is summarised (default mlops-diff.json)")

    p = command("merge", "merge a data branch, or list its conflicts",
                "Merge NAME into --into: a fast-forward or a merge commit. On conflicting rows nothing is merged, "
                "the conflicting tables and keys are listed and the exit code is 7.", _cmd_merge)
    p.add_argument("branch", metavar="NAME")
    p.add_argument("--into", default="main", help="target branch (default main); the active branch stays")
    p.add_argument("-m", "--message", help="message of a merge commit")
    p.add_argument("--delete-branch", action="store_true", help="delete NAME after a successful merge")

    p = command("plan", "list which adapters are stale and why",
                "Per adapter: up to date or stale (never trained, data slice changed, hyperparameters changed).",
                _cmd_plan, formats=("table", "json", "github-matrix", "markdown"))
    p.add_argument("--at", default="main", help="branch, tag or commit to plan at (default main)")
    p.add_argument("--against", metavar="BRANCH",
                   help="only what merging --at into BRANCH would make stale, and why (no MLflow needed)")
    p.add_argument("--shards", type=_positive_int, default=1, help="shard count for --format github-matrix")
    p.add_argument("-o", "--output", help="also write the plan as JSON here (for train --plan)")

    p = command("train", "train the stale adapters of one shard",
                "Train one shard's stale adapters in one batched fit; each becomes an MLflow run, a registered "
                "version and the staging alias. The shard comes from --shard, MLOPS_SHARD, a Kubernetes indexed Job "
                "(JOB_COMPLETION_INDEX with --shards/MLOPS_SHARDS) or a Slurm array (SLURM_ARRAY_TASK_ID/COUNT).",
                _cmd_train)
    p.add_argument("--shard", help="INDEX/COUNT, 0-based (default 0/1)")
    p.add_argument("--shards", type=_positive_int, help="shard count when the index comes from the environment")
    p.add_argument("--at", default="main", help="ref to plan at when no --plan is given")
    p.add_argument("--plan", help="a plan written by 'mlops plan -o' (every shard then uses the same commit)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars on stderr (loading, training, recording)")

    p = command("release", "record a release of the staging versions and move the production aliases",
                "Record the manifest in MLflow (experiment mlops-releases, run named by its MD5) and move the aliases. "
                "Prints the image tag.", _cmd_release)
    p.add_argument("--image", required=True, help="Docker repository, e.g. registry.example.com/adapters")
    p.add_argument("--alias", help="alias to move (default production)")
    p.add_argument("--build-context", metavar="DIR", help="also write a Docker build context for the release")
    _add_image_options(p)

    p = command("rollback", "restore a release, or move one model back",
                "Restore a recorded release's aliases, or move one model's alias and record a new release.", _cmd_rollback)
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

    p = command("diff-release", "compare two releases", "Models added (+), removed (-) and changed (~).", _cmd_diff_release)
    p.add_argument("old")
    p.add_argument("new")

    p = command("serve", "serve every adapter of a release over HTTP",
                "Serve a release: MLflow's scoring protocol per model (POST /models/NAME/invocations), a batch "
                "route, /ping /health /version /models /metrics. SIGHUP reloads the release (an alias is looked "
                "up again); POST /admin/release switches to another (token from MLOPS_ADMIN_TOKEN); SIGTERM "
                "drains and exits 0.", _cmd_serve)
    p.add_argument("directory", nargs="?", metavar="DIR",
                   help="a build-context folder (manifest.json + models/; default: env MLOPS_RELEASE_DIR)")
    p.add_argument("--release", metavar="MD5", help="a recorded release, downloaded from MLflow")
    p.add_argument("--alias", metavar="NAME", help="the release the alias points at now (production)")
    p.add_argument("--host", default=_env("MLOPS_HOST", "127.0.0.1"), help="address to listen on (env MLOPS_HOST)")
    p.add_argument("--port", type=int, default=int(_env("MLOPS_PORT", "8080")), help="port (env MLOPS_PORT; 0: any free)")
    p.add_argument("--threads", type=int, default=0, help="I/O threads (default: one per core)")
    p.add_argument("--image", help="image tag reported by /version (default: the release folder's, or env MLOPS_IMAGE)")
    p.add_argument("--max-body-bytes", type=_positive_int, default=8 << 20, help="largest request body (413 above)")
    p.add_argument("--max-rows", type=_positive_int, default=10000, help="most rows in one request (400 above)")
    p.add_argument("--max-connections", type=_positive_int, default=1024, help="most open connections (503 above)")
    p.add_argument("--cache", metavar="DIR", help="where releases fetched from MLflow are kept "
                                                   "(default ~/.cache/mlops/releases)")

    p = command("build-context", "write a Docker build context for a release",
                "A Dockerfile with OCI labels, the manifest, every model's artifacts, and the wheels the image "
                "installs (this project's and its dependencies', pinned by hash; nothing from an index).", _cmd_build_context)
    p.add_argument("directory")
    p.add_argument("--release", metavar="MD5", help="default: the newest release")
    _add_image_options(p)

    _add_submit_parser(sub, _add_pipeline_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    if args.command == "rollback" and args.model and args.version is None:
        parser.error("rollback --model needs --version")
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`mlops plan | head`): what it wanted it has; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("mlops: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except mlops.ConflictError as e:
        print(f"mlops: {e}", file=sys.stderr)
        return EXIT_CONFLICT if getattr(e, "conflicts", None) is not None else EXIT_RELEASE_RACE
    except mlops.IntegrityError as e:
        print(f"mlops: {e}", file=sys.stderr)
        return EXIT_INTEGRITY
    except mlops.NotFoundError as e:
        print(f"mlops: {e}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except mlops.MlopsError as e:
        print(f"mlops: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
