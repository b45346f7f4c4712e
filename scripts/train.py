"""The book's ch05 training loop written out by hand on CS231n's 3-class spiral: a 2-100-3
ReLU network, net.gradient and the SGD rule per minibatch, accuracy printed per epoch.
It needs no data files (`fastbp train` is the compiled loop on MNIST).

    python scripts/train.py [--epochs 20] [--lr 1.0] [--batch-size 100] [--seed 0]
"""
import argparse
import sys
import time

import numpy as np

import fastbp
from fastbp.datasets import spiral


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.hidden < 1 or not args.lr > 0:
        ap.error("--epochs, --batch-size, --hidden and --lr must be positive")

    x_train, t_train = spiral(1000, 3, seed=args.seed)
    x_test, t_test = spiral(300, 3, seed=args.seed + 1)
    net = fastbp.Network([2, args.hidden, 3], seed=args.seed)
    rng = np.random.default_rng(args.seed)
    n = len(x_train)
    iters_per_epoch = max(n // args.batch_size, 1)
    print(f"spiral: {n} train / {len(x_test)} test points, {net}")
    print(f"epoch {0:3d}  loss {net.loss(x_train, t_train):.4f}  "
          f"train acc {net.accuracy(x_train, t_train):.4f}  test acc {net.accuracy(x_test, t_test):.4f}")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        for _ in range(iters_per_epoch):
            batch_mask = rng.choice(n, args.batch_size)
            grad = net.gradient(x_train[batch_mask], t_train[batch_mask])
            for key in net.params:
                net.params[key] -= args.lr * grad[key]
        print(f"epoch {epoch:3d}  loss {net.loss(x_train, t_train):.4f}  "
              f"train acc {net.accuracy(x_train, t_train):.4f}  test acc {net.accuracy(x_test, t_test):.4f}")
    print(f"{args.epochs * iters_per_epoch} steps in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
