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
(found by the property tests).

A float32 row of at most 16 classes (MNIST's 10) is one vector (simd.py): its
maximum, the 16 exponentials (vexp, within 2 ulp, where libm's scalar expf is
a call per entry; docs/sparse.md) and their sum (pairwise) at once. Other
rows go entry by entry. Every kernel here takes the same route for the same
row, so their losses agree to the last bit.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from .config import CACHE
from .simd import lanes, vadd_lane, vexp, vload_fill, vmax_lanes, vmul, vstore, vsubs, vsum


# what a row's pass writes into dst[i] besides returning (m, s)
NOTHING, PROBS, GRADIENT = 0, 1, 2


def _softmax_row(dst, logits, i, label, inv_n, writes):
    """(m, s) of row i: its largest logit m and s = Σ exp(logits[i] - m) (each term <= 1, no
    overflow); writes (a constant at each call) says what goes into dst[i]: NOTHING, PROBS
    (the softmax), or GRADIENT ((softmax - onehot(label))·inv_n)."""


@overload(_softmax_row, inline="always")
def _softmax_row_for(dst, logits, i, label, inv_n, writes):
    if logits.dtype == types.float32 and logits.layout == "C" and dst.layout == "C":
        return lambda dst, logits, i, label, inv_n, writes: _vector_row(dst, logits, i, label, inv_n, writes)
    return lambda dst, logits, i, label, inv_n, writes: _scalar_row(dst, logits, i, label, inv_n, writes)


@njit(inline="always")
def _vector_row(dst, logits, i, label, inv_n, writes):
    # the whole row in one vector, written once (a scalar write after a vector store of the
    # same row waits for the store: store forwarding fails between the two sizes)
    C = logits.shape[1]
    if C > lanes(logits):
        return _scalar_row(dst, logits, i, label, inv_n, writes)
    v = vload_fill(logits, i * C, C, -np.inf)
    m = vmax_lanes(v)  # a NaN anywhere in the row makes s NaN, whichever m is: as entry by entry
    e = vexp(vsubs(v, m))
    s = vsum(e)
    if writes == PROBS:
        vstore(dst, i * C, vmul(type(s)(1) / s, e), C)
    elif writes == GRADIENT:
        vstore(dst, i * C, vadd_lane(vmul(inv_n / s, e), label, -inv_n), C)
    return m, s


@njit(inline="always")
def _scalar_row(dst, logits, i, label, inv_n, writes):
    row = logits[i]
    m = row[0]
    for j in range(1, row.shape[0]):
        if row[j] > m:
            m = row[j]
    s = row.dtype.type(0)
    for j in range(row.shape[0]):
        e = np.exp(row[j] - m)
        if writes != NOTHING:
            dst[i, j] = e
        s += e
    if writes != NOTHING:
        scale = type(s)(1) / s if writes == PROBS else inv_n / s
        for j in range(row.shape[0]):
            dst[i, j] *= scale
        if writes == GRADIENT:
            dst[i, label] -= inv_n
    return m, s


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
        m, s = _softmax_row(logits, logits, i, t[i], logits.dtype.type(0), NOTHING)
        total += _row_loss(logits[i], t[i], m, s)
    return total / N


@njit(cache=CACHE)
def softmax_loss_forward(probs, logits, t):
    # logits is (N, C), t is (N,), probs is (N, C); returns the mean loss
    N, C = logits.shape
    total = 0.0
    for i in range(N):
        m, s = _softmax_row(probs, logits, i, t[i], logits.dtype.type(0), PROBS)
        total += _row_loss(logits[i], t[i], m, s)
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
        m, s = _softmax_row(dlogits, logits, i, t[i], inv_n, GRADIENT)
        total += _row_loss(logits[i], t[i], m, s)
    return total / N
