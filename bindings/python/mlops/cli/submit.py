"""``mlops submit slurm``: plan once, then a Slurm job array of train tasks and a release after them."""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from .common import EXIT_OK, EXIT_USAGE, _add_pipeline_options, _env, _pipeline, _positive_int, _print_json, _progress


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
    from .. import slurm

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


def add_commands(sub) -> None:
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
    _add_pipeline_options(p)
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
