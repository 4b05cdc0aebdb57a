"""What every command shares: exit codes, settings from options or the environment, typed argument
parsers, the shard a job trains, and how the pipeline objects are made."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

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
EXIT_HELD_BACK = 9
EXIT_INTERRUPTED = 130

EXIT_CODES = (
    "Exit codes: 0 ok; 1 mlops error; 2 usage; 3 integrity (hash mismatch); 4 not found; "
    "5 train: some adapters failed; 6 release/rollback incomplete (run it again); "
    "7 merge conflicts (nothing merged); 8 another release or rollback holds the lease, took it over while this "
    "one was paused or cut off from MLflow, or changed the aliases under it (nothing reported complete); "
    "9 release: released, with models held back by their gates (evaluate: some candidates fail their gates); "
    "130 interrupted."
)


class UsageError(Exception):
    """Bad command-line usage found after parsing (options that do not go together): exit code 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless the help already names it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or not action.option_strings or default == []):
            return text
        shown = mlops.redact_uri(default) if isinstance(default, str) else str(default)  # never a password
        return f"{text} (default: {shown.replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """The parser of `mlops` and of every subcommand (argparse gives subparsers their parent's class): help
    with defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


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
    """The pipeline of a command; a command without --device never trains (the CPU backend stands in), one
    without --mlflow-threads takes the default."""
    if not args.tracking_uri:
        raise mlops.ConfigError("[mlops.config] no MLflow server: pass --tracking-uri or set MLFLOW_TRACKING_URI "
                                "(`mlops mlflow-server` starts a local one)")
    source = _source(args)
    tracker = mlops.MlflowTracker(args.tracking_uri)
    trainer = trainer or mlops.CudaTrainer(device=getattr(args, "device", "cpu"))
    catalog = _catalog(args, source, at)
    threads = getattr(args, "mlflow_threads", None) or mlops.Pipeline.default_record_threads
    return mlops.Pipeline(source, tracker, trainer, catalog, record_threads=int(threads))


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


def _shard_argument(text: str) -> str:
    """--shard checked while parsing, so a bad one is a usage error (exit 2)."""
    try:
        parse_shard(text)
    except mlops.ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("[mlops.config] ")) from None
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


def _add_image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wheel", metavar="PATH",
                   help="the mlops-dolt wheel the image installs (env MLOPS_WHEEL; default: this version's wheel "
                        "in ./dist, as `make wheel` builds it)")
    p.add_argument("--base-image", metavar="IMAGE",
                   help="image to build on, with python3 and venv (default: python:<the wheel's Python>-slim-bookworm)")


#: The settings a command can take, by the name `options=` uses: each command shows only its own.
ALL_OPTIONS = ("data", "tracking", "catalog", "device", "threads")


def _add_pipeline_options(p: argparse.ArgumentParser, options=ALL_OPTIONS) -> None:
    if "data" in options:
        p.add_argument("--data", default=_env("MLOPS_DATA", "doltlite:mlops.db"),
                       help="Dolt URI: doltlite:PATH or mysql://user@host:port/db (env MLOPS_DATA)")
    if "tracking" in options:
        p.add_argument("--tracking-uri", default=_env("MLFLOW_TRACKING_URI"),
                       help="MLflow tracking server (env MLFLOW_TRACKING_URI)")
    if "catalog" in options:
        p.add_argument("--catalog", default=_env("MLOPS_CATALOG", "table:adapters"),
                       help="adapter catalog: a .json/.toml file or table:NAME (env MLOPS_CATALOG)")
    if "device" in options:
        p.add_argument("--device", default=_env("MLOPS_DEVICE", "auto"),
                       help="auto | cpu | cuda | cuda:N (env MLOPS_DEVICE)")
    if "threads" in options:
        default = str(mlops.Pipeline.default_record_threads)
        p.add_argument("--mlflow-threads", type=_positive_int, default=_env("MLOPS_MLFLOW_THREADS", default),
                       help="requests to MLflow at once when recording adapters and moving aliases "
                            "(env MLOPS_MLFLOW_THREADS)")


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
