"""Network(device="cuda") against the same Network on the CPU (same seed, same weights):
gradients, loss, predictions, accuracy, parameter access, files, bad input; and against
central differences."""
import numpy as np
import pytest

from cudatest import needs_device, near
import fastbp
from fastbp import network

pytestmark = needs_device
DTYPES = [np.float32, np.float64]


def _pair(sizes, **kw):
    return fastbp.Network(sizes, seed=7, **kw), fastbp.Network(sizes, seed=7, device="cuda", **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,activation,n", [([7, 5, 3], "relu", 6), ([4, 1, 2], "sigmoid", 1),
                                                ([6, 5, 4, 3], "tanh", 5), ([3, 6, 2], "relu", 9)])
def test_gradient_loss_predict_match_cpu(sizes, activation, n, dtype, rng):
    cpu, gpu = _pair(sizes, activation=activation, dtype=dtype)
    x = rng.standard_normal((n, sizes[0]))
    t = rng.integers(0, sizes[-1], n)
    gc, gg = cpu.gradient(x, t), gpu.gradient(x, t)
    assert list(gg) == list(gc)
    for k in gc:
        assert gg[k].dtype == dtype and gg[k].shape == gc[k].shape
        near(gg[k], gc[k], dtype)
    np.testing.assert_allclose(gpu.loss(x, t), cpu.loss(x, t), rtol=1e-6 if dtype == np.float32 else 1e-12)
    near(gpu.predict(x), cpu.predict(x), dtype)
    assert gpu.accuracy(x, t) == cpu.accuracy(x, t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,sizes,n", [("mse", [5, 4, 3], 6), ("logistic", [4, 6, 5], 9),
                                          ("logistic", [3, 2, 1], 1), ("mse", [2, 3, 1], 11)])
def test_float_target_losses_match_cpu(loss, sizes, n, dtype, rng):
    cpu, gpu = _pair(sizes, loss=loss, dtype=dtype, activation="tanh")
    x = rng.standard_normal((n, sizes[0]))
    t = rng.random((n, sizes[-1]))  # in [0, 1]: fine for both losses
    gc, gg = cpu.gradient(x, t), gpu.gradient(x, t)
    for k in gc:
        assert gg[k].dtype == dtype
        near(gg[k], gc[k], dtype)
    np.testing.assert_allclose(gpu.loss(x, t), cpu.loss(x, t), rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert gpu.accuracy(x, t) == cpu.accuracy(x, t)
    ids = rng.integers(0, sizes[-1], n)  # class ids: one-hot targets on both devices
    np.testing.assert_allclose(gpu.loss(x, ids), cpu.loss(x, ids), rtol=1e-6 if dtype == np.float32 else 1e-12)
    num = gpu.numerical_gradient(x, t)
    if dtype == np.float64:
        for k in gg:
            assert np.abs(gg[k] - num[k]).max() <= 1e-7 * max(np.abs(num[k]).max(), 1e-3), k


def test_gradient_vs_central_differences(rng):
    _, gpu = _pair([5, 4, 3], dtype=np.float64)
    x = rng.standard_normal((4, 5))
    t = rng.integers(0, 3, 4)
    grads, num = gpu.gradient(x, t), gpu.numerical_gradient(x, t, h=1e-6)
    for k in grads:
        err = np.abs(grads[k] - num[k]).max() / max(np.abs(num[k]).max(), 1e-12)
        assert err < 1e-7, (k, err)


def test_chunked_passes_cover_every_row(monkeypatch, rng):
    monkeypatch.setattr(network, "PREDICT_CHUNK", 4)  # 11 rows: chunks of 4, 4, 3
    cpu, gpu = _pair([3, 4, 5])
    x = rng.standard_normal((11, 3))
    t = rng.integers(0, 5, 11)
    near(gpu.predict(x), cpu.predict(x), np.float32)
    np.testing.assert_allclose(gpu.loss(x, t), cpu.loss(x, t), rtol=1e-6)
    assert gpu.accuracy(x, t) == cpu.accuracy(x, t)


def test_params_are_read_only_copies_and_assignment_uploads(rng):
    cpu, gpu = _pair([3, 4, 2])
    W = gpu.params["W1"]
    np.testing.assert_array_equal(W, cpu.params["W1"])
    with pytest.raises(ValueError, match="read-only"):
        W[0, 0] = 1.0  # would be lost silently on a copy
    with pytest.raises(ValueError, match="read-only"):
        gpu.params["W1"] -= 1.0
    new = rng.standard_normal((3, 4))
    gpu.params["W1"] = new  # converted to the network's dtype, uploaded
    np.testing.assert_array_equal(gpu.params["W1"], new.astype(np.float32))
    cpu.params["W1"] = new
    x = rng.standard_normal((2, 3))
    near(gpu.predict(x), cpu.predict(x), np.float32)
    before = gpu.flat_params.copy()
    for bad, err in (((4, 3), ValueError), (np.full((3, 4), np.nan), ValueError)):
        with pytest.raises(err, match="W1"):
            gpu.params["W1"] = np.zeros(bad) if isinstance(bad, tuple) else bad
    np.testing.assert_array_equal(gpu.flat_params, before)
    assert "cuda" in repr(gpu) and "cuda" in repr(gpu.params)


def test_save_load_across_devices(tmp_path, rng):
    cpu, gpu = _pair([3, 4, 2])
    gpu.params["b1"] = np.arange(4)
    gpu.save(tmp_path / "p.npz")
    on_cpu = fastbp.Network.load(tmp_path / "p.npz")
    back = fastbp.Network.load(tmp_path / "p.npz", device="cuda")
    assert back.device == "cuda" and on_cpu.device == "cpu"
    for k in cpu.params:
        np.testing.assert_array_equal(on_cpu.params[k], gpu.params[k])
        np.testing.assert_array_equal(back.params[k], gpu.params[k])


def test_bad_input_is_refused_before_any_kernel(rng):
    _, gpu = _pair([3, 4, 2])
    before = gpu.flat_params.copy()
    with pytest.raises(ValueError, match="x"):
        gpu.gradient(np.zeros((2, 5)), np.zeros(2, int))
    with pytest.raises(ValueError, match="t"):
        gpu.loss(np.zeros((2, 3)), np.array([0, 2]))  # class 2 of 2
    np.testing.assert_array_equal(gpu.flat_params, before)
    logistic = fastbp.Network([3, 2], device="cuda", loss="logistic", seed=0)
    before = logistic.flat_params.copy()
    with pytest.raises(ValueError, match=r"t for loss='logistic' must lie in \[0, 1\]"):
        logistic.gradient(np.zeros((2, 3)), np.array([[0.5, 1.5], [0, 1]]))
    with pytest.raises(ValueError, match=r"t as targets must have shape \(2, 2\)"):
        logistic.loss(np.zeros((2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(logistic.flat_params, before)
