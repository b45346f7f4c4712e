"""The seed's ch05 recipe (train_neuralnet.py): TwoLayerNet(784, 50, 10), ReLU, SGD lr 0.1,
batch 100, 10,000 iterations, train and test accuracy printed once per epoch as
"train_acc test_acc", as the seed prints them.

    python scripts/train_neuralnet.py [--data-dir DIR] [--iters 10000] [--seed 0]

Data: --data-dir, else MNIST found as load_mnist finds it (no download here),
else ../shared/data/mnist, else the embedded sample (said in one line).
"""
import argparse
import os
import sys
import time

import fastbp
from fastbp.datasets import load_mnist, load_mnist_sample

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data", "mnist")


def load(data_dir):
    for root in ([data_dir] if data_dir else [None, SHARED]):
        try:
            return load_mnist(normalize=True, one_hot_label=True, root=root, download=False)
        except FileNotFoundError:
            continue
    print("no MNIST found; using the embedded sample", file=sys.stderr)
    return load_mnist_sample(normalize=True, one_hot_label=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--iters", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    (x_train, t_train), (x_test, t_test) = load(args.data_dir)
    network = fastbp.TwoLayerNet(input_size=784, hidden_size=50, output_size=10, seed=args.seed)
    start = time.perf_counter()
    history = fastbp.fit(network, x_train, t_train, iters=args.iters, batch_size=100, lr=0.1,
                         seed=args.seed, eval_data=(x_test, t_test), progress=False,
                         on_epoch=lambda st: print(st.history["train_acc"][-1], st.history["eval_acc"][-1]))
    print(f"# {args.iters} iterations on {len(x_train)} images in {time.perf_counter() - start:.2f} s, "
          f"test accuracy {history['eval_acc'][-1]:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
