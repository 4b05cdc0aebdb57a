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

.PHONY: setup lock build install wheel demo test test-cpp test-python test-asan test-latest test-fresh fuzz bench clean help

help:
	@echo "make demo    run the main job (installs what it needs)"
	@echo "make wheel   build dist/mlops_dolt-<version>-<python>-manylinux_*.whl with its own shared libraries"
	@echo "make test    build and run all tests: C++ (ctest), Python (pytest), C++ under ASan+UBSan"
	@echo "make test-latest  the Python suite against the newest releases of requirements-dev.txt (not the lock)"
	@echo "make test-fresh   clone into a new folder and run 'make demo' and 'make test' there, nothing reused"
	@echo "make lock    refresh requirements-lock.txt (pinned versions and hashes) from requirements-dev.txt"
	@echo "make fuzz    run each libFuzzer target (manifest, URI, CSV, safetensors, catalog, serve) FUZZ_SECONDS each (default 60)"
	@echo "make bench   run the benchmarks under bench/"

setup:
	@bash tools/setup.sh

# requirements-lock.txt: every development and test package pinned with its hashes, for any platform and the
# Python versions the project supports. uv resolves it; only this target installs uv (into build/, not .venv).
lock:
	python3 -m venv $(BUILD)/lock-tool
	$(BUILD)/lock-tool/bin/python -m pip install -q uv
	$(BUILD)/lock-tool/bin/uv pip compile -q requirements-dev.txt --generate-hashes --universal \
	  --python-version 3.11 --upgrade --custom-compile-command "make lock" -o requirements-lock.txt
	git diff --stat requirements-lock.txt || true

# The C++ library and its tests (ctest), with every component this machine can build.
build: setup
	cmake -S . -B $(BUILD)/cpp -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLOPS_BUILD_TESTS=ON \
	  -DPython_EXECUTABLE=$(abspath $(PY)) >/dev/null
	cmake --build $(BUILD)/cpp

# The Python package, installed into .venv from this checkout (incremental: the build folder is kept).
install: setup
	$(PY) -m pip install -q --no-build-isolation -Cbuild-dir=$(BUILD)/py .

# A wheel that carries the shared libraries it links (auditwheel repair), built from the same build folder as
# `make install`. The CUDA module needs no CUDA library from the wheel: it is loaded at run time where a driver exists.
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

# The Python suite on the newest releases of everything requirements-dev.txt names, in a venv and build folder of
# their own, so an upstream release that breaks the project is seen here on purpose rather than by a newcomer.
LATEST := $(BUILD)/latest
test-latest: setup wheel
	python3 -m venv --clear $(LATEST)/venv
	$(LATEST)/venv/bin/python -m pip install -q --upgrade pip
	$(LATEST)/venv/bin/python -m pip install -q --upgrade -r requirements-dev.txt
	$(LATEST)/venv/bin/python -m pip list --format=freeze | grep -iE '^(mlflow|numpy|pandas|doltlite|pybind11|scikit-learn)=='
	$(LATEST)/venv/bin/python -m pip install -q --no-build-isolation -Cbuild-dir=$(LATEST)/py .
	PATH="$(abspath $(LATEST))/venv/bin:$$PATH" $(LATEST)/venv/bin/python -m pytest

# What a newcomer gets: a clone in a new folder, the README's two commands, nothing reused from this checkout or
# this machine's caches (a new .venv, no pip cache, an empty ccache, no build folders). Debian packages already
# installed stay installed. Prints how long each command took.
test-fresh:
	d=$$(mktemp -d -t mlops-fresh-XXXXXX)
	git clone -q "$(CURDIR)" "$$d/mlops"
	echo "test-fresh: $$d/mlops"
	cd "$$d/mlops"
	export PIP_NO_CACHE_DIR=1 CCACHE_DIR="$$d/ccache" CCACHE_BASEDIR="$$d/mlops"
	t0=$$(date +%s); $(MAKE) demo; t1=$$(date +%s); $(MAKE) test; t2=$$(date +%s)
	echo "test-fresh: make demo $$((t1 - t0)) s, make test $$((t2 - t1)) s, in $$d/mlops"

demo: install wheel
	$(PY) examples/run_demo.py

# Each libFuzzer target for FUZZ_SECONDS (default 60), starting from its seeds in tests/fuzz/corpus/NAME;
# a finding stops the run with the crashing input saved under build/fuzz/findings.
FUZZERS := manifest uri csv safetensors catalog serve
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
