"""Sparse inputs, side by side in one process: the sparse first layer against the dense
products it replaces, where the two cross over, and whole training runs against what
users would pick instead. Contenders alternate round by round; medians are reported.

    first-layer   MNIST batches (100 x 784 -> 50, float32, the real images): forward
                  x·W1 + b + ReLU, and dW1 + SGD, sparse kernels vs the dense BLAS ones:
                  one batch over and over, then an epoch's batches in turn (as in training);
                  the sparse kernels on W1 packed, as fit's SGD steps run them (and, for
                  comparison, on W1 as it lies); every contender called from compiled code,
                  as a training step calls it (repeat_forward, repeat_sgd, epoch_steps)
    crossover     the same two per step, an epoch's batches in turn, on random inputs at
                  densities 1%..60%: where sparse stops being faster
                  (fastbp.sparse.AUTO_DENSITY comes from here)
    recipe        the seed's ch05 recipe (784-50-10, SGD lr 0.1, batch 100, --epochs over
                  the shared MNIST images, train and test accuracy every epoch):
                  fastbp sparse, fastbp dense, the book's NumPy TwoLayerNet and
                  scikit-learn's MLPClassifier (same settings, epoch by epoch with
                  warm_start and score), then fastbp and scikit-learn without accuracy passes
    widths        the MNIST batch's forward and dW1+SGD on W1 packed (as fit's SGD steps run
                  them) at hidden widths 16 to 128, two threads and one, ns per nonzero
    alignment     the sparse kernels on the MNIST batch at hidden widths 50, 64, 128, 256,
                  W1 and dz starting on a cache line (as kernels/layout.py allocates them)
                  against 16 bytes off one
    convert       the 24,000 dense MNIST images (float32) to CSR, as fit converts dense
                  input: fastbp's two compiled passes (row_counts, dense_to_rows) against
                  scipy.sparse.csr_matrix
    passes        predict over the 24,000 MNIST rows (sparse first layer) on one of
                  numba's threads and on all of them (rows split in blocks: kernels/mlp.py)
    accuracy      the recipe's test accuracy over --seeds seeds, fastbp and scikit-learn,
                  without accuracy passes (not in the default set: ~1 minute per seed)
    text          bag-of-words rows (--text-rows x 20,000 at 0.5%, seeded), a 20000-50-2
                  network, one epoch sparse against fastbp's own dense path (dense timed
                  on the first 5,000 rows and scaled: the whole set dense is 8 GB)

    python -m bench.sparse [--rounds 5] [--epochs 42] [--text-rows 100000] [--seeds 5] [--only NAME ...]
"""
import argparse
import os
import platform
import statistics
import time
import warnings
from collections import namedtuple

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit

import fastbp
from fastbp.datasets import load_mnist
from fastbp.kernels import layout
from fastbp.kernels.codes import RELU
from fastbp.kernels.mlp import first_forward, first_weight_update
from fastbp.kernels.sparse import on_threads, pack_rows, sparse_affine_forward, sparse_tn_update
from fastbp.kernels.train import batch_input
from fastbp.sparse import as_sparse_rows, dense_to_rows, row_counts

from bench import numpy_baseline

# seconds between whole runs (here and in bench/sklearn_speed.py): OpenBLAS's threads spin for
# a while after each product (and numba's after each parallel region), and would take the
# cores of the next run's first epochs
PAUSE = 0.5
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "mnist")


def per_call_us(f, calls):
    start = time.perf_counter()
    for _ in range(calls):
        f()
    return 1e6 * (time.perf_counter() - start) / calls


# The first layer's contenders run as fit runs them: from compiled code, many calls per call
# from Python (fit: 50 steps per compiled call), through the same functions a training
# step calls (kernels/mlp.py: first_forward, first_weight_update take a Csr batch or a dense
# one). Called from Python, a Csr batch costs 2-4 us of numba's argument unboxing per call:
# more than a tenth of the sparse forward, which a training step never pays.
REPS = 200
STEP = 1e-30  # the SGD step's -lr: nonzero, or BLAS skips the product; W stays as it is


