"""The kernels' disk cache on a GPU (kernels/cuda/disk_cache.py): a process that finds every
kernel an earlier one built loads them all, compiles none, and computes the same numbers.
The simulator compiles nothing; the keys and files without a GPU: tests/test_cuda_compile.py."""
import json
import os
import subprocess
import sys

import pytest
from numba import config as numba_config

from cudatest import needs_device

pytestmark = [needs_device, pytest.mark.skipif(numba_config.ENABLE_CUDASIM, reason="the simulator compiles nothing")]

# a first gradient and an epoch of fit (the epoch kernel: a cooperative launch), float32 and
# float64; then the cache's counts over every kernel this process built
_RUN = """
import gc, hashlib, json, time
t0 = time.perf_counter()
import numpy as np
import fastbp
net = fastbp.Network([784, 50, 10], seed=0, device="cuda")
rng = np.random.default_rng(0)
x, t = rng.random((1000, 784), dtype=np.float32), rng.integers(0, 10, 1000)
g = net.gradient(x[:100], t[:100])
first = time.perf_counter() - t0
h = hashlib.sha256(b"".join(g[k].tobytes() for k in sorted(g)))
for dtype in ("float32", "float64"):
    net = fastbp.Network([784, 50, 10], seed=0, device="cuda", dtype=dtype)
    hist = fastbp.fit(net, x, t, epochs=1, batch_size=100, lr=0.1, seed=0, progress=False)
    h.update(np.asarray(hist["loss"]).tobytes() + net.params["W1"].tobytes())
from numba.cuda.dispatcher import CUDADispatcher
from fastbp.kernels.cuda.disk_cache import KernelCache
kernels = [d for d in gc.get_objects() if isinstance(d, CUDADispatcher) and isinstance(d._cache, KernelCache)]
print(json.dumps({"first_gradient_s": first, "numbers": h.hexdigest(), "kernels": len(kernels),
                  "hits": sum(sum(d._cache_hits.values()) for d in kernels),
                  "misses": sum(sum(d._cache_misses.values()) for d in kernels)}))
"""


def test_a_second_process_loads_every_kernel_and_computes_the_same(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _RUN], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["kernels"] >= 10 and cold["misses"] == cold["kernels"] and cold["hits"] == 0
    assert warm["kernels"] == cold["kernels"] and warm["misses"] == 0 and warm["hits"] == cold["kernels"]
    assert warm["numbers"] == cold["numbers"]
    files = [f for _, _, fs in os.walk(tmp_path / "cache") for f in fs]
    assert sum(f.endswith(".fbk") for f in files) == cold["kernels"] and not any(f.endswith(".tmp") for f in files)
    print(f"import to first gradient: cold {cold['first_gradient_s']:.2f} s, warm {warm['first_gradient_s']:.2f} s")
