"""The epoch kernel (kernels/cuda/epoch.py): a chunk of training steps as one cooperative launch,
against its referee, DeviceMLP's launches (and through fit, the CPU), float32 and float64, every
optimizer, batch 1, width 1, one to three layers; the divergence stop; and the launch shapes a
real GPU insists are Python ints."""
import numpy as np
import pytest
from numba import config as numba_config
from numba import cuda

import fastbp
from cudatest import needs_device, near
from fastbp.kernels.codes import ADAGRAD, ADAM, MOMENTUM, NESTEROV, RELU, SGD, SIGMOID, TANH
from fastbp.kernels.cuda import mlp as device_mlp
from fastbp.kernels.cuda.mlp import DeviceMLP
from fastbp.kernels.layout import param_count, param_layout
from fastbp.kernels.train import Optim

pytestmark = needs_device


def _steps(sizes, B, steps, one_launch, opt=SGD, dtype=np.float32, lr=0.1, act=RELU, first=1, wd=0.01, N=None):
    rng = np.random.default_rng(sum(sizes) + B)
    N = N or B * (first + steps) + 3  # rows no batch takes, too
    x = rng.standard_normal((N, sizes[0])).astype(dtype)
    t = rng.integers(0, sizes[-1], N).astype(np.int64)
    layout = param_layout(sizes)
    flat = (0.5 * rng.standard_normal(param_count(layout))).astype(dtype)
    dev = DeviceMLP(sizes, act, layout, flat)
    state = cuda.to_device(0.01 * np.abs(rng.standard_normal((2, flat.size))).astype(dtype))
    losses = cuda.to_device(np.full(steps, np.nan))
    args = (dev.workspace(B), cuda.to_device(x), cuda.to_device(t), cuda.to_device(rng.permutation(N).astype(np.int64)),
            first, steps, Optim(opt, lr, 0.9, 0.999, wd), 7, state, losses)
    if one_launch == "graph":  # the launches captured as a CUDA graph, then replayed
        graph = dev.capture_steps(*args)
        stream = device_mlp.core_device().create_stream()
        graph.launch(stream)
        stream.sync()
    else:
        dev.train_steps(*args, one_launch=one_launch)
    return dev.params.copy_to_host(), state.copy_to_host(), losses.copy_to_host(), int(dev.stop.copy_to_host()[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes,B,act", [((7, 5, 3), 4, RELU), ((6, 3), 1, RELU), ((5, 1, 2), 3, SIGMOID),
                                         ((9, 4, 3, 2), 5, TANH), ((3, 6, 1), 2, RELU)])
def test_one_launch_takes_the_launches_steps(sizes, B, act, dtype):
    want = _steps(sizes, B, 3, False, act=act, dtype=dtype)
    got = _steps(sizes, B, 3, True, act=act, dtype=dtype)
    near(got[0], want[0], dtype)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert got[3] == want[3] == 0
    assert not np.array_equal(got[0], _steps(sizes, B, 0, True, act=act, dtype=dtype)[0])  # it trained


@pytest.mark.skipif(numba_config.ENABLE_CUDASIM, reason="the simulator has no CUDA graphs")
@pytest.mark.parametrize("opt", [SGD, ADAM])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_captured_launches_replay_the_launches_steps(opt, dtype):
    # DeviceMLP.capture_steps: the same kernels with the same arguments, so the same bits
    want = _steps((7, 5, 3), 4, 3, False, opt=opt, dtype=dtype)
    got = _steps((7, 5, 3), 4, 3, "graph", opt=opt, dtype=dtype)
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_array_equal(g, w)
    assert got[3] == want[3] == 0


@pytest.mark.parametrize("setting,value,sizes,B,dtype", [
    # the sums in 8 or 16 chains against 4: lengths past the chain count with a remainder,
    # exactly as many, and fewer
    ("EPOCH_CHAINS", 8, (11, 3, 2), 9, np.float32), ("EPOCH_CHAINS", 8, (3, 2), 8, np.float64),
    ("EPOCH_CHAINS", 16, (19, 3, 2), 17, np.float64), ("EPOCH_CHAINS", 16, (5, 3), 18, np.float32),
    # forward sums split over lanes against a thread a sum. Under the simulator the grid is 8
    # threads, so these are the shapes with threads to spare: layer 0 in 4, 8, 2 and 4 parts
    # (lengths 37, 37, 9, 21: none a multiple of the parts), the later layers too short to split
    ("EPOCH_SPLIT", 8, (37, 2, 3), 1, np.float32), ("EPOCH_SPLIT", 8, (37, 1, 3), 1, np.float64),
    ("EPOCH_SPLIT", 2, (9, 4), 1, np.float32), ("EPOCH_SPLIT", 32, (21, 2, 2, 3), 1, np.float64)])
