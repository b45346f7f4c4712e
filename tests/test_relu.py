import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, away_from_zero, central_diff
from fastbp.kernels import reference, relu

SIZES = [1, 2, 31, 1000]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_relu_matches_reference(rng, dtype, n):
    x = rng.standard_normal(n).astype(dtype)
    x[0] = 0  # the kink itself: forward 0, backward 0 (the book's mask is x <= 0)
    out = np.empty_like(x)
    relu.relu_forward(out, x)
    np.testing.assert_array_equal(out, reference.relu_forward(x))
    assert out.dtype == dtype
    dout = rng.standard_normal(n).astype(dtype)
    dx = np.empty_like(x)
    relu.relu_backward(dx, dout, out)
    np.testing.assert_array_equal(dx, reference.relu_backward(dout, out))
    assert dx[0] == 0


def test_relu_in_place(rng):
    x = rng.standard_normal(50)
    expected = np.maximum(x, 0)
    relu.relu_forward(x, x)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7])
def test_relu_backward_matches_central_differences(rng, dtype, n):
    x = away_from_zero(rng, n, dtype)
    G = rng.standard_normal(n).astype(dtype)  # d loss / d out for loss = sum(G * relu(x))
    out = np.empty_like(x)
    relu.relu_forward(out, x)
    dx = np.empty_like(x)
    relu.relu_backward(dx, G, out)

    x64, G64, o64 = x.astype(np.float64), G.astype(np.float64), np.empty(n)

    def loss():
        relu.relu_forward(o64, x64)
        return float(np.sum(G64 * o64))

    (num,) = central_diff(loss, [x64])
    np.testing.assert_allclose(dx, num, **NUM_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_of_infinities_and_nan_is_numpys_maximum(dtype):
    # an overflowing product gives -inf before the ReLU: it must come out 0, as np.maximum
    x = np.array([-np.inf, np.nan, np.inf, -1.0, 2.0, -0.0], dtype)
    out = np.empty_like(x)
    relu.relu_forward(out, x)
    np.testing.assert_array_equal(out, reference.relu_forward(x))
    assert out.dtype == dtype
