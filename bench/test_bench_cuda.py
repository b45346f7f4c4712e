"""The CUDA kernels under pytest-benchmark, for `make bench` / `make bench-compare` on a GPU
machine (skipped elsewhere, and under the simulator: its timings mean nothing).

Every gemm version at the MNIST step's shapes and at 1024, and a full SGD step of
784-50-10 b100 and 784-1024-1024-10 b256 on the device. Each timed call ends with
cuda.synchronize(), so a round is the kernels' time, not their launch's.
bench/cuda_report.py is the side-by-side report against cuBLAS and PyTorch CUDA.
"""
import numpy as np
import pytest
from numba import config

pytestmark = pytest.mark.skipif(config.ENABLE_CUDASIM, reason="no timings under the simulator")


@pytest.fixture(scope="module")
def cuda():
    from numba import cuda
    if not cuda.is_available():
        pytest.skip("no GPU")
    return cuda


# (M, N, K, ta, tb): forward x·W1, dW1 = xᵀ·dz1, dx2 = dz2·W2ᵀ of 784-50-10 b100; a square 1024
SHAPES = {"fwd-100x50x784": (100, 50, 784, False, False), "dW-784x50x100": (784, 50, 100, True, False),
          "dx-100x50x10": (100, 50, 10, False, True), "square-1024": (1024, 1024, 1024, False, False)}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("version", ["naive", "tiled", "regblock", "pipelined"])
def test_gemm(benchmark, cuda, version, shape):
    from fastbp.kernels.cuda import gemm
    M, N, K, ta, tb = SHAPES[shape]
    rng = np.random.default_rng(0)
    A = cuda.to_device(rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32))
    B = cuda.to_device(rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32))
    C = cuda.device_array((M, N), np.float32)

    def run():
        gemm.gemm(C, A, B, ta, tb, version=version)
        cuda.synchronize()
    run()
    benchmark.group = f"cuda gemm {shape} float32"
    benchmark(run)


@pytest.mark.parametrize("sizes,batch", [((784, 50, 10), 100), ((784, 1024, 1024, 10), 256)],
                         ids=["784-50-10-b100", "784-1024-1024-10-b256"])
def test_sgd_steps(benchmark, cuda, sizes, batch):
    import fastbp
    from fastbp.kernels.codes import SGD
    from fastbp.kernels.train import Optim
    net = fastbp.Network(list(sizes), seed=0, device="cuda")
    rng = np.random.default_rng(0)
    n = 10 * batch
    x = rng.random((n, sizes[0]), dtype=np.float32)
    t = rng.integers(0, sizes[-1], n).astype(np.int64)
    trainer = net.backend.trainer(x, t, {}, batch, np.zeros((2, net.n_params), np.float32))
    trainer.new_epoch(rng.permutation(n).astype(np.int64))
    optim = Optim(SGD, 0.01, 0.0, 0.0, 0.0)

    def run():  # 10 SGD steps, the way fit runs them (the losses read back at the end)
        trainer.run(0, 10, optim, 0)
    run()
    benchmark.group = f"cuda 10 SGD steps {'-'.join(map(str, sizes))} b{batch} float32"
    benchmark(run)
