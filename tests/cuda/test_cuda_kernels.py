"""softmax + cross-entropy, argmax, the optimizer update and the gather against their CPU
kernels (fastbp.kernels), float32 and float64, batch 1 and odd sizes."""
import numpy as np
import pytest
from numba import cuda

from cudatest import LOSS_RTOL, needs_device, near
from fastbp.kernels import optimizers as cpu_opt
from fastbp.kernels import logistic_loss as cpu_logistic
from fastbp.kernels import mse_loss as cpu_mse
from fastbp.kernels import sk_solvers as cpu_sk
from fastbp.kernels import softmax_loss as cpu_sm
from fastbp.kernels.layout import offsets as layout_offsets, param_count, param_layout
from fastbp.kernels.cuda import config
from fastbp.kernels.cuda.entry_losses import entry_loss
from fastbp.kernels.cuda.gather import gather
from fastbp.kernels.cuda.optimizers import update
from fastbp.kernels.cuda.sk_solvers import sk_finish, sk_update
from fastbp.kernels.cuda.softmax_loss import argmax_rows, mean_loss, softmax_ce, softmax_ce_rows

pytestmark = needs_device
DTYPES = [np.float32, np.float64]


def _softmax_ce(logits, t, grad=True, slot=0):
    dl = cuda.to_device(np.full(logits.shape, np.nan, logits.dtype))
    losses = cuda.to_device(np.full(3, np.nan))
    stop = cuda.to_device(np.zeros(1, np.int64))
    softmax_ce(logits.dtype.type, grad)[1, config.ROWS_BLOCK](
        dl, losses, cuda.to_device(logits), cuda.to_device(t), slot, stop)
    return dl.copy_to_host(), losses.copy_to_host(), int(stop.copy_to_host()[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(1, 10), (13, 10), (5, 1), (3, 4)])
def test_softmax_ce_matches_cpu(N, C, dtype, rng):
    logits = (3 * rng.standard_normal((N, C))).astype(dtype)
    t = rng.integers(0, C, N).astype(np.int64)
    want_d = np.empty_like(logits)
    want_loss = cpu_sm.softmax_loss_forward_backward(want_d, logits, t)
    got_d, losses, stop = _softmax_ce(logits, t, slot=1)
    near(got_d, want_d, dtype)
    np.testing.assert_allclose(losses[1], want_loss, rtol=LOSS_RTOL[dtype])
    assert np.isnan(losses[[0, 2]]).all() and stop == 0
    _, loss_only, _ = _softmax_ce(logits, t, grad=False)
    np.testing.assert_allclose(loss_only[0], want_loss, rtol=LOSS_RTOL[dtype])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_softmax_ce_huge_logits_and_divergence_flag():
    # exact log-sum-exp: finite loss for 1e30 logits; an inf logit gives a NaN loss -> stop flag
    logits = np.array([[1e30, 0, -1e30], [0, 1, 2]], np.float32)
    t = np.array([1, 2], np.int64)
    want = cpu_sm.cross_entropy(logits, t)
    _, losses, stop = _softmax_ce(logits, t)
    np.testing.assert_allclose(losses[0], want, rtol=1e-12)
    assert stop == 0
    _, losses, stop = _softmax_ce(np.array([[np.inf, 0]], np.float32), np.array([0], np.int64), slot=2)
    assert not np.isfinite(losses[2]) and stop == 3  # slot + 1


CPU_ENTRY_LOSSES = {"mse": cpu_mse.mse_loss_forward_backward, "half_squared": cpu_mse.half_sse_forward_backward,
                    "logistic": cpu_logistic.logistic_loss_forward_backward}


