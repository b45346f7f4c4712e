"""Where everything lives in the flat buffers: the one definition of both layouts.

Sizes: L layers, widths sizes = (D0, D1, ..., DL), N batch.
Parameters (llm.c style): W1 (D0, D1), b1 (D1,), W2 (D1, D2), b2, ... back to back in
ONE flat buffer; gradients and optimizer state mirror it. offsets (2L,) int64 holds
where each block starts: W_l at offsets[2l], b_l at offsets[2l + 1] (l from 0).
Layer outputs: acts (N * (D1 + ... + DL),) holds layer 1's (N, D1), then layer 2's,
...; the last block is the logits. deltas (about 2 * N * max(D1..DL),) holds two
ping-pong gradient blocks for backward, each starting on a cache line.
Parameter, gradient and workspace buffers are allocated here (zeros, workspace), 64-byte
aligned: then each row of a layer whose width is a multiple of 16 (float32) or 8
(float64) starts on a cache line, and no 64-byte vector load or store in
kernels/sparse.py straddles two lines (the sparse first layer ran 1.13-1.44x faster so,
docs/sparse.md).
"""
import math
from collections import namedtuple

import numpy as np
from numba import njit

Param = namedtuple("Param", "name layer kind offset shape")  # kind "W" or "b"; layer from 0


def param_layout(sizes):
    """[Param("W1", 0, "W", 0, (D0, D1)), Param("b1", 0, "b", D0*D1, (D1,)), ...]."""
    layout, offset = [], 0
    for l in range(len(sizes) - 1):
        for kind, shape in (("W", (sizes[l], sizes[l + 1])), ("b", (sizes[l + 1],))):
            layout.append(Param(f"{kind}{l + 1}", l, kind, offset, shape))
            offset += math.prod(shape)
    return layout


def param_count(layout):
    return sum(math.prod(p.shape) for p in layout)


def offsets(layout):
    """The (2L,) int64 block starts the kernels take."""
    return np.array([p.offset for p in layout], np.int64)


def acts_length(sizes, n):
    return n * sum(sizes[1:])


def deltas_length(sizes, n):
    half = n * max(sizes[1:])
    return 2 * (half + -half % ALIGN_ELEMENTS)  # the second half starts on a cache line too


ALIGN = 64           # bytes: a cache line, and one AVX-512 vector
ALIGN_ELEMENTS = 16  # a whole number of cache lines in float32 and in float64


def zeros(n, dtype):
    """A (n,) array of zeros whose first element starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n * dtype.itemsize + ALIGN, np.uint8)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip:skip + n * dtype.itemsize].view(dtype)


def workspace(sizes, n, dtype):
    """(acts, deltas) for a batch of n rows, aligned (see above)."""
    return zeros(acts_length(sizes, n), dtype), zeros(deltas_length(sizes, n), dtype)


def logits_of(acts, sizes, n):
    """The last layer's output block of acts as (n, DL)."""
    return acts[acts_length(sizes, n) - n * sizes[-1]:acts_length(sizes, n)].reshape(n, sizes[-1])


@njit(inline="always")
def param_block(offsets, sizes, l, k):
    # (start, length) of layer l's W (k = 0) or b (k = 1) in the flat buffer
    n = sizes[l] * sizes[l + 1] if k == 0 else sizes[l + 1]
    return offsets[2 * l + k], n


@njit(inline="always")
def act_block(sizes, N, l):
    # (start, width) of layer l's output (N, width) in acts
    start = 0
    for k in range(1, l + 1):
        start += N * sizes[k]
    return start, sizes[l + 1]
