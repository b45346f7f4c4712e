"""A whole multi-layer perceptron, forward and backward, in one compiled call.

Sizes: L layers, widths sizes = (D0, D1, ..., DL) int64, N batch.
params, grads (one flat buffer each), offsets, acts and deltas are laid out as
layout.py defines them. Hidden layers apply `act` (a code from codes.py), the last
gives the logits.
The input picks the first layer, at compile time: x (N, D0) float dense, or a
sparse.Csr batch of N rows (only its nonzeros are touched: sparse.py). The
targets pick the loss, also at compile time: t (N,) int64 class ids -> softmax
cross-entropy; t (N, DL) floats -> mean squared error on the last layer's output;
Logistic(t) -> sigmoid outputs with binary cross-entropy (logistic_loss.py);
HalfSquared(t) -> ½ Σ (y - t)² / N (mse_loss.py: scikit-learn's regression loss).
Nothing is allocated here but the block kernels' acts (mlp_logits_blocks, mlp_scores_blocks), one per block of rows.
"""
from collections import namedtuple

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .affine import affine_forward, affine_forward_split, bias_act_backward
from .codes import IDENTITY
from .config import CACHE, FASTMATH
from .layout import act_block, param_block
from .matmul import product
from .optimizers import sgd_update
from .logistic_loss import logistic_loss_forward, logistic_loss_forward_backward
from .mse_loss import half_sse_forward, half_sse_forward_backward, mse_loss_forward, mse_loss_forward_backward
from .softmax_loss import cross_entropy, softmax_loss_forward_backward
from .sparse import (Csr, is_csr, is_packable, pack_for_passes, packed_forward_work, packed_view,
                     sparse_affine_forward, sparse_tn_packed, sparse_tn_update)


@njit(inline="always")
def _weights(buf, offsets, sizes, l):
    w, nw = param_block(offsets, sizes, l, 0)
    b, nb = param_block(offsets, sizes, l, 1)
    return buf[w:w + nw].reshape((sizes[l], sizes[l + 1])), buf[b:b + nb]


@njit(inline="always")
def _output(acts, sizes, N, l):
    # layer l's output block (N, sizes[l+1]) inside acts
    start, M = act_block(sizes, N, l)
    return acts[start:start + N * M].reshape((N, M))


@njit(inline="always")
def _act_of(l, L, act):
    return act if l < L - 1 else IDENTITY


# -- the first layer, dense or sparse: chosen by x's type when a kernel is compiled
def n_rows(x):
    """The batch size of dense or Csr x."""


def first_forward(out, x, W, b, act):
    """out = act(x·W + b)."""


def first_weight_update(C, x, dz, alpha, beta):
    """C = beta·C + alpha·xᵀ·dz (alpha 1, beta 0: dW)."""


def first_sgd_update(W, x, dz, alpha, beta):
    """first_weight_update on W itself (alpha -lr, beta 1 - lr·wd: SGD); on the packed copy
    of W where a training loop keeps one for a Csr x (sparse.py: with_packed)."""


def split_products(x):
    """In how many blocks of rows the later layers' large products may run on numba's threads
    (matmul.product): for x a Csr whose parts run on them, one per part; else 1, one BLAS call.
    cpu.threads puts the parts on threads only with BLAS kept to one thread wherever such a
    product is large enough to wake BLAS's own threads."""


@overload(split_products)
def _split_products(x):
    if is_csr(x):
        return lambda x: x.work.splits.shape[0] - 1 if x.work.threaded else 1
    return lambda x: np.int64(1)  # not a constant 1: one compile of what takes it (config.py)


@overload(n_rows)
def _n_rows(x):
    if is_csr(x):
        return lambda x: x.rows.shape[0]
    return lambda x: x.shape[0]


@overload(first_forward)
def _first_forward(out, x, W, b, act):
    if is_csr(x):
        return lambda out, x, W, b, act: sparse_affine_forward(out, x, packed_view(W, x), b, act)
    return lambda out, x, W, b, act: affine_forward(out, x, W, b, act)


