"""Softmax + cross-entropy loss, averaged over the batch.

Sizes: N batch, C classes. logits (N, C) float; t (N,) int64 class ids in [0, C).
The loss of row i is logsumexp(logits[i]) - logits[i, t[i]], computed exactly
through the row maximum (no `+ 1e-7` inside a log), so it is finite and
accurate for any finite logits. The per-row sum is accumulated in float64
whatever the input dtype: it is one add per row and keeps the mean exact.
Backward: dlogits = dout * (softmax(logits) - onehot(t)) / N.

These kernels are compiled WITHOUT fastmath: with `reassoc`, LLVM rewrote
total + ((m - x) + log s) as ((total + m) - x) + log s, and for a row with
m ~ 1e11 the float64 rounding of total + m swallowed the other rows' losses
(found by the property tests). C is small (10), so vectorising the row sums
bought little anyway.
"""
import numpy as np
from numba import njit

from .config import CACHE


@njit(inline="always")
def _row_max(row):
    m = row[0]
    for j in range(1, row.shape[0]):
        if row[j] > m:
            m = row[j]
    return m


@njit(inline="always")
def _exp_shifted(dst, row, m):
    # dst[j] = exp(row[j] - m) (all <= 1, no overflow); returns their sum
    s = row.dtype.type(0)
    for j in range(row.shape[0]):
        e = np.exp(row[j] - m)
        dst[j] = e
        s += e
    return s


@njit(inline="always")
def _row_loss(row, label, m, s):
    # logsumexp(row) - row[label] = (m - row[label]) + log(s), in float64:
    # m - row[label] can exceed float32's range for huge finite logits
    return (np.float64(m) - np.float64(row[label])) + np.log(np.float64(s))


@njit(cache=CACHE)
def cross_entropy(logits, t):
    # logits is (N, C), t is (N,); returns the mean loss; writes nothing
    N, C = logits.shape
    total = 0.0
    for i in range(N):
        row = logits[i]
        m = _row_max(row)
        s = row.dtype.type(0)
        for j in range(C):
            s += np.exp(row[j] - m)
        total += _row_loss(row, t[i], m, s)
    return total / N


@njit(cache=CACHE)
def softmax_loss_forward(probs, logits, t):
    # logits is (N, C), t is (N,), probs is (N, C); returns the mean loss
    N, C = logits.shape
    total = 0.0
    for i in range(N):
        row = logits[i]
        m = _row_max(row)
        s = _exp_shifted(probs[i], row, m)
        inv = type(s)(1) / s
        for j in range(C):
            probs[i, j] *= inv
        total += _row_loss(row, t[i], m, s)
    return total / N


@njit(cache=CACHE)
def softmax_loss_backward(dlogits, probs, t, dout):
    # probs is (N, C) from forward, t is (N,), dout is the scalar d loss; dlogits is (N, C)
    N, C = probs.shape
    scale = probs.dtype.type(dout / N)
    for i in range(N):
        for j in range(C):
            dlogits[i, j] = probs[i, j] * scale
        dlogits[i, t[i]] -= scale


@njit(cache=CACHE)
def softmax_loss_forward_backward(dlogits, logits, t):
    # Fused for training (llm.c style): logits is (N, C), t is (N,);
    # writes dlogits (N, C) = (softmax - onehot) / N and returns the mean loss
    N, C = logits.shape
    total = 0.0
    inv_n = logits.dtype.type(1.0 / N)
    for i in range(N):
        row = logits[i]
        m = _row_max(row)
        s = _exp_shifted(dlogits[i], row, m)
        total += _row_loss(row, t[i], m, s)
        scale = inv_n / s
        for j in range(C):
            dlogits[i, j] *= scale
        dlogits[i, t[i]] -= inv_n
    return total / N
