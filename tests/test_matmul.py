"""Both matrix-product families (BLAS in @njit, hand-written loops) against NumPy."""
import numpy as np
import pytest
from numba import njit

from conftest import DTYPES, assert_near
from fastbp.kernels import matmul, reference

# (M, K, N): batch 1, width 1, and sizes that are not multiples of any tile or vector width
SHAPES = [(1, 1, 1), (1, 7, 1), (1, 1, 9), (5, 1, 3), (17, 33, 9), (100, 784, 50), (3, 65, 129)]


def sparse(rng, shape, dtype):
    a = rng.standard_normal(shape)
    a[rng.random(shape) < 0.5] = 0  # the loops skip zeros: make sure that path is exercised
    return a.astype(dtype)


@pytest.mark.parametrize("impl", ["blas", "loop"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_matmul_matches_numpy(rng, impl, dtype, M, K, N):
    a = sparse(rng, (M, K), dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    out = np.full((M, N), np.nan, dtype)
    getattr(matmul, f"matmul_nn_{impl}")(out, a, b)
    assert_near(out, reference.matmul_nn(a, b), dtype)

    bt = np.ascontiguousarray(b.T)  # (N, K)
    out[...] = np.nan
    getattr(matmul, f"matmul_nt_{impl}")(out, a, bt)
    assert_near(out, reference.matmul_nt(a, bt), dtype)

    at = np.ascontiguousarray(a.T)  # (K, M)
    c = rng.standard_normal((K, N)).astype(dtype)
    out_t = np.full((M, N), np.nan, dtype)
    getattr(matmul, f"matmul_tn_{impl}")(out_t, at, c)
    assert_near(out_t, reference.matmul_tn(at, c), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_loop_overwrites_stale_output(rng, dtype):
    # outputs are written, never accumulated into: garbage in `out` must not leak through
    a = np.zeros((4, 6), dtype)
    b = rng.standard_normal((6, 3)).astype(dtype)
    for impl in ("blas", "loop"):
        out = np.full((4, 3), 7.0, dtype)
        getattr(matmul, f"matmul_nn_{impl}")(out, a, b)
        assert (out == 0).all()


@njit
def _gemm_tn_update(c, a, b, alpha, beta):  # the kernel is callable from compiled code only
    matmul.gemm_tn_update(c, a, b, alpha, beta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.1, 1.0), (-0.01, 0.999), (2.5, -0.5)])
def test_gemm_tn_update_matches_numpy(rng, dtype, M, K, N, alpha, beta):
    a = sparse(rng, (K, M), dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    c = rng.standard_normal((M, N)).astype(dtype)
    want = reference.gemm_tn_update(c, a, b, dtype(alpha), dtype(beta))
    keep_a, keep_b = a.copy(), b.copy()
    _gemm_tn_update(c, a, b, alpha, beta)
    assert_near(c, want, dtype)
    np.testing.assert_array_equal(a, keep_a)
    np.testing.assert_array_equal(b, keep_b)


def test_gemm_tn_update_refuses_strided_or_mixed_arrays(rng):
    c = np.zeros((3, 4))
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    with pytest.raises(Exception, match="C-contiguous arrays of one dtype"):
        _gemm_tn_update(c, a[:, ::-1], b, 1.0, 0.0)
    with pytest.raises(Exception, match="C-contiguous arrays of one dtype"):
        _gemm_tn_update(c, a.astype(np.float32), b, 1.0, 0.0)


@njit
def _gemm_rows(c, a, b, ta, tb, alpha, beta, r0, r1):  # callable from compiled code only
    matmul.gemm_rows(c, a, b, ta, tb, alpha, beta, r0, r1)


@njit
def _product(c, a, b, ta, tb, alpha, beta, blocks):
    matmul.product(c, a, b, ta, tb, alpha, beta, blocks)


def _operands(rng, dtype, M, K, N, ta, tb):
    # op(a) (M, K) and op(b) (K, N) as the kernels take them, and the plain product
    a, b = sparse(rng, (M, K), dtype), rng.standard_normal((K, N)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    return (np.ascontiguousarray(a.T) if ta else a), (np.ascontiguousarray(b.T) if tb else b), want


TRANSPOSES = [(False, False), (False, True), (True, False)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_gemm_rows_writes_its_rows_and_nothing_else(rng, dtype, M, K, N, ta, tb):
    a, b, ab = _operands(rng, dtype, M, K, N, ta, tb)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    r0, r1 = M // 3, M - M // 4  # a middle range; all of c for M = 1
    c = c0.copy()
    _gemm_rows(c, a, b, ta, tb, -0.5, 2.0, r0, r1)
    want = c0.astype(np.float64)
    want[r0:r1] = -0.5 * ab[r0:r1] + 2.0 * want[r0:r1]
    assert_near(c, want.astype(dtype), dtype)
    np.testing.assert_array_equal(c[:r0], c0[:r0])
    np.testing.assert_array_equal(c[r1:], c0[r1:])


# small products stay one call whatever the blocks; past BLAS_ONE_THREAD they split, into
# fewer blocks than asked where there are fewer rows
BLOCKED = [(M, K, N, 2) for M, K, N in SHAPES] + [(200, 256, 128, b) for b in (2, 3, 7)] + \
    [(3, 300, 400, b) for b in (2, 7)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N,blocks", BLOCKED)
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.1, 0.999)])
def test_product_in_blocks_is_one_product(rng, dtype, M, K, N, blocks, ta, tb, alpha, beta):
    # large products in blocks of rows on numba's threads, small ones in one call: the same
    # numbers as one call either way
    a, b, ab = _operands(rng, dtype, M, K, N, ta, tb)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    c = np.full((M, N), np.nan, dtype) if beta == 0 else c0.copy()  # beta 0: c's old values unread
    _product(c, a, b, ta, tb, alpha, beta, blocks)
    assert_near(c, (alpha * ab + beta * c0.astype(np.float64)).astype(dtype), dtype)
    whole = c0.copy()
    _product(whole, a, b, ta, tb, alpha, beta, 1)
    assert_near(c, whole, dtype)
