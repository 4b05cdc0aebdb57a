#!/bin/sh
# Retrain the stale adapters on a Slurm GPU rack and release them, in one chain:
#
#   plan     here, once: which adapters are stale at DATA_REF, pinned to one data commit (WORKDIR/plan.json)
#   train    a job array, one task per shard with work, each on one GPU (train.sbatch)
#   release  after every train task succeeded: --dependency=afterok:<array> (release.sbatch)
#
#   submit.sh                 plan and submit; job ids go to WORKDIR/chain.json
#   submit.sh --dry-run       plan and print the sbatch commands instead
#   submit.sh --rerun 2       shard 2 again with the same plan; the waiting release then runs after it
#
# Settings come from the environment: MLOPS_DATA, MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_TOKEN or
# MLOPS_DOLT_PASSWORD when needed), MLOPS_CATALOG, MLOPS_IMAGE, DATA_REF (default main), SHARDS (default
# 4), WORKDIR (default: the current folder; the jobs' output goes there too). Other options of
# `mlops submit slurm` (e.g. --sbatch-option=--partition=gpu) may follow.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec mlops submit slurm --at "${DATA_REF:-main}" --shards "${SHARDS:-4}" --workdir "${WORKDIR:-.}" \
  --train-script "$here/train.sbatch" --release-script "$here/release.sbatch" "$@"
