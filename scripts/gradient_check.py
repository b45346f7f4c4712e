"""The seed's gradient check: TwoLayerNet(784, 50, 10) on the first 3 MNIST training
images, backprop against central differences, the gap printed per parameter.

The seed prints the mean absolute gap (W1:2.9e-13, b1:8.5e-13, W2:9.5e-13,
b2:1.2e-10 in its run, float64). This prints that line per parameter as the seed
does, then the max absolute and relative error, and the time each method took.

    python scripts/gradient_check.py [--data-dir DIR] [--dtype float32|float64]
"""
import argparse
import os
import sys
import time

import numpy as np

import fastbp
from fastbp.datasets import load_mnist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.environ.get("FASTBP_DATA") or os.path.join(REPO, "..", "shared", "data", "mnist")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=DEFAULT_DATA, help="folder with the MNIST IDX files")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        (x_train, t_train), _ = load_mnist(normalize=True, one_hot_label=True, root=args.data_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"gradient_check: {e}", file=sys.stderr)
        return 1
    network = fastbp.TwoLayerNet(input_size=784, hidden_size=50, output_size=10,
                                 dtype=args.dtype, seed=args.seed)
    x_batch, t_batch = x_train[:args.batch], t_train[:args.batch]

    network.gradient(x_batch, t_batch)  # compile (or load from cache) outside the timing
    network.numerical_gradient(x_batch[:1], t_batch[:1])
    t0 = time.perf_counter()
    grad_numerical = network.numerical_gradient(x_batch, t_batch)
    t1 = time.perf_counter()
    grad_backprop = network.gradient(x_batch, t_batch)
    t2 = time.perf_counter()

    for key in grad_numerical.keys():
        diff = np.average(np.abs(grad_backprop[key] - grad_numerical[key]))
        print(key + ":" + str(diff))
    print()
    report = fastbp.gradient_check(network, x_batch, t_batch)
    print(f"{'param':6} {'max abs error':>14} {'rel error':>10}")
    for key, r in report.items():
        print(f"{key:6} {r['max_abs_error']:14.3e} {r['rel_error']:10.3e}")
    print(f"\nnumerical gradient {1e3 * (t1 - t0):.1f} ms, backprop {1e3 * (t2 - t1):.3f} ms "
          f"({(t1 - t0) / (t2 - t1):.0f}x), {network.flat_params.size} parameters, "
          f"batch {args.batch}, {args.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
