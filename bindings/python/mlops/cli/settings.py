"""``mlops check-env``: a job's first step names every setting it needs that is missing, at once."""

from __future__ import annotations

import argparse
import os

import mlops

from .common import EXIT_OK


def _cmd_check_env(args) -> int:
    missing = [name for name in args.names if not os.environ.get(name)]
    if missing:
        # Names only: a secret's value never reaches a log.
        raise mlops.ConfigError(f"[mlops.config] {args.what} needs {', '.join(missing)}: "
                                f"{'it is' if len(missing) == 1 else 'they are'} not set or empty"
                                + (f" ({args.hint})" if args.hint else ""))
    return EXIT_OK


def add_commands(sub) -> None:
    p = sub.add_parser("check-env", help="fail with a config error naming every unset environment variable",
                       description="Exit 0 when every NAME is set to a non-empty value; otherwise exit 1 with one "
                                   "config error naming all that are missing (never their values). A CI job runs it "
                                   "first, so a missing variable or secret is reported before anything else runs.")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--what", default="this job", help="who needs them, for the message (default 'this job')")
    p.add_argument("--hint", help="where they are set, for the message (e.g. 'repository variables and secrets')")
    p.set_defaults(func=_cmd_check_env)