@overload(first_weight_update)
def _first_weight_update(C, x, dz, alpha, beta):
    if is_csr(x):
        def sparse(C, x, dz, alpha, beta):
            # C's rows whole vectors on cache lines (W1 or dW1 64 float32 wide and more, in
            # layout.py's buffers; or a packed copy): nonzero by nonzero, else grouped
            if is_packable(C):
                sparse_tn_packed(C, x, dz, alpha, beta)
            else:
                sparse_tn_update(C, x, dz, alpha, beta)
        return sparse

    def dense(C, x, dz, alpha, beta):
        product(C, x, dz, True, False, alpha, beta, 1)  # one BLAS call: np.dot's for alpha 1, beta 0
    return dense


@overload(first_sgd_update)
def _first_sgd_update(W, x, dz, alpha, beta):
    if is_csr(x):
        return lambda W, x, dz, alpha, beta: first_weight_update(packed_view(W, x), x, dz, alpha, beta)
    return lambda W, x, dz, alpha, beta: first_weight_update(W, x, dz, alpha, beta)


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_forward(acts, params, offsets, sizes, x, act):
    # fills acts; the logits are the last block, (N, DL)
    N = n_rows(x)
    L = sizes.shape[0] - 1
    W, b = _weights(params, offsets, sizes, 0)
    first_forward(_output(acts, sizes, N, 0), x, W, b, _act_of(0, L, act))
    blocks = split_products(x)
    for l in range(1, L):
        W, b = _weights(params, offsets, sizes, l)
        affine_forward_split(_output(acts, sizes, N, l), _output(acts, sizes, N, l - 1), W, b,
                             _act_of(l, L, act), blocks)


@njit(inline="always")
def _block_forward(params, offsets, sizes, indptr, indices, data, rows, packed, act, s, n):
    # acts of rows s..s+n-1 of a Csr given as its arrays (a parallel loop takes arrays, not
    # tuples), in a buffer of the block's own; packed: W1 packed (sparse.py, pack_for_passes)
    last, C = act_block(sizes, n, sizes.shape[0] - 2)
    acts = np.empty(last + n * C, params.dtype)
    mlp_forward(acts, params, offsets, sizes, Csr(indptr, indices, data, rows[s:s + n], packed_forward_work(packed)),
                act)
    return acts


@njit(inline="always")
def _packed_w1(params, offsets, sizes):
    W, b = _weights(params, offsets, sizes, 0)
    return pack_for_passes(W)


