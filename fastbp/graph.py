"""Computational graphs as the seeds draw them: gates, forward in topological order,
backward in reverse, each gate using only its own inputs and the upstream gradient.

    g = Graph()
    x, y, z = g.input(-2.0, "x"), g.input(5.0, "y"), g.input(-4.0, "z")
    f = (x + y) * z            # builds nodes; nothing is computed yet
    g.forward()                # f.value == -12
    g.backward(f)              # x.grad == -4, y.grad == -4, z.grad == 3

Values are Python floats or NumPy arrays (broadcasting is undone in backward by
summing over the broadcast axes). g.apply(layer, *nodes) uses any fastbp.layers
layer (Affine, Relu, SoftmaxWithLoss, ...) as a gate. g.to_dot() / g.draw(path)
give the graph with forward values over each edge and gradients under it.
"""
import math
import numbers
import shutil
import subprocess

import numpy as np

from fastbp import layers


def _unbroadcast(grad, value):
    """Sum grad over the axes numpy broadcast `value` along, so it has value's shape."""
    if np.ndim(grad) == 0 or np.shape(grad) == np.shape(value):
        return grad
    grad = np.asarray(grad)
    shape = np.shape(value)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad.item() if shape == () else grad


class _Gate:
    """A local computation: forward(*inputs) keeps what backward needs; backward(dout) -> input grads."""
    symbol = "?"

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError


class _Add(_Gate):
    symbol = "+"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a + b

    def backward(self, d):
        return _unbroadcast(d, self.a), _unbroadcast(d, self.b)


class _Sub(_Gate):
    symbol = "-"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a - b

    def backward(self, d):
        return _unbroadcast(d, self.a), _unbroadcast(-d, self.b)


class _Mul(_Gate):
    symbol = "×"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, d):  # the swap rule: each input gets dout times the other input
        return _unbroadcast(d * self.b, self.a), _unbroadcast(d * self.a, self.b)


class _Div(_Gate):
    symbol = "÷"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, d):
        return _unbroadcast(d / self.b, self.a), _unbroadcast(-d * self.a / (self.b * self.b), self.b)


class _Neg(_Gate):
    symbol = "−"

    def forward(self, a):
        return -a

    def backward(self, d):
        return (-d,)


class _MatMul(_Gate):
    symbol = "@"

    def forward(self, a, b):
        self.a, self.b = np.asarray(a), np.asarray(b)
        return self.a @ self.b

    def backward(self, d):
        a, b, d = self.a, self.b, np.asarray(d)
        a2 = a if a.ndim == 2 else a[None, :]
        b2 = b if b.ndim == 2 else b[:, None]
        d2 = d.reshape(a2.shape[0], b2.shape[1])
        return (d2 @ b2.T).reshape(a.shape), (a2.T @ d2).reshape(b.shape)


class _Exp(_Gate):
    symbol = "exp"

    def forward(self, a):
        self.out = np.exp(a) if isinstance(a, np.ndarray) else math.exp(a)
        return self.out

    def backward(self, d):
        return (d * self.out,)


class _Log(_Gate):
    symbol = "log"

    def forward(self, a):
        if np.any(np.asarray(a) <= 0):
            raise ValueError("log gate: input must be positive")
        self.a = a
        return np.log(a) if isinstance(a, np.ndarray) else math.log(a)

    def backward(self, d):
        return (d / self.a,)


class _Max(_Gate):
    symbol = "max"

    def forward(self, a, b):
        self.a, self.b = a, b
        self.a_wins = np.asarray(a) >= np.asarray(b)  # ties route the gradient to the first input
        out = np.maximum(a, b)
        return out.item() if np.ndim(out) == 0 else out

    def backward(self, d):  # the router: the gradient goes to the input that was larger
        da = np.where(self.a_wins, d, 0.0)
        db = np.where(self.a_wins, 0.0, d)
        return _unbroadcast(da.item() if da.ndim == 0 else da, self.a), \
            _unbroadcast(db.item() if db.ndim == 0 else db, self.b)


