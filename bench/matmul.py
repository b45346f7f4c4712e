"""BLAS (np.dot inside @njit) against the hand-written loops, side by side, one process.

The products of one training step of 784-50-10 at batch 100 (and of
784-1024-1024-10 at batch 256), on real MNIST pixels when ../shared/data/mnist
is there (their zeros are what the loops can skip), else on random data with
the same share of zeros. Prints median microseconds and loop/BLAS ratios;
affine.py uses whichever family wins here.

    python -m bench.matmul [--repeat 200]
"""
import argparse
import os
import platform
import time

import numpy as np

from fastbp.datasets import load_mnist
from fastbp.kernels import matmul

MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                     "data", "mnist")


def median_us(f, args, repeat):
    f(*args)  # compile / load from cache outside the timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t0)
    return 1e6 * float(np.median(times))


def pixels(n, rng):
    try:
        (x, _), _ = load_mnist(root=MNIST)
        return x[:n]
    except (FileNotFoundError, ValueError):
        x = rng.random((n, 784)).astype(np.float32)
        x[rng.random(x.shape) < 0.81] = 0  # MNIST is ~81% zeros
        return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"median of {args.repeat} calls")
    print(f"{'dtype':8} {'product':34} {'BLAS us':>9} {'loop us':>9} {'loop/BLAS':>9}")
    for dtype in (np.float32, np.float64):
        for N, D, H in ((100, 784, 50), (100, 50, 10), (256, 784, 1024), (256, 1024, 1024)):
            x = pixels(N, rng).astype(dtype) if D == 784 else \
                np.maximum(rng.standard_normal((N, D)), 0).astype(dtype)  # a ReLU output
            W = rng.standard_normal((D, H)).astype(dtype)
            dz = rng.standard_normal((N, H)).astype(dtype)
            cases = [(f"x·W      ({N}x{D})·({D}x{H})", "nn", (np.empty((N, H), dtype), x, W)),
                     (f"dz·Wᵀ    ({N}x{H})·({H}x{D})", "nt", (np.empty((N, D), dtype), dz, W)),
                     (f"xᵀ·dz    ({D}x{N})·({N}x{H})", "tn", (np.empty((D, H), dtype), x, dz))]
            for label, kind, a in cases:
                blas = median_us(getattr(matmul, f"matmul_{kind}_blas"), a, args.repeat)
                loop = median_us(getattr(matmul, f"matmul_{kind}_loop"), a, args.repeat)
                print(f"{np.dtype(dtype).name:8} {label:34} {blas:9.1f} {loop:9.1f} {loop / blas:9.2f}")


if __name__ == "__main__":
    main()
