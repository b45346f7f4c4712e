"""The output losses scikit-learn's estimators train with: logistic + binary cross-entropy
(kernels/logistic_loss.py), half the squared error (kernels/mse_loss.py), and the L2 term of
kernels/sk_solvers.py, against NumPy and central differences; then through a whole network."""
import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, assert_near, central_diff
from fastbp.kernels import layout as lay
from fastbp.kernels import logistic_loss, mse_loss, reference
from fastbp.kernels.codes import ACTIVATIONS
from fastbp.kernels.mlp import HalfSquared, Logistic, mlp_loss
from fastbp.kernels.sk_solvers import l2_penalty, sk_loss_grad
from fastbp.kernels.train import Model

SHAPES = [(1, 1), (1, 4), (5, 1), (7, 3), (64, 10)]


# name: (forward, fused forward+backward, NumPy loss, NumPy gradient, predictions and targets, float32 rel)
LOSSES = {
    "logistic": (logistic_loss.logistic_loss_forward, logistic_loss.logistic_loss_forward_backward,
                 reference.logistic_loss, reference.logistic_loss_backward,
                 lambda rng, shape: (2 * rng.standard_normal(shape), rng.random(shape) < 0.5), 1e-6),
    "half_sse": (mse_loss.half_sse_forward, mse_loss.half_sse_forward_backward,
                 reference.half_sse, reference.half_sse_backward,
                 lambda rng, shape: (rng.standard_normal(shape), rng.standard_normal(shape)), 1e-12),
}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", SHAPES)
def test_loss_matches_reference_and_central_differences(rng, name, dtype, N, C):
    forward, fused, ref, ref_backward, draw, rel32 = LOSSES[name]
    y, t = (a.astype(dtype) for a in draw(rng, (N, C)))
    loss = forward(y, t)
    assert loss == pytest.approx(ref(y, t), rel=1e-12 if dtype == np.float64 else rel32)
    dy = np.empty_like(y)
    assert fused(dy, y, t) == loss
    assert_near(dy, ref_backward(y, t), dtype)
    if N * C <= 21:
        y64, t64 = y.astype(np.float64), t.astype(np.float64)
        (num,) = central_diff(lambda: forward(y64, t64), [y64])
        np.testing.assert_allclose(dy, num, **NUM_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_loss_is_finite_and_exact_far_from_zero(dtype):
    # where 1 - sigmoid(z) rounds to 0 the loss is still z (a clipped log would say 36.04)
    z = np.array([[-800.0, 40.0, 800.0]], dtype)
    t = np.array([[1.0, 0.0, 0.0]], dtype)
    assert logistic_loss.logistic_loss_forward(z, t) == pytest.approx(800.0 + 40.0 + 800.0, rel=1e-12)
    dz = np.empty_like(z)
    logistic_loss.logistic_loss_forward_backward(dz, z, t)
    np.testing.assert_array_equal(dz, np.array([[-1.0, 1.0, 1.0]], dtype))


def _net(rng, sizes, dtype):
    layout = lay.param_layout(sizes)
    params = (0.5 * rng.standard_normal(lay.param_count(layout))).astype(dtype)
    return params, lay.offsets(layout), np.array(sizes, np.int64)


@pytest.mark.parametrize("wrap", [Logistic, HalfSquared])
@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(3, 1, 2), (4, 5, 1), (3, 4, 2, 3)])
def test_network_with_these_losses_and_l2_matches_central_differences(rng, wrap, act, dtype, sizes):
    N, alpha = 4, 0.3
    params, offsets, sz = _net(rng, sizes, dtype)
    x = rng.standard_normal((N, sizes[0])).astype(dtype)
    T = (rng.random((N, sizes[-1])) < 0.5) if wrap is Logistic else rng.standard_normal((N, sizes[-1]))
    t = wrap(T.astype(dtype))
    code = ACTIVATIONS.index(act)
    acts, deltas = np.empty(lay.acts_length(sizes, N), dtype), np.empty(lay.deltas_length(sizes, N), dtype)
    grads = np.empty_like(params)
    model = Model(offsets, sz, code)
    loss = sk_loss_grad(grads, acts, deltas, params, model, x, t, alpha)

    p64, x64, t64 = params.astype(np.float64), x.astype(np.float64), wrap(T.astype(np.float64))
    a64 = np.empty(lay.acts_length(sizes, N))
    W = [slice(o, o + sizes[l] * sizes[l + 1]) for l, o in enumerate(offsets[0::2])]

    def objective():  # data loss + ½·alpha·Σ W²/N: what the gradient is the gradient of
        return mlp_loss(a64, p64, offsets, sz, x64, t64, code) + 0.5 * alpha * sum((p64[w] ** 2).sum() for w in W) / N
    (num,) = central_diff(objective, [p64])
    np.testing.assert_allclose(grads, num, **NUM_TOL[dtype])
    # the reported loss: scikit-learn's, the half squared error as a mean over every output
    p64[:] = params
    data = mlp_loss(a64, p64, offsets, sz, x64, t64, code) / (sizes[-1] if wrap is HalfSquared else 1)
    penalty = 0.5 * alpha * sum((p64[w] ** 2).sum() for w in W) / N
    assert loss == pytest.approx(data + penalty, rel=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(3, 4, 2), (1, 1, 1), (37, 29, 5), (784, 50, 10), (65, 64, 1)])
def test_l2_penalty_touches_only_the_weights(rng, dtype, sizes):
    # blocks of every length against whole vectors: shorter than one, a tail past four
    params, offsets, sz = _net(rng, sizes, dtype)
    grads = rng.standard_normal(params.shape).astype(dtype)
    before = grads.copy()
    total = l2_penalty(grads, params, offsets, sz, 0.5)
    layout = lay.param_layout(sizes)
    for p in layout:
        part = slice(p.offset, p.offset + int(np.prod(p.shape)))
        if p.kind == "W":
            assert_near(grads[part], before[part] + 0.5 * params[part].astype(np.float64), dtype)
        else:
            np.testing.assert_array_equal(grads[part], before[part])
    want = sum((params[p.offset:p.offset + int(np.prod(p.shape))].astype(np.float64) ** 2).sum()
               for p in layout if p.kind == "W")
    assert total == pytest.approx(want, rel=1e-13 if dtype == np.float64 else 1e-6)
