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

from numba import cuda, types

from . import build


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
    a = build.array(NP, 2)
    return types.void(a, build.I64, a, build.I64, build.I64, types.int64)


@functools.lru_cache(maxsize=None)
def gather(NP):
    return build.compile(signature(NP), source(NP))
