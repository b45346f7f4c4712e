"""Matrix products for Affine: BLAS (np.dot inside @njit) and hand-written loops.

Sizes: a (M, K), b (K, N), out (M, N) for `nn`; `nt` multiplies by b transposed
(b is (N, K)); `tn` by a transposed (a is (K, M), out (M, N)). All three cover
Affine: forward x·W (nn), backward dout·Wᵀ (nt) and xᵀ·dout (tn).

BLAS beyond np.dot: gemm_rows (alpha·op(a)·op(b) + beta·c over a range of c's rows,
one BLAS call), gemm_split (c's rows in blocks on numba's threads, a BLAS call each)
and product (either, or np.dot, by size): the later layers' products in training.

The loops skip zero entries of the left operand: MNIST pixels and ReLU outputs
are mostly zero, which is where a loop can beat dense BLAS. Inputs are checked
finite before they get here, so skipping 0 * b never hides a NaN.
"""
import numpy as np
from numba import njit, prange, types
from numba.extending import overload
from numba.np.linalg import _BLAS

from .config import BLAS_ONE_THREAD, CACHE, FASTMATH, LOOP_FASTMATH


@njit(cache=CACHE, fastmath=FASTMATH)
def matmul_nn_blas(out, a, b):
    np.dot(a, b, out)


@njit(cache=CACHE, fastmath=FASTMATH)
def matmul_nt_blas(out, a, b):
    np.dot(a, b.T, out)


@njit(cache=CACHE, fastmath=FASTMATH)
def matmul_tn_blas(out, a, b):
    np.dot(a.T, b, out)


def gemm_rows(c, a, b, ta, tb, alpha, beta, r0, r1):
    """Rows r0..r1-1 of c = alpha·op(a)·op(b) + beta·c in one BLAS call, the rest of c
    untouched: op(a) is a (M, K), or aᵀ with ta (a (K, M)); op(b) is b (K, N), or bᵀ with
    tb (b (N, K)); c (M, N); C-contiguous arrays of one dtype; not both ta and tb.

    np.dot has no alpha/beta and no row range; this calls the same BLAS gemm numba's np.dot
    uses. alpha/beta: SGD on a weight, W = (1 - lr*wd)·W - lr·xᵀ·dz, done inside the
    product by the BLAS threads, instead of dW written by them and a separate pass on this
    thread reading it back across cores (docs/performance.md has the measurement). The row
    range: gemm_split's blocks. Callable from @njit code only."""


@overload(gemm_rows)
def _gemm_rows(c, a, b, ta, tb, alpha, beta, r0, r1):
    if any(x.layout != "C" for x in (c, a, b)) or len({c.dtype, a.dtype, b.dtype}) > 1:
        raise TypeError("gemm_rows needs C-contiguous arrays of one dtype")
    xxgemm = _BLAS().numba_xxgemm(c.dtype)
    kind = ord("s" if c.dtype == types.float32 else "d")
    dtype = np.float32 if c.dtype == types.float32 else np.float64
    no, yes = ord("N"), ord("T")

    def impl(c, a, b, ta, tb, alpha, beta, r0, r1):
        M, N = c.shape
        K = a.shape[0] if ta else a.shape[1]
        if r1 <= r0:
            return
        ab = np.empty(2, dtype)
        ab[0], ab[1] = alpha, beta
        # BLAS is column-major: row-major c (M, N) is cᵀ (N, M), so cᵀ = alpha·op(b)ᵀ·op(a)ᵀ +
        # beta·cᵀ, row-major b (K, N) read as bᵀ (N, K), a (M, K) as aᵀ (K, M). Rows r0.. of c
        # start at c[r0, 0]; of op(a), at a[r0, 0], or at a[0, r0] (stride M) with ta
        cf = c.reshape(M * N)[r0 * N:]
        af = a.reshape(a.shape[0] * a.shape[1])
        if ta:
            xxgemm(kind, no, yes, N, r1 - r0, K, ab[0:].ctypes, b.ctypes, N, af[r0:].ctypes, M, ab[1:].ctypes,
                   cf.ctypes, N)
        elif tb:
            xxgemm(kind, yes, no, N, r1 - r0, K, ab[0:].ctypes, b.ctypes, K, af[r0 * K:].ctypes, K, ab[1:].ctypes,
                   cf.ctypes, N)
        else:
            xxgemm(kind, no, no, N, r1 - r0, K, ab[0:].ctypes, b.ctypes, N, af[r0 * K:].ctypes, K, ab[1:].ctypes,
                   cf.ctypes, N)
    return impl


