"""The minibatch gather: rows order[start : start + B] of the device-resident data set
into the contiguous batch buffers the gemm kernels read.

x (N, D), t (N,) int64: the whole training set, uploaded once. order (N,) int64: this
epoch's permutation (drawn on the host by the same Generator as the CPU loop, so
both train on the same batches). xb (B, D), tb (B,). The host guarantees
start + B <= N and that order is a permutation of range(N).
Launch as [(ceil(D / config.BLOCK), B), config.BLOCK]: one block row per batch
row, consecutive threads copy consecutive columns (coalesced).
"""
import functools

import numpy as np
from numba import cuda, types


def source(NP):
    def gather(xb, tb, x, t, order, start):
        i = cuda.blockIdx.y
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = order[start + i]
        if j < x.shape[1]:
            xb[i, j] = x[r, j]
        if j == 0:
            tb[i] = t[r]
    return gather


def signature(NP):
    a = types.Array(types.float32 if NP is np.float32 else types.float64, 2, "C")
    i = types.Array(types.int64, 1, "C")
    return types.void(a, i, a, i, i, types.int64)


@functools.lru_cache(maxsize=None)
def gather(NP):
    return cuda.jit(signature(NP))(source(NP))