class _Layer(_Gate):
    """Any fastbp.layers layer as a gate: its forward(*inputs) and backward(dout)."""

    def __init__(self, layer):
        self.layer = layer
        self.symbol = type(layer).__name__

    def forward(self, *xs):
        return self.layer.forward(*xs)

    def backward(self, d):
        grads = self.layer.backward(d)
        return grads if isinstance(grads, tuple) else (grads,)  # e.g. labels t get no gradient


class Node:
    """A value in the graph: a leaf (input) or the output of one gate."""

    def __init__(self, graph, gate, inputs, value=None, name=None):
        self.graph, self.gate, self.inputs, self.name = graph, gate, tuple(inputs), name
        self.value = value
        self.grad = None

    def __repr__(self):
        kind = "input" if self.gate is None else self.gate.symbol
        return f"Node({self.name or kind}, value={_fmt(self.value)}, grad={_fmt(self.grad)})"

    def _other(self, other):
        return self.graph._node(other)

    def __add__(self, o): return self.graph._op(_Add(), self, self._other(o))
    def __radd__(self, o): return self.graph._op(_Add(), self._other(o), self)
    def __sub__(self, o): return self.graph._op(_Sub(), self, self._other(o))
    def __rsub__(self, o): return self.graph._op(_Sub(), self._other(o), self)
    def __mul__(self, o): return self.graph._op(_Mul(), self, self._other(o))
    def __rmul__(self, o): return self.graph._op(_Mul(), self._other(o), self)
    def __truediv__(self, o): return self.graph._op(_Div(), self, self._other(o))
    def __rtruediv__(self, o): return self.graph._op(_Div(), self._other(o), self)
    def __matmul__(self, o): return self.graph._op(_MatMul(), self, self._other(o))
    def __rmatmul__(self, o): return self.graph._op(_MatMul(), self._other(o), self)
    def __neg__(self): return self.graph._op(_Neg(), self)


def _check_value(value, name):
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.ndarray)):
        raise TypeError(f"{name}: a graph value must be a number or a NumPy array, got {type(value).__name__}")
    if isinstance(value, np.ndarray) and value.dtype.kind not in "iuf":
        raise TypeError(f"{name}: array values must be numeric, got dtype {value.dtype}")
    return float(value) if isinstance(value, numbers.Real) else value


