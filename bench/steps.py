"""One SGD training step of an MLP, four ways, for the benchmarks: fastbp's compiled
step, plain NumPy (layer by layer, the book's way, in the same dtype), PyTorch eager
(if installed) and the BLAS floor (NumPy's BLAS doing only that step's matrix
products). Each `make_*` returns a zero-argument callable that runs one step on a
fixed minibatch; building it compiles and warms up, so timing never includes a JIT.
"""
import numpy as np
from numba import njit

import fastbp
from fastbp.backend import CHUNK_STEPS
from fastbp.kernels.codes import IDENTITY, RELU, SGD
from fastbp.kernels.matmul import gemm_tn_update
from fastbp.kernels.train import Optim

CONFIGS = [((784, 50, 10), 100), ((784, 100, 100, 10), 100), ((784, 1024, 1024, 10), 256)]


def data(sizes, batch, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, sizes[0]), dtype=np.float64).astype(dtype)
    x[rng.random(x.shape) < 0.8] = 0  # MNIST-like: 80% zeros
    return x, rng.integers(0, sizes[-1], batch).astype(np.int64)


def matmul_flops(sizes, batch):
    """FLOPs of one step's products: forward x·W per layer, backward dW per layer, dx but for layer 1."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * batch * a * b for a, b in pairs)
    return fwd + fwd + (fwd - 2 * batch * pairs[0][0] * pairs[0][1])


def make_fastbp(sizes, batch, lr=0.1, dtype="float32"):
    """As fit runs it: CHUNK_STEPS steps per compiled call (the batch gathered each step);
    the callable's `steps_per_call` says how many steps one call is."""
    net = fastbp.Network(sizes, dtype=dtype, seed=0)
    x, t = data(sizes, batch, net.dtype)
    trainer = net.backend.trainer(x, t, {}, batch, np.zeros((2, net.n_params), net.dtype))
    trainer.new_epoch(np.tile(np.arange(batch, dtype=np.int64), CHUNK_STEPS))
    optim = Optim(SGD, lr, 0.0, 0.0, 0.0)

    def step():
        trainer.run(0, CHUNK_STEPS, optim, 0)
    step.steps_per_call = CHUNK_STEPS
    step()
    return step


def make_numpy(sizes, batch, lr=0.1, dtype=np.float32):
    rng = np.random.default_rng(0)
    Ws = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(b, dtype) for b in sizes[1:]]
    x, t = data(sizes, batch, dtype)

    def step():  # the book's layers, inlined: Affine, Relu, ..., SoftmaxWithLoss, then SGD
        hs, masks = [x], []
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = hs[-1] @ W + b
            if i < len(Ws) - 1:
                masks.append(h <= 0)
                h[masks[-1]] = 0
            hs.append(h)
        z = hs[-1] - hs[-1].max(axis=1, keepdims=True)
        y = np.exp(z)
        y /= y.sum(axis=1, keepdims=True)
        dout = y
        dout[np.arange(batch), t] -= 1
        dout /= batch
        for i in reversed(range(len(Ws))):
            dW, db = hs[i].T @ dout, dout.sum(axis=0)
            if i > 0:
                dout = dout @ Ws[i].T
                dout[masks[i - 1]] = 0
            Ws[i] -= lr * dW
            bs[i] -= lr * db
    step()
    return step


def make_blas_floor(sizes, batch, dtype=np.float32):
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    x, _ = data(sizes, batch, dtype)
    hs = [x] + [rng.standard_normal((batch, b)).astype(dtype) for b in sizes[1:]]
    outs = [np.empty((batch, b), dtype) for b in sizes[1:]]
    dWs = [np.empty_like(W) for W in Ws]
    dxs = [np.empty((batch, a), dtype) for a in sizes[:-1]]

    def step():  # just the products of the same step, into preallocated outputs
        for i, W in enumerate(Ws):
            np.dot(hs[i], W, out=outs[i])
        for i in reversed(range(len(Ws))):
            np.dot(hs[i].T, hs[i + 1], out=dWs[i])
            if i > 0:
                np.dot(hs[i + 1], Ws[i].T, out=dxs[i])
    step()
    return step


def make_torch(sizes, batch, lr=0.1):
    """PyTorch eager on the CPU, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, t = data(sizes, batch)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), tt)
        loss.backward()
        opt.step()
    step()
    return step


@njit
def sgd_product(W, x, dz):
    gemm_tn_update(W, x, dz, -1e-30, 1.0)  # nonzero: BLAS skips the product when alpha is 0


def fastbp_breakdown(sizes, batch, repeat=200):
    """Median microseconds of each piece of fastbp's step (the profile behind the ratios)."""
    import time

    from fastbp.kernels import affine, matmul, optimizers, softmax_loss
    from fastbp.kernels.train import gather_rows

    net = fastbp.Network(sizes, seed=0)
    x, t = data(sizes, batch, net.dtype)
    p = net.params
    L = len(sizes) - 1
    hs = [x] + [np.empty((batch, b), net.dtype) for b in sizes[1:]]
    d = [np.empty((batch, b), net.dtype) for b in sizes]
    xb, tb, rows = np.empty_like(x), np.empty(batch, np.int64), np.arange(batch, dtype=np.int64)
    grads = np.empty_like(net.flat_params)
    g = {q.name: grads[q.offset:q.offset + int(np.prod(q.shape))].reshape(q.shape) for q in net.layout}
    act = lambda l: RELU if l < L - 1 else IDENTITY  # noqa: E731
    pieces = {"gather batch": lambda: gather_rows(xb, x, rows)}
    for l in range(L):
        W, b = p[f"W{l + 1}"], p[f"b{l + 1}"]
        pieces[f"layer {l + 1} x·W (BLAS)"] = (lambda l=l, W=W: matmul.matmul_nn_blas(hs[l + 1], hs[l], W))
        pieces[f"layer {l + 1} bias+act pass"] = (lambda l=l, W=W, b=b: affine.affine_forward(hs[l + 1], hs[l], W, b, act(l)))
    pieces["softmax + loss + dlogits"] = lambda: softmax_loss.softmax_loss_forward_backward(d[-1], hs[-1], t)
    for l in reversed(range(L)):
        gb = g[f"b{l + 1}"]
        pieces[f"layer {l + 1} act'+db pass"] = (lambda l=l, gb=gb: affine.bias_act_backward(d[l + 1], gb, d[l + 1], hs[l + 1], act(l)))
        # SGD runs fused: W = W - lr·xᵀ·dz in the product itself (lr 1e-30 here: W stays as it is)
        pieces[f"layer {l + 1} W -= lr·xᵀ·dz (BLAS)"] = (
            lambda l=l: sgd_product(p[f"W{l + 1}"], hs[l], d[l + 1]))
        if l > 0:
            pieces[f"layer {l + 1} dz·Wᵀ (BLAS)"] = (lambda l=l: matmul.matmul_nt_blas(d[l], d[l + 1], p[f"W{l + 1}"]))
    pieces["SGD update of the biases"] = lambda: [optimizers.sgd_update(p[f"b{l + 1}"], g[f"b{l + 1}"], 0.0, 0.0)
                                                  for l in range(L)]
    out = {}
    for name, fn in pieces.items():
        fn()
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[name] = 1e6 * float(np.median(ts))
    # "bias+act pass" above timed the whole affine_forward; keep only its epilogue share
    for l in range(L):
        out[f"layer {l + 1} bias+act pass"] -= out[f"layer {l + 1} x·W (BLAS)"]
    return out
