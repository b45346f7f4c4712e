"""Each kernel against its plain-NumPy reference, float32 and float64, at an MNIST shape
and a large one (pytest-benchmark). The kernel is called once before timing (JIT)."""
import numpy as np
import pytest

from fastbp.kernels import affine, reference, relu, sigmoid, softmax_loss
from fastbp.kernels.codes import RELU

SHAPES = {"mnist": (100, 784, 50), "large": (256, 1024, 1024)}


def setup(kernel, dtype, shape):
    N, D, M = SHAPES[shape]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D)).astype(dtype)
    W = (rng.standard_normal((D, M)) / np.sqrt(D)).astype(dtype)
    b = np.zeros(M, dtype)
    out = np.empty((N, M), dtype)
    affine.affine_forward(out, x, W, b, RELU)
    dout = rng.standard_normal((N, M)).astype(dtype)
    t = rng.integers(0, M, N)
    flat, dflat, yflat = out.reshape(-1), dout.reshape(-1), np.empty(N * M, dtype)
    if kernel == "affine_forward":
        return (lambda: affine.affine_forward(out, x, W, b, RELU),
                lambda: reference.affine_forward(x, W, b, "relu"))
    if kernel == "affine_backward":
        dx, dW, db, dz = np.empty_like(x), np.empty_like(W), np.empty_like(b), np.empty_like(out)
        return (lambda: affine.affine_backward(dx, dW, db, dz, dout, out, x, W, RELU),
                lambda: reference.affine_backward(dout, out, x, W, "relu"))
    if kernel == "relu_forward":
        return lambda: relu.relu_forward(yflat, dflat), lambda: reference.relu_forward(dflat)
    if kernel == "relu_backward":
        return lambda: relu.relu_backward(yflat, dflat, flat), lambda: reference.relu_backward(dflat, flat)
    if kernel == "sigmoid_forward":
        return lambda: sigmoid.sigmoid_forward(yflat, dflat), lambda: reference.sigmoid_forward(dflat)
    if kernel == "sigmoid_backward":
        return (lambda: sigmoid.sigmoid_backward(yflat, dflat, flat),
                lambda: reference.sigmoid_backward(dflat, flat))
    if kernel == "softmax_loss":
        return (lambda: softmax_loss.softmax_loss_forward_backward(yflat.reshape(N, M), dout, t),
                lambda: reference.softmax_loss_backward(*reference.softmax_loss_forward(dout, t)[:1], t))
    raise ValueError(kernel)


KERNELS = ["affine_forward", "affine_backward", "relu_forward", "relu_backward", "sigmoid_forward",
           "sigmoid_backward", "softmax_loss"]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("impl", ["fastbp", "numpy"])
def test_kernel(benchmark, impl, kernel, dtype, shape):
    fast, slow = setup(kernel, np.dtype(dtype), shape)
    fn = fast if impl == "fastbp" else slow
    fn()  # compile outside the timing
    benchmark.group = f"{kernel} {dtype} {shape}"
    benchmark(fn)


def test_backprop_vs_numerical_gradient(benchmark):
    # the seeds' point: TwoLayerNet(784, 50, 10), batch 100 -- backprop here, numerical below
    import fastbp
    net = fastbp.TwoLayerNet(784, 50, 10, seed=0)
    rng = np.random.default_rng(0)
    x, t = rng.random((100, 784)).astype(np.float32), rng.integers(0, 10, 100)
    net.gradient(x, t)
    benchmark.group = "gradient TwoLayerNet(784, 50, 10) batch 100"
    benchmark(net.gradient, x, t)


def test_numerical_gradient(benchmark):
    import fastbp
    net = fastbp.TwoLayerNet(784, 50, 10, seed=0)
    rng = np.random.default_rng(0)
    x, t = rng.random((100, 784)).astype(np.float32), rng.integers(0, 10, 100)
    net.numerical_gradient(x[:1], t[:1])
    benchmark.group = "gradient TwoLayerNet(784, 50, 10) batch 100"
    benchmark.pedantic(net.numerical_gradient, args=(x, t), rounds=1, iterations=1)