@njit
def repeat_forward(out, x, W, b, reps):
    """reps x first_forward: out (N, M) = relu(x·W + b), x a Csr batch or dense (N, D)."""
    for _ in range(reps):
        first_forward(out, x, W, b, RELU)


@njit
def repeat_sgd(W, x, dz, reps):
    """reps x W -= STEP·xᵀ·dz, as the SGD step updates W1 (W packed: nonzero by nonzero;
    W as it lies: grouped by column; dense x: in its BLAS product)."""
    for _ in range(reps):
        first_weight_update(W, x, dz, -STEP, 1.0)


@njit
def epoch_steps(out, xb, x, order, W, b, dz, batch):
    """Forward and SGD update of the first layer over x's rows in `order`, batch rows a step,
    as fit's steps take them: a Csr x's batch is a list of its rows, a dense x's is gathered
    into xb."""
    for k in range(0, order.shape[0] - batch + 1, batch):
        xk = batch_input(xb, x, order[k:k + batch])
        first_forward(out, xk, W, b, RELU)
        first_weight_update(W, xk, dz, -STEP, 1.0)


def per_rep(t):
    """{name: us per call} for contenders that each make REPS calls."""
    return {k: v / REPS for k, v in t.items()}


def interleaved(contenders, rounds, calls):
    """{name: median us per call}, each contender timed once per round, in turn."""
    times = {k: [] for k in contenders}
    for f in contenders.values():
        f()
    for _ in range(rounds):
        for k, f in contenders.items():
            times[k].append(per_call_us(f, calls))
    return {k: statistics.median(v) for k, v in times.items()}


MnistBatch = namedtuple("MnistBatch", "rows batch one two xb W Wp b dz out nnz")


def mnist_batch(x):
    """The first-layer benchmarks' batch: 100 seeded rows of x (N, 784) float32 as a Csr batch
    (its parts on threads: two; in turn: one) and gathered dense (xb), W1 (784 x 50) and its
    packed copy Wp, b1, a dz and an output (100 x 50), and the batch's nonzeros."""
    rng = np.random.default_rng(0)
    rows = rng.permutation(x.shape[0])[:100].astype(np.int64)
    xs = as_sparse_rows(sp.csr_matrix(x), x.shape[1], np.float32)
    batch = xs.take(rows, xs.max_batch_nnz(100), (100, 50))
    W = (rng.standard_normal((x.shape[1], 50)) * 0.05).astype(np.float32)
    dz = rng.standard_normal((100, 50)).astype(np.float32)
    return MnistBatch(rows, batch, on_threads(batch, False), on_threads(batch, True), np.ascontiguousarray(x[rows]),
                      W, packed(W), np.zeros(50, np.float32), dz, np.empty((100, 50), np.float32),
                      batch_nonzeros(batch, rows))


def first_layer(x, rounds):
    """Forward and dW1+SGD on a 100-row batch of x (N, 784) float32, the sparse kernels in
    their two parts on two threads and in turn on one: ({name: us}, batch nonzeros)."""
    m = mnist_batch(x)
    one, two, xb, W, Wp, b, dz, out = m.one, m.two, m.xb, m.W, m.Wp, m.b, m.dz, m.out
    t = apart({
        "forward sparse": lambda: repeat_forward(out, two, Wp, b, REPS),
        "forward sparse 1": lambda: repeat_forward(out, one, Wp, b, REPS),
        "forward unpacked": lambda: repeat_forward(out, two, W, b, REPS),
        "dW1+SGD sparse": lambda: repeat_sgd(Wp, two, dz, REPS),
        "dW1+SGD sparse 1": lambda: repeat_sgd(Wp, one, dz, REPS),
        "dW1+SGD unpacked": lambda: repeat_sgd(W, two, dz, REPS),
    }, {
        "forward dense": lambda: repeat_forward(out, xb, W, b, REPS),
        "dW1+SGD dense": lambda: repeat_sgd(W, xb, dz, REPS),
    }, rounds, 1)
    return per_rep(t), m.nnz


def batch_nonzeros(batch, rows):
    """The nonzeros in a Csr batch's rows."""
    return int((batch.indptr[rows + 1] - batch.indptr[rows]).sum())


