"""Cold and warm start: `import fastbp` to the first gradient of a 784-50-10 network, then
what a first `fit` compiles on top: fastbp.compiling.compile_for, every kernel fit and its
optimizers use, for dense input and then for sparse input (what `sparse="auto"` takes for
MNIST); fit runs it before its first step ("fastbp: compiling kernels (first run only)").

Cold: a fresh, empty numba cache (NUMBA_CACHE_DIR points at a new temporary
folder), so every kernel is compiled. Warm: the same cache again, so the machine
code is loaded from disk. Each start is its own Python process.

    python -m bench.compile_time [--repeat 3] [--dtype float32]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import time
t0 = time.perf_counter()
import numpy as np
import fastbp
t1 = time.perf_counter()
net = fastbp.Network([784, 50, 10], dtype=DTYPE, seed=0)
x = np.random.default_rng(0).random((100, 784), dtype=np.float32)
t = np.arange(100) % 10
net.gradient(x, t)
t2 = time.perf_counter()
from fastbp.compiling import compile_for
compile_for(DTYPE)
t3 = time.perf_counter()
compile_for(DTYPE, sparse=True)
t4 = time.perf_counter()
print(t1 - t0, t2 - t0, t3 - t2, t4 - t3)
"""


def start(cache_dir, dtype):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD.replace("DTYPE", repr(dtype))], env=env,
                         capture_output=True, text=True, check=True).stdout
    return [float(v) for v in out.split()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    cold, warm = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(start(cache, args.dtype))
            warm.append(start(cache, args.dtype))
    for name, runs in (("cold (empty cache)", cold), ("warm (cached)", warm)):
        imp, first, dense, sparse = (statistics.median(r[k] for r in runs) for k in range(4))
        print(f"{name:20} import fastbp {imp:5.2f} s   import + first gradient {first:5.2f} s   then fit's "
              f"kernels: dense input {dense:5.2f} s, sparse input {sparse:5.2f} s   (median of {args.repeat}, "
              f"{args.dtype})")


if __name__ == "__main__":
    main()
