"""fastbp.MLPClassifier against scikit-learn's MLPClassifier, side by side in one process.

The 24,000 shared MNIST training images (pixels / 255, float32: both estimators keep
float32 data in float32), the official 10,000 test images for accuracy. Each setting
is fitted with the same parameters by scikit-learn, by fastbp as shipped (sparse='auto'
takes the sparse first layer for MNIST), by fastbp on the dense path (sparse=False) and
by fastbp as shipped with numba on one thread (numba.set_num_threads(1): the first
layer's parts in turn, BLAS on its own threads; what the thread pool gains);
contenders alternate round by round, the median fit time is reported.
n_iter_no_change = max_iter, so every fit runs exactly --epochs epochs.

    python -m bench.sklearn_speed [--epochs 10] [--rounds 3]
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
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp.datasets import load_mnist

from bench.sparse import PAUSE, SHARED  # the pause between fits; the shared MNIST folder

ONE_THREAD = "fastbp, numba 1 thread"
SETTINGS = [("sgd", (50,)), ("adam", (50,)), ("sgd", (256, 128)), ("adam", (256, 128))]


def contenders(solver, hidden, epochs):
    kw = dict(hidden_layer_sizes=hidden, solver=solver, max_iter=epochs, n_iter_no_change=epochs, random_state=0)
    return {"scikit-learn": lambda: sk.MLPClassifier(**kw),
            "fastbp": lambda: fastbp.MLPClassifier(**kw),
            "fastbp dense": lambda: fastbp.MLPClassifier(**kw, sparse=False),
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


def run(x, t, xt, tt, epochs, rounds):
    rows = []
    for solver, hidden in SETTINGS:
        makers = contenders(solver, hidden, epochs)
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
    args = ap.parse_args()
    (x, t), (xt, tt) = load_mnist(root=SHARED, normalize=True)
    x, xt = x.astype(np.float32), xt.astype(np.float32)
    print(f"{len(x)} train / {len(xt)} test images; {args.epochs} epochs, median of {args.rounds} rounds; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        rows = run(x, t, xt, tt, args.epochs, args.rounds)
    print()
    print(table(rows, args.epochs))


if __name__ == "__main__":
    main()
