"""Every cached kernel is compiled once per signature of array and scalar types, not once per
constant its callers pass: numba types a constant argument (True, 0, 1) by its value, and a
kernel called with one from compiled code got a compile of its own for each such value
(kernels/config.py). After the paths a user meets (fit dense and sparse with each optimizer,
a wide network on threads, the estimators' solvers, gradient), no kernel's on-disk cache
index holds a signature with a literal type. (The index, not the dispatcher: a caller loaded
from the cache brings its callees' code along without typing them in this process. In make
test the index also holds what the other tests' processes compiled.)"""
import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp
from numba.core.registry import CPUDispatcher

import fastbp
from fastbp.kernels import affine, matmul, mlp, optimizers, sk_solvers, sparse, train


def _dispatchers():
    for module in (affine, matmul, mlp, optimizers, sk_solvers, sparse, train):
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher):
                yield f"{module.__name__}.{name}", obj


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # max_iter=1 on purpose
def test_no_kernel_is_compiled_for_a_constant():
    rng = np.random.default_rng(0)
    x = (rng.random((240, 40)) * (rng.random((240, 40)) < 0.2)).astype(np.float32)
    t = rng.integers(0, 3, 240)
    for sparse_input in (False, True):
        for opt in ("sgd", "adam"):
            net = fastbp.Network([40, 300, 260, 3], seed=0, sparse=sparse_input)  # later products past BLAS_ONE_THREAD
            fastbp.fit(net, x, t, epochs=1, batch_size=120, optimizer=opt, seed=0, eval_data=(x, t))
            net.gradient(x[:7], t[:7])
    if importlib.util.find_spec("sklearn") is not None:  # the estimators' solver steps too
        for solver in ("sgd", "adam"):
            fastbp.MLPClassifier(hidden_layer_sizes=(300, 260), solver=solver, max_iter=1).fit(sp.csr_matrix(x), t)
    seen = dict(_dispatchers())
    assert {"fastbp.kernels.matmul.gemm_split", "fastbp.kernels.mlp._backprop", "fastbp.kernels.optimizers._step_part",
            "fastbp.kernels.sk_solvers._solver_range"} <= set(seen)
    cached = {name: [key[0] for key in d._cache._cache_file._load_index()]  # numba's cache index: {(sig, ...): ...}
              for name, d in seen.items() if hasattr(d._cache, "_cache_file")}
    assert cached["fastbp.kernels.mlp._backprop"] and cached["fastbp.kernels.matmul.gemm_split"]  # it saw them
    literal = {name: [str(sig) for sig in sigs if "Literal" in str(sig)] for name, sigs in cached.items()}
    assert {k: v for k, v in literal.items() if v} == {}
