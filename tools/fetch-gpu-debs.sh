#!/usr/bin/env bash
# Fetches, on a machine with Debian's package archive, the build dependencies of a trainer-only build
# (tools/gpu-check.sh) as .deb files, so that a GPU machine without network and without Debian -dev
# packages can unpack them into a private prefix. Only what that build needs:
#   nlohmann-json3-dev            JSON (headers, CMake package)
#   doctest-dev                   the C++ tests (header, CMake package)
#   libssl-dev, libssl3           libcrypto (SHA-256 of datasets and adapter files)
#   libopenblas-dev, libopenblas-pthread-dev, libopenblas0-pthread, libgfortran5, libquadmath0
#                                 the CPU backend's BLAS (cblas.h, libopenblas and its Fortran runtime)
# Left out on purpose: libcurl, libmysqlclient and toml++ (the Dolt, MLflow and pipeline components are
# switched off in that build), Python headers and pybind11 (the machine's Python has them).
#
#   bash tools/fetch-gpu-debs.sh [DEST]     # DEST defaults to .gpu-debs/ in the repository (ignored by git)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-$root/.gpu-debs}
packages=(nlohmann-json3-dev doctest-dev libssl-dev libssl3 libopenblas-dev libopenblas-pthread-dev
          libopenblas0-pthread libgfortran5 libquadmath0)
mkdir -p "$dest"
rm -f "$dest"/*.deb
# apt-get download writes into the current folder; the _apt user may not be able to, which is harmless.
(cd "$dest" && { apt-get download "${packages[@]}" 2>&1 || true; } | grep -v "couldn't be accessed by user '_apt'") || true
missing=0
for p in "${packages[@]}"; do
  if ! ls "$dest/${p}_"*.deb >/dev/null 2>&1; then
    echo "missing: $p" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] || { echo "fetch-gpu-debs: some packages could not be downloaded" >&2; exit 1; }
du -sh "$dest" | sed 's/^/fetch-gpu-debs: /'
