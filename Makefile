# The two commands a new user needs: `make train` and `make test`. Each makes
# .venv with this machine's python3 and installs fastbp into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_FAIL ?= median:15%
STAMP := $(VENV)/.installed

.PHONY: test train bench bench-compare bench-report bench-gpu clean clean-cache

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The kernels once more with numba's bounds checking on (an out-of-range index raises
# IndexError instead of reading stray memory), compiled into a cache of their own:
# numba's cache key does not include the bounds-check setting.
BOUNDSCHECKED := tests/test_matmul.py tests/test_affine.py tests/test_relu.py tests/test_sigmoid.py \
	tests/test_softmax_loss.py tests/test_mlp.py tests/test_optimizers.py tests/test_network.py \
	tests/test_layers.py tests/test_fit.py tests/test_properties.py tests/test_boundscheck.py

# The CUDA kernels under numba's simulator: NUMBA_ENABLE_CUDASIM must be set before numba
# is imported, so they get a pytest process of their own (on a GPU machine, `pytest
# tests/cuda` without it runs the same tests on the GPU).
test: $(STAMP)
	$(BIN)/python -m pytest tests
	NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=$(VENV)/numba-boundscheck $(BIN)/python -m pytest -q $(BOUNDSCHECKED)
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q tests/cuda

# the embedded MNIST sample unless MNIST is already in $$FASTBP_DATA or the cache;
# `fastbp train` without --no-download fetches the full set instead
train: $(STAMP)
	$(BIN)/fastbp train --no-download

# pytest-benchmark suites (bench/): saved under .benchmarks/ for later comparison.
# bench-compare fails when a benchmark's median got more than 15% slower than the last save
# (make bench-compare BENCH_FAIL=median:25% on a noisy machine).
bench: $(STAMP)
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-autosave

bench-compare: $(STAMP)
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-compare --benchmark-compare-fail=$(BENCH_FAIL)

# the side-by-side report: one process, ratios, JSON and a PNG chart in bench/results/
bench-report: $(STAMP)
	$(BIN)/python scripts/bench.py

# on a GPU machine: SGEMM vs cuBLAS (needs CuPy), MNIST epoch and big step vs PyTorch CUDA
bench-gpu: $(STAMP)
	$(BIN)/python scripts/bench_cuda.py

# numba caches each kernel's machine code next to its source and keys it on that
# file alone; after editing a kernel that others call, drop the cache.
clean-cache:
	find kernels -name '__pycache__' -type d -prune -exec rm -rf {} +

clean: clean-cache
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
