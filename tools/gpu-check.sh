#!/usr/bin/env bash
# shellcheck disable=SC2317  # the stage functions are called through run_stage
# The GPU half of the trainer, proved in one command on a bare CUDA machine without network:
#   1. unpacks the build dependencies (.deb files fetched beforehand by tools/fetch-gpu-debs.sh) into a
#      private prefix, so no Debian -dev package needs to be installed (no .deb files: the system's
#      packages, and the summary says so);
#   2. builds the trainer alone (no Dolt, MLflow or pipeline component) with Ninja: libmlops, the CUDA
#      module, the C++ tests, the C++ bench and, where the Python has its headers, the Python extension;
#   3. runs the C++ tests (the GPU cases among them) and, with the extension, the GPU-marked Python tests
#      and the CPU trainer tests;
#   4. runs a small fit under compute-sanitizer memcheck (a device the sanitizer does not support is
#      reported as such, not as a failed check);
#   5. runs bench/train/bench.py's GPU part (1,000 adapters x 2,000 rows x 768 features x 8 classes x 10
#      epochs at batch 256 and 32) against a PyTorch loop, a torch.bmm ensemble, JAX vmap and the
#      bandwidth floor; without the extension, the C++ bench (mlops_train_bench) at the same sizes.
# Each stage has its own time limit; together at most 9 minutes. A compact summary goes to stdout and, when
# $OUT is set, to $OUT/gpu-check.txt (with the bench's JSON and the log of every failed stage), on every
# way out of the script.
#
# Needs: nvcc (CUDA 12.4+), CMake >= 3.25 and Ninja, a C++20 compiler; for the Python stages Python 3.9+
# with its headers, numpy, pybind11, pytest (torch and jax for the bench's anchors; safetensors for one test).
#
#   bash tools/fetch-gpu-debs.sh        # where Debian's archive is reachable: fills .gpu-debs/
#   bash tools/gpu-check.sh             # on the GPU machine (the repository with .gpu-debs/ copied over)
#
# Environment: GPU_CHECK_DIR (work folder, default build/gpu-check), GPU_CHECK_DEBS (default .gpu-debs),
# GPU_CHECK_STAGES (default "build cpp python sanitizer bench"), GPU_CHECK_BENCH_ARGS (extra bench flags),
# GPU_CHECK_TIME_SCALE (multiplies each stage's time limit), GPU_CHECK_ALLOW_CPU=1 (no GPU is not a
# failure: for trying the script on a machine without one), PYTHON (default python3), JOBS (default nproc),
# CUDACXX (default: nvcc on PATH, else $CUDA_HOME/bin/nvcc, else /usr/local/cuda/bin/nvcc).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${GPU_CHECK_DIR:-$root/build/gpu-check}
debs=${GPU_CHECK_DEBS:-$root/.gpu-debs}
stages=${GPU_CHECK_STAGES:-build cpp python sanitizer bench}
python=${PYTHON:-python3}
jobs=${JOBS:-$(nproc)}
out=${OUT:-}
scale=${GPU_CHECK_TIME_SCALE:-1}  # multiplies every stage's time limit (a slow machine without a GPU: 10)
allow_cpu=${GPU_CHECK_ALLOW_CPU:-0}
mkdir -p "$work/logs"
rm -f "$work"/logs/*.log
summary=$work/summary.txt
: >"$summary"
rm -f "$work/bench.json"
start=$SECONDS
failed=0

say() { echo "$*" | tee -a "$summary"; }

# Whatever way the script ends (a failed stage that stops it, an error, a signal), the summary and the
# log of every failed stage land in $OUT.
finish() {
  local rc=$?
  [ "$failed" = 0 ] && [ "$rc" != 0 ] && failed=1
  say "== gpu-check: $([ "$failed" = 0 ] && echo PASSED || echo FAILED) in $((SECONDS - start))s"
  if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$summary" "$out/gpu-check.txt"
    [ -f "$work/bench.json" ] && cp "$work/bench.json" "$out/bench.json"
    for log in "$work"/logs/*.log; do  # the full log of each failed stage, at most 200 KB each
      [ -e "$log" ] || continue
      name=$(basename "$log" .log)
      grep -q "^FAIL  $name" "$summary" && tail -c 200000 "$log" >"$out/$name.log"
    done
  fi
  trap - EXIT
  exit "$failed"
}
trap finish EXIT
trap 'say "FAIL  gpu-check: interrupted"; failed=1; exit 1' INT TERM

# run_stage NAME LIMIT_SECONDS COMMAND...: runs with a time limit, logs to $work/logs/NAME.log. A failure
# whose log matches $unavailable_if (an extended regular expression, when set) is a tool that cannot run
# on this machine: reported as "n/a" with the matching lines, not as a failed check.
run_stage() {
  local name=$1 limit=$(($2 * scale))
  shift 2
  local t0=$SECONDS rc log=$work/logs/$name.log
  # Through bash, so that a stage may be one of the functions below (exported with their variables).
  timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" >"$log" 2>&1
  rc=$?
  local took=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    say "ok    $name (${took}s)"
  elif [ $rc -ne 124 ] && [ -n "${unavailable_if:-}" ] && grep -qiE "$unavailable_if" "$log"; then
    say "n/a   $name: the tool cannot run on this machine (exit $rc):"
    grep -iE "$unavailable_if" "$log" | head -n 3 | sed 's/^/      | /' | tee -a "$summary"
    rc=0
  else
    failed=1
    if [ $rc -eq 124 ]; then say "FAIL  $name: over its ${limit}s limit"; else say "FAIL  $name: exit $rc (${took}s)"; fi
    tail -n 25 "$log" | sed 's/^/      | /' | tee -a "$summary"
  fi
  return $rc
}

wants() { case " $stages " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---- 1. the private prefix ---------------------------------------------------------------------------
prefix=$work/prefix
if compgen -G "$debs/*.deb" >/dev/null; then deps=prefix; else deps=system; fi
unpack() {
  rm -rf "$prefix" && mkdir -p "$prefix"
  local n=0
  for f in "$debs"/*.deb; do
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
# What the built code loads from the prefix at run time: only the libraries the system does not have, as
# links in a folder of their own. A prefix copy of a library the system has (libssl, libcrypto,
# libgfortran) would otherwise shadow the system's for every process, PyTorch and JAX included.
runtime_lib=$work/runtime-lib
runtime_libs() {
  rm -rf "$runtime_lib" && mkdir -p "$runtime_lib"
  [ "$deps" = prefix ] || return 0
  local have f name linked=()
  have=$(ldconfig -p 2>/dev/null | awk '{print $1}')
  for f in "$libdir"/lib*.so.* "$blasdir"/lib*.so.*; do
    [ -e "$f" ] || continue
    name=$(basename "$f")
    grep -qxF "$name" <<<"$have" && continue
    ln -sf "$f" "$runtime_lib/$name"
    linked+=("$name")
  done
  echo "from the prefix at run time: ${linked[*]:-nothing (the system has every library)}"
}
export LD_LIBRARY_PATH="$runtime_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The CUDA compiler, for CMake (which does not look in /usr/local/cuda on its own everywhere).
if [ -z "${CUDACXX:-}" ]; then
  for candidate in "$(command -v nvcc 2>/dev/null)" "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" /usr/local/cuda/bin/nvcc; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { CUDACXX=$candidate; break; }
  done
fi
export CUDACXX=${CUDACXX:-nvcc}

# The Python stages need the interpreter's headers and pybind11; without them the C++ half runs alone.
with_python=1
pyinc=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)
pybind=$("$python" -c 'import pybind11; print(pybind11.get_cmake_dir())' 2>/dev/null)
if [ -z "$pyinc" ] || [ ! -f "$pyinc/Python.h" ]; then
  with_python=0
  why_no_python="the Python at $python has no headers (${pyinc:-?}/Python.h)"
elif [ -z "$pybind" ]; then
  with_python=0
  why_no_python="the Python at $python has no pybind11"
fi

configure_and_build() {
  local args=() targets=(mlops_tests mlops_cuda mlops_train_bench) generator=()
  if command -v ninja >/dev/null; then generator=(-G Ninja); else echo "no ninja on PATH: CMake's default generator"; fi
  if [ "$deps" = prefix ]; then
    local inc="-isystem $prefix/usr/include -isystem $prefix/usr/include/$multiarch -isystem $prefix/usr/include/$multiarch/openblas-pthread"
    args+=(-DCMAKE_CXX_FLAGS="$inc" -DCMAKE_CUDA_FLAGS="$inc"
      -Dnlohmann_json_DIR="$prefix/usr/share/cmake/nlohmann_json" -Ddoctest_DIR="$prefix/usr/lib/cmake/doctest"
      -DBLAS_LIBRARIES="$blasdir/libopenblas.so"
      -DOPENSSL_ROOT_DIR="$prefix/usr" -DOPENSSL_INCLUDE_DIR="$prefix/usr/include"
      -DOPENSSL_CRYPTO_LIBRARY="$libdir/libcrypto.so" -DOPENSSL_SSL_LIBRARY="$libdir/libssl.so")
  fi
  if [ "$with_python" = 1 ]; then
    args+=(-DMLOPS_BUILD_PYTHON=ON -DPython_EXECUTABLE="$(command -v "$python")" -Dpybind11_DIR="$pybind")
    targets+=(_core)
  else
    args+=(-DMLOPS_BUILD_PYTHON=OFF)
  fi
  # A build folder made by another generator cannot be reused.
  [ -f "$work/build/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}$" \
    "$work/build/CMakeCache.txt" && rm -rf "$work/build"
  echo "CUDACXX=$CUDACXX"
  cmake -S "$root" -B "$work/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DMLOPS_WITH_DOLT=OFF -DMLOPS_WITH_MLFLOW=OFF -DMLOPS_WITH_CUDA=ON \
    -DMLOPS_BUILD_TESTS=ON -DMLOPS_INSTALL=OFF -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "${args[@]}" || return 1
  # What was found must come from the prefix (a system copy would hide a missing .deb).
  [ "$deps" = prefix ] && grep -E '^(nlohmann_json_DIR|doctest_DIR|BLAS_LIBRARIES|OPENSSL_CRYPTO_LIBRARY)' "$work/build/CMakeCache.txt"
  cmake --build "$work/build" -j "$jobs" --target "${targets[@]}" || return 1
  runtime_libs
  [ "$with_python" = 1 ] || return 0
  # The package as Python imports it: the pure-Python modules and the extension built above (which finds
  # the CUDA module at its build path).
  rm -rf "$work/py" && mkdir -p "$work/py"
  cp -r "$root/bindings/python/mlops" "$work/py/mlops"
  cp "$work/build"/bindings/python/_core*.so "$work/py/mlops/" || return 1
  PYTHONPATH="$work/py" "$python" -c 'import mlops; t = mlops.CudaTrainer(progress=False); print(mlops.components, "->", t.device, "|", t.device_reason)'
}

export root work debs deps python pybind jobs prefix multiarch libdir blasdir runtime_lib with_python CUDACXX
export -f unpack runtime_libs configure_and_build

tests_bin=$work/build/tests/cpp/mlops_tests
bench_bin=$work/build/mlops_train_bench
if wants build; then
  say "== gpu-check: $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  if [ "$deps" = prefix ]; then
    run_stage unpack 60 unpack || exit 1
  else
    say "note  no .deb files in $debs: building against the system's packages"
  fi
  [ "$with_python" = 1 ] || say "note  $why_no_python: the C++ tests and the C++ bench run, the Python stages do not"
  run_stage build 300 configure_and_build || exit 1
  grep -E '^(\(|cuda|cpu|dolt|mlflow)|->|^from the prefix' "$work/logs/build.log" | sed 's/^/      /' | tee -a "$summary"
fi
# Without a usable GPU every GPU test would skip and the bench would say why: that is a failed check,
# unless asked for (GPU_CHECK_ALLOW_CPU=1, to try the script where there is no GPU).
if [ "$allow_cpu" != 1 ]; then
  run_stage device 60 "$bench_bin" --device cuda --adapters 1 --rows 64 --features 8 --classes 2 --epochs 1 --batch 16 ||
    exit 1
  grep '^device:' "$work/logs/device.log" | sed 's/^/      /' | tee -a "$summary"
  bench_require=--require-gpu
fi

# ---- 3. tests -----------------------------------------------------------------------------------------
if wants cpp; then
  run_stage cpp-tests 150 "$tests_bin" --no-intro --duration=true
  grep -E '^\[doctest\] (test cases|assertions)' "$work/logs/cpp-tests.log" | sed 's/^/      /' | tee -a "$summary"
  grep -E '^[0-9.]+ s: GPU' "$work/logs/cpp-tests.log" | sed 's/^/      /' | tee -a "$summary"
fi
if wants python && [ "$with_python" = 1 ]; then
  deselect=()  # the progress bar is tqdm's; a machine without tqdm skips that one test
  "$python" -c 'import tqdm' 2>/dev/null ||
    deselect=(--deselect "$root/tests/python/test_trainer.py::test_progress_bar_over_all_steps_and_off_switch")
  run_stage python-tests 150 env PYTHONPATH="$work/py" "$python" -m pytest -p no:cacheprovider -q -rs \
    -o addopts="" -m "gpu or not slow" "${deselect[@]}" "$root/tests/python/test_trainer.py"
  tail -n 1 "$work/logs/python-tests.log" | sed 's/^/      /' | tee -a "$summary"
fi
# ---- 4. compute-sanitizer ---------------------------------------------------------------------------------
if wants sanitizer; then
  cuda_home=${CUDA_HOME:-$(dirname "$(dirname "$CUDACXX")")}
  sanitizer=$(command -v compute-sanitizer)
  for candidate in "$cuda_home/bin/compute-sanitizer" "$cuda_home/compute-sanitizer/compute-sanitizer"; do
    [ -z "$sanitizer" ] && [ -x "$candidate" ] && sanitizer=$candidate
  done
  if [ -z "$sanitizer" ]; then
    say "n/a   memcheck: compute-sanitizer not found (looked on PATH and under $cuda_home)"
  else
    # Some driver and runtime pairs refuse the sanitizer ("Device not supported", then error 999 from the
    # first CUDA call): the tool is unavailable there, which says nothing about the code.
    unavailable_if='Device not supported|error 999|CUDA_ERROR_UNKNOWN|Unable to (find|load) (the )?injection' \
      run_stage memcheck 120 "$sanitizer" --tool memcheck --error-exitcode 99 --leak-check full \
      "$tests_bin" --no-intro -tc="GPU: a small fit for compute-sanitizer*"
    grep -E 'ERROR SUMMARY|LEAK SUMMARY' "$work/logs/memcheck.log" | sed 's/^/      /' | tee -a "$summary"
  fi
fi
# ---- 5. the benchmark ---------------------------------------------------------------------------------
if wants bench; then
  left=$((540 * scale - (SECONDS - start) - 10))
  if [ $left -lt 60 ]; then
    say "FAIL  bench: only ${left}s of the 9 minutes left"
    failed=1
  elif [ "$with_python" = 1 ]; then
    # shellcheck disable=SC2086
    run_stage bench $((left / scale)) env PYTHONPATH="$work/py" XLA_PYTHON_CLIENT_PREALLOCATE=false \
      "$python" "$root/bench/train/bench.py" --skip-cpu --gpu-batch-sizes 256,32 --summary "$work/bench.json" \
      ${bench_require:-} ${GPU_CHECK_BENCH_ARGS:-}
    sed -n '/^== GPU/,$p' "$work/logs/bench.log" | sed 's/^/      /' | tee -a "$summary"
  else
    sizes=()  # the GPU sizes; on a machine without one (GPU_CHECK_ALLOW_CPU=1) a small run on the CPU
    [ "$allow_cpu" = 1 ] && sizes=(--device auto --adapters 20 --rows 500 --features 64)
    # shellcheck disable=SC2086
    run_stage bench-cpp $((left / scale)) bash -c '"$@" --batch 256 && "$@" --batch 32' bench "$bench_bin" "${sizes[@]}" \
      ${GPU_CHECK_BENCH_ARGS:-}
    grep -E '^(==|device:|fit\()' "$work/logs/bench-cpp.log" | sed 's/^/      /' | tee -a "$summary"
  fi
fi
exit "$failed"
