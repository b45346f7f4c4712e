# The two commands a new user needs: `make train` and `make test`. Each makes
# .venv with this machine's python3 and installs fastbp into it first: `make train`
# only what training needs, `make test` the test tools and numba-cuda (the CUDA kernels
# are tested under numba's simulator) on top.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_FAIL ?= median:15%
# "strict" editable install: a tree of links to the sources in build/, put on sys.path. The
# default editable mode imports through a hook that comes after sys.path, so a folder named
# fastbp beside a user's script (a clone next to it) shadowed the installed package.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --config-settings editable_mode=strict
# the link tree lists the package's files: a file added or removed needs it rebuilt
PACKAGE_FILES := $(shell find fastbp kernels -name '*.py' -not -path '*/__pycache__/*') pyproject.toml

.PHONY: test train bench bench-compare bench-report bench-gpu clean clean-cache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-train: $(PACKAGE_FILES) | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-train
	$(PIP_INSTALL) -e '.[dev]'
	touch $@

# The kernels once more with numba's bounds checking on (an out-of-range index raises
# IndexError instead of reading stray memory), compiled into a cache of their own:
# numba's cache key does not include the bounds-check setting. Over the cores like the
# main suite (on one process this stage took 3.4 of make test's 13.6 minutes). The cases
# parametrized by dtype run in float32 only: a kernel's indices come from shapes and
# offsets, the same in both dtypes, and the float64 cases' compiling was 52 of this
# stage's 194 s on a fresh clone (tests without a dtype in their id, float64 ones among
# them, all run).
BOUNDSCHECKED := tests/test_matmul.py tests/test_affine.py tests/test_relu.py tests/test_sigmoid.py \
	tests/test_softmax_loss.py tests/test_mlp.py tests/test_optimizers.py tests/test_network.py \
	tests/test_layers.py tests/test_fit.py tests/test_properties.py tests/test_boundscheck.py \
	tests/test_tanh.py tests/test_output_losses.py tests/test_sklearn.py

# One pytest worker per core; an idle worker takes tests still queued for a busy one
# (worksteal): a few tests run tens of seconds (real trainings in real processes, cold
# numba caches). A fresh clone's main suite took 8:20 with it against 11:26 without, one
# run each on a 2-core VM (make test 14:14 against 17:16).
XDIST := -n auto --dist worksteal

# The CUDA kernels under numba's simulator: NUMBA_ENABLE_CUDASIM must be set before numba
# is imported, so they get a pytest process of their own (on a GPU machine, `pytest
# tests/cuda` without it runs the same tests on the GPU). The simulator is pure Python on one
# core: its tests run in one worker process per core, as the main suite does (pytest-xdist:
# every test is independent of the others; on one process the suite took 10 of make test's
# 15 minutes on a 2-core VM).
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(XDIST) tests
	NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=$(VENV)/numba-boundscheck $(BIN)/python -m pytest -q $(XDIST) \
		-k "not float64" $(BOUNDSCHECKED)
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q $(XDIST) tests/cuda

# the embedded MNIST sample unless MNIST is already in $$FASTBP_DATA or the cache
# (`fastbp train` without --no-download fetches the full set instead): 784-256-128-10,
# Adam, 20 epochs, about 0.96 test accuracy on the sample's 2,000 test images in seconds
TRAIN_ARGS := --no-download --hidden 256 128 --optimizer adam --epochs 20
train: $(VENV)/.installed-train
	$(BIN)/fastbp train $(TRAIN_ARGS)

# pytest-benchmark suites (bench/): saved under .benchmarks/ for later comparison.
# bench-compare fails when a benchmark's median got more than 15% slower than the last save
# (make bench-compare BENCH_FAIL=median:25% on a noisy machine).
bench: $(VENV)/.installed-test
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-autosave

bench-compare: $(VENV)/.installed-test
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-compare --benchmark-compare-fail=$(BENCH_FAIL)

# the side-by-side report: one process, ratios, JSON and a PNG chart in bench/results/
bench-report: $(VENV)/.installed-test
	$(BIN)/python -m bench.report

# on a GPU machine: SGEMM vs cuBLAS (needs CuPy), MNIST epoch and big step vs PyTorch CUDA
bench-gpu: $(VENV)/.installed-test
	$(BIN)/python -m bench.cuda_report

# numba caches each kernel's machine code next to its source as imported (the link tree
# in build/) and keys it on that file alone; after editing a kernel that others call,
# drop the cache.
clean-cache:
	find kernels build -name '__pycache__' -type d -prune -exec rm -rf {} + 2>/dev/null || true

clean: clean-cache
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
