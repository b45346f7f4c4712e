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
