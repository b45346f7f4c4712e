"""The whole-network kernel against the layer-by-layer NumPy reference and central differences."""
import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, REF_TOL, assert_near, central_diff
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


REF_LOSSES = {"softmax": lambda y, t: reference.softmax_loss_forward(y, t)[1], "mse": reference.mse_loss,
              "logistic": lambda y, t: reference.logistic_loss(y, t.t), "half_squared": lambda y, t: reference.half_sse(y, t.t)}


def targets(rng, kind, N, C):
    if kind == "softmax":
        return rng.integers(0, C, N).astype(np.int64)
    if kind == "logistic":
        return mlp.Logistic((rng.random((N, C)) < 0.4).astype(np.float64))
    return rng.standard_normal((N, C)) if kind == "mse" else mlp.HalfSquared(rng.standard_normal((N, C)))


@pytest.mark.parametrize("kind", list(REF_LOSSES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,N,block", [((1, 1), 1, 1), ((6, 5, 4), 9, 4), ((7, 9, 3, 5), 40, 32),
                                           ((20, 13, 11, 7, 3), 3, 256)])
def test_scores_are_the_reference_loss_and_argmax_hits(rng, kind, dtype, sizes, N, block):
    # one forward pass: (summed loss, rows whose largest logit is at ids), on dense input and
    # on sparse input in blocks over numba's threads; ids partly right, partly wrong
    import scipy.sparse as sp
    from fastbp.sparse import as_sparse_rows
    params, offsets, sz, x, _, layout = make(rng, sizes, N, dtype)
    x *= rng.random(x.shape) < 0.5
    t = targets(rng, kind, N, sizes[-1])
    tt = t if kind in ("softmax", "mse") else mlp.Logistic(t.t.astype(dtype)) if kind == "logistic" \
        else mlp.HalfSquared(t.t.astype(dtype))
    if kind == "mse":
        tt = t.astype(dtype)
    parts = split(params, layout)
    ys = [x]
    for l in range(len(sizes) - 1):
        ys.append(reference.affine_forward(ys[-1], parts[2 * l], parts[2 * l + 1],
                                           "identity" if l == len(sizes) - 2 else "relu"))
    want_loss = REF_LOSSES[kind](ys[-1].astype(np.float64), tt) * N
    ids = np.where(rng.random(N) < 0.5, ys[-1].argmax(axis=1), rng.integers(0, sizes[-1], N)).astype(np.int64)
    want_hits = int(np.count_nonzero(ys[-1].argmax(axis=1) == ids))
    acts, _ = workspace(sizes, N, dtype)
    relu = affine.ACTIVATIONS.index("relu")
    for with_loss in (True, False):
        hits, loss = mlp.mlp_scores(acts, params, offsets, sz, x, tt, ids, relu, with_loss)
        assert hits == want_hits
        assert loss == (pytest.approx(want_loss, rel=REF_TOL[dtype]["rtol"] * 10) if with_loss else 0.0)
    xs = as_sparse_rows(sp.csr_matrix(x), sizes[0], dtype).batch()
    nb = -(-N // block)
    losses, hits = np.full(nb, np.nan), np.full(nb, -1, np.int64)
    mlp.mlp_scores_blocks(hits, losses, params, offsets, sz, xs, tt, ids, relu, True, block)
    assert hits.sum() == want_hits
    assert losses.sum() == pytest.approx(want_loss, rel=REF_TOL[dtype]["rtol"] * 10)


def test_hits_take_the_first_largest_and_a_nan_as_argmax_does():
    # ties, NaN first, NaN later, all NaN, infinities: the class np.argmax picks
    y = np.array([[1, 3, 3], [np.nan, 5, 1], [2, np.nan, 9], [np.nan, np.nan, 0], [-np.inf, -np.inf, -np.inf],
                  [1, np.inf, np.nan]])
    for c in range(3):
        ids = np.full(len(y), c, np.int64)
        hits = mlp._hits(y, ids)
        assert hits == np.count_nonzero(y.argmax(axis=1) == c)
