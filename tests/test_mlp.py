"""The whole-network kernel against the layer-by-layer NumPy reference and central differences."""
import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, assert_near, central_diff
from fastbp.kernels import affine, mlp, reference
from fastbp.kernels.layout import param_layout

SIZES = [(1, 1), (3, 1, 2), (1, 1, 1), (6, 5, 4), (7, 9, 3, 5), (20, 13, 11, 7, 3)]


def make(rng, sizes, N, dtype):
    layout = [(p.name, p.offset, p.shape) for p in param_layout(sizes)]
    params = np.empty(layout[-1][1] + int(np.prod(layout[-1][2])), dtype)
    for name, off, shape in layout:
        n = int(np.prod(shape))
        scale = 1 / np.sqrt(shape[0]) if name.startswith("W") else 0.5
        params[off:off + n] = scale * rng.standard_normal(n)
    x = rng.standard_normal((N, sizes[0])).astype(dtype)
    t = rng.integers(0, sizes[-1], N).astype(np.int64)
    offsets = np.array([off for _, off, _ in layout], np.int64)
    return params, offsets, np.array(sizes, np.int64), x, t, layout


def workspace(sizes, N, dtype):
    return np.empty(N * sum(sizes[1:]), dtype), np.empty(2 * N * max(sizes[1:]), dtype)


def split(flat, layout):
    return [flat[off:off + int(np.prod(s))].reshape(s) for _, off, s in layout]


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("N", [1, 8])
def test_loss_grad_matches_reference(rng, act, dtype, sizes, N):
    params, offsets, sz, x, t, layout = make(rng, sizes, N, dtype)
    acts, deltas = workspace(sizes, N, dtype)
    grads = np.full_like(params, np.nan)
    code = affine.ACTIVATIONS.index(act)
    loss = mlp.mlp_loss_grad(grads, acts, deltas, params, offsets, sz, x, t, code)

    parts = split(params, layout)
    ref_loss, dWs, dbs = reference.mlp_loss_grad(parts[0::2], parts[1::2], x, t, act)
    assert loss == pytest.approx(ref_loss, rel=1e-5 if dtype == np.float32 else 1e-12)
    assert mlp.mlp_loss(acts, params, offsets, sz, x, t, code) == pytest.approx(loss, rel=1e-12)
    g = split(grads, layout)
    for got, want in zip(g, [a for pair in zip(dWs, dbs) for a in pair]):
        assert_near(got, want, dtype)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(3, 1, 2), (4, 5, 3), (3, 4, 2, 3)])
def test_loss_grad_matches_central_differences(rng, act, dtype, sizes):
    N = 3
    params, offsets, sz, x, t, layout = make(rng, sizes, N, dtype)
    acts, deltas = workspace(sizes, N, dtype)
    grads = np.empty_like(params)
    code = affine.ACTIVATIONS.index(act)
    mlp.mlp_loss_grad(grads, acts, deltas, params, offsets, sz, x, t, code)

    p64, x64 = params.astype(np.float64), x.astype(np.float64)
    a64 = np.empty(N * sum(sizes[1:]))
    (num,) = central_diff(lambda: mlp.mlp_loss(a64, p64, offsets, sz, x64, t, code), [p64])
    np.testing.assert_allclose(grads, num, **NUM_TOL[dtype])

    # the compiled numerical gradient gives the same central differences
    num2 = np.empty_like(p64)
    mlp.mlp_numerical_gradient(num2, a64, p64.copy(), offsets, sz, x64, t, code, 1e-6)
    np.testing.assert_allclose(num2, num, rtol=1e-12, atol=1e-15)


def test_forward_leaves_logits_in_last_block(rng):
    sizes = (5, 4, 3)
    params, offsets, sz, x, t, layout = make(rng, sizes, 2, np.float64)
    acts, _ = workspace(sizes, 2, np.float64)
    mlp.mlp_forward(acts, params, offsets, sz, x, affine.RELU)
    W1, b1, W2, b2 = split(params, layout)
    np.testing.assert_allclose(acts[-6:].reshape(2, 3), np.maximum(x @ W1 + b1, 0) @ W2 + b2,
                               rtol=1e-12)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("N", [1, 8])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_backward_sgd_is_one_sgd_step(rng, act, dtype, sizes, N, wd):
    # the fused backward + SGD leaves the parameters the book's SGD step gives
    lr = 0.3
    params, offsets, sz, x, t, layout = make(rng, sizes, N, dtype)
    acts, deltas = workspace(sizes, N, dtype)
    code = affine.ACTIVATIONS.index(act)
    parts = split(params, layout)
    _, dWs, dbs = reference.mlp_loss_grad(parts[0::2], parts[1::2], x, t, act)
    want = []
    for W, b, dW, db in zip(parts[0::2], parts[1::2], dWs, dbs):
        want += [reference.optimizer_update(W, dW, np.zeros((2,) + W.shape, dtype), "sgd", lr, wd=wd)[0],
                 reference.optimizer_update(b, db, np.zeros((2,) + b.shape, dtype), "sgd", lr)[0]]

    loss = mlp.mlp_loss_dy(acts, deltas, params, offsets, sz, x, t, code)
    keep_x = x.copy()
    mlp.mlp_backward_sgd(params, np.empty_like(params), acts, deltas, offsets, sz, x, code, lr, wd)
    for got, w in zip(split(params, layout), want):
        assert_near(got, w, dtype)
    np.testing.assert_array_equal(x, keep_x)
    assert np.isfinite(loss)
