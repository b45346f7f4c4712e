"""fastbp.graph: the seeds' and CS231n's worked examples, random graphs against central
differences, arrays with broadcasting, and the error cases."""
import math
import shutil

import numpy as np
import pytest

from fastbp.graph import Graph
from fastbp.layers import Affine, MulLayer, SoftmaxWithLoss


def test_cs231n_add_multiply_circuit():
    # CS231n lecture 4: f = (x + y) z at x = -2, y = 5, z = -4
    g = Graph()
    x, y, z = g.input(-2, "x"), g.input(5, "y"), g.input(-4, "z")
    q = x + y
    f = q * z
    assert g.forward() == -12 and q.value == 3
    g.backward(f)
    assert (x.grad, y.grad, z.grad, q.grad, f.grad) == (-4, -4, 3, -4, 1)


@pytest.mark.parametrize("gated", [False, True])
def test_cs231n_sigmoid_neuron(gated):
    # f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))), w = [2, -3, -3], x = [-1, -2]
    g = Graph()
    w0, w1, w2 = g.input(2.0, "w0"), g.input(-3.0, "w1"), g.input(-3.0, "w2")
    x0, x1 = g.input(-1.0, "x0"), g.input(-2.0, "x1")
    dot = w0 * x0 + w1 * x1 + w2
    f = g.sigmoid(dot) if gated else 1 / (1 + g.exp(-dot))
    g.forward()
    assert f.value == pytest.approx(0.7310585786300049, rel=1e-15)  # sigmoid(1)
    g.backward(f)
    s = 1 / (1 + math.exp(-1))
    local = s * (1 - s)  # 0.19661...: the notes' dw = [-0.20, -0.39, 0.20], dx = [0.39, -0.59]
    for node, want in ((w0, -1 * local), (w1, -2 * local), (w2, local), (x0, 2 * local),
                       (x1, -3 * local)):
        assert node.grad == pytest.approx(want, rel=1e-12)
    assert [round(v.grad, 2) for v in (w0, w1, w2, x0, x1)] == [-0.2, -0.39, 0.2, 0.39, -0.59]


def test_seed_buy_apple_and_orange():
    g = Graph()
    apple, apple_num = g.input(100, "apple"), g.input(2, "apple_num")
    orange, orange_num = g.input(150, "orange"), g.input(3, "orange_num")
    tax = g.input(1.1, "tax")
    price = (apple * apple_num + orange * orange_num) * tax
    g.forward()
    g.backward(price)
    # the book's apple-orange example prints 715.0000000000001, 2.2, 110, 3.3000000000000003, 165, 650
    assert repr(price.value) == "715.0000000000001"
    assert (apple.grad, int(apple_num.grad), repr(orange.grad), int(orange_num.grad), tax.grad) == \
        (2.2, 110, "3.3000000000000003", 165, 650)


def test_seed_buy_apple_with_layers_as_gates():
    g = Graph()
    apple, num, tax = g.input(100, "apple"), g.input(2, "apple_num"), g.input(1.1, "tax")
    price = g.apply(MulLayer(), g.apply(MulLayer(), apple, num), tax)
    g.forward()
    g.backward(price)
    assert repr(price.value) == "220.00000000000003"
    assert (apple.grad, num.grad, tax.grad) == (2.2, 110.00000000000001, 200)


def test_backward_twice_gives_same_grads_and_reuse_sums():
    g = Graph()
    x = g.input(3.0, "x")
    f = x * x + x  # x used three times: df/dx = 2x + 1 = 7
    g.forward()
    g.backward(f)
    assert x.grad == 7
    g.backward(f)
    assert x.grad == 7  # not 14: every backward starts from zero
    x.value = -1.0
    g.forward()
    g.backward(f)
    assert (f.value, x.grad) == (0.0, -1.0)


def random_graph(rng, n_leaves=4, n_ops=8):
    g = Graph()
    nodes = [g.input(float(rng.uniform(0.5, 2.0) * rng.choice([-1, 1])), f"v{i}") for i in range(n_leaves)]
    for _ in range(n_ops):
        a, b = (nodes[i] for i in rng.integers(0, len(nodes), 2))
        op = rng.integers(0, 9)
        if op == 0:
            n = a + b
        elif op == 1:
            n = a - b
        elif op == 2:
            n = a * b
        elif op == 3:
            n = a / (g.exp(b) + 1.0)  # a denominator safely away from zero
        elif op == 4:
            n = g.exp(g.sigmoid(a))
        elif op == 5:
            n = g.log(1.0 + g.exp(a))
        elif op == 6:
            n = g.max(a, b * 0.5 + 0.3)
        elif op == 7:
            n = g.relu(a + 0.1) * b
        else:
            n = -a + 2 * b
        nodes.append(n)
    return g, nodes[:n_leaves], nodes[-1]


