#!/usr/bin/env bash
# Everything a GPU checks, in one command that fits in 10 minutes, each result a file in OUT:
#   the CUDA tests on the GPU (pytest.log), the benchmark (bench.cuda_report: report.log and
#   its JSON), compute-sanitizer's memcheck, racecheck and synccheck over 30 steps of
#   `fastbp train --device cuda` (sanitizer-*.log; the last two with the epoch kernel's sums
#   split), and summary.txt with each one's exit status.
#
#   bash bench/gpu_check.sh OUT [FASHION_DIR] [MNIST_DIR]
#
# For a machine whose python3 already has numba-cuda (and PyTorch and CuPy for the comparisons):
# fastbp goes in with --no-deps, no package index needed. FASHION_DIR: Fashion-MNIST's IDX files
# (the benchmark's epoch; else MNIST rows); MNIST_DIR: MNIST's (the sanitizer's training run;
# else the sample shipped with fastbp). Each stage has its own time limit (seconds, from the
# environment: TESTS_S 230, REPORT_S 210, SANITIZER_S 40 each tool: 560 in all) so a slow one
# still leaves the others.
set -u
out=${1:?usage: bash bench/gpu_check.sh OUT [FASHION_DIR] [MNIST_DIR]}
fashion=${2:-}
mnist=${3:-}
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
note() { echo "$1: exit $2" >> "$summary"; }

# the package from this folder (fastbp/kernels links to kernels/): installed, else on the path
if python3 -m pip install -q --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1; then
    note install 0
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    note "install failed (install.log), PYTHONPATH instead" 1
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # the MPI test, where runs are root's
nvidia-smi > "$out/nvidia-smi.txt" 2>&1

timeout "${TESTS_S:-230}" python3 -m pytest -q -rs --durations=15 tests/cuda tests/test_cuda_compile.py > "$out/pytest.log" 2>&1
note pytest $?

report=(--rounds 5 --out "$out")
[ -n "$fashion" ] && report+=(--fashion "$fashion")
timeout "${REPORT_S:-210}" python3 -m bench.cuda_report "${report[@]}" > "$out/report.log" 2>&1
note report $?

data=(--no-download)
[ -n "$mnist" ] && data+=(--data-dir "$mnist")
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2> /dev/null | head -1)
# `fastbp train` with the epoch kernel's forward sums split over up to SPLIT lanes (its one use
# of shared memory between threads besides the loss; config.EPOCH_SPLIT, 1 by default)
train='import sys; from fastbp.kernels.cuda import config; config.EPOCH_SPLIT = int(sys.argv[1])
from fastbp.cli import main; sys.exit(main(sys.argv[2:]))'
if [ -n "$sanitizer" ]; then
    for run in "memcheck 1" "racecheck 8" "synccheck 8"; do
        set -- $run
        timeout "${SANITIZER_S:-40}" "$sanitizer" --tool "$1" --error-exitcode 99 \
            python3 -c "$train" "$2" train --device cuda --iters 30 --no-progress "${data[@]}" \
            --out "$out/sanitizer-run-$1" > "$out/sanitizer-$1.log" 2>&1
        note "sanitizer $1 (split $2)" $?
    done
else
    echo "sanitizer: compute-sanitizer not found" >> "$summary"
fi

cat "$summary"
