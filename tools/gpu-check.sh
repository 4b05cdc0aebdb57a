#!/usr/bin/env bash
# shellcheck disable=SC2317  # the stage functions are called through run_stage
# The GPU half of the trainer, proved in one command on a bare CUDA machine without network:
#   1. unpacks the build dependencies (.deb files fetched beforehand by tools/fetch-gpu-debs.sh) into a
#      private prefix, so no Debian -dev package needs to be installed;
#   2. builds the trainer alone (no Dolt, MLflow or pipeline component): libmlops, the CUDA module, the
#      C++ tests and the Python extension, in one CMake build;
#   3. runs the C++ tests (the GPU cases among them), the GPU-marked Python tests and the CPU trainer tests;
#   4. runs a small fit under compute-sanitizer memcheck;
#   5. runs bench/train/bench.py's GPU part (1,000 adapters x 2,000 rows x 768 features x 8 classes x 10
#      epochs at batch 256 and 32) against a PyTorch loop, a torch.bmm ensemble, JAX vmap and the
#      bandwidth floor.
# Each stage has its own time limit; together at most 9 minutes. A compact summary goes to stdout and, when
# $OUT is set, to $OUT/gpu-check.txt (with the bench's JSON and the log of every failed stage).
#
# Needs: nvcc (CUDA 12.4+), CMake >= 3.25, a C++20 compiler, Python 3.9+ with numpy, pybind11, pytest
# (torch and jax for the bench's anchors; safetensors for one test).
#
#   bash tools/fetch-gpu-debs.sh        # where Debian's archive is reachable: fills .gpu-debs/
#   bash tools/gpu-check.sh             # on the GPU machine (the repository with .gpu-debs/ copied over)
#
# Environment: GPU_CHECK_DIR (work folder, default build/gpu-check), GPU_CHECK_DEBS (default .gpu-debs),
# GPU_CHECK_STAGES (default "build cpp python sanitizer bench"), GPU_CHECK_BENCH_ARGS (extra bench flags),
# GPU_CHECK_TIME_SCALE (multiplies each stage's time limit), GPU_CHECK_ALLOW_CPU=1 (no GPU is not a
# failure: for trying the script on a machine without one), PYTHON (default python3), JOBS (default nproc).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${GPU_CHECK_DIR:-$root/build/gpu-check}
debs=${GPU_CHECK_DEBS:-$root/.gpu-debs}
stages=${GPU_CHECK_STAGES:-build cpp python sanitizer bench}
python=${PYTHON:-python3}
jobs=${JOBS:-$(nproc)}
out=${OUT:-}
scale=${GPU_CHECK_TIME_SCALE:-1}  # multiplies every stage's time limit (a slow machine without a GPU: 10)
mkdir -p "$work/logs"
summary=$work/summary.txt
: >"$summary"
start=$SECONDS
failed=0

say() { echo "$*" | tee -a "$summary"; }

# run_stage NAME LIMIT_SECONDS COMMAND...: runs with a time limit, logs to $work/logs/NAME.log.
run_stage() {
  local name=$1 limit=$(($2 * scale))
  shift 2
  local t0=$SECONDS rc
  # Through bash, so that a stage may be one of the functions below (exported with their variables).
  timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" >"$work/logs/$name.log" 2>&1
  rc=$?
  local took=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    say "ok    $name (${took}s)"
  else
    failed=1
    if [ $rc -eq 124 ]; then say "FAIL  $name: over its ${limit}s limit"; else say "FAIL  $name: exit $rc (${took}s)"; fi
    tail -n 25 "$work/logs/$name.log" | sed 's/^/      | /' | tee -a "$summary"
  fi
  return $rc
}

