"""Compile settings every kernel shares, in one place.

No fastmath on the training path. With `reassoc`/`arcp` (or `contract`), LLVM's
choices depend on what it can inline, and that differs between a kernel compiled
in this process and one loaded from numba's cache: the same seed then gave
different last bits from one run to the next (found by the cold-cache tests). The
heavy lifting is BLAS, and the elementwise passes vectorise without fastmath.
LOOP_FASTMATH is for the hand-written matmul loops alone (their dot products need
`reassoc` to vectorise); they are the measured alternative, not the default path.
`nnan`/`ninf` are never set: softmax and the loss rely on IEEE infinities.

Numba's on-disk cache keys on each kernel's own source file only: after editing
a module that other kernels call into (matmul.py, relu.py, config.py, ...), run
`make clean-cache` or those callers keep their old machine code.

One compile per kernel, not one per constant: numba types a constant argument (True,
0, 1) by its value and compiles a kernel called from compiled code once for each such
value its callers pass, dead branches included (gemm_split was compiled 14 times in a
test run, 12 of them for constant transposes and a block count of 1 that never reaches
it). Where a kernel takes flags or counts that callers may pass as constants, the call
wraps them in bool() or np.int64(), which numba types as plain bool and int64; the block
count is made so where it is made (mlp.split_products).
"""

FASTMATH = set()
# For elementwise passes that divide (Adam, AdaGrad): numba's default error model checks
# every float division for a zero divisor to raise ZeroDivisionError, and that branch keeps
# LLVM from vectorising the loop (Adam's step over 235k float32 parameters: 478 µs, 2 ns
# each). The divisors there are sqrt(...) + eps > 0; "numpy" leaves IEEE division alone.
DIVIDING = dict(error_model="numpy")
LOOP_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
CACHE = True
# OpenBLAS multiplies on the calling thread when m*n*k is at most 65536 * 4 (its
# GEMM_MULTITHREAD_THRESHOLD), and on its own threads above that; those spin for a while
# after each call and then steal a core from numba's threads (fastbp/cpu.py: threads).
BLAS_ONE_THREAD = 65536 * 4
# Parameters from which an optimizer step (kernels/sk_solvers.py, optimizers.py) is spread
# over numba's threads where a sparse first layer's parts run there. On the Zen 4 VM
# (docs/performance.md names it; docs/sparse.md, "One thread pool"), float32,
# scikit-learn's step on one thread against two: 784-50-10's 39,760 parameters sgd 4.6 /
# 4.6 us, adam 12.2 / 8.5; 784-256-128-10's 235,146 sgd 29.7 / 20.7, adam 66.7 / 36.9 (a
# throwaway loop of steps).
STEP_SPLIT_MIN = 1 << 16
