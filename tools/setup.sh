#!/usr/bin/env bash
# Installs what building, testing and the demo need, and nothing when it is already there.
# Debian packages through apt-get, Python packages into the project's virtual environment (.venv).
# MLOPS_SETUP=debian installs the Debian packages only (a CI job that makes a venv of its own).
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  build-essential cmake pkg-config git ccache
  clang libclang-rt-dev
  default-libmysqlclient-dev mariadb-server
  libcurl4-openssl-dev libssl-dev nlohmann-json3-dev doctest-dev libopenblas-dev libtomlplusplus-dev
  libboost-dev wrk
  openssl python3-venv
  podman runc mmdebstrap uidmap
  docker-registry podman-docker skopeo shellcheck
  slurm-wlm munge
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "${MLOPS_SETUP:-}" != debian ] || exit 0

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# The locked environment (every version and hash pinned), so a fresh machine gets what the tests passed with
# today, not whatever was released since; `make lock` refreshes it, `make test-latest` tries the newest.
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-lock.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages from requirements-lock.txt"
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements-lock.txt
  echo "$want" > "$stamp"
fi