wants() { case " $stages " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---- 1. the private prefix ---------------------------------------------------------------------------
prefix=$work/prefix
unpack() {
  rm -rf "$prefix" && mkdir -p "$prefix"
  local n=0
  for f in "$debs"/*.deb; do
    [ -e "$f" ] || { echo "no .deb files in $debs: run tools/fetch-gpu-debs.sh where the archive is reachable"; return 1; }
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$f" "$prefix" || return 1
    else  # a .deb is an ar archive holding data.tar.*
      (cd "$work" && rm -f data.tar.* && ar x "$f" "$(ar t "$f" | grep '^data\.tar')" && tar -xf data.tar.* -C "$prefix" &&
        rm -f data.tar.*) || return 1
    fi
    n=$((n + 1))
  done
  echo "unpacked $n packages into $prefix"
}

multiarch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
multiarch=${multiarch/-pc-/-}
libdir=$prefix/usr/lib/$multiarch
blasdir=$libdir/openblas-pthread
export LD_LIBRARY_PATH="$libdir:$blasdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

configure_and_build() {
  local pyinc pybind
  pybind=$("$python" -c 'import pybind11; print(pybind11.get_cmake_dir())') || return 1
  pyinc=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$pyinc/Python.h" ] || { echo "the Python at $python has no headers ($pyinc/Python.h)"; return 1; }
  local inc="-isystem $prefix/usr/include -isystem $prefix/usr/include/$multiarch -isystem $prefix/usr/include/$multiarch/openblas-pthread"
  cmake -S "$root" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DMLOPS_WITH_DOLT=OFF -DMLOPS_WITH_MLFLOW=OFF -DMLOPS_WITH_CUDA=ON -DMLOPS_BUILD_PYTHON=ON \
    -DMLOPS_BUILD_TESTS=ON -DMLOPS_INSTALL=OFF \
    -DCMAKE_CXX_FLAGS="$inc" -DCMAKE_CUDA_FLAGS="$inc" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -Dnlohmann_json_DIR="$prefix/usr/share/cmake/nlohmann_json" -Ddoctest_DIR="$prefix/usr/lib/cmake/doctest" \
    -DBLAS_LIBRARIES="$blasdir/libopenblas.so" \
    -DOPENSSL_ROOT_DIR="$prefix/usr" -DOPENSSL_INCLUDE_DIR="$prefix/usr/include" \
    -DOPENSSL_CRYPTO_LIBRARY="$libdir/libcrypto.so" -DOPENSSL_SSL_LIBRARY="$libdir/libssl.so" \
    -DPython_EXECUTABLE="$(command -v "$python")" -Dpybind11_DIR="$pybind" || return 1
  # What was found must come from the prefix (a system copy would hide a missing .deb).
  grep -E '^(nlohmann_json_DIR|doctest_DIR|BLAS_LIBRARIES|OPENSSL_CRYPTO_LIBRARY)' "$work/build/CMakeCache.txt"
  cmake --build "$work/build" -j "$jobs" --target mlops_tests _core mlops_cuda || return 1
  # The package as Python imports it: the pure-Python modules and the extension built above (which finds
  # the CUDA module at its build path).
  rm -rf "$work/py" && mkdir -p "$work/py"
  cp -r "$root/bindings/python/mlops" "$work/py/mlops"
  cp "$work/build"/bindings/python/_core*.so "$work/py/mlops/" || return 1
  PYTHONPATH="$work/py" "$python" -c 'import mlops; t = mlops.CudaTrainer(progress=False); print(mlops.components, "->", t.device, "|", t.device_reason)'
}

export root work debs python jobs prefix multiarch libdir blasdir
export -f unpack configure_and_build

if wants build; then
  say "== gpu-check: $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  run_stage unpack 60 unpack || exit 1
  run_stage build 300 configure_and_build || exit 1
  grep -E '^(\(|cuda|cpu|dolt|mlflow)|->' "$work/logs/build.log" | tail -n 1 | sed 's/^/      /' | tee -a "$summary"
fi
# Without a usable GPU every GPU test would skip and the bench would say why: that is a failed check,
# unless asked for (GPU_CHECK_ALLOW_CPU=1, to try the script where there is no GPU).
if [ "${GPU_CHECK_ALLOW_CPU:-0}" != 1 ]; then
  run_stage device 60 env PYTHONPATH="$work/py" "$python" -c \
    'import mlops, sys; t = mlops.CudaTrainer(progress=False); print(t.device, "|", t.device_reason); sys.exit(t.device == "cpu")' ||
    exit 1
  bench_require=--require-gpu
fi

tests_bin=$work/build/tests/cpp/mlops_tests
# ---- 3. tests -----------------------------------------------------------------------------------------
if wants cpp; then
  run_stage cpp-tests 150 "$tests_bin" --no-intro --duration=true
  grep -E '^\[doctest\] (test cases|assertions)' "$work/logs/cpp-tests.log" | sed 's/^/      /' | tee -a "$summary"
  grep -E '^[0-9.]+ s: GPU' "$work/logs/cpp-tests.log" | sed 's/^/      /' | tee -a "$summary"
fi
if wants python; then
  deselect=()  # the progress bar is tqdm's; a machine without tqdm skips that one test
  "$python" -c 'import tqdm' 2>/dev/null ||
    deselect=(--deselect "$root/tests/python/test_trainer.py::test_progress_bar_over_all_steps_and_off_switch")
  run_stage python-tests 150 env PYTHONPATH="$work/py" "$python" -m pytest -p no:cacheprovider -q -rs \
    -o addopts="" -m "gpu or not slow" "${deselect[@]}" "$root/tests/python/test_trainer.py"
  tail -n 1 "$work/logs/python-tests.log" | sed 's/^/      /' | tee -a "$summary"
fi
# ---- 4. compute-sanitizer ---------------------------------------------------------------------------------
if wants sanitizer; then
  cuda_home=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")}
  sanitizer=$(command -v compute-sanitizer)
  for candidate in "$cuda_home/bin/compute-sanitizer" "$cuda_home/compute-sanitizer/compute-sanitizer"; do
    [ -z "$sanitizer" ] && [ -x "$candidate" ] && sanitizer=$candidate
  done
  sanitizer=${sanitizer:-compute-sanitizer}  # not found: the stage fails and says so
  run_stage memcheck 120 "$sanitizer" --tool memcheck --error-exitcode 99 --leak-check full \
    "$tests_bin" --no-intro -tc="GPU: a small fit for compute-sanitizer*"
  grep -E 'ERROR SUMMARY|LEAK SUMMARY' "$work/logs/memcheck.log" | sed 's/^/      /' | tee -a "$summary"
fi
# ---- 5. the benchmark ---------------------------------------------------------------------------------
if wants bench; then
  left=$((540 * scale - (SECONDS - start) - 10))
  if [ $left -lt 60 ]; then
    say "FAIL  bench: only ${left}s of the 9 minutes left"
    failed=1
  else
    # shellcheck disable=SC2086
    run_stage bench $((left / scale)) env PYTHONPATH="$work/py" XLA_PYTHON_CLIENT_PREALLOCATE=false \
      "$python" "$root/bench/train/bench.py" --skip-cpu --gpu-batch-sizes 256,32 --summary "$work/bench.json" \
      ${bench_require:-} ${GPU_CHECK_BENCH_ARGS:-}
    sed -n '/^== GPU/,$p' "$work/logs/bench.log" | sed 's/^/      /' | tee -a "$summary"
  fi
fi

say "== gpu-check: $([ $failed = 0 ] && echo PASSED || echo FAILED) in $((SECONDS - start))s"
if [ -n "$out" ]; then
  mkdir -p "$out"
  cp "$summary" "$out/gpu-check.txt"
  [ -f "$work/bench.json" ] && cp "$work/bench.json" "$out/bench.json"
  for log in "$work"/logs/*.log; do  # the full log of each failed stage, at most 200 KB each
    name=$(basename "$log" .log)
    grep -q "^FAIL  $name" "$summary" && tail -c 200000 "$log" >"$out/$name.log"
  done
fi
exit $failed
