"""scikit-learn's MLP solvers over the flat buffer: a whole epoch of minibatches in one call.

The rules are scikit-learn's own (sklearn/neural_network/_multilayer_perceptron.py and
_stochastic_optimizers.py), so that fastbp.sklearn's estimators step exactly as
MLPClassifier and MLPRegressor do. Sizes and layouts as in mlp.py; P parameters.

  loss    the output loss (mlp.py: class ids -> softmax, Logistic, HalfSquared) of the
          batch, plus the L2 term ½·alpha·Σ W²/n (every W, no bias; n the batch's rows);
          the gradient gets alpha·W/n on the W blocks. A HalfSquared loss is reported
          divided by the outputs (scikit-learn's ½·mean over every entry), while the
          step follows (y - t)/n, as scikit-learn's does.
  sgd     v = mu·v - lr·g, then p += v, or with Nesterov p += mu·v - lr·g   (state[0]: v)
  adam    t += 1; m = b1·m + (1 - b1)·g; v = b2·v + (1 - b2)·g²;
          p += -lr·sqrt(1 - b2^t)/(1 - b1^t) · m / (sqrt(v) + eps)        (state[0] m, state[1] v)
Minibatches: order's rows in slices of B, the last one shorter (gen_batches); lr is
constant within an epoch (scikit-learn changes it between epochs only). Where a sparse
x's parts run on numba's threads (cpu.threads), so do the later layers' large products
(mlp.py) and, past STEP_SPLIT_MIN parameters, the solver step, in ranges of entries:
each entry gets the same operations either way.
"""
from collections import namedtuple

import numpy as np
from numba import njit, prange
from numba.extending import overload

from .config import CACHE, DIVIDING, FASTMATH
from .layout import param_block
from .simd import block_lanes, lanes, vadd, vfma, vload, vstore, vsum, vzero
from .mlp import loss_kind, mlp_backward, mlp_loss_dy, mlp_loss_grad, n_rows, split_products
from .optimizers import step_in_parts
from .sparse import U
from .train import batch_input, take_targets

Solver = namedtuple("Solver", "adam lr momentum nesterov beta1 beta2 eps")  # adam: False for sgd


@njit(inline="always")
def _weight_decay(G, W, s):
    # G += s·W; returns Σ W², both (n,) in one pass, four vectors at a time (simd.py): the sum
    # in W's dtype in 4·lanes running sums added at the end, as BLAS's dot (scikit-learn's
    # np.dot(W, W)) sums. A plain loop's sum is one chain of dependent adds that strict IEEE
    # order keeps LLVM from vectorising (4x slower at 784-256-128-10), and BLAS's own dot wakes
    # OpenBLAS's threads at 784 x 50, which then take the cores of numba's
    L = lanes(W)
    n = W.shape[0]
    a0, a1, a2, a3 = vzero(W), vzero(W), vzero(W), vzero(W)
    for c0 in range(0, n, 4 * L):
        n0, n1, n2, n3 = block_lanes(n, c0, L)
        w0, w1 = vload(W, c0, n0), vload(W, c0 + L, n1)
        w2, w3 = vload(W, c0 + 2 * L, n2), vload(W, c0 + 3 * L, n3)
        a0, a1, a2, a3 = vfma(w0, w0, a0), vfma(w1, w1, a1), vfma(w2, w2, a2), vfma(w3, w3, a3)
        vstore(G, c0, vfma(s, w0, vload(G, c0, n0)), n0)
        vstore(G, c0 + L, vfma(s, w1, vload(G, c0 + L, n1)), n1)
        vstore(G, c0 + 2 * L, vfma(s, w2, vload(G, c0 + 2 * L, n2)), n2)
        vstore(G, c0 + 3 * L, vfma(s, w3, vload(G, c0 + 3 * L, n3)), n3)
    return vsum(vadd(vadd(a0, a1), vadd(a2, a3)))


@njit(cache=CACHE, fastmath=FASTMATH)
def l2_penalty(grads, params, offsets, sizes, scale):
    # every W block of grads += scale·W; returns Σ W² over every W (as a float64 sum of the
    # blocks' sums)
    total = 0.0
    s = grads.dtype.type(scale)
    for l in range(sizes.shape[0] - 1):
        w, nw = param_block(offsets, sizes, l, 0)
        total += np.float64(_weight_decay(grads[w:w + nw], params[w:w + nw], s))
    return total