@njit(cache=CACHE, fastmath=FASTMATH, parallel=True)
def mlp_logits_blocks(out, params, offsets, sizes, x, act, block):
    # out (N, DL) = the logits of x, a Csr of N rows: blocks of `block` rows spread over
    # numba's threads, each with its own acts, each writing only its own rows of out.
    # The later layers' products are BLAS calls on one block: the caller keeps
    # block * sizes[l] * sizes[l+1] small enough that BLAS runs them on the calling
    # thread (cpu.py: BLAS_ONE_THREAD), or holds BLAS to one thread meanwhile
    # (cpu.py: blas_on_one_thread); else its own threads would fight numba's.
    N, C = out.shape
    indptr, indices, data, rows = x.indptr, x.indices, x.data, x.rows
    packed = _packed_w1(params, offsets, sizes)
    for k in prange((N + block - 1) // block):
        s = k * block
        n = min(block, N - s)
        acts = _block_forward(params, offsets, sizes, indptr, indices, data, rows, packed, act, s, n)
        y = _output(acts, sizes, n, sizes.shape[0] - 2)
        for i in range(n):
            for c in range(C):
                out[s + i, c] = y[i, c]


# Targets wrapped in these pick the loss by their type (plain arrays: by their dimensions)
Logistic = namedtuple("Logistic", "t")        # t (N, DL) in [0, 1]: sigmoid outputs, binary cross-entropy
HalfSquared = namedtuple("HalfSquared", "t")  # t (N, DL) floats: ½ Σ (y - t)² / N


def targets_for(loss, t):
    """Plain targets as the kernels take them for a Network's `loss`: wrapped in Logistic for
    "logistic"; ids (softmax_ce) and float targets (mse) pick their loss as they are."""
    return Logistic(t) if loss == "logistic" else t


def loss_kind(t):
    """At compile time (in an overload): "logistic", "half_squared", "softmax" or "mse" for targets t."""
    if isinstance(t, types.BaseNamedTuple):
        return {Logistic: "logistic", HalfSquared: "half_squared"}[t.instance_class]
    return "softmax" if t.ndim == 1 else "mse"


def _output_loss(y, t):
    """The loss of the last layer's output y against targets t (chosen by t's type)."""


@overload(_output_loss)
def _output_loss_for(y, t):
    return {"softmax": lambda y, t: cross_entropy(y, t),
            "mse": lambda y, t: mse_loss_forward(y, t),
            "logistic": lambda y, t: logistic_loss_forward(y, t.t),
            "half_squared": lambda y, t: half_sse_forward(y, t.t)}[loss_kind(t)]


def _output_loss_grad(dy, y, t):
    """Writes d loss / d y into dy and returns the loss (chosen by t's type)."""


@overload(_output_loss_grad)
def _output_loss_grad_for(dy, y, t):
    return {"softmax": lambda dy, y, t: softmax_loss_forward_backward(dy, y, t),
            "mse": lambda dy, y, t: mse_loss_forward_backward(dy, y, t),
            "logistic": lambda dy, y, t: logistic_loss_forward_backward(dy, y, t.t),
            "half_squared": lambda dy, y, t: half_sse_forward_backward(dy, y, t.t)}[loss_kind(t)]


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_loss(acts, params, offsets, sizes, x, t, act):
    # forward, then the loss; returns it
    mlp_forward(acts, params, offsets, sizes, x, act)
    L = sizes.shape[0] - 1
    return _output_loss(_output(acts, sizes, n_rows(x), L - 1), t)


def target_rows(t, s, e):
    """Rows s..e-1 of targets t, wrapped as t is (Logistic, HalfSquared) or plain."""


@overload(target_rows)
def _target_rows(t, s, e):
    if isinstance(t, types.BaseNamedTuple):
        wrap = t.instance_class
        return lambda t, s, e: wrap(t.t[s:e])
    return lambda t, s, e: t[s:e]


@njit(inline="always")
def _hits(y, ids):
    # how many rows i of y (n, C) have their largest entry at ids[i]; the largest is the
    # first one, or the first NaN, as np.argmax picks it
    hits = 0
    for i in range(y.shape[0]):
        k = 0
        for c in range(1, y.shape[1]):
            if not np.isnan(y[i, k]) and (y[i, c] > y[i, k] or np.isnan(y[i, c])):
                k = c
        hits += k == ids[i]
    return hits


@njit(inline="always")
def _scores(acts, sizes, N, t, ids, with_loss):
    y = _output(acts, sizes, N, sizes.shape[0] - 2)
    return _hits(y, ids), (_output_loss(y, t) * N if with_loss else 0.0)


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_scores(acts, params, offsets, sizes, x, t, ids, act, with_loss):
    # One forward pass over the N rows of x: (how many rows' largest logit is at ids (N,)
    # int64; the summed loss, or 0.0 without with_loss)
    mlp_forward(acts, params, offsets, sizes, x, act)
    return _scores(acts, sizes, n_rows(x), t, ids, with_loss)


@njit(cache=CACHE, fastmath=FASTMATH, parallel=True)
def mlp_scores_blocks(hits, losses, params, offsets, sizes, x, t, ids, act, with_loss, block):
    # mlp_scores over a Csr x of N rows in blocks of `block` rows spread over numba's
    # threads (as mlp_logits_blocks): block k's into hits[k] and losses[k]
    N = x.rows.shape[0]
    indptr, indices, data, rows = x.indptr, x.indices, x.data, x.rows
    packed = _packed_w1(params, offsets, sizes)
    for k in prange(losses.shape[0]):
        s = k * block
        n = min(block, N - s)
        acts = _block_forward(params, offsets, sizes, indptr, indices, data, rows, packed, act, s, n)
        hits[k], losses[k] = _scores(acts, sizes, n, target_rows(t, s, s + n), ids[s:s + n], with_loss)


@njit(cache=CACHE, fastmath=FASTMATH)
def _backprop(grads, acts, deltas, params, offsets, sizes, x, act, sgd, lr, wd):
    # From d loss / d output, already in deltas[:N * DL], back through every layer: one pass
    # for dz = dout * act'(out) and db, dx = dz·Wᵀ with W as it is, then the weight product:
    # dW = inᵀ·dz into grads, or with sgd the update itself inside it (one BLAS call with
    # alpha and beta: W = (1 - lr*wd)·W - lr·inᵀ·dz) and b -= lr·db. deltas ping-pongs
    # between two halves. The first layer (its input x dense or sparse) needs no dx. The
    # later layers' products in blocks on numba's threads where split_products(x).
    N = n_rows(x)
    L = sizes.shape[0] - 1
    half = deltas.shape[0] // 2
    C = sizes[L]
    dcur = deltas[:N * C].reshape((N, C))
    side = 0
    blocks = split_products(x)
    for l in range(L - 1, 0, -1):
        W, b = _weights(params, offsets, sizes, l)
        dW, db = _weights(grads, offsets, sizes, l)
        bias_act_backward(dcur, db, dcur, _output(acts, sizes, N, l), _act_of(l, L, act))
        side = 1 - side
        dprev = deltas[side * half:side * half + N * sizes[l]].reshape((N, sizes[l]))
        product(dprev, dcur, W, False, True, 1.0, 0.0, blocks)
        inp = _output(acts, sizes, N, l - 1)
        if sgd:
            product(W, inp, dcur, True, False, -lr, 1.0 - lr * wd, blocks)
            sgd_update(b, db, lr, 0.0)
        else:
            product(dW, inp, dcur, True, False, 1.0, 0.0, blocks)
        dcur = dprev
    W, b = _weights(params, offsets, sizes, 0)
    dW, db = _weights(grads, offsets, sizes, 0)
    bias_act_backward(dcur, db, dcur, _output(acts, sizes, N, 0), _act_of(0, L, act))
    if sgd:
        first_sgd_update(W, x, dcur, -lr, 1.0 - lr * wd)
        sgd_update(b, db, lr, 0.0)
    else:
        first_weight_update(dW, x, dcur, 1.0, 0.0)


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_backward(grads, acts, deltas, params, offsets, sizes, x, act):
    # from d loss / d output, already in deltas[:N * DL], back through every layer into grads
    _backprop(grads, acts, deltas, params, offsets, sizes, x, act, bool(False), 0.0, 0.0)  # one compile (config.py)


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_backward_sgd(params, grads, acts, deltas, offsets, sizes, x, act, lr, wd):
    # mlp_backward fused with one SGD step: each W is updated inside its weight product,
    # after dx has used the old W; grads only holds the bias gradients afterwards.
    _backprop(grads, acts, deltas, params, offsets, sizes, x, act, bool(True), lr, wd)  # one compile (config.py)


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_loss_dy(acts, deltas, params, offsets, sizes, x, t, act):
    # forward, then the loss and d loss / d output into deltas[:N * DL]: all a backward
    # pass needs; returns the loss
    N = n_rows(x)
    L = sizes.shape[0] - 1
    mlp_forward(acts, params, offsets, sizes, x, act)
    dy = deltas[:N * sizes[L]].reshape((N, sizes[L]))
    return _output_loss_grad(dy, _output(acts, sizes, N, L - 1), t)


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_loss_grad(grads, acts, deltas, params, offsets, sizes, x, t, act):
    # forward, loss, backward: fills grads; returns the loss
    loss = mlp_loss_dy(acts, deltas, params, offsets, sizes, x, t, act)
    mlp_backward(grads, acts, deltas, params, offsets, sizes, x, act)
    return loss


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_numerical_gradient(grads, acts, params, offsets, sizes, x, t, act, h):
    # Central differences, one parameter at a time: grads[i] = (f(p+h) - f(p-h)) / 2h.
    # The slow baseline backprop is measured against. params is perturbed and
    # restored entry by entry: pass a private copy.
    for i in range(params.shape[0]):
        keep = params[i]
        params[i] = keep + h
        f_plus = mlp_loss(acts, params, offsets, sizes, x, t, act)
        params[i] = keep - h
        f_minus = mlp_loss(acts, params, offsets, sizes, x, t, act)
        params[i] = keep
        grads[i] = (f_plus - f_minus) / (2 * h)

