"""scikit-learn's MLP solvers on the device: the twin of kernels/sk_solvers.py.

All arrays (P,) in the flat layout (fastbp.kernels.layout); decay[i] is 1 on W
entries. sk_update, one thread per parameter, the CPU's rules:

    g = grad + scale·p on W entries (scikit-learn's L2 term: scale = alpha / n)
    sgd   v = mu·v - lr·g;  p += v, or with Nesterov p += mu·v - lr·g          (v in s0)
    adam  m = b1·m + c1·g;  v = b2·v + c2·g²;  p += -lr_t·m / (sqrt(v) + eps)   (m, v in s0, s1)
          c1 = 1 - b1, c2 = 1 - b2 taken in float64, then rounded to the dtype once (as
          scikit-learn's (1 - beta_1)·grad and the CPU's)

and, in the same pass, Σ p² over the W entries (before the step) per block into
partial[block] (float64, a fixed-order tree). sk_finish (one block) adds the step's
loss as scikit-learn reports it, times the batch's rows n, to total[0]:
(losses[slot] / div + ½·alpha·Σ partial / n)·n, div = C for the half squared error
(scikit-learn's ½·mean over every entry), 1 otherwise. Unlike fastbp's own
optimizer kernel the stop flag is ignored: scikit-learn steps on whatever the loss is.

sk_epoch runs a whole epoch from the host, scikit-learn's minibatches (the last one
shorter), each: gather, forward, output loss, backward (mlp.py), sk_update, sk_finish.
"""
import functools
import math

import numpy as np
from numba import cuda, types

from . import build, config
from .softmax_loss import _block_sum


@functools.lru_cache(maxsize=None)
def sk_update_source(NP, adam, nesterov, block=None):
    BLOCK = block or config.BLOCK  # a power of two

    def sk_update(params, grads, s0, s1, decay, partial, scale, lr, lr_t, mu, b1, b2, c1, c2, eps):
        sq = cuda.shared.array(BLOCK, np.float64)
        tid = cuda.threadIdx.x
        i = cuda.blockIdx.x * BLOCK + tid
        acc = np.float64(0.0)
        if i < params.shape[0]:
            p = params[i]
            g = grads[i]
            if decay[i]:
                acc = np.float64(p) * np.float64(p)
                g += scale * p
            if adam:
                m = b1 * s0[i] + c1 * g
                v = b2 * s1[i] + c2 * (g * g)
                s0[i] = m
                s1[i] = v
                params[i] = p + -lr_t * m / (math.sqrt(v) + eps)
            else:
                u = mu * s0[i] - lr * g
                s0[i] = u
                params[i] = p + ((mu * u - lr * g) if nesterov else u)
        sq[tid] = acc  # every thread takes part in the tree, in range or not
        _block_sum(sq, tid, BLOCK)
        if tid == 0:
            partial[cuda.blockIdx.x] = sq[0]
    return sk_update


def sk_update_signature(NP):
    ty, a = build.scalar(NP), build.array(NP, 1)
    return types.void(a, a, a, a, types.Array(types.uint8, 1, "C"), build.F64, ty, ty, ty, ty, ty, ty, ty, ty, ty)


@functools.lru_cache(maxsize=None)
def sk_update(NP, adam, nesterov, block=None):
    """Compiled; launch as [ceil(P / BLOCK), BLOCK], BLOCK = block or config.BLOCK."""
    return build.compile(sk_update_signature(NP), sk_update_source, NP, adam, nesterov, block)


@functools.lru_cache(maxsize=None)
def sk_finish_source(block=None):
    BLOCK = block or config.ROWS_BLOCK

    def sk_finish(total, losses, partial, slot, div, half_alpha, n):
        sq = cuda.shared.array(BLOCK, np.float64)
        tid = cuda.threadIdx.x
        acc = np.float64(0.0)
        for k in range(tid, partial.shape[0], BLOCK):
            acc += partial[k]
        sq[tid] = acc
        _block_sum(sq, tid, BLOCK)
        if tid == 0:
            total[0] += (losses[slot] / div + half_alpha * sq[0] / n) * n
    return sk_finish


def sk_finish_signature():
    f = types.float64
    return types.void(build.F64, build.F64, build.F64, types.int64, f, f, f)


@functools.lru_cache(maxsize=None)
def sk_finish(block=None):
    """Compiled; launch as [1, block or config.ROWS_BLOCK]."""
    return build.compile(sk_finish_signature(), sk_finish_source, block)


def sk_epoch(dev, x, t, order, B, solver, alpha, step, state, div):
    """One epoch of scikit-learn's sgd or adam on DeviceMLP dev, as kernels/sk_solvers.py's
    sk_epoch on the CPU: x (N, D0), t (class ids or float targets) and order (N,) on the
    device; solver a kernels.sk_solvers.Solver; state (2, P) on the device; step Adam's
    count before. Returns (Σ over batches of reported loss · rows, Adam's count after)."""
    NP = dev.NP
    P = dev.params.shape[0]
    blocks = (P + config.BLOCK - 1) // config.BLOCK
    update = sk_update(NP, bool(solver.adam), bool(solver.nesterov))
    finish = sk_finish()
    partial = cuda.device_array(blocks, np.float64)
    total = cuda.to_device(np.zeros(1))
    losses = cuda.device_array(1, np.float64)
    N = order.shape[0]
    # the epoch's constant arguments of sk_update, in the dtype once: lr, then mu b1 b2 c1 c2 eps
    lr = NP(solver.lr)
    rates = tuple(NP(r) for r in (solver.momentum, solver.beta1, solver.beta2, 1.0 - solver.beta1,
                                  1.0 - solver.beta2, solver.eps))
    for start in range(0, N, B):
        n = min(B, N - start)
        ws = dev.workspace(n)
        ws.gather[ws.gather_blocks, config.BLOCK](ws.xb, ws.tb, x, t, order, start)
        dev.loss_grad(ws, ws.xb, ws.tb, losses, 0)
        step += 1
        lr_t = solver.lr * np.sqrt(1.0 - solver.beta2 ** step) / (1.0 - solver.beta1 ** step) if solver.adam else 0.0
        update[blocks, config.BLOCK](dev.params, dev.grads, state[0], state[1], dev.decay, partial,
                                     NP(alpha / n), lr, NP(lr_t), *rates)
        finish[1, config.ROWS_BLOCK](total, losses, partial, 0, float(div), 0.5 * alpha, float(n))
    return float(total.copy_to_host()[0]), step
