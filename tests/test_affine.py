import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, assert_near, away_from_zero, central_diff
from fastbp.kernels import affine, reference

# (N, D, M): batch 1, width 1, non-multiples of vector widths, the MNIST layer
SHAPES = [(1, 1, 1), (1, 5, 1), (4, 1, 3), (7, 13, 5), (100, 784, 50)]
ACTS = list(range(len(affine.ACTIVATIONS)))


def layer(rng, N, D, M, dtype):
    x = rng.standard_normal((N, D)).astype(dtype)
    W = (rng.standard_normal((D, M)) / np.sqrt(D)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    return x, W, b


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,D,M", SHAPES)
def test_forward_backward_match_reference(rng, act, dtype, N, D, M):
    x, W, b = layer(rng, N, D, M, dtype)
    out = np.empty((N, M), dtype)
    affine.affine_forward(out, x, W, b, act)
    assert_near(out, reference.affine_forward(x, W, b, act), dtype)

    dout = rng.standard_normal((N, M)).astype(dtype)
    dx, dW, db, dz = (np.empty((N, D), dtype), np.empty((D, M), dtype), np.empty(M, dtype),
                      np.empty((N, M), dtype))
    affine.affine_backward(dx, dW, db, dz, dout, out, x, W, act)
    rdx, rdW, rdb = reference.affine_backward(dout, out, x, W, act)
    for got, want in ((dx, rdx), (dW, rdW), (db, rdb)):
        assert got.dtype == dtype
        assert_near(got, want, dtype)

    # the weights-only variant (first layer) gives the same dW, db, and may work in place
    dW2, db2 = np.empty_like(dW), np.empty_like(db)
    d_inplace = dout.copy()
    affine.affine_backward_weights(dW2, db2, d_inplace, d_inplace, out, x, act)
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,D,M", [(1, 1, 1), (1, 3, 2), (3, 4, 1), (5, 3, 4)])
def test_backward_matches_central_differences(rng, act, dtype, N, D, M):
    x, W, b = layer(rng, N, D, M, dtype)
    x = away_from_zero(rng, (N, D), dtype)
    b = away_from_zero(rng, M, dtype)
    G = rng.standard_normal((N, M)).astype(dtype)  # loss = sum(G * out): d loss / d out = G
    out = np.empty((N, M), dtype)
    affine.affine_forward(out, x, W, b, act)
    if act == affine.RELU:
        # keep every pre-activation away from the kink so h = 1e-6 cannot cross it
        pre = x.astype(np.float64) @ W + b
        if np.abs(pre).min() < 1e-3:
            pytest.skip("pre-activation too close to 0 for central differences")
    dx, dW, db, dz = (np.empty((N, D), dtype), np.empty((D, M), dtype), np.empty(M, dtype),
                      np.empty((N, M), dtype))
    affine.affine_backward(dx, dW, db, dz, G, out, x, W, act)

    x64, W64, b64, G64 = (a.astype(np.float64) for a in (x, W, b, G))
    o64 = np.empty((N, M))

    def loss():
        affine.affine_forward(o64, x64, W64, b64, act)
        return float(np.sum(G64 * o64))

    nx, nW, nb = central_diff(loss, [x64, W64, b64])
    for got, want in ((dx, nx), (dW, nW), (db, nb)):
        np.testing.assert_allclose(got, want, **NUM_TOL[dtype])


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided", [False, True])
def test_bias_act_backward_in_place_is_the_out_of_place_result(rng, act, dtype, strided):
    # in place (dz is dout, as the training loop calls it) runs its own loop: the same
    # numbers bit for bit, contiguous or on a strided view
    N, M = 37, 21
    big = rng.standard_normal((N, 2 * M)).astype(dtype)
    out = rng.random((N, M)).astype(dtype) - dtype(0.3)  # ReLU: some outputs zero-slope
    dout = big[:, ::2] if strided else np.ascontiguousarray(big[:, ::2])
    dz, db = np.empty((N, M), dtype), np.empty(M, dtype)
    affine.bias_act_backward(dz, db, dout, out, act)
    want = reference.activation_backward(dout, out, act)
    assert_near(dz, want, dtype)
    assert_near(db, want.sum(axis=0), dtype)
    db2 = np.empty(M, dtype)
    affine.bias_act_backward(dout, db2, dout, out, act)
    np.testing.assert_array_equal(dout, dz)
    np.testing.assert_array_equal(db2, db)
