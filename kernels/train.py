"""The training loop over minibatches, compiled: many steps per call, no Python per step.

Sizes as in mlp.py. x (N, D0) and t (N,) are the whole training set, order (N,)
int64 this epoch's shuffled row order. Step k of a call uses rows
order[(first + k) * B : (first + k + 1) * B]: dense x's are gathered into the
contiguous batch buffers xb (B, D0), tb (B,); for a sparse x (a sparse.Csr over
the whole set) the batch is those rows of it, no copy, and only tb is gathered.
Then the forward pass and the loss (mlp_loss_dy). The loss of each step goes to losses[k]; a non-finite loss stops the call
there, before that step's update; the number of steps completed is returned.
Then the backward pass and the update: for SGD fused (mlp_backward_sgd: each W
is updated inside its gradient's BLAS product), for the other optimizers the
gradients into grads, then one optimizer pass over the flat buffer (in ranges on
numba's threads past STEP_SPLIT_MIN parameters where a sparse x's parts run there).
"""
from collections import namedtuple

import numpy as np
from numba import njit
from numba.extending import overload

from .codes import SGD
from .config import CACHE, FASTMATH
from .layout import param_block
from .mlp import HalfSquared, Logistic, loss_kind, mlp_backward, mlp_backward_sgd, mlp_loss_dy, split_products
from .sparse import Csr, is_csr, release_packed, with_packed
from .optimizers import optimizer_step_on

# The loop's settings, as three values instead of a row of positionals:
Model = namedtuple("Model", "offsets sizes act")           # the flat layout (layout.py) and act code
Optim = namedtuple("Optim", "opt lr hyper1 hyper2 wd")     # codes.py's optimizer code and its numbers
Work = namedtuple("Work", "grads acts deltas xb tb")       # the step's buffers: grads like params,
                                                           # acts/deltas (layout.py), batch (B, D0), (B,)
                                                           # (xb is not used for a sparse x)


@njit(cache=CACHE, fastmath=FASTMATH)
def gather_rows(xb, x, rows):
    # xb[:n] = x[rows], rows (n,), n <= xb.shape[0]
    # explicit element loop: numba's slice assignment goes through a generic path ~4x slower
    D = x.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(D):
            xb[i, j] = x[r, j]


def batch_input(xb, x, rows):
    """The input rows `rows` as the forward pass takes them: dense x gathered into xb[:n],
    a Csr x as those rows of it (no copy)."""


@overload(batch_input)
def _batch_input(xb, x, rows):
    if is_csr(x):
        return lambda xb, x, rows: Csr(x.indptr, x.indices, x.data, rows, x.work)

    def dense(xb, x, rows):
        gather_rows(xb, x, rows)
        return xb[:rows.shape[0]]
    return dense


def take_targets(tb, t, rows):
    """t's rows `rows` as the loss takes them, gathered into tb[:n]: class ids (N,) into tb
    (B,); float targets (N, C), or Logistic / HalfSquared of them (mlp.py), into tb (B, C),
    wrapped as t is."""


@overload(take_targets)
def _take_targets(tb, t, rows):
    kind = loss_kind(t)
    if kind == "softmax":
        def ids(tb, t, rows):
            for i in range(rows.shape[0]):
                tb[i] = t[rows[i]]
            return tb[:rows.shape[0]]
        return ids
    if kind == "mse":
        def floats(tb, t, rows):
            gather_rows(tb, t, rows)
            return tb[:rows.shape[0]]
        return floats
    wrap = Logistic if kind == "logistic" else HalfSquared

    def wrapped(tb, t, rows):
        gather_rows(tb, t.t, rows)
        return wrap(tb[:rows.shape[0]])
    return wrapped


@njit(cache=CACHE, fastmath=FASTMATH)
def train_steps(params, state, work, x, t, order, first, steps, model, optim, t0, losses):
    # state (2, P): the optimizer's buffers. t0: the optimizer's step count before this call
    # (Adam's bias correction needs it). Returns the number of steps completed.
    grads, acts, deltas, xb, tb = work
    offsets, sizes, act = model
    opt, lr, hyper1, hyper2, wd = optim
    B = tb.shape[0]
    w1, nw1 = param_block(offsets, sizes, 0, 0)
    W1 = params[w1:w1 + nw1].reshape((sizes[0], sizes[1]))
    # With SGD on a Csr x, the first layer works on a packed copy of W1 (sparse.py) for the
    # call's steps, and W1 gets it back at the end: nothing else reads W1 meanwhile. Other
    # optimizers update W1 in the flat buffer between the steps: no copy.
    if opt == SGD:
        x = with_packed(x, W1)
    parts = split_products(x)  # > 1: numba's threads are this call's (cpu.threads)
    done = steps
    for k in range(steps):
        rows = order[(first + k) * B:(first + k + 1) * B]
        xk = batch_input(xb, x, rows)
        loss = mlp_loss_dy(acts, deltas, params, offsets, sizes, xk, take_targets(tb, t, rows), act)
        losses[k] = loss
        if not np.isfinite(loss):
            done = k
            break
        if opt == SGD:
            mlp_backward_sgd(params, grads, acts, deltas, offsets, sizes, xk, act, lr, wd)
        else:
            mlp_backward(grads, acts, deltas, params, offsets, sizes, xk, act)
            optimizer_step_on(params, grads, state, offsets, sizes, opt, lr, hyper1, hyper2, wd, t0 + k + 1, parts)
    release_packed(W1, x)
    return done


@njit(cache=CACHE, fastmath=FASTMATH)
def weighted_gradient(red, params, work, x, t, rows, model, weight):
    # One process's share of a data-parallel step (fastbp/distributed.py): red (P + 1,) gets
    # weight * the gradient of the mean loss over `rows` (n,), then weight * that loss in
    # red[P]. With weight = n / B the sum of red over the processes is the gradient and loss
    # of the whole batch of B rows: one Allreduce. work is sized for n rows.
    grads, acts, deltas, xb, tb = work
    offsets, sizes, act = model
    P = params.shape[0]
    g = red[:P]
    xk = batch_input(xb, x, rows)
    loss = mlp_loss_dy(acts, deltas, params, offsets, sizes, xk, take_targets(tb, t, rows), act)
    mlp_backward(g, acts, deltas, params, offsets, sizes, xk, act)
    w = params.dtype.type(weight)
    for i in range(P):
        g[i] *= w
    red[P] = loss * weight
