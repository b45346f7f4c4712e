"""Matrix products for Affine: BLAS (np.dot inside @njit) and hand-written loops.

Sizes: a (M, K), b (K, N), out (M, N) for `nn`; `nt` multiplies by b transposed
(b is (N, K)); `tn` by a transposed (a is (K, M), out (M, N)). All three cover
Affine: forward x·W (nn), backward dout·Wᵀ (nt) and xᵀ·dout (tn).

The loops skip zero entries of the left operand: MNIST pixels and ReLU outputs
are mostly zero, which is where a loop can beat dense BLAS. Inputs are checked
finite before they get here, so skipping 0 * b never hides a NaN.
"""
import numpy as np
from numba import njit, prange, types
from numba.extending import overload
from numba.np.linalg import _BLAS

from .config import CACHE, FASTMATH, LOOP_FASTMATH


@njit(cache=CACHE, fastmath=FASTMATH)
def matmul_nn_blas(out, a, b):
    np.dot(a, b, out)


@njit(cache=CACHE, fastmath=FASTMATH)
def matmul_nt_blas(out, a, b):
    np.dot(a, b.T, out)


@njit(cache=CACHE, fastmath=FASTMATH)
def matmul_tn_blas(out, a, b):
    np.dot(a.T, b, out)


def gemm_tn_update(c, a, b, alpha, beta):
    """c = alpha * aᵀ·b + beta * c in ONE BLAS call; a (K, M), b (K, N), c (M, N), C-contiguous.

    np.dot has no alpha/beta; this calls the same BLAS gemm numba's np.dot uses.
    Why: SGD on a weight, W = (1 - lr*wd)·W - lr·xᵀ·dz, done inside the product
    by the BLAS threads, instead of dW written by them and a separate pass on
    this thread reading it back across cores (docs/performance.md has the
    measurement). Callable from @njit code only."""


@overload(gemm_tn_update)
def _gemm_tn_update(c, a, b, alpha, beta):
    if any(x.layout != "C" for x in (c, a, b)) or len({c.dtype, a.dtype, b.dtype}) > 1:
        raise TypeError("gemm_tn_update needs C-contiguous arrays of one dtype")
    xxgemm = _BLAS().numba_xxgemm(c.dtype)
    kind = ord("s" if c.dtype == types.float32 else "d")
    dtype = np.float32 if c.dtype == types.float32 else np.float64
    no, yes = ord("N"), ord("T")

    def impl(c, a, b, alpha, beta):
        K, M = a.shape
        N = b.shape[1]
        ab = np.empty(2, dtype)
        ab[0], ab[1] = alpha, beta
        # row-major c (M, N) is column-major cᵀ (N, M): cᵀ = alpha * bᵀ·a + beta * cᵀ, where
        # b (K, N) row-major is column-major bᵀ (N, K) and a (K, M) is column-major aᵀ (M, K)
        xxgemm(kind, no, yes, N, M, K, ab[0:].ctypes, b.ctypes, N, a.ctypes, M, ab[1:].ctypes,
               c.ctypes, N)
    return impl


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
