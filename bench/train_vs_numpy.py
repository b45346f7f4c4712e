"""The seed's training recipe, fastbp against the book's plain-NumPy TwoLayerNet, in one process.

Both run TwoLayerNet(784, 50, 10), ReLU, SGD lr 0.1, batch 100, `--iters`
iterations with the train and test accuracy passes once per epoch, on the same
MNIST arrays. The NumPy side is bench/numpy_baseline.py (the book's layers,
float64 weights as in the book); fastbp runs float32 with the loop compiled.
fastbp's kernels are compiled (or loaded from cache) before the clock starts.
Prints wall times, per-step times, the ratio and the final accuracies.

    python -m bench.train_vs_numpy [--iters 10000] [--data-dir DIR] [--repeat 1]
"""
import argparse
import os
import platform
import statistics

import time

import numpy as np

import fastbp
from fastbp.datasets import load_mnist

from bench import numpy_baseline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHARED = os.path.join(REPO, "..", "shared", "data", "mnist")


def run_fastbp(x, t, xt, tt, iters, seed):
    net = fastbp.TwoLayerNet(784, 50, 10, seed=seed)
    start = time.perf_counter()
    h = fastbp.fit(net, x, t, iters=iters, batch_size=100, lr=0.1, seed=seed, eval_data=(xt, tt),
                   progress=False)
    return time.perf_counter() - start, h["eval_acc"][-1]


def run_numpy(x, t, xt, tt, iters, seed):
    start = time.perf_counter()
    _, accs = numpy_baseline.train(x, t, xt, tt, iters=iters, seed=seed, report=None)
    return time.perf_counter() - start, accs[-1][1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=10000)
    ap.add_argument("--data-dir", default=SHARED)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    (x, t), (xt, tt) = load_mnist(root=args.data_dir, download=False)
    run_fastbp(x[:200], t[:200], xt[:10], tt[:10], 3, 0)  # compile outside the clock
    results = {"fastbp": [], "numpy": []}
    for r in range(args.repeat):
        results["fastbp"].append(run_fastbp(x, t, xt, tt, args.iters, r))
        results["numpy"].append(run_numpy(x, t, xt, tt, args.iters, r))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, numpy {np.__version__}; "
          f"{len(x)} train / {len(xt)} test images, {args.iters} iterations, "
          f"{max(len(x) // 100, 1)} per epoch, median of {args.repeat}")
    med = {k: statistics.median(s for s, _ in v) for k, v in results.items()}
    for k in ("numpy", "fastbp"):
        print(f"{k:7} {med[k]:8.2f} s  {1e6 * med[k] / args.iters:8.1f} us/step  "
              f"test acc {results[k][-1][1]:.4f}")
    print(f"fastbp is {med['numpy'] / med['fastbp']:.1f}x faster")


if __name__ == "__main__":
    main()