def test_sums_in_another_order_take_the_same_steps(setting, value, sizes, B, dtype, monkeypatch):
    # against 4 chains and unsplit sums (config.py's settings now; the tests above hold the
    # defaults to the launches): the same steps to rounding
    from fastbp.kernels.cuda import config
    monkeypatch.setattr(config, "EPOCH_CHAINS", 4)
    monkeypatch.setattr(config, "EPOCH_SPLIT", 1)
    default = _steps(sizes, B, 3, True, dtype=dtype)
    monkeypatch.setattr(config, setting, value)
    got = _steps(sizes, B, 3, True, dtype=dtype)
    near(got[0], default[0], dtype)
    np.testing.assert_allclose(got[2], default[2], rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert not np.array_equal(got[0], _steps(sizes, B, 0, True, dtype=dtype)[0])  # it trained


@pytest.mark.parametrize("opt", [SGD, MOMENTUM, NESTEROV, ADAGRAD, ADAM])
def test_one_launch_applies_every_optimizer_as_the_launches(opt):
    want = _steps((8, 5, 4), 6, 4, False, opt=opt, lr=0.05)
    got = _steps((8, 5, 4), 6, 4, True, opt=opt, lr=0.05)
    near(got[0], want[0], np.float32)
    near(got[1], want[1], np.float32)  # the optimizer's state too (Adam: lr_t per step)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_one_launch_stops_where_the_launches_stop():
    # lr 1e30: step 2's loss is not finite; the parameters keep the state after step 1
    want = _steps((7, 5, 3), 4, 4, False, lr=1e30)
    got = _steps((7, 5, 3), 4, 4, True, lr=1e30)
    assert got[3] == want[3] == 2
    near(got[0], want[0], np.float32)
    after_1 = _steps((7, 5, 3), 4, 1, True, lr=1e30, N=4 * 5 + 3)[0]
    np.testing.assert_array_equal(got[0], after_1)  # nothing changed them after step 1
    np.testing.assert_allclose(got[2][:1], want[2][:1], rtol=1e-6)
    assert not np.isfinite(got[2][1])


def test_fit_runs_an_epoch_as_one_launch_and_matches_the_cpu(monkeypatch, rng):
    calls = []
    real = DeviceMLP._one_launch
    monkeypatch.setattr(DeviceMLP, "_one_launch", lambda self, *a: (calls.append(a[5]), real(self, *a))[1])  # a[5]: steps
    x = rng.standard_normal((45, 6)).astype(np.float32)
    t = rng.integers(0, 3, 45)
    hist = {}
    for device in ("cpu", "cuda"):
        net = fastbp.Network([6, 5, 3], seed=1, device=device)
        hist[device] = fastbp.fit(net, x, t, epochs=3, batch_size=10, lr=0.1, seed=2, optimizer="adam")
        hist[device]["params"] = net.flat_params
    assert calls == [4, 4, 4]  # 3 epochs of 4 steps, one launch each
    np.testing.assert_allclose(hist["cuda"]["loss"], hist["cpu"]["loss"], rtol=1e-5)
    near(hist["cuda"]["params"], hist["cpu"]["params"], np.float32)


def test_losses_the_epoch_kernel_cannot_take_keep_the_launches(rng):
    layout = param_layout((4, 3, 2))
    flat = np.zeros(param_count(layout), np.float32)
    assert not DeviceMLP((4, 3, 2), RELU, layout, flat, loss="mse").workspace(5).one_launch
    with pytest.raises(ValueError, match="epoch kernel"):
        _mse = DeviceMLP((4, 3, 2), RELU, layout, flat, loss="mse")
        _mse._one_launch(None, None, None, None, 0, 1, Optim(SGD, 0.1, 0, 0, 0), 0, None, None)


def test_launch_shapes_are_python_ints():
    # numba-cuda on a GPU refuses a grid of np.int64 ("LaunchConfig.grid must be an int"); the
    # simulator takes anything, so check the types themselves: sizes and batch sizes come in as
    # NumPy integers from scikit-learn's estimators
    sizes = np.array([9, 5, 3], np.int64)
    layout = param_layout(sizes)
    flat = np.zeros(param_count(layout), np.float32)
    for loss in ("softmax_ce", "mse"):
        dev = DeviceMLP(sizes, RELU, layout, flat, loss=loss)
        ws = dev.workspace(np.int64(4))
        shapes = [ws.gather_blocks, dev._update_blocks, ws.B]
        shapes += [dims for _, blocks, threads, _ in ws.forward_plan(ws.xb) + ws.backward_plan(ws.xb)
                   for dims in (blocks, threads)]
        flat_dims = [d for s in shapes for d in (s if isinstance(s, tuple) else (s,))]
        assert all(type(d) is int for d in flat_dims), [type(d) for d in flat_dims]
    assert device_mlp._blocks(np.int64(10), 4) == 3 and type(device_mlp._blocks(np.int64(10), 4)) is int