@pytest.mark.parametrize("seed", range(25))
def test_random_graphs_match_central_differences(seed):
    rng = np.random.default_rng(seed)
    g, leaves, out = random_graph(rng)
    g.forward()
    g.backward(out)
    h = 1e-6
    for leaf in leaves:
        keep = leaf.value
        leaf.value = keep + h
        fp = g.forward()
        leaf.value = keep - h
        fm = g.forward()
        leaf.value = keep
        num = (fp - fm) / (2 * h)
        assert leaf.grad == pytest.approx(num, rel=1e-5, abs=1e-6), (seed, leaf.name)
    g.forward()


def test_arrays_matmul_broadcast_and_layers(rng):
    g = Graph()
    X = g.input(rng.standard_normal((4, 3)), "X")
    W = g.input(rng.standard_normal((3, 5)), "W")
    b = g.input(rng.standard_normal(5), "b")
    c = g.input(0.5, "c")
    h = g.relu(X @ W + b) * c  # b and c broadcast
    out = g.sigmoid(h)
    g.forward()
    g.backward(out)  # d sum(out) / d ...
    assert b.grad.shape == (5,) and isinstance(c.grad, float) and W.grad.shape == (3, 5)
    eps = 1e-6
    for leaf in (X, W, b):
        flat = leaf.value.reshape(-1)
        for i in range(0, flat.size, 3):
            keep = flat[i]
            flat[i] = keep + eps
            fp = g.forward().sum()
            flat[i] = keep - eps
            fm = g.forward().sum()
            flat[i] = keep
            assert leaf.grad.reshape(-1)[i] == pytest.approx((fp - fm) / (2 * eps), rel=1e-5, abs=1e-7)

    # fastbp layers as gates: Affine and SoftmaxWithLoss
    g2 = Graph()
    x = g2.input(rng.standard_normal((3, 4)), "x")
    t = g2.input(np.array([0, 2, 1]), "t")
    W2, b2 = rng.standard_normal((4, 3)), np.zeros(3)
    affine = Affine(W2, b2)
    loss = g2.apply(SoftmaxWithLoss(), g2.apply(affine, x), t)
    g2.forward()
    g2.backward(loss)
    p = np.exp(x.value @ W2)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(3), [0, 2, 1]] -= 1
    np.testing.assert_allclose(x.grad, (p / 3) @ W2.T, rtol=1e-12)
    np.testing.assert_allclose(affine.dW, x.value.T @ (p / 3), rtol=1e-12)
    assert (t.grad == 0).all()


def test_errors():
    g, other = Graph(), Graph()
    a = g.input(1.0)
    with pytest.raises(ValueError, match="another graph"):
        _ = a + other.input(2.0)
    with pytest.raises(TypeError, match="number or a NumPy array"):
        g.input("3")
    with pytest.raises(TypeError, match="must be numeric"):
        g.input(np.array(["a"]))
    b = a * 2
    with pytest.raises(RuntimeError, match="forward"):
        g.backward(b)
    with pytest.raises(ValueError, match="node of this graph"):
        g.backward(other.input(1.0))
    c = b + 1
    b.inputs = (c, b.inputs[1])  # tamper: b now depends on c, which depends on b
    with pytest.raises(ValueError, match="cycle"):
        g.forward()
    g3 = Graph()
    with pytest.raises(ValueError, match="log gate: input must be positive"):
        g3.log(g3.input(-1.0))
        g3.forward()
    with pytest.raises(TypeError, match="forward and backward"):
        g3.apply(object(), g3.input(1.0))


def test_to_dot_and_draw(tmp_path):
    g = Graph()
    x, y, z = g.input(-2, "x"), g.input(5, "y"), g.input(-4, "z")
    f = (x + y) * z
    g.forward()
    g.backward(f)
    dot = g.to_dot()
    assert dot.startswith("digraph") and 'label="x"' in dot and 'label="+"' in dot
    assert '<-2<br/><font color="red">-4</font>>' in dot  # x's value over the edge, its gradient under
    assert '<-12<br/><font color="red">1</font>>' in dot   # the output edge
    if shutil.which("dot") is None:
        with pytest.raises(RuntimeError, match="apt-get install graphviz"):
            g.draw(tmp_path / "g.png")
        return
    g.draw(tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