def _entry_loss(kind, y, t, grad=True, slot=0, block=None):
    dy = cuda.to_device(np.full(y.shape, np.nan, y.dtype))
    losses = cuda.to_device(np.full(3, np.nan))
    stop = cuda.to_device(np.zeros(1, np.int64))
    entry_loss(y.dtype.type, kind, grad, block)[1, block or config.ROWS_BLOCK](
        dy, losses, cuda.to_device(y), cuda.to_device(t), slot, stop)
    return dy.copy_to_host(), losses.copy_to_host(), int(stop.copy_to_host()[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["mse", "half_squared", "logistic"])
@pytest.mark.parametrize("N,C", [(1, 1), (1, 10), (13, 3), (5, 1), (3, 7)])
def test_entry_losses_match_cpu(kind, N, C, dtype, rng):
    # N*C below, at and above the block's threads (8 under the simulator, 256 on a GPU)
    y = (3 * rng.standard_normal((N, C))).astype(dtype)
    t = (rng.random((N, C)) if kind == "logistic" else rng.standard_normal((N, C))).astype(dtype)
    want_d = np.empty_like(y)
    want_loss = CPU_ENTRY_LOSSES[kind](want_d, y, t)
    got_d, losses, stop = _entry_loss(kind, y, t, slot=1)
    near(got_d, want_d, dtype)
    np.testing.assert_allclose(losses[1], want_loss, rtol=1e-12)  # float64 sums on both sides
    assert np.isnan(losses[[0, 2]]).all() and stop == 0
    _, loss_only, _ = _entry_loss(kind, y, t, grad=False, slot=2)
    np.testing.assert_allclose(loss_only[2], want_loss, rtol=1e-12)


def test_entry_losses_with_a_block_wider_than_the_entries(rng):
    y, t = rng.standard_normal((3, 2)), rng.random((3, 2))
    want_d = np.empty_like(y)
    want = cpu_logistic.logistic_loss_forward_backward(want_d, y, t)
    got_d, losses, _ = _entry_loss("logistic", y, t, block=64)
    near(got_d, want_d, np.float64)
    np.testing.assert_allclose(losses[0], want, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_entry_losses_stay_finite_on_huge_outputs_and_flag_divergence():
    # logistic: exact log1p(exp(-|z|)) form, finite for 1e30; an infinite output stops
    y = np.array([[1e30, -1e30], [0.5, -2.0]], np.float32)
    t = np.array([[0, 1], [1, 0]], np.float32)
    want = cpu_logistic.logistic_loss_forward(y, t)
    _, losses, stop = _entry_loss("logistic", y, t)
    assert np.isfinite(want) and stop == 0
    np.testing.assert_allclose(losses[0], want, rtol=1e-12)
    for kind in ("mse", "half_squared", "logistic"):
        _, losses, stop = _entry_loss(kind, np.array([[np.inf, 0]], np.float32), np.zeros((1, 2), np.float32), slot=2)
        assert not np.isfinite(losses[2]) and stop == 3, kind  # slot + 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("adam,nesterov", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("sizes", [(3, 2, 2), (1, 1, 1), (4, 5, 3)])  # P = 14, 5, 43: around the block
def test_sk_update_and_finish_match_the_cpu_solver(adam, nesterov, sizes, dtype, rng):
    # scikit-learn's L2 term on the W entries, one sgd/adam step, and the step's reported loss
    layout = param_layout(sizes)
    P = param_count(layout)
    params, grads = rng.standard_normal(P).astype(dtype), rng.standard_normal(P).astype(dtype)
    state = (0.1 * np.abs(rng.standard_normal((2, P)))).astype(dtype)
    decay = np.zeros(P, np.uint8)
    for p in layout:
        if p.kind == "W":
            decay[p.offset:p.offset + int(np.prod(p.shape))] = 1
    solver = cpu_sk.Solver(adam, 0.05, 0.9, nesterov, 0.9, 0.999, 1e-8)
    alpha, n, step, div, data_loss = 0.3, 7, 3, 2.0, 1.25
    want_p, want_g, want_s = params.copy(), grads.copy(), state.copy()
    offsets, sz = layout_offsets(layout), np.array(sizes, np.int64)
    sq = cpu_sk.l2_penalty(want_g, want_p, offsets, sz, alpha / n)
    cpu_sk.solver_update(want_p, want_g, want_s, solver, step)
    want_total = 5.0 + (data_loss / div + 0.5 * alpha * sq / n) * n

    blocks = (P + config.BLOCK - 1) // config.BLOCK
    d_p, d_s, partial = cuda.to_device(params), cuda.to_device(state), cuda.device_array(blocks, np.float64)
    lr_t = solver.lr * np.sqrt(1 - solver.beta2 ** step) / (1 - solver.beta1 ** step)
    sk_update(dtype, adam, nesterov)[blocks, config.BLOCK](
        d_p, cuda.to_device(grads), d_s[0], d_s[1], cuda.to_device(decay), partial, dtype(alpha / n),
        dtype(solver.lr), dtype(lr_t), dtype(0.9), dtype(0.9), dtype(0.999), dtype(1 - 0.9), dtype(1 - 0.999),
        dtype(1e-8))
    near(d_p.copy_to_host(), want_p, dtype)
    near(d_s.copy_to_host(), want_s, dtype)
    total = cuda.to_device(np.array([5.0]))
    sk_finish()[1, config.ROWS_BLOCK](total, cuda.to_device(np.array([0.0, data_loss])), partial, 1, div,
                                      0.5 * alpha, float(n))
    # Σ W² is float64 here and a BLAS dot in the parameters' dtype on the CPU (sk_solvers.py)
    np.testing.assert_allclose(total.copy_to_host()[0], want_total, rtol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmax_is_numpys(dtype, rng):
    logits = rng.integers(0, 3, (11, 4)).astype(dtype)  # many ties: the first maximum wins
    pred = cuda.device_array(11, np.int64)
    argmax_rows(dtype)[2, config.BLOCK](pred, cuda.to_device(logits))
    np.testing.assert_array_equal(pred.copy_to_host(), logits.argmax(axis=1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", cpu_opt.OPTIMIZERS)
def test_update_matches_cpu_optimizer(opt, dtype, rng):
    # a flat buffer of W (6 entries, decayed) then b (3, not decayed), three steps
    sizes, offsets = np.array([2, 3], np.int64), np.array([0, 6], np.int64)
    p = rng.standard_normal(9).astype(dtype)
    state = (0.1 * rng.random((2, 9))).astype(dtype)
    decay = np.array([1] * 6 + [0] * 3, np.uint8)
    code = cpu_opt.OPTIMIZERS.index(opt)
    h1, h2, lr, wd = 0.9, 0.999, 0.05, 0.01
    dp, ds = cuda.to_device(p), cuda.to_device(state)
    stop = cuda.to_device(np.zeros(1, np.int64))
    for step in range(1, 4):
        g = rng.standard_normal(9).astype(dtype)
        cpu_opt.optimizer_step(p, g, state, offsets, sizes, code, lr, h1, h2, wd, step)
        lr_t = lr * np.sqrt(1.0 - h2 ** step) / (1.0 - h1 ** step) if opt == "adam" else lr
        update(dtype)[2, config.BLOCK](dp, cuda.to_device(g), ds[0], ds[1], cuda.to_device(decay), stop,
                                       code, lr, lr_t, h1, 1 - h1, 1 - h2, wd)
    near(dp.copy_to_host(), p, dtype)
    near(ds.copy_to_host(), state, dtype)


def test_update_skips_after_stop(rng):
    p = rng.standard_normal(5).astype(np.float32)
    dp = cuda.to_device(p)
    z = cuda.to_device(np.zeros(5, np.float32))
    update(np.float32)[1, config.BLOCK](dp, cuda.to_device(np.ones(5, np.float32)), z, z,
                                        cuda.to_device(np.ones(5, np.uint8)),
                                        cuda.to_device(np.array([4], np.int64)), 0, 0.1, 0.1, 0, 0, 0, 0.1)
    np.testing.assert_array_equal(dp.copy_to_host(), p)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D,B", [(11, 3), (1, 1)])
def test_gather(D, B, dtype, rng):
    x = rng.standard_normal((7, D)).astype(dtype)
    t = rng.integers(0, 10, 7).astype(np.int64)
    order = rng.permutation(7).astype(np.int64)
    xb = cuda.to_device(np.full((B, D), np.nan, dtype))
    tb = cuda.to_device(np.full(B, -1, np.int64))
    gather(dtype)[((D + config.BLOCK - 1) // config.BLOCK, B), config.BLOCK](
        xb, tb, cuda.to_device(x), cuda.to_device(t), cuda.to_device(order), 2)
    rows = order[2:2 + B]
    np.testing.assert_array_equal(xb.copy_to_host(), x[rows])
    np.testing.assert_array_equal(tb.copy_to_host(), t[rows])


@pytest.mark.parametrize("D,C", [(11, 3), (2, 19), (1, 1)])
def test_gather_float_targets(D, C, rng):
    # targets wider than the inputs too: the grid covers max(D, C) columns
    x = rng.standard_normal((7, D))
    t = rng.standard_normal((7, C))
    order = rng.permutation(7).astype(np.int64)
    B = 4
    xb = cuda.to_device(np.full((B, D), np.nan))
    tb = cuda.to_device(np.full((B, C), np.nan))
    gather(np.float64, True)[((max(D, C) + config.BLOCK - 1) // config.BLOCK, B), config.BLOCK](
        xb, tb, cuda.to_device(x), cuda.to_device(t), cuda.to_device(order), 3)
    rows = order[3:3 + B]
    np.testing.assert_array_equal(xb.copy_to_host(), x[rows])
    np.testing.assert_array_equal(tb.copy_to_host(), t[rows])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(1, 1), (5, 10), (3, 37)])
def test_block_per_row_softmax_matches_cpu(N, C, dtype, rng):
    # the wide-head version: one block per row (threads stride the classes), then mean_loss
    logits = (3 * rng.standard_normal((N, C))).astype(dtype)
    t = rng.integers(0, C, N).astype(np.int64)
    want_d = np.empty_like(logits)
    want_loss = cpu_sm.softmax_loss_forward_backward(want_d, logits, t)
    dl = cuda.to_device(np.full(logits.shape, np.nan, dtype))
    rows = cuda.device_array(N, np.float64)
    losses, stop = cuda.to_device(np.full(2, np.nan)), cuda.to_device(np.zeros(1, np.int64))
    softmax_ce_rows(dtype)[N, config.ROWS_BLOCK](dl, rows, cuda.to_device(logits), cuda.to_device(t))
    mean_loss()[1, config.ROWS_BLOCK](losses, rows, 1, stop)
    near(dl.copy_to_host(), want_d, dtype)
    # the row's exp sum is a tree here, sequential on the CPU: float32 rounding of s
    np.testing.assert_allclose(losses.copy_to_host()[1], want_loss,
                               rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert int(stop.copy_to_host()[0]) == 0
    mean_loss()[1, config.ROWS_BLOCK](losses, cuda.to_device(np.array([1.0, np.inf])), 0, stop)
    assert int(stop.copy_to_host()[0]) == 1


def test_wide_head_network_matches_cpu(rng):
    # 40 classes: DeviceMLP takes the block-per-row path in gradient, loss and fit
    import fastbp
    cpu = fastbp.Network([3, 4, 40], seed=1)
    gpu = fastbp.Network([3, 4, 40], seed=1, device="cuda")
    x, t = rng.standard_normal((6, 3)), rng.integers(0, 40, 6)
    gc, gg = cpu.gradient(x, t), gpu.gradient(x, t)
    for k in gc:
        near(gg[k], gc[k], np.float32)
    np.testing.assert_allclose(gpu.loss(x, t), cpu.loss(x, t), rtol=1e-6)
    hc = fastbp.fit(cpu, x, t, iters=2, batch_size=3, seed=0)
    hg = fastbp.fit(gpu, x, t, iters=2, batch_size=3, seed=0)
    np.testing.assert_allclose(hg["loss"], hc["loss"], rtol=1e-5)