class Graph:
    """Records gates as nodes are combined; forward() and backward(out) run them."""

    def __init__(self):
        self.nodes = []

    def input(self, value, name=None):
        """A leaf holding `value` (a number or an array); set node.value to change it later."""
        node = Node(self, None, (), _check_value(value, name or "input"), name)
        self.nodes.append(node)
        return node

    def _node(self, x):
        if isinstance(x, Node):
            if x.graph is not self:
                raise ValueError(f"{x!r} belongs to another graph; build each computation in one Graph")
            return x
        return self.input(_check_value(x, "constant"), name=None)

    def _op(self, gate, *inputs):
        inputs = [self._node(x) for x in inputs]
        node = Node(self, gate, inputs)
        self.nodes.append(node)
        return node

    def exp(self, a):
        return self._op(_Exp(), a)

    def log(self, a):
        return self._op(_Log(), a)

    def max(self, a, b):
        return self._op(_Max(), a, b)

    def sigmoid(self, a):
        return self._op(_Layer(layers.Sigmoid()), a)

    def relu(self, a):
        return self._op(_Layer(layers.Relu()), a)

    def apply(self, layer, *nodes):
        """Use a layer object with forward(*inputs)/backward(dout) (fastbp.layers) as a gate."""
        if not (hasattr(layer, "forward") and hasattr(layer, "backward")):
            raise TypeError(f"apply needs a layer with forward and backward, got {type(layer).__name__}")
        return self._op(_Layer(layer), *nodes)

    def topological_order(self):
        """Every node after all of its inputs; a cycle or a foreign node is a ValueError."""
        order, state = [], {}  # id -> 1 visiting, 2 done
        for root in self.nodes:
            stack = [(root, iter(root.inputs))]
            if state.get(id(root)) == 2:
                continue
            state[id(root)] = 1
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
                    continue
                if child.graph is not self:
                    raise ValueError(f"{child!r} belongs to another graph")
                s = state.get(id(child))
                if s == 1:
                    raise ValueError(f"the graph has a cycle through {child!r}")
                if s is None:
                    state[id(child)] = 1
                    stack.append((child, iter(child.inputs)))
        return order

    def forward(self):
        """Run every gate in topological order; each sees only its inputs' values."""
        for node in self.topological_order():
            if node.gate is not None:
                node.value = node.gate.forward(*(x.value for x in node.inputs))
        return self.nodes[-1].value if self.nodes else None

    def backward(self, out):
        """d out / d node for every node: seed d out/d out = 1, run the gates in reverse.

        Gradients start from zero on every call; a node used twice sums its contributions.
        """
        if not isinstance(out, Node) or out.graph is not self:
            raise ValueError("backward(out) needs a node of this graph")
        order = self.topological_order()
        if any(n.value is None for n in order):
            raise RuntimeError("run forward() before backward()")
        for n in order:
            n.grad = np.zeros_like(n.value, dtype=float) if isinstance(n.value, np.ndarray) else 0.0
        out.grad = np.ones_like(out.value, dtype=float) if isinstance(out.value, np.ndarray) else 1.0
        for node in reversed(order):
            if node.gate is None:
                continue
            for x, g in zip(node.inputs, node.gate.backward(node.grad)):
                x.grad = x.grad + g
        return out.grad

    # -- pictures
    def to_dot(self):
        """Graphviz DOT: inputs as boxes, gates as circles, values over edges, gradients (red) under."""
        ids = {id(n): f"n{i}" for i, n in enumerate(self.nodes)}
        lines = ["digraph fastbp {", "  rankdir=LR;", '  node [fontname="Helvetica"];',
                 '  edge [fontname="Helvetica", fontsize=11];']
        consumers = {}
        for n in self.nodes:
            for x in n.inputs:
                consumers.setdefault(id(x), []).append(n)
        for n in self.nodes:
            if n.gate is None:
                label = n.name if n.name else _fmt(n.value)
                lines.append(f'  {ids[id(n)]} [shape=box, label="{_esc(label)}"];')
            else:
                lines.append(f'  {ids[id(n)]} [shape=circle, label="{_esc(n.gate.symbol)}"];')
        for n in self.nodes:
            for x in n.inputs:
                lines.append(f"  {ids[id(x)]} -> {ids[id(n)]} [label={_edge_label(x)}];")
            if id(n) not in consumers and n.gate is not None:  # an output: an edge out to its value
                lines.append(f'  {ids[id(n)]}_out [shape=plaintext, label=""];')
                lines.append(f"  {ids[id(n)]} -> {ids[id(n)]}_out [label={_edge_label(n)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def draw(self, path, fmt="png"):
        """Render to_dot() with Graphviz's `dot` into path."""
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError("Graph.draw needs Graphviz's `dot`: apt-get install graphviz "
                               "(or brew install graphviz); Graph.to_dot() works without it")
        subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=self.to_dot(), text=True, check=True,
                       capture_output=True)


def _fmt(v):
    if v is None:
        return "?"
    if isinstance(v, np.ndarray):
        return f"{v.dtype}{list(v.shape)}" if v.size > 4 else np.array2string(v, precision=4)
    return f"{v:.6g}"


def _esc(s):
    return str(s).replace("\\", "\\\\").replace('"', '\\"')


def _edge_label(n):
    def html(s):
        return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    grad = "" if n.grad is None else f'<br/><font color="red">{html(_fmt(n.grad))}</font>'
    return f"<{html(_fmt(n.value))}{grad}>"
