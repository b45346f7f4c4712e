"""Logistic outputs + binary cross-entropy, summed over the outputs, averaged over the batch.

Sizes: N batch, C outputs. logits (N, C) float; t (N, C) targets in [0, 1] (0/1 for
binary and multilabel classification), same dtype. Each output is an independent
yes/no: p = sigmoid(z), and its loss -(t log p + (1 - t) log(1 - p)) is computed as
max(z, 0) - z t + log1p(exp(-|z|)): exact and finite for any finite z (no clipping
of p). The loss is the sum over the N*C entries divided by N (scikit-learn's
binary_log_loss), accumulated in float64 and compiled without fastmath for the
reason softmax_loss.py gives.
Backward: dlogits = (sigmoid(z) - t) / N.
"""
import numpy as np
from numba import njit

from .config import CACHE
from .sigmoid import sigmoid


@njit(inline="always")
def _entry_loss(z, t):
    z, t = np.float64(z), np.float64(t)
    return max(z, 0.0) - z * t + np.log1p(np.exp(-abs(z)))


@njit(cache=CACHE)
def logistic_loss_forward(logits, t):
    # logits, t (N, C); returns the loss
    N, C = logits.shape
    total = 0.0
    for i in range(N):
        for j in range(C):
            total += _entry_loss(logits[i, j], t[i, j])
    return total / N


@njit(cache=CACHE)
def logistic_loss_forward_backward(dlogits, logits, t):
    # fused for training: dlogits (N, C) = (sigmoid(logits) - t) / N; returns the loss
    N, C = logits.shape
    inv = logits.dtype.type(1.0 / N)
    total = 0.0
    for i in range(N):
        for j in range(C):
            z = logits[i, j]
            total += _entry_loss(z, t[i, j])
            dlogits[i, j] = (sigmoid(z) - t[i, j]) * inv
    return total / N
