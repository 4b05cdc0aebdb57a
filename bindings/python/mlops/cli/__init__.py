"""The ``mlops`` command line.

Exit codes (stable, for scripts and CI):
  0  success
  1  an mlops error (the message names what is wrong)
  2  bad command-line usage
  3  integrity failure (a hash did not match)
  4  something named was not found
  5  train: some adapters failed (the others were trained and registered)
  6  release/rollback: incomplete (the server failed half-way; run the same command again to finish)
  7  merge: conflicting rows (nothing was merged; the conflicts are listed)
  8  release/rollback: another one holds the release lease, or the aliases changed under it (nothing
     reported complete)
 130 interrupted (Ctrl-C)
A reader that closes the output early (``mlops plan | head``) ends the command quietly with 0.

Pipeline commands read their settings from options or the environment:
  --data         MLOPS_DATA           Dolt URI (default doltlite:mlops.db)
  --tracking-uri MLFLOW_TRACKING_URI  MLflow server
  --catalog      MLOPS_CATALOG        a .json/.toml file, or table:NAME (default table:adapters)
  --device       MLOPS_DEVICE         auto | cpu | cuda | cuda:N (default auto; train only)
Each command shows only the settings it uses (``mlops COMMAND --help``).

Each command group lives in a module of its own: ``manifest``, ``local`` (mlflow-server), ``data`` (init-demo,
sync, diff, merge), ``jobs`` (plan, train, release, rollback, lineage, releases, diff-release, build-context),
``serve``, ``submit`` and ``settings`` (check-env); ``common`` holds what they share.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import mlops

from .common import (EXIT_CODES, EXIT_CONFLICT, EXIT_ERROR, EXIT_HELD_BACK, EXIT_INCOMPLETE, EXIT_INTEGRITY,
                     EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_OK, EXIT_PARTIAL, EXIT_RELEASE_RACE, EXIT_USAGE,
                     Parser, UsageError, _add_pipeline_options, parse_shard, shard_from_environment)
from . import local, manifest, settings

__all__ = ["main", "build_parser", "parse_shard", "shard_from_environment", "EXIT_CODES", "EXIT_OK", "EXIT_ERROR",
           "EXIT_USAGE", "EXIT_INTEGRITY", "EXIT_NOT_FOUND", "EXIT_PARTIAL", "EXIT_INCOMPLETE", "EXIT_CONFLICT",
           "EXIT_RELEASE_RACE", "EXIT_HELD_BACK", "EXIT_INTERRUPTED"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mlops",
        description="Versioned training data, batched adapter training, lineage and hash-named releases.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version",
                        version=f"mlops {mlops.__version__} ({', '.join(mlops.components) or 'core only'})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    manifest.add_commands(sub)
    local.add_commands(sub)
    settings.add_commands(sub)

    if not hasattr(mlops, "Pipeline"):
        return parser  # built without the Dolt and MLflow components

    def command(name, help_text, description, func, formats=("text", "json"), options=("data", "tracking", "catalog")):
        """A command with the settings it uses (`options`, see common.ALL_OPTIONS) and --format."""
        p = sub.add_parser(name, help=help_text, description=description)
        _add_pipeline_options(p, options)
        p.add_argument("--format", choices=list(formats), default=formats[0], help=f"output format (default {formats[0]})")
        p.set_defaults(func=func)
        return p

    from . import data, jobs, serve, submit

    data.add_commands(command)
    jobs.add_commands(command)
    serve.add_commands(command)
    submit.add_commands(sub)
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
    except UsageError as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
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
