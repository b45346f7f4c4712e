"""fastbp.MLPClassifier against scikit-learn's MLPClassifier, side by side in one process.

The 24,000 shared MNIST training images (pixels / 255, float32: both estimators keep
float32 data in float32), the official 10,000 test images for accuracy. Each setting
is fitted with the same parameters by scikit-learn, by fastbp as shipped (sparse='auto'
takes the sparse first layer for MNIST), by fastbp on the dense path (sparse=False) and
by fastbp as shipped with numba on one thread (numba.set_num_threads(1): the first
layer's parts in turn, BLAS on its own threads; what the thread pool gains);
contenders alternate round by round, the median fit time is reported.
n_iter_no_change = max_iter, so every fit runs exactly --epochs epochs.

--tabular: small dense features instead, the kind of data these estimators mostly get:
scikit-learn's make_classification (25,000 rows, 20 features, 10 of them informative, 3
classes, random_state=0; 20,000 to fit, 5,000 to score), float32; scikit-learn against
fastbp as shipped (sparse='auto' keeps such input dense).

    python -m bench.sklearn_speed [--epochs 10] [--rounds 3] [--tabular]
"""
import argparse
import os
import platform
import statistics
import time
import warnings

import numba
import numpy as np
from sklearn import neural_network as sk
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp.datasets import load_mnist

from bench.sparse import PAUSE, SHARED  # the pause between fits; the shared MNIST folder

ONE_THREAD = "fastbp, numba 1 thread"
SETTINGS = [("sgd", (50,)), ("adam", (50,)), ("sgd", (256, 128)), ("adam", (256, 128))]
TABULAR_SETTINGS = [("sgd", (100,)), ("adam", (100,)), ("adam", (100, 100))]


def contenders(solver, hidden, epochs, tabular=False):
    kw = dict(hidden_layer_sizes=hidden, solver=solver, max_iter=epochs, n_iter_no_change=epochs, random_state=0)
    both = {"scikit-learn": lambda: sk.MLPClassifier(**kw),
            "fastbp": lambda: fastbp.MLPClassifier(**kw)}
    if tabular:
        return both
    return {**both, "fastbp dense": lambda: fastbp.MLPClassifier(**kw, sparse=False),
            ONE_THREAD: lambda: fastbp.MLPClassifier(**kw)}


def timed_fit(name, est, x, t):
    """Seconds est.fit(x, t) takes; for ONE_THREAD with numba's threads cut to one meanwhile."""
    threads = numba.get_num_threads()
    if name == ONE_THREAD:
        numba.set_num_threads(1)
    try:
        start = time.perf_counter()
        est.fit(x, t)
        return time.perf_counter() - start
    finally:
        numba.set_num_threads(threads)


def run(x, t, xt, tt, epochs, rounds, tabular=False):
    rows = []
    for solver, hidden in TABULAR_SETTINGS if tabular else SETTINGS:
        makers = contenders(solver, hidden, epochs, tabular)
        for policy in ("auto", False):  # load the compiled kernels before the clock runs
            fastbp.MLPClassifier(hidden_layer_sizes=hidden, solver=solver, max_iter=1, sparse=policy).fit(x[:500], t[:500])
        times, acc = {k: [] for k in makers}, {}
        for _ in range(rounds):
            for name, make in makers.items():
                est = make()
                time.sleep(PAUSE)
                times[name].append(timed_fit(name, est, x, t))
                acc[name] = est.score(xt, tt)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((solver, hidden, med, acc))
        print(f"{solver} {hidden}: " + ", ".join(f"{k} {med[k]:.2f} s ({acc[k]:.4f})" for k in makers), flush=True)
    return rows


def tabular_table(rows):
    out = ["| solver, hidden | scikit-learn s | fastbp s | speedup | test accuracy sklearn / fastbp |",
           "| --- | --- | --- | --- | --- |"]
    for solver, hidden, med, acc in rows:
        sk_s, fb = med["scikit-learn"], med["fastbp"]
        out.append(f"| {solver}, {'-'.join(map(str, hidden))} | {sk_s:.3f} | {fb:.3f} | {sk_s / fb:.1f}x "
                   f"| {acc['scikit-learn']:.4f} / {acc['fastbp']:.4f} |")
    return "\n".join(out)


def table(rows, epochs):
    out = [f"| solver, hidden | scikit-learn s | fastbp s | fastbp dense s | fastbp, numba 1 thread s | speedup "
           f"| dense speedup | 1-thread speedup | test accuracy sklearn / fastbp |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for solver, hidden, med, acc in rows:
        sk_s, fb, fd, f1 = med["scikit-learn"], med["fastbp"], med["fastbp dense"], med[ONE_THREAD]
        out.append(f"| {solver}, {'-'.join(map(str, hidden))} | {sk_s:.2f} | {fb:.2f} | {fd:.2f} | {f1:.2f} "
                   f"| {sk_s / fb:.1f}x | {sk_s / fd:.1f}x | {sk_s / f1:.1f}x "
                   f"| {acc['scikit-learn']:.4f} / {acc['fastbp']:.4f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tabular", action="store_true", help="make_classification's 20 dense features, not MNIST")
    args = ap.parse_args()
    if args.tabular:
        X, y = make_classification(25000, 20, n_informative=10, n_classes=3, random_state=0)
        X = X.astype(np.float32)
        (x, t), (xt, tt) = (X[:20000], y[:20000]), (X[20000:], y[20000:])
        what = "rows of 20 features"
    else:
        (x, t), (xt, tt) = load_mnist(root=SHARED, normalize=True)
        x, xt = x.astype(np.float32), xt.astype(np.float32)
        what = "images"
    print(f"{len(x)} train / {len(xt)} test {what}; {args.epochs} epochs, median of {args.rounds} rounds; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        rows = run(x, t, xt, tt, args.epochs, args.rounds, args.tabular)
    print()
    print(tabular_table(rows) if args.tabular else table(rows, args.epochs))


if __name__ == "__main__":
    main()
