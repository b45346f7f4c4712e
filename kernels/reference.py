"""The slow, obvious NumPy version of every kernel: the referee in the tests.

Each function returns new arrays instead of writing into outputs, works in the
input's dtype (so float32 stays float32, as in the kernels) and is written to
be read, not to be fast. Names match the kernels they check.
"""
import numpy as np

from .codes import ACTIVATIONS


def matmul_nn(a, b):
    return a @ b


def matmul_nt(a, b):
    return a @ b.T


def matmul_tn(a, b):
    return a.T @ b


def gemm_tn_update(c, a, b, alpha, beta):
    return alpha * (a.T @ b) + beta * c


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dout, y):
    return np.where(y > 0, dout, 0).astype(dout.dtype)


def sigmoid_forward(x):
    with np.errstate(over="ignore"):  # exp(-x) = inf for x << 0 gives the right 0
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def sigmoid_backward(dout, y):
    return dout * (1 - y) * y


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(dout, y):
    return dout * (1 - y * y)


def activation_forward(x, act):
    name = ACTIVATIONS[act] if isinstance(act, int) else act
    return {"identity": lambda v: v, "relu": relu_forward, "sigmoid": sigmoid_forward,
            "tanh": tanh_forward}[name](x)


def activation_backward(dout, y, act):
    name = ACTIVATIONS[act] if isinstance(act, int) else act
    if name == "identity":
        return dout
    return {"relu": relu_backward, "sigmoid": sigmoid_backward, "tanh": tanh_backward}[name](dout, y)


def affine_forward(x, W, b, act="identity"):
    return activation_forward(x @ W + b, act)


def affine_backward(dout, out, x, W, act="identity"):
    # returns dx, dW, db
    dz = activation_backward(dout, out, act)
    return dz @ W.T, x.T @ dz, dz.sum(axis=0)


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits, t):
    # exact: mean of logsumexp(row) - row[t] = (max - row[t]) + log(sum exp(row - max)), in
    # float64; (max + log(...)) - row[t] would lose the log to rounding when max is huge
    z = logits.astype(np.float64)
    m = z.max(axis=1)
    return float(np.mean((m - z[np.arange(len(t)), t]) + np.log(np.exp(z - m[:, None]).sum(axis=1))))


def softmax_loss_forward(logits, t):
    # returns probs, loss
    return softmax(logits), cross_entropy(logits, t)


def softmax_loss_backward(probs, t, dout=1.0):
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(t)), t] = 1
    return ((probs - onehot) * (dout / len(t))).astype(probs.dtype)


def mlp_loss_grad(Ws, bs, x, t, act="relu"):
    # Layer by layer, as the book's TwoLayerNet does it. Returns loss, [dW], [db].
    outs = [x]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        last = l == len(Ws) - 1
        outs.append(affine_forward(outs[-1], W, b, "identity" if last else act))
    probs, loss = softmax_loss_forward(outs[-1], t)
    dout = softmax_loss_backward(probs, t)
    dWs, dbs = [], []
    for l in reversed(range(len(Ws))):
        last = l == len(Ws) - 1
        dout, dW, db = affine_backward(dout, outs[l + 1], outs[l], Ws[l], "identity" if last else act)
        dWs.insert(0, dW)
        dbs.insert(0, db)
    return loss, dWs, dbs


def optimizer_update(p, g, state, opt, lr, hyper1=0.9, hyper2=0.999, wd=0.0, t=1):
    # Returns new (p, state) for one block; state is (2, n). The book's ch. 6 rules.
    g = g + wd * p
    s = state.copy()
    if opt == "sgd":
        return p - lr * g, s
    if opt == "momentum":
        s[0] = hyper1 * s[0] - lr * g
        return p + s[0], s
    if opt == "nesterov":
        s[0] = hyper1 * s[0] - lr * g
        return p + hyper1 * s[0] - lr * g, s
    if opt == "adagrad":
        s[0] = s[0] + g * g
        return p - lr * g / (np.sqrt(s[0]) + 1e-7), s
    lr_t = lr * np.sqrt(1.0 - hyper2 ** t) / (1.0 - hyper1 ** t)
    s[0] = s[0] + (1 - hyper1) * (g - s[0])
    s[1] = s[1] + (1 - hyper2) * (g * g - s[1])
    return p - lr_t * s[0] / (np.sqrt(s[1]) + 1e-7), s


def mse_loss(y, t):
    return float(np.mean((y.astype(np.float64) - t) ** 2))


def mse_loss_backward(y, t, dout=1.0):
    return (2 * dout * (y - t) / y.size).astype(y.dtype)


def logistic_loss(logits, t):
    # sigmoid outputs, binary cross-entropy summed over the outputs, averaged over the rows
    z, t = logits.astype(np.float64), t.astype(np.float64)
    p = 1 / (1 + np.exp(-z))
    return float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).sum() / z.shape[0])


def logistic_loss_backward(logits, t):
    return ((1 / (1 + np.exp(-logits)) - t) / logits.shape[0]).astype(logits.dtype)


def half_sse(y, t):
    return float(0.5 * ((y.astype(np.float64) - t) ** 2).sum() / y.shape[0])


def half_sse_backward(y, t):
    return ((y - t) / y.shape[0]).astype(y.dtype)