@njit(cache=CACHE, fastmath=FASTMATH, **DIVIDING)
def _solver_range(params, grads, state, solver, t, i0, i1):
    # solver_update on entries i0..i1-1, unsigned (sparse.py: U): with signed bounds not
    # known to be >= 0, numba checks every index for a negative wrap-around and the loop
    # is not vectorised (4x slower)
    typ = params.dtype.type
    lr = typ(solver.lr)
    if solver.adam:
        b1, b2, eps = typ(solver.beta1), typ(solver.beta2), typ(solver.eps)
        # 1 - beta in float64, then in the parameters' dtype, as scikit-learn's (1 - beta_1)·grad
        # (1 - b1 would be an int minus a float32: float64 math per entry in float32)
        c1, c2 = typ(1.0 - solver.beta1), typ(1.0 - solver.beta2)
        lr_t = typ(solver.lr * np.sqrt(1.0 - solver.beta2 ** t) / (1.0 - solver.beta1 ** t))
        # state indexed in 2D and m, v kept in locals: with m, v = state[0], state[1] as views
        # LLVM's vectorised loop ran 3x slower (33 against 11 us at 784-50-10, float32)
        for i in range(U(i0), U(i1)):
            g = grads[i]
            m = b1 * state[0, i] + c1 * g
            v = b2 * state[1, i] + c2 * (g * g)
            state[0, i] = m
            state[1, i] = v
            params[i] += -lr_t * m / (np.sqrt(v) + eps)
    else:
        mu = typ(solver.momentum)
        for i in range(U(i0), U(i1)):
            g = grads[i]
            u = mu * state[0, i] - lr * g
            state[0, i] = u
            params[i] += mu * u - lr * g if solver.nesterov else u


@njit(cache=CACHE, fastmath=FASTMATH, **DIVIDING)
def solver_update(params, grads, state, solver, t):
    # one step of scikit-learn's sgd or adam over the whole buffer; t: Adam's step count
    # after this step (1, 2, ...)
    _solver_range(params, grads, state, solver, t, np.int64(0), params.shape[0])  # one compile (config.py)


@njit(cache=CACHE, fastmath=FASTMATH, parallel=True, **DIVIDING)
def solver_update_threads(params, grads, state, solver, t, blocks):
    # solver_update in `blocks` ranges on numba's threads: each entry's math is the same
    P = params.shape[0]
    for k in prange(blocks):
        _solver_range(params, grads, state, solver, t, P * k // blocks, P * (k + 1) // blocks)


@njit(inline="always")
def solver_update_on(params, grads, state, solver, t, parts):
    """solver_update, in `parts` ranges on numba's threads (solver_update_threads) where
    optimizers.step_in_parts says so."""
    if step_in_parts(params.shape[0], parts):
        solver_update_threads(params, grads, state, solver, t, parts)
    else:
        solver_update(params, grads, state, solver, t)


def reported_loss(loss, t):
    """The data loss as scikit-learn reports it for targets t."""


@overload(reported_loss)
def _reported_loss(loss, t):
    if loss_kind(t) == "half_squared":
        return lambda loss, t: loss / t.t.shape[1]
    return lambda loss, t: loss


@njit(cache=CACHE, fastmath=FASTMATH)
def sk_epoch(params, grads, state, acts, deltas, xb, yb, x, y, order, B, model, solver, alpha, t):
    # One epoch: x (N, D0) dense or a Csr over the set, y its targets (ids, Logistic,
    # HalfSquared), order (N,) the rows' order, B the batch size; xb (B, D0) and yb the
    # gather buffers. Returns (Σ over batches of reported loss · rows, Adam's step count).
    offsets, sizes, act = model
    N = order.shape[0]
    total = 0.0
    blocks = split_products(x)
    for start in range(0, N, B):
        rows = order[start:min(start + B, N)]
        n = rows.shape[0]
        xk = batch_input(xb, x, rows)
        yk = take_targets(yb, y, rows)
        loss = mlp_loss_dy(acts, deltas, params, offsets, sizes, xk, yk, act)
        mlp_backward(grads, acts, deltas, params, offsets, sizes, xk, act)
        sq = l2_penalty(grads, params, offsets, sizes, alpha / n)
        total += (reported_loss(loss, yk) + 0.5 * alpha * sq / n) * n
        t += 1
        solver_update_on(params, grads, state, solver, t, blocks)
    return total, t


@njit(cache=CACHE, fastmath=FASTMATH)
def sk_loss_grad(grads, acts, deltas, params, model, x, y, alpha):
    # The whole set's loss as scikit-learn reports it, with the L2 term, and its gradient
    # into grads (what L-BFGS takes); x dense or a Csr with backward scratch
    offsets, sizes, act = model
    n = n_rows(x)
    loss = mlp_loss_grad(grads, acts, deltas, params, offsets, sizes, x, y, act)
    sq = l2_penalty(grads, params, offsets, sizes, alpha / n)
    return reported_loss(loss, y) + 0.5 * alpha * sq / n