def gemm_tn_update(c, a, b, alpha, beta):
    """c = alpha·aᵀ·b + beta·c, a (K, M), b (K, N), c (M, N): gemm_rows over every row of c.
    Callable from @njit code only."""


@overload(gemm_tn_update)
def _gemm_tn_update(c, a, b, alpha, beta):
    return lambda c, a, b, alpha, beta: gemm_rows(c, a, b, True, False, alpha, beta, 0, c.shape[0])


@njit(cache=CACHE, fastmath=FASTMATH, parallel=True)
def gemm_split(c, a, b, ta, tb, alpha, beta, blocks):
    # gemm_rows over all of c in `blocks` blocks of rows on numba's threads, each block's BLAS
    # call on its thread: for BLAS limited to one thread while numba's run (cpu.threads),
    # where BLAS's own threads and numba's would otherwise take each other's cores. (The
    # count comes in: numba's get_num_threads() in compiled code keeps it from the cache.)
    M = c.shape[0]
    T = min(blocks, M)
    for t in prange(T):
        gemm_rows(c, a, b, ta, tb, alpha, beta, M * t // T, M * (t + 1) // T)


@njit(inline="always")
def product(c, a, b, ta, tb, alpha, beta, blocks):
    """c = alpha·op(a)·op(b) + beta·c (gemm_rows' arguments). With blocks > 1, a product past
    BLAS_ONE_THREAD multiply-adds in gemm_split's blocks on numba's threads; otherwise one BLAS
    call (np.dot's where alpha is 1 and beta 0)."""
    M, N = c.shape
    K = a.shape[0] if ta else a.shape[1]
    if blocks > 1 and M * N * K > BLAS_ONE_THREAD:
        # bool(), np.int64(): one compile of gemm_split for every caller (config.py)
        gemm_split(c, a, b, bool(ta), bool(tb), alpha, beta, np.int64(blocks))
    elif alpha != 1 or beta != 0:
        gemm_rows(c, a, b, ta, tb, alpha, beta, 0, M)
    elif ta:
        np.dot(a.T, b, c)
    elif tb:
        np.dot(a, b.T, c)
    else:
        np.dot(a, b, c)


@njit(cache=CACHE, fastmath=LOOP_FASTMATH, parallel=True)
def matmul_nn_loop(out, a, b):
    # a is (M, K), b is (K, N), out is (M, N); one thread per output row
    M, K = a.shape
    N = b.shape[1]
    for i in prange(M):
        for j in range(N):
            out[i, j] = 0
        for k in range(K):
            aik = a[i, k]
            if aik != 0:
                for j in range(N):
                    out[i, j] += aik * b[k, j]


@njit(cache=CACHE, fastmath=LOOP_FASTMATH, parallel=True)
def matmul_nt_loop(out, a, b):
    # a is (M, K), b is (N, K), out is (M, N); row-by-row dot products
    M, K = a.shape
    N = b.shape[0]
    for i in prange(M):
        for j in range(N):
            s = out.dtype.type(0)
            for k in range(K):
                s += a[i, k] * b[j, k]
            out[i, j] = s


@njit(cache=CACHE, fastmath=LOOP_FASTMATH, parallel=True)
def matmul_tn_loop(out, a, b):
    # a is (K, M), b is (K, N), out is (M, N); one thread per output row, so no
    # two threads ever add into the same element
    K, M = a.shape
    N = b.shape[1]
    for i in prange(M):
        for j in range(N):
            out[i, j] = 0
        for k in range(K):
            aki = a[k, i]
            if aki != 0:
                for j in range(N):
                    out[i, j] += aki * b[k, j]
