"""Both matrix-product families (BLAS in @njit, hand-written loops) against NumPy."""
import numpy as np
import pytest

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
