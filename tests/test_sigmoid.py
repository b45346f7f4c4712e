import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, assert_near, central_diff
from fastbp.kernels import reference, sigmoid


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 31, 1000])
def test_sigmoid_matches_reference(rng, dtype, n):
    x = (3 * rng.standard_normal(n)).astype(dtype)
    out = np.empty_like(x)
    sigmoid.sigmoid_forward(out, x)
    assert_near(out, reference.sigmoid_forward(x), dtype)
    dout = rng.standard_normal(n).astype(dtype)
    dx = np.empty_like(x)
    sigmoid.sigmoid_backward(dx, dout, out)
    assert_near(dx, reference.sigmoid_backward(dout, out), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extremes(dtype):
    big = np.finfo(dtype).max
    x = np.array([-big, -1000, -50, 0, 50, 1000, big], dtype)
    out = np.empty_like(x)
    sigmoid.sigmoid_forward(out, x)
    assert np.isfinite(out).all()
    assert out[0] == 0 and out[3] == 0.5 and out[-1] == 1
    assert 0 < out[2] < 1e-20  # exp(-50) ~ 2e-22, not flushed to 0
    np.testing.assert_allclose(out, reference.sigmoid_forward(x), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 9])
def test_sigmoid_backward_matches_central_differences(rng, dtype, n):
    x = rng.standard_normal(n).astype(dtype)
    G = rng.standard_normal(n).astype(dtype)
    out = np.empty_like(x)
    sigmoid.sigmoid_forward(out, x)
    dx = np.empty_like(x)
    sigmoid.sigmoid_backward(dx, G, out)

    x64, G64, o64 = x.astype(np.float64), G.astype(np.float64), np.empty(n)

    def loss():
        sigmoid.sigmoid_forward(o64, x64)
        return float(np.sum(G64 * o64))

    (num,) = central_diff(loss, [x64])
    np.testing.assert_allclose(dx, num, **NUM_TOL[dtype])
