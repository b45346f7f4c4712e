"""A hand-derived 2-2-2 network, trained three ways side by side.

The network: x (2,) -> sigmoid(x·w1) -> sigmoid(z1·w2) = y (2,), no biases, mean
squared error against t = (0.2, 0.1), plain gradient descent. The three ways:

  seed    the seed's eight per-weight chain-rule functions, ported line for line
  kernels fastbp.layers (Affine with zero bias, Sigmoid, MeanSquaredLoss) on the numba kernels
  graph   fastbp.graph: the same expression as gates, forward then reversed backward

with central differences as referee at the start. Read the seed's code closely and
it deviates from the true gradient: every weight1_* function combines the two
output paths with `loss2 = diff_loss2 + diff_sigmoid2 + diff_weight2` (a sum where
the chain rule multiplies), and weight1_01 uses hidden unit 0's sigmoid slope for a
weight that feeds unit 1. The w2 gradients are right. The referee table shows it,
and the seed's run then follows a different path to a similar end.

The seed does not print its x, w1, w2 or learning rate (they come from an earlier
post), so these are stated below; its targets (0.2, 0.1) follow from its output.

    python scripts/manual_backprop.py [--steps 1500] [--lr 2.0]
"""
import argparse

import numpy as np

from fastbp.graph import Graph
from fastbp.layers import Affine, MeanSquaredLoss, Sigmoid

X = np.array([0.3, 0.6])
T = np.array([0.2, 0.1])
W1 = np.array([[0.1, 0.2], [0.3, 0.4]])
W2 = np.array([[0.5, 0.6], [0.7, 0.8]])


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def mse(y, t):
    return ((y - t) ** 2).mean(axis=None)


def seed_step(x, t, w1, w2, lr):
    """One step of the hand-derived loop: its formulas as written, w1 then w2 updated in place."""
    z1 = sigmoid(np.dot(x, w1))
    y = sigmoid(np.dot(z1, w2))

    def w1_grad(i, j, a, b, sig_unit):
        # the seed's weight1_ij: output path `a` multiplied through, path `b` ADDED (its bug)
        loss1 = ((t[a] - y[a]) * -1) * (y[a] * (1 - y[a])) * w2[j][a]
        loss2 = ((t[b] - y[b]) * -1) + (y[b] * (1 - y[b])) + w2[j][b]
        return (loss1 + loss2) * (z1[sig_unit] * (1 - z1[sig_unit])) * x[i]

    def w2_grad(i, j):
        return ((t[j] - y[j]) * -1) * (y[j] * (1 - y[j])) * (z1[i] + 0)

    # (i, j, first output path, second, whose sigmoid slope): weight1_01 uses unit 0's
    plan = {(0, 0): (0, 1, 0), (0, 1): (1, 0, 0), (1, 0): (0, 1, 0), (1, 1): (1, 0, 1)}
    grads1 = {k: w1_grad(k[0], k[1], *v) for k, v in plan.items()}
    for (i, j), g in grads1.items():
        w1[i][j] = w1[i][j] - lr * g
    grads2 = {(i, j): w2_grad(i, j) for i in range(2) for j in range(2)}
    for (i, j), g in grads2.items():
        w2[i][j] = w2[i][j] - lr * g
    return y, mse(y, t), grads1, grads2


def kernels_step(x, t, w1, w2, lr):
    """fastbp.layers on the kernels: forward, loss, backward, then w -= lr * dw."""
    a1, s1 = Affine(w1, np.zeros(2)), Sigmoid()
    a2, s2 = Affine(w2, np.zeros(2)), Sigmoid()
    last = MeanSquaredLoss()
    y = s2.forward(a2.forward(s1.forward(a1.forward(x[None, :]))))
    loss = last.forward(y, t[None, :])
    a1.backward(s1.backward(a2.backward(s2.backward(last.backward()))))
    w1 -= lr * a1.dW
    w2 -= lr * a2.dW
    return y[0], loss, a1.dW.copy(), a2.dW.copy()


def graph_step(x, t, w1, w2, lr):
    """fastbp.graph: the expression as gates; mean of squares as a product with (1/2, 1/2)."""
    g = Graph()
    gx, gw1, gw2, gt = g.input(x, "x"), g.input(w1.copy(), "w1"), g.input(w2.copy(), "w2"), g.input(t, "t")
    y = g.sigmoid(g.sigmoid(gx @ gw1) @ gw2)
    d = y - gt
    loss = (d * d) @ np.full(2, 0.5)
    g.forward()
    g.backward(loss)
    w1 -= lr * gw1.grad
    w2 -= lr * gw2.grad
    return y.value, loss.value, gw1.grad, gw2.grad


def numerical(x, t, w1, w2, h=1e-6):
    grads = []
    for w in (w1, w2):
        gw = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            keep = w[idx]
            w[idx] = keep + h
            fp = mse(sigmoid(np.dot(sigmoid(np.dot(x, w1)), w2)), t)
            w[idx] = keep - h
            fm = mse(sigmoid(np.dot(sigmoid(np.dot(x, w1)), w2)), t)
            w[idx] = keep
            gw[idx] = (fp - fm) / (2 * h)
        grads.append(gw)
    return grads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=2.0)
    args = ap.parse_args()
    print(f"x = {X}, t = {T}, w1 = {W1.tolist()}, w2 = {W2.tolist()}, lr = {args.lr}\n")

    num1, num2 = numerical(X, T, W1.copy(), W2.copy())
    _, _, s1, s2 = seed_step(X, T, W1.copy(), W2.copy(), 0.0)
    _, _, k1, k2 = kernels_step(X, T, W1.copy(), W2.copy(), 0.0)
    _, _, g1, g2 = graph_step(X, T, W1.copy(), W2.copy(), 0.0)
    print("gradients at the start, against central differences (h = 1e-6):")
    print(f"{'weight':8} {'numerical':>12} {'seed':>12} {'kernels':>12} {'graph':>12}")
    for name, num, seed, ker, gra in (("w1", num1, s1, k1, g1), ("w2", num2, s2, k2, g2)):
        for i, j in np.ndindex(2, 2):
            sv = seed[(i, j)]
            mark = "  <- seed formula is wrong" if abs(sv - num[i, j]) > 1e-6 * max(1, abs(num[i, j])) else ""
            print(f"{name}[{i}][{j}] {num[i, j]:12.6f} {sv:12.6f} {ker[i, j]:12.6f} {gra[i, j]:12.6f}{mark}")

    print("\ntraining, printed every 100 steps as the seed does ([i] prediction, loss):")
    ways = {"seed": seed_step, "kernels": kernels_step, "graph": graph_step}
    weights = {k: (W1.copy(), W2.copy()) for k in ways}
    for i in range(args.steps):
        out = {k: f(X, T, *weights[k], args.lr)[:2] for k, f in ways.items()}
        if i % 100 == 0:
            print(f"[{i}]", "  ".join(f"{k}: {np.array2string(np.asarray(y), precision=8)} {loss:.6g}"
                                      for k, (y, loss) in out.items()))
    gap = max(np.abs(weights["kernels"][n] - weights["graph"][n]).max() for n in (0, 1))
    print(f"\nkernels and graph end {gap:.1e} apart; the seed's weights differ from them by "
          f"{max(np.abs(weights['seed'][n] - weights['graph'][n]).max() for n in (0, 1)):.3f}")


if __name__ == "__main__":
    main()
