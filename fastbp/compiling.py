"""Compiling the CPU kernels before training, one process at a time.

numba caches machine code on disk (cache=True); the first run on a machine compiles
(seconds), later ones load. compile_lock keeps first compiles of concurrent processes
one at a time; ensure_compiled does it once per process and says so when it is slow.
"""
import contextlib
import os
import sys
import threading

import numpy as np

from fastbp.kernels.codes import OPTIMIZERS

@contextlib.contextmanager
def compile_lock():
    """An exclusive lock across processes (fcntl; a no-op where there is none) held while
    kernels compile. numba writes each cache file atomically, but two processes filling a
    cold cache at once can both number a new signature's file alike; the lock keeps
    first compiles one at a time, the cache consistent."""
    try:
        import fcntl
    except ImportError:  # Windows: numba's own atomic writes are all there is
        yield
        return
    from fastbp import kernels
    from fastbp.datasets import cache_dir
    # beside the cache numba uses: NUMBA_CACHE_DIR, else kernels/__pycache__, else the user's
    candidates = [os.environ.get("NUMBA_CACHE_DIR"),
                  os.path.join(os.path.dirname(os.path.abspath(kernels.__file__)), "__pycache__"),
                  cache_dir()]
    f = None
    for folder in filter(None, candidates):
        try:
            os.makedirs(folder, exist_ok=True)
            f = open(os.path.join(folder, "fastbp-compile.lock"), "a")
            break
        except OSError:
            continue
    if f is None:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_COMPILED = set()  # (dtype, sparse) pairs whose CPU kernels this process has compiled or loaded


def compile_for(dtype, activation="relu", sparse=False):
    """Compile (or load from cache) every kernel fit uses for this dtype, and dense or sparse
    input, under compile_lock. The activation is a runtime code: one compile serves both."""
    from fastbp.network import Network
    from fastbp.training import fit
    dtype = np.dtype(dtype)
    with compile_lock():
        _COMPILED.add((dtype, sparse))  # before the small fits below, which would come back here
        net = Network([2, 2, 2], activation=activation, dtype=dtype, seed=0, sparse=sparse)
        x = np.eye(2, dtype=net.dtype)
        t = np.zeros(2, np.int64)
        for opt in OPTIMIZERS:
            fit(net, x, t, iters=1, batch_size=2, optimizer=opt, seed=0, eval_data=(x, t),
                progress=False)
        net.loss(x, t)


def ensure_compiled(dtype, announce=True, sparse=False):
    """compile_for once per process; when `announce`, say so if it takes more than a second
    (a cold cache: seconds) and stay quiet when the kernels load from numba's cache."""
    if (np.dtype(dtype), sparse) in _COMPILED:
        return
    timer = None
    if announce:
        timer = threading.Timer(1.0, lambda: print("fastbp: compiling kernels (first run only) ...",
                                                   file=sys.stderr, flush=True))
        timer.daemon = True
        timer.start()
    try:
        compile_for(dtype, sparse=sparse)
    finally:
        if timer is not None:
            timer.cancel()
