# One entry point. `make demo` runs the main job, `make test` runs every test; both install what is missing.
SHELL := /bin/bash
MAKEFLAGS += --no-print-directory
.ONESHELL:
.SHELLFLAGS := -eo pipefail -c

JOBS    ?= $(shell nproc)
VENV    := .venv
PY      := $(VENV)/bin/python
BUILD   := build
export CMAKE_BUILD_PARALLEL_LEVEL := $(JOBS)
# Rebuilds (the three build folders, a fresh clone on the same machine) reuse compiled objects through ccache
# when it is installed; paths are hashed relative to the checkout, so another clone hits the same cache.
ifneq ($(shell command -v ccache 2>/dev/null),)
export CMAKE_CXX_COMPILER_LAUNCHER ?= ccache
export CMAKE_CUDA_COMPILER_LAUNCHER ?= ccache
export CCACHE_BASEDIR ?= $(CURDIR)
export CCACHE_NOHASHDIR ?= 1
endif

.PHONY: setup build install wheel demo test test-cpp test-python test-asan fuzz bench clean help

help:
	@echo "make demo    run the main job (installs what it needs)"
	@echo "make wheel   build dist/mlops_dolt-<version>-<python>-manylinux_*.whl with its own shared libraries"
	@echo "make test    build and run all tests: C++ (ctest), Python (pytest), C++ under ASan+UBSan"
	@echo "make fuzz    run each libFuzzer target (manifest, URI, CSV, safetensors, catalog) FUZZ_SECONDS each (default 60)"
	@echo "make bench   run the benchmarks under bench/"

setup:
	@bash tools/setup.sh

# The C++ library and its tests (ctest), with every component this machine can build.
build: setup
	cmake -S . -B $(BUILD)/cpp -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLOPS_BUILD_TESTS=ON \
	  -DPython_EXECUTABLE=$(abspath $(PY)) >/dev/null
	cmake --build $(BUILD)/cpp

# The Python package, installed into .venv from this checkout (incremental: the build folder is kept).
install: setup
	$(PY) -m pip install -q --no-build-isolation -Cbuild-dir=$(BUILD)/py .

# A wheel that carries the shared libraries it links (auditwheel repair), built from the same build folder as
# `make install`. The CUDA module stays outside: it is loaded at run time where a driver and cuBLAS exist.
wheel: setup
	rm -rf $(BUILD)/wheel && mkdir -p $(BUILD)/wheel dist
	$(PY) -m pip wheel -q --no-build-isolation --no-deps -Cbuild-dir=$(BUILD)/py -w $(BUILD)/wheel .
	rm -f dist/mlops_dolt-*.whl
	PATH="$(abspath $(VENV))/bin:$$PATH" auditwheel repair -w dist \
	  --exclude 'libcublas.so.*' --exclude 'libcublasLt.so.*' --exclude 'libcuda.so.*' $(BUILD)/wheel/*.whl
	ls -l dist/mlops_dolt-*.whl

test-cpp: build
	ctest --test-dir $(BUILD)/cpp --output-on-failure -j $(JOBS)

# The wheel is built before pytest starts: tests that install it (test_wheel, test_image) read dist/ only.
test-python: install wheel
	$(PY) -m pytest

# Python_EXECUTABLE: the DoltLite cases load libdoltlite.so from the doltlite wheel in .venv.
test-asan: setup
	cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DMLOPS_BUILD_TESTS=ON -DMLOPS_INSTALL=OFF \
	  -DMLOPS_SANITIZE=address,undefined -DPython_EXECUTABLE=$(abspath $(PY)) >/dev/null
	cmake --build $(BUILD)/asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(BUILD)/asan --output-on-failure -j $(JOBS)

test: test-cpp test-python test-asan

demo: install wheel
	$(PY) examples/run_demo.py

# Each libFuzzer target for FUZZ_SECONDS (default 60), starting from its seeds in tests/fuzz/corpus/NAME;
# a finding stops the run with the crashing input saved under build/fuzz/findings.
FUZZERS := manifest uri csv safetensors catalog
fuzz: setup
	cmake -S . -B $(BUILD)/fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DMLOPS_BUILD_TESTS=OFF -DMLOPS_INSTALL=OFF -DMLOPS_BUILD_FUZZERS=ON -DMLOPS_WITH_CUDA=OFF \
	  -DMLOPS_SANITIZE=fuzzer-no-link,address,undefined >/dev/null
	cmake --build $(BUILD)/fuzz --target fuzzers
	mkdir -p $(BUILD)/fuzz/findings
	for f in $(FUZZERS); do
	  mkdir -p $(BUILD)/fuzz/corpus/$$f
	  cp tests/fuzz/corpus/$$f/* $(BUILD)/fuzz/corpus/$$f/
	  echo "== fuzz_$$f for $${FUZZ_SECONDS:-60}s"
	  if ! $(BUILD)/fuzz/tests/fuzz/fuzz_$$f -max_total_time=$${FUZZ_SECONDS:-60} -max_len=4096 -print_final_stats=1 \
	      -artifact_prefix=$(BUILD)/fuzz/findings/$$f- $(BUILD)/fuzz/corpus/$$f >$(BUILD)/fuzz/$$f.log 2>&1; then
	    tail -60 $(BUILD)/fuzz/$$f.log; exit 1
	  fi
	  grep -E "^(Done|stat::number_of_executed_units)" $(BUILD)/fuzz/$$f.log || true
	done

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(BUILD)
