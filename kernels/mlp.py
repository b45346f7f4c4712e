"""A whole multi-layer perceptron, forward and backward, in one compiled call.

Sizes: L layers, widths sizes = (D0, D1, ..., DL) int64, N batch.
params is ONE flat buffer (llm.c style); offsets (2L,) int64 gives where W_l
(D_l, D_{l+1}) and b_l (D_{l+1},) start in it (fastbp.network.param_layout is
the one place that lays it out). grads mirrors params exactly.
acts (N * (D1 + ... + DL),) holds every layer's output, layer by layer; hidden
layers apply `act` (an index into affine.ACTIVATIONS), the last gives logits.
deltas (2 * N * max(D1..DL),) holds two ping-pong gradient blocks for backward.
x (N, D0) float, t (N,) int64 class ids. Nothing is allocated here.
"""
from numba import njit
from numba.extending import overload

from .affine import IDENTITY, affine_backward, affine_backward_weights, affine_forward
from .config import CACHE, FASTMATH
from .mse_loss import mse_loss_forward, mse_loss_forward_backward
from .softmax_loss import cross_entropy, softmax_loss_forward_backward


@njit(inline="always")
def _weights(buf, offsets, sizes, l):
    D, M = sizes[l], sizes[l + 1]
    W = buf[offsets[2 * l]:offsets[2 * l] + D * M].reshape((D, M))
    b = buf[offsets[2 * l + 1]:offsets[2 * l + 1] + M]
    return W, b


@njit(inline="always")
def _output(acts, sizes, N, l):
    # layer l's output block (N, sizes[l+1]) inside acts
    start = 0
    for k in range(1, l + 1):
        start += N * sizes[k]
    M = sizes[l + 1]
    return acts[start:start + N * M].reshape((N, M))


@njit(inline="always")
def _act_of(l, L, act):
    return act if l < L - 1 else IDENTITY


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_forward(acts, params, offsets, sizes, x, act):
    # fills acts; the logits are the last block, (N, DL)
    N = x.shape[0]
    L = sizes.shape[0] - 1
    W, b = _weights(params, offsets, sizes, 0)
    affine_forward(_output(acts, sizes, N, 0), x, W, b, _act_of(0, L, act))
    for l in range(1, L):
        W, b = _weights(params, offsets, sizes, l)
        affine_forward(_output(acts, sizes, N, l), _output(acts, sizes, N, l - 1), W, b,
                       _act_of(l, L, act))


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_loss(acts, params, offsets, sizes, x, t, act):
    # forward, then the mean softmax cross-entropy; returns the loss
    mlp_forward(acts, params, offsets, sizes, x, act)
    L = sizes.shape[0] - 1
    return cross_entropy(_output(acts, sizes, x.shape[0], L - 1), t)


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_backward(grads, acts, deltas, params, offsets, sizes, x, act):
    # from d loss / d output, already in deltas[:N * DL], back through every layer into grads
    N = x.shape[0]
    L = sizes.shape[0] - 1
    half = deltas.shape[0] // 2
    C = sizes[L]
    dcur = deltas[:N * C].reshape((N, C))
    side = 0
    for l in range(L - 1, 0, -1):
        D = sizes[l]
        side = 1 - side
        dprev = deltas[side * half:side * half + N * D].reshape((N, D))
        W, _ = _weights(params, offsets, sizes, l)
        dW, db = _weights(grads, offsets, sizes, l)
        affine_backward(dprev, dW, db, dcur, dcur, _output(acts, sizes, N, l),
                        _output(acts, sizes, N, l - 1), W, _act_of(l, L, act))
        dcur = dprev
    dW, db = _weights(grads, offsets, sizes, 0)
    affine_backward_weights(dW, db, dcur, dcur, _output(acts, sizes, N, 0), x, _act_of(0, L, act))


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_loss_grad(grads, acts, deltas, params, offsets, sizes, x, t, act):
    # forward, softmax cross-entropy against class ids t, backward: fills grads; returns the loss
    N = x.shape[0]
    L = sizes.shape[0] - 1
    mlp_forward(acts, params, offsets, sizes, x, act)
    dlogits = deltas[:N * sizes[L]].reshape((N, sizes[L]))
    loss = softmax_loss_forward_backward(dlogits, _output(acts, sizes, N, L - 1), t)
    mlp_backward(grads, acts, deltas, params, offsets, sizes, x, act)
    return loss


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_loss_grad_mse(grads, acts, deltas, params, offsets, sizes, x, T, act):
    # the same with mean squared error against float targets T (N, DL) on the last layer's output
    N = x.shape[0]
    L = sizes.shape[0] - 1
    mlp_forward(acts, params, offsets, sizes, x, act)
    dy = deltas[:N * sizes[L]].reshape((N, sizes[L]))
    loss = mse_loss_forward_backward(dy, _output(acts, sizes, N, L - 1), T)
    mlp_backward(grads, acts, deltas, params, offsets, sizes, x, act)
    return loss


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_loss_mse(acts, params, offsets, sizes, x, T, act):
    mlp_forward(acts, params, offsets, sizes, x, act)
    return mse_loss_forward(_output(acts, sizes, x.shape[0], sizes.shape[0] - 2), T)


@njit(cache=CACHE, fastmath=FASTMATH)
def mlp_numerical_gradient(grads, acts, params, offsets, sizes, x, t, act, h):
    # Central differences, one parameter at a time: grads[i] = (f(p+h) - f(p-h)) / 2h.
    # The slow baseline backprop is measured against. params is perturbed and
    # restored entry by entry: pass a private copy. t (N,) int ids: cross-entropy;
    # t (N, DL) float targets: mean squared error.
    for i in range(params.shape[0]):
        keep = params[i]
        params[i] = keep + h
        f_plus = _loss(acts, params, offsets, sizes, x, t, act)
        params[i] = keep - h
        f_minus = _loss(acts, params, offsets, sizes, x, t, act)
        params[i] = keep
        grads[i] = (f_plus - f_minus) / (2 * h)


def _loss(acts, params, offsets, sizes, x, t, act):
    """The network's loss; which one is chosen at compile time from t's dimensions."""


@overload(_loss)
def _loss_for(acts, params, offsets, sizes, x, t, act):
    if t.ndim == 1:
        return lambda acts, params, offsets, sizes, x, t, act: \
            mlp_loss(acts, params, offsets, sizes, x, t, act)
    return lambda acts, params, offsets, sizes, x, t, act: \
        mlp_loss_mse(acts, params, offsets, sizes, x, t, act)
