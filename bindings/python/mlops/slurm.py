"""The train fan-out as a Slurm chain: a job array of train tasks (one shard each) and a release job that
starts only after every task succeeded (``--dependency=afterok``).

``submit`` takes a plan (made once, so that every task trains at the plan's data commit even if the
branch moves while the chain runs), submits the chain with ``sbatch`` and writes ``chain.json`` into the
working folder. ``rerun`` submits chosen shards again with the same plan and points the waiting release
at them: a release held back by a failed shard then runs once the re-run succeeds. ``chain_commands``
is the same chain as shell commands, for reading or for running by hand.

A train task runs ``mlops train --plan PLAN``; its shard index is the array task id (0-based) and the
shard count comes from ``MLOPS_SHARDS``, both set here. A release task runs ``mlops release``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import sys
from typing import Optional, Sequence

from ._core import ConfigError, MlopsError

CHAIN_FILE = "chain.json"
# Job states after which a task will not run again by itself (see squeue(1), JOB STATE CODES).
_FAILED_STATES = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                  "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}


class SlurmError(MlopsError):
    """A Slurm command failed or answered something unexpected; the message has its output."""


def _array_spec(indices: Sequence[int]) -> str:
    return ",".join(str(i) for i in indices)


def _mlops_command(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "mlops", *args])


def _train_argv(chain: dict, indices: Sequence[int]) -> list[str]:
    argv = ["sbatch", "--parsable", f"--array={_array_spec(indices)}",
            f"--export=ALL,MLOPS_PLAN={chain['plan']},MLOPS_SHARDS={chain['shards']}", *chain["sbatch_options"]]
    if chain["train_script"]:
        return argv + [chain["train_script"]]
    return argv + ["--job-name=mlops-train", "--gres=gpu:1",
                   f"--wrap={_mlops_command('train', '--plan', chain['plan'], '--no-progress')}"]


def _release_argv(chain: dict, dependency: str) -> list[str]:
    argv = ["sbatch", "--parsable", f"--dependency=afterok:{dependency}",
            f"--export=ALL,MLOPS_IMAGE={chain['image']}", *chain["sbatch_options"]]
    if chain["release_script"]:
        return argv + [chain["release_script"]]
    return argv + ["--job-name=mlops-release", f"--wrap={_mlops_command('release', '--image', chain['image'])}"]


def check_options(shards: int, plan_path: str, image: Optional[str], train_script: Optional[str] = None,
                  release_script: Optional[str] = None) -> None:
    """Raises ConfigError for options a chain cannot be submitted with (before anything is planned)."""
    if shards < 1:
        raise ConfigError(f"[mlops.config] shards must be at least 1, got {shards}")
    if not image:
        raise ConfigError("[mlops.config] the release needs an image repository: pass --image or set MLOPS_IMAGE")
    for label, value in (("plan file", os.path.abspath(plan_path)), ("image repository", image)):
        if "," in value:
            raise ConfigError(f"[mlops.config] {label} {value!r}: sbatch --export cannot pass a value with a comma")
    for label, script in (("train", train_script), ("release", release_script)):
        if script and not os.path.isfile(script):
            raise ConfigError(f"[mlops.config] {label} script {script!r} does not exist")


def new_chain(plan, shards: int, plan_path: str, image: str, train_script: Optional[str] = None,
              release_script: Optional[str] = None, sbatch_options: Sequence[str] = ()) -> dict:
    """The chain for ``plan`` split into ``shards``: only shards with stale adapters get a task."""
    check_options(shards, plan_path, image, train_script, release_script)
    return {
        "ref": plan.ref, "commit": plan.commit, "plan": os.path.abspath(plan_path), "shards": shards,
        "indices": [i for i in range(shards) if plan.shard(i, shards)],
        "stale": len(plan.stale()), "image": image,
        "train_script": os.path.abspath(train_script) if train_script else None,
        "release_script": os.path.abspath(release_script) if release_script else None,
        "sbatch_options": list(sbatch_options), "attempts": {}, "release_job": None,
    }


def chain_commands(chain: dict) -> str:
    """The chain as a POSIX shell script that submits it (what ``submit`` does)."""
    lines = [f"# plan at {chain['ref']} = {chain['commit']}: {chain['stale']} stale adapter(s), "
             f"{len(chain['indices'])} of {chain['shards']} shard(s) with work; plan file {chain['plan']}",
             "# the jobs take MLOPS_DATA, MLFLOW_TRACKING_URI, MLOPS_CATALOG and MLOPS_DEVICE from the environment"]
    if not chain["indices"]:
        return "\n".join(lines + ["# nothing to train"]) + "\n"
    lines.append("set -e")
    lines.append(f"train=$({shlex.join(_train_argv(chain, chain['indices']))})")
    release = shlex.join(_release_argv(chain, "@TRAIN@")).replace("@TRAIN@", '"${train%%;*}"')
    lines.append(f"release=$({release})")
    lines.append('echo "train job $train, release job $release"')
    return "\n".join(lines) + "\n"


def _sbatch(argv: list[str], cwd: pathlib.Path, env: Optional[dict]) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env)
    if r.returncode != 0:
        raise SlurmError(f"[mlops.slurm] {shlex.join(argv[:3])} ... exited with {r.returncode}: "
                         f"{(r.stderr or r.stdout).strip()}")
    return r.stdout.strip().split(";", 1)[0]  # --parsable prints JOBID[;CLUSTER]


def _save(workdir: pathlib.Path, chain: dict) -> None:
    tmp = workdir / (CHAIN_FILE + ".tmp")
    tmp.write_text(json.dumps(chain, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, workdir / CHAIN_FILE)


def load(workdir: str | os.PathLike) -> dict:
    path = pathlib.Path(workdir) / CHAIN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"[mlops.config] no chain was submitted from {workdir}: {path} does not exist") from None


def submit(chain: dict, workdir: str | os.PathLike, env: Optional[dict] = None) -> dict:
    """Submit the train array and the release after it; the chain with its job ids, saved in ``workdir``.

    The jobs get the environment ``env`` (default: this process's), where the data URI, the tracking
    server and their credentials are, so that none of them is written on a command line or to a file."""
    workdir = pathlib.Path(workdir)
    if not chain["indices"]:
        _save(workdir, chain)
        return chain
    train = _sbatch(_train_argv(chain, chain["indices"]), workdir, env)
    chain["attempts"] = {str(i): [f"{train}_{i}"] for i in chain["indices"]}
    _save(workdir, chain)
    chain["release_job"] = _sbatch(_release_argv(chain, train), workdir, env)
    _save(workdir, chain)
    return chain


def job_states(job_ids: Sequence[str]) -> dict:
    """``{job id: state}`` for jobs Slurm still knows (``JOBID_TASK`` for array tasks)."""
    states = {}
    for job in job_ids:
        r = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True)
        if r.returncode != 0:
            continue  # finished long enough ago that the controller forgot it
        for line in r.stdout.splitlines():
            fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
            task = fields.get("ArrayTaskId")
            key = f"{fields.get('ArrayJobId')}_{task}" if task and fields.get("ArrayJobId") else fields.get("JobId")
            if key == job:
                states[job] = fields.get("JobState", "")
    return states


def rerun(workdir: str | os.PathLike, indices: Sequence[int], env: Optional[dict] = None) -> dict:
    """Submit shards ``indices`` of the chain in ``workdir`` again (same plan, same commit) and make the
    release wait for them instead of their failed attempts. A shard that failed and is not named is an
    error: the release could never run."""
    workdir = pathlib.Path(workdir)
    chain = load(workdir)
    wanted = sorted(set(indices))
    unknown = [i for i in wanted if str(i) not in chain["attempts"]]
    if unknown:
        raise ConfigError(f"[mlops.config] shard(s) {_array_spec(unknown)} had no task in this chain "
                          f"(shards with work: {_array_spec(chain['indices']) or 'none'})")
    latest = {i: attempts[-1] for i, attempts in chain["attempts"].items()}
    states = job_states(list(latest.values()))
    others = {i: job for i, job in latest.items() if int(i) not in wanted}
    failed = sorted(int(i) for i, job in others.items() if states.get(job) in _FAILED_STATES)
    if failed:
        raise ConfigError(f"[mlops.config] shard(s) {_array_spec(failed)} failed too: re-run them with these "
                          f"(--rerun {_array_spec(wanted + failed)}), or the release cannot run")
    train = _sbatch(_train_argv(chain, wanted), workdir, env)
    for i in wanted:
        chain["attempts"][str(i)].append(f"{train}_{i}")
    _save(workdir, chain)
    # The release waits for the new tasks and for every other shard that has not finished yet.
    waiting = [f"{train}_{i}" for i in wanted]
    waiting += [job for job in others.values() if states.get(job, "COMPLETED") != "COMPLETED"]
    dependency = ":".join(waiting)
    release = chain.get("release_job")
    if release and job_states([release]).get(release) == "PENDING":
        r = subprocess.run(["scontrol", "update", f"JobId={release}", f"Dependency=afterok:{dependency}"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SlurmError(f"[mlops.slurm] scontrol update JobId={release} exited with {r.returncode}: "
                             f"{(r.stderr or r.stdout).strip()}")
    else:
        chain["release_job"] = _sbatch(_release_argv(chain, dependency), workdir, env)
    _save(workdir, chain)
    return chain
