"""fit on the GPU against fit on the CPU: same seed, same batches, so losses, accuracies and
parameters agree to float32 rounding after several steps of every optimizer; a GPU run is
reproducible bit for bit (no float atomics); divergence stops where the CPU stops."""
import numpy as np
import pytest

from cudatest import needs_device
import fastbp
from fastbp.training import TrainingDiverged

pytestmark = needs_device


def _data(rng, n=24, d=5, c=3):
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


def _fit(device, x, t, activation="relu", dtype="float32", **kw):
    net = fastbp.Network([x.shape[1], 4, 3], seed=2, device=device, activation=activation, dtype=dtype)
    hist = fastbp.fit(net, x, t, batch_size=6, lr=0.05, seed=5, eval_data=(x[:7], t[:7]), **kw)
    return net, hist


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adagrad", "adam", "nesterov"])
def test_fit_matches_cpu(optimizer, rng):
    x, t = _data(rng)
    cpu, hc = _fit("cpu", x, t, iters=5, optimizer=optimizer, weight_decay=0.01)
    gpu, hg = _fit("cuda", x, t, iters=5, optimizer=optimizer, weight_decay=0.01)
    np.testing.assert_allclose(hg["loss"], hc["loss"], rtol=1e-5)
    assert hg["epoch_step"] == hc["epoch_step"] == [4, 5]
    assert hg["train_acc"] == hc["train_acc"] and hg["eval_acc"] == hc["eval_acc"]
    np.testing.assert_allclose(gpu.flat_params, cpu.flat_params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation,dtype", [("sigmoid", "float32"), ("relu", "float64"),
                                              ("tanh", "float32")])
def test_fit_matches_cpu_sigmoid_tanh_and_float64(activation, dtype, rng):
    x, t = _data(rng, n=12)
    cpu, hc = _fit("cpu", x, t, activation, dtype, iters=4, optimizer="momentum")
    gpu, hg = _fit("cuda", x, t, activation, dtype, iters=4, optimizer="momentum")
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(hg["loss"], hc["loss"], rtol=rtol)
    assert gpu.flat_params.dtype == np.dtype(dtype)
    np.testing.assert_allclose(gpu.flat_params, cpu.flat_params, rtol=rtol, atol=rtol / 10)


@pytest.mark.parametrize("loss,optimizer", [("mse", "sgd"), ("logistic", "adam")])
def test_float_target_losses_fit_like_the_cpu(loss, optimizer, rng):
    x = rng.standard_normal((20, 5))
    t = (rng.random((20, 3)) < 0.4).astype(np.float64)  # multi-label 0/1 targets
    nets, hists = [], []
    for device in ("cpu", "cuda"):
        net = fastbp.Network([5, 4, 3], seed=2, device=device, loss=loss, dtype="float64")
        hists.append(fastbp.fit(net, x, t, batch_size=6, lr=0.05, seed=5, iters=4, optimizer=optimizer,
                                eval_data=(x[:7], t[:7])))
        nets.append(net)
    (hc, hg), (cpu, gpu) = hists, nets
    np.testing.assert_allclose(hg["loss"], hc["loss"], rtol=1e-12)
    np.testing.assert_allclose(hg["eval_loss"], hc["eval_loss"], rtol=1e-12)
    assert hg["train_acc"] == hc["train_acc"] and hg["eval_acc"] == hc["eval_acc"]
    np.testing.assert_allclose(gpu.flat_params, cpu.flat_params, rtol=1e-12, atol=1e-13)


def test_gpu_runs_are_bit_identical_and_resume_from_state(rng):
    x, t = _data(rng, n=12)  # 2 steps an epoch
    a, ha = _fit("cuda", x, t, iters=4, optimizer="adam")
    b, hb = _fit("cuda", x, t, iters=4, optimizer="adam")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert ha["loss"] == hb["loss"]
    # continue a run from its TrainState at an epoch boundary (the optimizer state comes
    # back to the host after each epoch)
    net = fastbp.Network([5, 4, 3], seed=2, device="cuda")
    state = fastbp.training.TrainState(net, 5)
    for stop in (2, 4):
        fastbp.fit(net, x, t, iters=stop, batch_size=6, lr=0.05, optimizer="adam",
                   eval_data=(x[:7], t[:7]), state=state)
    np.testing.assert_array_equal(net.flat_params, a.flat_params)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_stops_before_the_bad_step_like_the_cpu(rng):
    x, t = _data(rng)
    results = {}
    for device in ("cpu", "cuda"):
        net = fastbp.Network([5, 4, 3], seed=2, device=device)
        with pytest.raises(TrainingDiverged) as e:
            fastbp.fit(net, 1e3 * x, t, iters=4, batch_size=6, lr=1e30, seed=5)
        results[device] = (str(e.value).split(";")[0].split(" at ")[1], net.flat_params.copy())
    assert results["cuda"][0] == results["cpu"][0]  # same step
    np.testing.assert_allclose(results["cuda"][1], results["cpu"][1], rtol=1e-5)


def test_cli_train_device_cuda_checkpoints_and_resumes(tmp_path, monkeypatch, rng):
    # `fastbp train --device cuda` end to end: checkpoint, resume, params.npz equal to an
    # uninterrupted run. The data are 12-pixel images: the loader is tested on real MNIST
    # elsewhere, and 784-wide products take minutes in the simulator.
    from fastbp import cli
    x = rng.random((12, 12), dtype=np.float32)
    t = rng.integers(0, 10, 12).astype(np.uint8)
    monkeypatch.setattr(cli, "load_data", lambda *a: ((x, t), (x[:5], t[:5]), "test data"))
    common = ["train", "--device", "cuda", "--hidden", "4", "--batch-size", "6", "--optimizer",
              "momentum", "--no-progress", "--checkpoint-every", "1"]
    assert cli.main(common + ["--epochs", "3", "--out", str(tmp_path / "straight")]) == 0
    assert cli.main(common + ["--epochs", "2", "--out", str(tmp_path / "cut")]) == 0
    assert cli.main(common + ["--epochs", "3", "--out", str(tmp_path / "cut"), "--resume"]) == 0
    a = fastbp.Network.load(tmp_path / "straight" / "params.npz")
    b = fastbp.Network.load(tmp_path / "cut" / "params.npz", device="cuda")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
