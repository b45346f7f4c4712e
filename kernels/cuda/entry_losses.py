"""The losses on float targets, on the device: each a sum over every output entry.

Sizes: N batch, C outputs. y (N, C) the last layer's output, t (N, C) float targets
of the same dtype (checked on the host). The CPU twins and their math:

    mse           mean over the N*C entries of (y - t)²     dy = 2 (y - t) / (N C)   (mse_loss.py)
    half_squared  ½ Σ (y - t)² / N                           dy = (y - t) / N         (mse_loss.py)
    logistic      Σ [max(y, 0) - y t + log1p(exp(-|y|))] / N  dy = (sigmoid(y) - t) / N
                  (a sigmoid on each output with binary cross-entropy: logistic_loss.py)

ONE block; thread k takes entries k, k + BLOCK, ... of the flattened (N, C), so a
narrow head still keeps every thread busy. Per-thread float64 sums meet in a
shared-memory tree in a fixed order (as softmax_loss.py's softmax_ce): the loss is
reproducible and lands in the same launch. losses[slot] receives it; on the first
non-finite one, stop[0] = slot + 1 (the optimizer then leaves the parameters alone).
"""
import functools
import math

import numpy as np
from numba import cuda, types

from ..codes import SIGMOID
from . import build, config
from .activations import make_activations
from .softmax_loss import _block_sum, _store_mean

KINDS = ("mse", "half_squared", "logistic")


@functools.lru_cache(maxsize=None)
def entry_loss_source(NP, kind, grad=True, block=None):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    BLOCK = block or config.ROWS_BLOCK  # a power of two
    act_apply, _ = make_activations(NP)
    MSE, HALF = kind == "mse", kind == "half_squared"

    def entry_loss(dy, losses, y, t, slot, stop):
        # y, t (N, C); writes dy (N, C) when grad, losses[slot], maybe stop[0]
        partial = cuda.shared.array(BLOCK, np.float64)
        tid = cuda.threadIdx.x
        N, C = y.shape
        scale = NP(2.0) / NP(N * C) if MSE else NP(1.0) / NP(N)
        acc = np.float64(0.0)
        for k in range(tid, N * C, BLOCK):
            i, j = k // C, k % C
            z, tk = y[i, j], t[i, j]
            if MSE or HALF:
                d = np.float64(z) - np.float64(tk)
                acc += d * d
                if grad:
                    dy[i, j] = scale * (z - tk)
            else:
                zd, td = np.float64(z), np.float64(tk)
                acc += max(zd, 0.0) - zd * td + math.log1p(math.exp(-abs(zd)))
                if grad:
                    dy[i, j] = (act_apply(z, SIGMOID) - tk) * scale
        partial[tid] = acc
        _block_sum(partial, tid, BLOCK)
        if tid == 0:
            if MSE:
                _store_mean(losses, stop, partial[0], N * C, slot)
            elif HALF:
                _store_mean(losses, stop, 0.5 * partial[0], N, slot)
            else:
                _store_mean(losses, stop, partial[0], N, slot)

    return entry_loss


def entry_loss_signature(NP):
    a = build.array(NP, 2)
    return types.void(a, build.F64, a, a, types.int64, build.I64)


@functools.lru_cache(maxsize=None)
def entry_loss(NP, kind, grad=True, block=None):
    """Compiled; launch as [1, block or config.ROWS_BLOCK]."""
    return build.compile(entry_loss_signature(NP), entry_loss_source, NP, kind, grad, block)
