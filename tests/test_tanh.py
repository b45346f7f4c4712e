import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, assert_near, central_diff
from fastbp.kernels import reference, tanh


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 31, 1000])
def test_tanh_matches_reference(rng, dtype, n):
    x = (3 * rng.standard_normal(n)).astype(dtype)
    out = np.empty_like(x)
    tanh.tanh_forward(out, x)
    assert_near(out, reference.tanh_forward(x), dtype)
    dout = rng.standard_normal(n).astype(dtype)
    dx = np.empty_like(x)
    tanh.tanh_backward(dx, dout, out)
    assert_near(dx, reference.tanh_backward(dout, out), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_extremes(dtype):
    big = np.finfo(dtype).max
    x = np.array([-big, -1000, -50, 0, 50, 1000, big], dtype)
    out = np.empty_like(x)
    tanh.tanh_forward(out, x)
    assert np.isfinite(out).all()
    assert out[0] == out[1] == out[2] == -1 and out[3] == 0 and out[4] == out[5] == out[6] == 1
    np.testing.assert_allclose(out, reference.tanh_forward(x), rtol=1e-6, atol=0)
    tiny = np.array([1e-30, -1e-30], dtype)  # tanh x ~ x near 0: no cancellation to 0
    tanh.tanh_forward(out[:2], tiny)
    np.testing.assert_allclose(out[:2], tiny, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 9])
def test_tanh_backward_matches_central_differences(rng, dtype, n):
    x = rng.standard_normal(n).astype(dtype)
    G = rng.standard_normal(n).astype(dtype)
    out = np.empty_like(x)
    tanh.tanh_forward(out, x)
    dx = np.empty_like(x)
    tanh.tanh_backward(dx, G, out)

    x64, G64, o64 = x.astype(np.float64), G.astype(np.float64), np.empty(n)

    def loss():
        tanh.tanh_forward(o64, x64)
        return float(np.sum(G64 * o64))

    (num,) = central_diff(loss, [x64])
    np.testing.assert_allclose(dx, num, **NUM_TOL[dtype])