def packed(W):
    """W's packed copy, as fit's SGD steps on sparse input use it (kernels/sparse.py: pack_rows)."""
    Wp = layout.zeros(W.shape[0] * -(-W.shape[1] // 16) * 16, np.float32).reshape(W.shape[0], -1)
    pack_rows(Wp, W)
    return Wp


def apart(numba_threads, blas_threads, rounds, calls):
    """interleaved() over each group on its own, a pause between: numba's threads spin for a
    while after each parallel region and OpenBLAS's after each threaded product, and
    alternating the two kinds call by call made each take the other's cores (both ran up
    to 2x slower than alone); a training run uses one kind, not both."""
    t = interleaved(numba_threads, rounds, calls)
    time.sleep(0.5)
    return {**t, **interleaved(blas_threads, rounds, calls)}


def epoch_first_layer(x, rounds, threads=(True, False)):
    """Per step, us: the first layer's forward and dW1+SGD over the batches of one epoch of
    x (N, 784) float32 in turn, as training meets them (epoch_steps): the sparse kernels read
    each batch's rows where they lie in the data set (their parts on two threads, and in turn
    on one), the dense path gathers them and runs the BLAS products.
    Returns {"sparse": us, "sparse 1": us, "dense": us} (without "sparse 1" if not asked)."""
    rng = np.random.default_rng(0)
    order = rng.permutation(x.shape[0]).astype(np.int64)
    steps = x.shape[0] // 100
    xs = as_sparse_rows(sp.csr_matrix(x), x.shape[1], np.float32)
    whole = xs.take(order, xs.max_batch_nnz(100), (100, 50))  # epoch_steps takes its rows 100 at a time
    W = (rng.standard_normal((x.shape[1], 50)) * 0.05).astype(np.float32)
    Wp = packed(W)
    b = np.zeros(50, np.float32)
    dz = rng.standard_normal((100, 50)).astype(np.float32)
    out = np.empty((100, 50), np.float32)
    xb = np.empty((100, x.shape[1]), np.float32)
    contenders = {("sparse" if on else "sparse 1"):
                  (lambda on=on: epoch_steps(out, xb, on_threads(whole, on), order, Wp, b, dz, 100)) for on in threads}
    t = apart(contenders, {"dense": lambda: epoch_steps(out, xb, x, order, W, b, dz, 100)}, rounds, 1)
    return {k: v / steps for k, v in t.items()}


def mnist_first_layer(x, rounds):
    t, nnz = first_layer(x, rounds)
    print(f"first layer, MNIST: density {np.count_nonzero(x) / x.size:.3f}, {nnz} nonzeros in the batch; "
          f"sparse: two parts on two threads (sparse 1: in turn on one)")
    print("  one batch, over and over (in cache):")
    for part in ("forward", "dW1+SGD"):
        s, s1, d = t[f"{part} sparse"], t[f"{part} sparse 1"], t[f"{part} dense"]
        print(f"    {part:8} sparse {s:7.1f} us  sparse 1 {s1:7.1f} us  dense {d:7.1f} us  "
              f"dense/sparse {d / s:5.2f}  dense/sparse 1 {d / s1:5.2f}")
    print(f"    (W1 unpacked, two threads: forward {t['forward unpacked']:.1f} us, "
          f"dW1+SGD {t['dW1+SGD unpacked']:.1f} us)")
    e = epoch_first_layer(x, rounds)
    print(f"  an epoch's {len(x) // 100} batches in turn, per step (dense includes gathering the batch):")
    print(f"    forward + dW1+SGD  sparse {e['sparse']:7.1f} us  sparse 1 {e['sparse 1']:7.1f} us  "
          f"dense {e['dense']:7.1f} us  dense/sparse {e['dense'] / e['sparse']:5.2f}  "
          f"dense/sparse 1 {e['dense'] / e['sparse 1']:5.2f}")


def crossover(rounds):
    rng = np.random.default_rng(1)
    print("crossover (random 6000 x 784 inputs, batch 100 -> 50; forward + dW1+SGD per step, "
          "an epoch's batches in turn):")
    for density in (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6):
        x = (rng.random((6000, 784)) * (rng.random((6000, 784)) < density)).astype(np.float32)
        t = epoch_first_layer(x, rounds, threads=(True,))
        s, d = t["sparse"], t["dense"]
        print(f"  density {density:4.2f}: sparse {s:7.1f} us  dense {d:7.1f} us  dense/sparse {d / s:5.2f}")


def _placed(shape, skip):
    # an (shape) float32 array starting `skip` bytes after a cache line
    a = layout.zeros(int(np.prod(shape)) + 16, np.float32)
    return a[skip // 4:skip // 4 + int(np.prod(shape))].reshape(shape)


def alignment(x, rounds):
    rng = np.random.default_rng(0)
    rows = rng.permutation(x.shape[0])[:100].astype(np.int64)
    xs = as_sparse_rows(sp.csr_matrix(x), x.shape[1], np.float32)
    batch = xs.take(rows, xs.max_batch_nnz(100), (100, 256))  # room for dz's aligned copy at every width
    print("alignment (MNIST batch of 100, sparse kernels; W1 and dz on a cache line or 16 bytes off):")
    for M in (50, 64, 128, 256):
        runs = {}
        for skip in (0, 16):
            W, dz = _placed((x.shape[1], M), skip), _placed((100, M), skip)
            W[...] = rng.standard_normal(W.shape) * 0.05
            dz[...] = rng.standard_normal(dz.shape)
            b, out = np.zeros(M, np.float32), _placed((100, M), skip)
            # the grouped update both ways (repeat_sgd would take the packed one where W's rows
            # are on cache lines); called from Python: the same unboxing cost on both sides
            runs[f"forward {skip}"] = lambda out=out, W=W, b=b: sparse_affine_forward(out, batch, W, b, RELU)
            runs[f"dW1+SGD {skip}"] = lambda W=W, dz=dz: sparse_tn_update(W, batch, dz, -STEP, 1.0)
        t = interleaved(runs, rounds, REPS)
        print(f"  width {M:3}: forward {t['forward 0']:6.1f} / {t['forward 16']:6.1f} us "
              f"(x{t['forward 16'] / t['forward 0']:.2f}),  dW1+SGD {t['dW1+SGD 0']:6.1f} / "
              f"{t['dW1+SGD 16']:6.1f} us (x{t['dW1+SGD 16'] / t['dW1+SGD 0']:.2f})  aligned / off")


def widths(x, rounds):
    rng = np.random.default_rng(0)
    rows = rng.permutation(x.shape[0])[:100].astype(np.int64)
    xs = as_sparse_rows(sp.csr_matrix(x), x.shape[1], np.float32)
    print("widths (MNIST batch of 100, W1 packed; two parts on two threads / in turn on one):")
    for M in (16, 32, 48, 50, 64, 100, 128):
        batch = xs.take(rows, xs.max_batch_nnz(100), (100, M))
        nnz = batch_nonzeros(batch, rows)
        two, one = on_threads(batch, True), on_threads(batch, False)
        Wp = packed((rng.standard_normal((x.shape[1], M)) * 0.05).astype(np.float32))
        b, out = np.zeros(M, np.float32), np.empty((100, M), np.float32)
        dz = rng.standard_normal((100, M)).astype(np.float32)
        t = per_rep(interleaved({"forward 2": lambda: repeat_forward(out, two, Wp, b, REPS),
                                 "forward 1": lambda: repeat_forward(out, one, Wp, b, REPS),
                                 "dW1+SGD 2": lambda: repeat_sgd(Wp, two, dz, REPS),
                                 "dW1+SGD 1": lambda: repeat_sgd(Wp, one, dz, REPS)}, rounds, 1))
        print(f"  width {M:3} (rows of {Wp.shape[1]}): forward {t['forward 2']:6.1f} / {t['forward 1']:6.1f} us, "
              f"dW1+SGD {t['dW1+SGD 2']:6.1f} / {t['dW1+SGD 1']:6.1f} us; one thread "
              f"{t['forward 1'] * 1e3 / nnz:.1f} / {t['dW1+SGD 1'] * 1e3 / nnz:.1f} ns per nonzero")


def passes(x, rounds):
    """predict over the whole set x (N, 784), sparse first layer, on one of numba's threads
    and on all of them."""
    net = fastbp.TwoLayerNet(784, 50, 10, seed=0, sparse=True)
    xs = net.as_input(x)
    threads = numba.get_num_threads()

    def on(n):
        numba.set_num_threads(n)
        try:
            net.predict(xs)
        finally:
            numba.set_num_threads(threads)
    t = interleaved({"one": lambda: on(1), "all": lambda: on(threads)}, rounds, 10)
    print(f"whole-set predict, {len(x)} MNIST rows: {t['one'] / 1e3:.2f} ms on 1 thread, "
          f"{t['all'] / 1e3:.2f} ms on {threads}  x{t['one'] / t['all']:.2f}")


def convert(x, rounds):
    """The dense images to CSR: fastbp's conversion against scipy's."""
    x = np.ascontiguousarray(x, np.float32)
    t = interleaved({"fastbp": lambda: dense_to_rows(x, row_counts(x)), "scipy": lambda: sp.csr_matrix(x)}, rounds, 5)
    print(f"dense -> CSR, {x.shape[0]} MNIST rows: fastbp {t['fastbp'] / 1e3:.2f} ms, scipy "
          f"{t['scipy'] / 1e3:.2f} ms  x{t['scipy'] / t['fastbp']:.1f}")


def fastbp_recipe(x, t, xt, tt, epochs, sparse, evals=True, seed=0):
    net = fastbp.TwoLayerNet(784, 50, 10, seed=seed, sparse=sparse)
    start = time.perf_counter()
    if evals:
        fastbp.fit(net, x, t, epochs=epochs, batch_size=100, lr=0.1, seed=seed, eval_data=(xt, tt), progress=False)
    else:  # no accuracy pass at all, as scikit-learn's fit without scores
        fastbp.fit(net, x, t, epochs=epochs, batch_size=100, lr=0.1, seed=seed, progress=False, train_accuracy=False)
    return time.perf_counter() - start, net.accuracy(xt, tt)


def accuracy(data, epochs, seeds):
    """The recipe's test accuracy over seeds 0..seeds-1 (the initial weights and the
    shuffles), fastbp against scikit-learn, both without accuracy passes: one run's
    difference is mostly the seed's (fastbp draws the book's N(0, 0.01²) weights,
    scikit-learn Glorot's uniform ones)."""
    (x, t), (xt, tt) = data
    acc = {"fastbp sparse": [], "scikit-learn": []}
    for seed in range(seeds):
        acc["fastbp sparse"].append(fastbp_recipe(x, t, xt, tt, epochs, True, False, seed)[1])
        acc["scikit-learn"].append(sklearn_recipe(x, t, xt, tt, epochs, False, seed)[1])
    print(f"test accuracy over seeds 0..{seeds - 1}, {epochs} epochs, no accuracy passes:")
    for k, v in acc.items():
        print(f"  {k:14} mean {np.mean(v):.4f}  sd {np.std(v, ddof=1) if seeds > 1 else 0:.4f}  "
              f"range {min(v):.4f}-{max(v):.4f}")
    print(f"  scikit-learn - fastbp: {100 * (np.mean(acc['scikit-learn']) - np.mean(acc['fastbp sparse'])):+.2f} points")


def sklearn_recipe(x, t, xt, tt, epochs, evals=True, seed=0):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(50,), solver="sgd", learning_rate_init=0.1, momentum=0.0,
                        nesterovs_momentum=False, batch_size=100, alpha=0.0, random_state=seed,
                        max_iter=1 if evals else epochs, warm_start=evals, shuffle=True, tol=0.0,
                        n_iter_no_change=10 ** 9)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if evals:
            for _ in range(epochs):
                clf.fit(x, t)
                clf.score(x, t), clf.score(xt, tt)
        else:
            clf.fit(x, t)
    return time.perf_counter() - start, clf.score(xt, tt)


def recipe(data, epochs, repeat):
    (x, t), (xt, tt) = data
    fastbp_recipe(x[:300], t[:300], xt[:10], tt[:10], 1, True)  # compile outside the clock
    fastbp_recipe(x[:300], t[:300], xt[:10], tt[:10], 1, False)
    runs = {"fastbp sparse": lambda: fastbp_recipe(x, t, xt, tt, epochs, True),
            "fastbp dense": lambda: fastbp_recipe(x, t, xt, tt, epochs, False),
            "numpy (book)": lambda: _numpy(x, t, xt, tt, epochs)}
    try:
        import sklearn  # noqa: F401
        runs["scikit-learn"] = lambda: sklearn_recipe(x, t, xt, tt, epochs)
        runs["fastbp sparse, no passes"] = lambda: fastbp_recipe(x, t, xt, tt, epochs, True, False)
        runs["scikit-learn, no scores"] = lambda: sklearn_recipe(x, t, xt, tt, epochs, False)
    except ImportError:
        print("  (scikit-learn is not installed: pip install scikit-learn)")
    res = {k: [] for k in runs}
    for _ in range(repeat):
        for k, f in runs.items():
            time.sleep(PAUSE)
            res[k].append(f())
    med = {k: statistics.median(s for s, _ in v) for k, v in res.items()}
    print(f"recipe: {len(x)} train / {len(xt)} test images, {epochs} epochs of {len(x) // 100} steps, "
          f"median of {repeat}")
    for k in runs:
        print(f"  {k:24} {med[k]:7.2f} s  test acc {res[k][-1][1]:.4f}  "
              f"x{med[k] / med['fastbp sparse' if ', no' not in k else 'fastbp sparse, no passes']:.2f} "
              f"the time of fastbp sparse")
    return med


def _numpy(x, t, xt, tt, epochs):
    start = time.perf_counter()
    _, accs = numpy_baseline.train(x, t, xt, tt, iters=epochs * (len(x) // 100), seed=0, report=None)
    return time.perf_counter() - start, accs[-1][1]


def text(rows):
    rng = np.random.default_rng(7)
    D, density = 20000, 0.005
    x = sp.random(rows, D, density=density, format="csr", dtype=np.float32, random_state=rng,
                  data_rvs=lambda n: rng.integers(1, 4, n).astype(np.float32))  # word counts 1-3
    signal = rng.standard_normal(D).astype(np.float32)
    t = (x @ signal > 0).astype(np.int64)
    def epoch(xi, ti, sparse):
        net = fastbp.Network([D, 50, 2], seed=0, sparse=sparse)
        fastbp.fit(net, xi[:200], ti[:200], batch_size=100)  # compile outside the clock
        start = time.perf_counter()
        h = fastbp.fit(net, xi, ti, epochs=1, batch_size=100, lr=0.1, seed=0, progress=False)
        return time.perf_counter() - start, h["train_acc"][-1]
    s, acc = epoch(x, t, True)
    part = 5000
    d, _ = epoch(x[:part].toarray(), t[:part], False)
    d_scaled = d * rows / part
    print(f"text: {rows} x {D} at {density:.1%} ({x.nnz} nonzeros), 20000-50-2, one epoch:")
    print(f"  sparse {s:7.2f} s (train acc {acc:.3f})  dense {d_scaled:7.2f} s (scaled from {part} rows: "
          f"{d:.2f} s)  dense/sparse {d_scaled / s:6.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--text-rows", type=int, default=100000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--data-dir", default=SHARED)
    ap.add_argument("--only", nargs="*",
                    default=["first-layer", "crossover", "widths", "alignment", "convert", "passes", "recipe",
                             "text"])
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"numpy {np.__version__}; {time.strftime('%Y-%m-%d')}")
    data = load_mnist(root=args.data_dir, download=False)
    if "first-layer" in args.only:
        mnist_first_layer(data[0][0], args.rounds)
    if "crossover" in args.only:
        crossover(args.rounds)
    if "widths" in args.only:
        widths(data[0][0], args.rounds)
    if "alignment" in args.only:
        alignment(data[0][0], args.rounds)
    if "convert" in args.only:
        convert(data[0][0], args.rounds)
    if "passes" in args.only:
        passes(data[0][0], args.rounds)
    if "recipe" in args.only:
        recipe(data, args.epochs, args.repeat)
    if "accuracy" in args.only:
        accuracy(data, args.epochs, args.seeds)
    if "text" in args.only:
        text(args.text_rows)


if __name__ == "__main__":
    main()
