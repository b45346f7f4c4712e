"""kernels/simd.py: the explicit vectors the sparse and softmax kernels are built from,
lane by lane against NumPy (masked tails, both float widths, special values)."""
from fractions import Fraction

import numpy as np
import pytest
from numba import njit

from conftest import DTYPES
from fastbp.kernels import simd


def test_vector_width_is_64_bytes():
    assert simd.lanes(np.float32) == 16 and simd.lanes(np.zeros(3)) == 8


def test_an_llvm_too_old_for_the_vectors_is_named_at_import():
    # numba 0.61 (LLVM 15) failed inside LLVM at the first kernel; pyproject asks for 0.62
    with pytest.raises(ImportError, match=r"fastbp needs numba >= 0\.62 \(LLVM 20 or later\); this numba "
                                          r"0\.61\.2 is built on LLVM 15\.0\.7: pip install --upgrade numba"):
        simd.check_llvm((15, 0, 7), "0.61.2")
    simd.check_llvm((20, 1, 8), "0.62.1")


@njit
def _masked_copy(dst, src, start, n):
    simd.vstore(dst, start, simd.vload(src, start, n), n)
    simd.prefetch(src, src.shape[0] + 1000)  # a hint past the end never faults


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [-3, 0, 1, 5, 8, 15, 16, 40])
def test_masked_loads_and_stores_touch_only_the_first_n_lanes(dtype, n):
    L = simd.lanes(dtype)
    src = np.arange(1, 3 * L + 1, dtype=dtype)
    dst = np.zeros_like(src)
    _masked_copy(dst, src, 3, n)
    want = np.zeros_like(src)
    k = min(max(n, 0), L)
    want[3:3 + k] = src[3:3 + k]
    np.testing.assert_array_equal(dst, want)


@njit
def _lanes_sum_and_products(a, b, acc):
    # (the sum of a's lanes, a vector of a * b + acc) over one vector of each
    L = simd.lanes(a)
    out = np.empty_like(a)
    simd.vstore(out, 0, simd.vfma(simd.vload(a, 0, L), simd.vload(b, 0, L), simd.vload(acc, 0, L)), L)
    return simd.vsum(simd.vload(a, 0, L)), out


@pytest.mark.parametrize("dtype", DTYPES)
def test_lane_sum_and_lanewise_fused_multiply_add(rng, dtype):
    L = simd.lanes(dtype)
    a, b, acc = (rng.standard_normal(L).astype(dtype) for _ in range(3))
    total, fma = _lanes_sum_and_products(a, b, acc)
    want = a.copy()  # halves added lane by lane until one is left
    while want.shape[0] > 1:
        want = want[:want.shape[0] // 2] + want[want.shape[0] // 2:]
    assert total == want[0]
    # one rounding of the exact a·b + acc (a float32 product is exact in float64)
    exact = [float(Fraction(float(p)) * Fraction(float(q)) + Fraction(float(r))) for p, q, r in zip(a, b, acc)]
    np.testing.assert_array_equal(fma, np.array(exact, dtype))


@njit
def _exp_all(out, x):
    L = simd.lanes(x)
    for i in range(0, x.shape[0], L):
        simd.vstore(out, i, simd.vexp(simd.vload(x, i, x.shape[0] - i)), x.shape[0] - i)


def test_vector_exp_is_within_two_ulp_of_exp():
    # float32, over the softmax's whole range: a row minus its maximum, down to where exp
    # leaves the normal floats; then the edges
    x = np.linspace(-87.33, 0, 2_000_003).astype(np.float32)
    got = np.empty_like(x)
    _exp_all(got, x)
    want = np.exp(x.astype(np.float64))
    ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
    assert (np.abs(got - want) / ulp).max() <= 2
    edges = np.array([0, -0.0, -1e-30, -np.inf, np.nan, -87.34, -100, -1e30, 1, 88], np.float32)
    got = np.empty_like(edges)
    _exp_all(got, edges)
    np.testing.assert_array_equal(got[:4], [1, 1, 1, 0])
    assert np.isnan(got[4])
    np.testing.assert_array_equal(got[5:8], 0)  # below the normal floats: 0
    np.testing.assert_allclose(got[8:], np.exp(edges[8:].astype(np.float64)), rtol=2.4e-7)


@njit
def _reductions(a, n, k, s):
    L = simd.lanes(a)
    v = simd.vload_fill(a, 0, n, -np.inf)
    out = np.empty(L, a.dtype)
    simd.vstore(out, 0, simd.vadd_lane(simd.vsubs(v, s), k, s), L)
    return simd.vmax_lanes(v), out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 8, 16])
def test_filled_load_lane_max_and_single_lane_add(rng, dtype, n):
    L = simd.lanes(dtype)
    n = min(n, L)
    a = rng.standard_normal(L).astype(dtype)
    m, out = _reductions(a, n, n - 1, dtype(0.5))
    assert m == a[:n].max()
    want = np.full(L, -np.inf, dtype)
    want[:n] = a[:n] - dtype(0.5)
    want[n - 1] += dtype(0.5)
    np.testing.assert_array_equal(out, want)
    a[n - 1] = np.nan  # with a NaN lane the max is one of the lanes, NaN or not
    m = _reductions(a, n, 0, dtype(0))[0]
    assert np.isnan(m) or m in a[:n] or (m == -np.inf and n < L)


@njit
def _pack_nonzeros(vals, cols, q, a, start, n, j0):
    return simd.count_nonzero(a, start, n), simd.store_nonzero(vals, cols, q, a, start, n, j0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 3, 8, 16])
def test_nonzeros_are_packed_in_lane_order_and_nothing_past_them_is_written(rng, dtype, n):
    L = simd.lanes(dtype)
    n = min(n, L)
    a = rng.standard_normal(L + 5).astype(dtype) * (rng.random(L + 5) < 0.5)
    a[2], a[3] = np.nan, -0.0  # lanes 0 and 1: NaN is not a zero, -0.0 is (as for scipy)
    vals, cols = np.full(3 * L, 7, dtype), np.full(3 * L, -7, np.int32)
    counted, k = _pack_nonzeros(vals, cols, 4, a, 2, n, 100)
    keep = np.flatnonzero(a[2:2 + n] != 0)  # NaN != 0
    assert counted == k == keep.size
    np.testing.assert_array_equal(vals[4:4 + k], a[2:2 + n][keep])  # NaN equals NaN here
    np.testing.assert_array_equal(cols[4:4 + k], 100 + keep)
    assert (vals[:4] == 7).all() and (vals[4 + k:] == 7).all()  # the rest untouched
    assert (cols[:4] == -7).all() and (cols[4 + k:] == -7).all()
