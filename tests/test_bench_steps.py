"""The benchmark contenders do the same work: fastbp's timed step and the plain-NumPy step
start from the same weights and data and end at the same parameters."""
import numpy as np
import pytest

from bench import steps


@pytest.mark.parametrize("sizes,batch", [((784, 50, 10), 100), ((20, 16, 8, 4), 7)])
def test_fastbp_and_numpy_steps_agree(sizes, batch, monkeypatch):
    nets = []
    real_network = steps.fastbp.Network
    monkeypatch.setattr(steps.fastbp, "Network", lambda *a, **k: nets.append(real_network(*a, **k)) or nets[-1])
    fast = steps.make_fastbp(sizes, batch)  # one warm-up call: steps_per_call SGD steps
    slow = steps.make_numpy(sizes, batch)  # one warm-up step
    for _ in range(fast.steps_per_call - 1):
        slow()
    # make_numpy keeps its weights in the step's closure: [W1, W2, ...]
    (numpy_Ws,) = [c.cell_contents for c in slow.__closure__
                   if isinstance(c.cell_contents, list) and c.cell_contents[0].ndim == 2]
    assert not np.array_equal(nets[0].params["W1"], real_network(sizes, seed=0).params["W1"])  # it trained
    for i, W in enumerate(numpy_Ws):
        np.testing.assert_allclose(nets[0].params[f"W{i + 1}"], W, rtol=1e-4, atol=1e-5)


def test_matmul_flops():
    assert steps.matmul_flops((784, 50, 10), 100) == 2 * 100 * (784 * 50 + 50 * 10) * 2 + 2 * 100 * 50 * 10


def test_sparse_bounds_bare_loops_do_the_work_they_time():
    # the floors bench/sparse_bounds.py prints are of loops that load, multiply and store
    # what the kernels do per nonzero: each checked against NumPy (odd count: the second
    # accumulator set skips the last nonzero, as written)
    from bench import sparse_bounds as sb
    rng = np.random.default_rng(0)
    W = rng.standard_normal((7, 64)).astype(np.float32)
    cols = rng.integers(0, 7, 9)
    vals = rng.standard_normal(9).astype(np.float32)
    out = np.zeros(16, np.float32)
    sb.load_fma(W, cols, vals, out, 1)
    want = (vals[:8, None] * W[cols[:8]]).sum(axis=0).reshape(4, 16).sum(axis=0)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    d = rng.standard_normal(64).astype(np.float32)
    got = W.copy()
    sb.load_fma_store(got, cols, vals, d, 2)
    want = W.copy()
    for _ in range(2):
        for j, v in zip(cols, vals):
            want[j] += v * d
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    got = W.copy()
    sb.stores(got, cols, d, 1)
    want = W.copy()
    want[np.unique(cols)] = d
    np.testing.assert_array_equal(got, want)
