import numpy as np
import pytest

import fastbp
from conftest import DTYPES, NUM_TOL, assert_near, central_diff
from fastbp.kernels import mse_loss, reference
from fastbp.layers import MeanSquaredLoss


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(1, 1), (1, 5), (4, 1), (7, 3), (100, 10)])
def test_kernel_matches_reference_and_central_differences(rng, dtype, N, C):
    y, t = rng.standard_normal((N, C)).astype(dtype), rng.standard_normal((N, C)).astype(dtype)
    loss = mse_loss.mse_loss_forward(y, t)
    assert loss == pytest.approx(reference.mse_loss(y, t), rel=1e-12)
    dy = np.empty_like(y)
    mse_loss.mse_loss_backward(dy, y, t, 0.5)
    assert_near(dy, reference.mse_loss_backward(y, t, 0.5), dtype)
    fused = np.empty_like(y)
    assert mse_loss.mse_loss_forward_backward(fused, y, t) == loss
    y64 = y.astype(np.float64)
    t64 = t.astype(np.float64)
    if N * C <= 21:
        (num,) = central_diff(lambda: mse_loss.mse_loss_forward(y64, t64), [y64])
        np.testing.assert_allclose(fused, num, **NUM_TOL[dtype])


def test_mse_of_the_hand_derived_networks_first_step():
    # the first step of the hand-derived 2-2-2 network (scripts/manual_backprop.py):
    # prediction [0.57035173 0.61051125], targets (0.2, 0.1),
    # loss 0.19889106944011697 = mean((y - t)**2)
    y = np.array([[0.57035173, 0.61051125]])
    assert mse_loss.mse_loss_forward(y, np.array([[0.2, 0.1]])) == pytest.approx(0.19889106944011697,
                                                                                  rel=1e-7)


def test_layer(rng):
    layer = MeanSquaredLoss()
    y = rng.standard_normal((3, 4))
    t = np.array([0, 3, 1])
    loss = layer.forward(y, t)
    assert loss == pytest.approx(np.mean((y - np.eye(4)[t]) ** 2), rel=1e-14)
    np.testing.assert_allclose(layer.backward(), 2 * (y - np.eye(4)[t]) / 12, rtol=1e-14)
    with pytest.raises(ValueError, match="t must have y's shape"):
        layer.forward(y, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="2-D predictions"):
        layer.forward(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="t must be finite"):
        layer.forward(y, np.full((3, 4), np.nan))


@pytest.mark.parametrize("loss", ["mse", "logistic"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("sizes", [[2, 2, 2], [4, 5, 3], [3, 1]])
def test_network_mse_backprop_agrees_with_central_differences(rng, activation, sizes, loss):
    net = fastbp.Network(sizes, activation=activation, dtype="float64", loss=loss, seed=1)
    x = rng.standard_normal((5, sizes[0]))
    T = rng.standard_normal((5, sizes[-1])) if loss == "mse" else rng.random((5, sizes[-1]))
    for name, r in fastbp.gradient_check(net, x, T).items():
        assert r["rel_error"] < 1e-7, (name, r)


def test_network_mse_targets_and_files(rng, tmp_path):
    net = fastbp.Network([3, 4, 2], loss="mse", dtype="float64", seed=0)
    x, t = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    assert net.loss(x, t) == net.loss(x, np.eye(2)[t])  # ids are one-hot targets
    p = {k: v for k, v in net.params.items()}
    y = np.maximum(x @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
    assert net.loss(x, t) == pytest.approx(np.mean((y - np.eye(2)[t]) ** 2), rel=1e-12)
    assert net.accuracy(x, t) == np.mean(y.argmax(axis=1) == t)
    net.save(tmp_path / "m.npz")
    back = fastbp.Network.load(tmp_path / "m.npz")
    assert back.loss_type == "mse" and back.loss(x, t) == net.loss(x, t)
    with pytest.raises(ValueError, match=r"targets must have shape \(6, 2\)"):
        net.loss(x, np.zeros((6, 3)))
    with pytest.raises(ValueError, match="loss must be one of"):
        fastbp.Network([3, 2], loss="hinge")
