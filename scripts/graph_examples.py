"""The seeds' computational graphs built with fastbp.graph: printed and drawn.

buy_apple and buy_apple_orange (the book's figures 5-17 and 5-15), and CS231n's
circuits: f = (x + y) z and the 2-d sigmoid neuron. Each graph's values and
gradients are printed and drawn to OUT/<name>.png (forward values over the
edges, gradients in red under them); drawing needs Graphviz (apt-get install
graphviz), printing does not.

    python scripts/graph_examples.py [--out runs/graphs]
"""
import argparse
import os
import shutil

from fastbp.graph import Graph


def buy_apple():
    g = Graph()
    apple, apple_num, tax = g.input(100, "apple"), g.input(2, "apple_num"), g.input(1.1, "tax")
    return g, apple * apple_num * tax, [apple, apple_num, tax]


def buy_apple_orange():
    g = Graph()
    apple, apple_num = g.input(100, "apple"), g.input(2, "apple_num")
    orange, orange_num = g.input(150, "orange"), g.input(3, "orange_num")
    tax = g.input(1.1, "tax")
    return g, (apple * apple_num + orange * orange_num) * tax, [apple, apple_num, orange, orange_num, tax]


def add_multiply():
    g = Graph()
    x, y, z = g.input(-2, "x"), g.input(5, "y"), g.input(-4, "z")
    return g, (x + y) * z, [x, y, z]


def sigmoid_neuron():
    g = Graph()
    w0, w1, w2 = g.input(2, "w0"), g.input(-3, "w1"), g.input(-3, "w2")
    x0, x1 = g.input(-1, "x0"), g.input(-2, "x1")
    return g, 1 / (1 + g.exp(-(w0 * x0 + w1 * x1 + w2))), [w0, w1, w2, x0, x1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "graphs"))
    args = ap.parse_args()
    can_draw = shutil.which("dot") is not None
    if can_draw:
        os.makedirs(args.out, exist_ok=True)
    for build in (buy_apple, buy_apple_orange, add_multiply, sigmoid_neuron):
        g, out, leaves = build()
        g.forward()
        g.backward(out)
        print(f"{build.__name__}: {out.value!r}")
        print("  " + ", ".join(f"d{n.name} = {n.grad!r}" for n in leaves))
        if can_draw:
            g.draw(os.path.join(args.out, f"{build.__name__}.png"))
    print(f"drawn to {args.out}/" if can_draw else "Graphviz's dot not found: apt-get install graphviz to draw")


if __name__ == "__main__":
    main()
