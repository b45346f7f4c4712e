"""Optimizer updates over one flat parameter buffer, in place (the book's ch. 6 rules).

p, g and the state buffers are (n,) slices of the same layout; the caller runs
each kernel once per parameter block, passing weight decay for W blocks and 0
for biases (L2 on weights only, as the book does), so a step is one pass over
the whole buffer. Weight decay adds wd * p to the gradient.

    sgd       p -= lr * g
    momentum  v = mu * v - lr * g;  p += v
    nesterov  v = mu * v - lr * g;  p += mu * v - lr * g     (Sutskever et al. 2013, as scikit-learn)
    adagrad   h += g * g;  p -= lr * g / (sqrt(h) + 1e-7)
    adam      m += (1 - b1)(g - m);  v += (1 - b2)(g² - v);  p -= lr_t * m / (sqrt(v) + 1e-7)
              with lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t) at step t = 1, 2, ...
"""
import numpy as np
from numba import njit, prange

from .codes import ADAGRAD, ADAM, MOMENTUM, NESTEROV, OPTIMIZERS, SGD  # noqa: F401  (OPTIMIZERS: for callers)
from .config import CACHE, DIVIDING, FASTMATH, STEP_SPLIT_MIN
from .layout import param_block


@njit(cache=CACHE, fastmath=FASTMATH)
def sgd_update(p, g, lr, wd):
    lr, wd = p.dtype.type(lr), p.dtype.type(wd)
    for i in range(p.shape[0]):
        p[i] -= lr * (g[i] + wd * p[i])


@njit(cache=CACHE, fastmath=FASTMATH)
def momentum_update(p, v, g, lr, mu, wd):
    lr, mu, wd = p.dtype.type(lr), p.dtype.type(mu), p.dtype.type(wd)
    for i in range(p.shape[0]):
        v[i] = mu * v[i] - lr * (g[i] + wd * p[i])
        p[i] += v[i]


@njit(cache=CACHE, fastmath=FASTMATH)
def nesterov_update(p, v, g, lr, mu, wd):
    # the look-ahead step: the new velocity applied once more, as if evaluated ahead of p
    lr, mu, wd = p.dtype.type(lr), p.dtype.type(mu), p.dtype.type(wd)
    for i in range(p.shape[0]):
        gi = g[i] + wd * p[i]
        v[i] = mu * v[i] - lr * gi
        p[i] += mu * v[i] - lr * gi


@njit(cache=CACHE, fastmath=FASTMATH, **DIVIDING)
def adagrad_update(p, h, g, lr, wd):
    lr, wd, eps = p.dtype.type(lr), p.dtype.type(wd), p.dtype.type(1e-7)
    for i in range(p.shape[0]):
        gi = g[i] + wd * p[i]
        h[i] += gi * gi
        p[i] -= lr * gi / (np.sqrt(h[i]) + eps)


@njit(cache=CACHE, fastmath=FASTMATH, **DIVIDING)
def adam_update(p, m, v, g, lr_t, beta1, beta2, wd):
    lr_t, wd, eps = p.dtype.type(lr_t), p.dtype.type(wd), p.dtype.type(1e-7)
    c1, c2 = p.dtype.type(1 - beta1), p.dtype.type(1 - beta2)
    for i in range(p.shape[0]):
        gi = g[i] + wd * p[i]
        m[i] += c1 * (gi - m[i])
        v[i] += c2 * (gi * gi - v[i])
        p[i] -= lr_t * m[i] / (np.sqrt(v[i]) + eps)


@njit(cache=CACHE)
def adam_lr(lr, beta1, beta2, t):
    # Adam's bias-corrected step size at step t = 1, 2, ... (also called from Python by the
    # GPU loop, so both devices use the same float64 value)
    return lr * np.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)


@njit(cache=CACHE, fastmath=FASTMATH)
def optimizer_step(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t):
    # One update of every parameter block. state is (2, n): velocity (momentum, nesterov), h (adagrad),
    # m and v (adam). hyper1/hyper2: momentum / (beta1, beta2). t: this step's number, from 1.
    # np.int64(): one compile of _step_part for every caller, not one per constant (config.py)
    _step_part(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t, np.int64(0), np.int64(1))


@njit(cache=CACHE, fastmath=FASTMATH, parallel=True)
def optimizer_step_threads(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t, parts):
    # optimizer_step with each block cut into `parts` ranges on numba's threads: every entry
    # gets the same operations either way
    for q in prange(parts):
        # np.int64(q): one compile of _step_part for both callers (config.py)
        _step_part(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t, np.int64(q), parts)


@njit(inline="always")
def step_in_parts(P, parts):
    """Whether a step over P parameters runs in `parts` ranges on numba's threads: parts > 1
    (they are the caller's, cpu.threads) and P at least STEP_SPLIT_MIN."""
    return parts > 1 and P >= STEP_SPLIT_MIN


@njit(inline="always")
def optimizer_step_on(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t, parts):
    """optimizer_step, in `parts` ranges on numba's threads (optimizer_step_threads) where
    step_in_parts says so."""
    if step_in_parts(params.shape[0], parts):
        optimizer_step_threads(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t, parts)
    else:
        optimizer_step(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t)


@njit(cache=CACHE, fastmath=FASTMATH)
def _step_part(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t, q, parts):
    # part q of `parts` of every block (its own function: a parallel loop's body keeps
    # LLVM from vectorising what it inlines)
    lr_t = lr
    if opt == ADAM:
        lr_t = adam_lr(lr, hyper1, hyper2, t)
    n_layers = sizes.shape[0] - 1
    for l in range(n_layers):
        for k in range(2):  # W block with weight decay, then b block without
            first, size = param_block(offsets, sizes, l, k)
            start, n = first + size * q // parts, size * (q + 1) // parts - size * q // parts
            decay = wd if k == 0 else 0.0
            p, g = params[start:start + n], grads[start:start + n]
            s0, s1 = state[0, start:start + n], state[1, start:start + n]
            if opt == SGD:
                sgd_update(p, g, lr, decay)
            elif opt == MOMENTUM:
                momentum_update(p, s0, g, lr, hyper1, decay)
            elif opt == NESTEROV:
                nesterov_update(p, s0, g, lr, hyper1, decay)
            elif opt == ADAGRAD:
                adagrad_update(p, s0, g, lr, decay)
            else:
                adam_update(p, s0, s1, g, lr_t, hyper1, hyper2, decay)
