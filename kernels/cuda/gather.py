"""The minibatch gather: rows order[start : start + B] of the device-resident data set
into the contiguous batch buffers the gemm kernels read.

x (N, D), t the targets: (N,) int64 class ids, or with float_targets (N, C) floats of
x's dtype (mse, half_squared and logistic outputs): the whole training set, uploaded
once. order (N,) int64: this epoch's permutation (drawn on the host by the same
Generator as the CPU loop, so both train on the same batches). xb (B, D), tb (B,) or
(B, C). The host guarantees start + B <= N and that order is a permutation of range(N).
Launch as [(ceil(max(D, C) / config.BLOCK), B), config.BLOCK]: one block row per batch
row, consecutive threads copy consecutive columns (coalesced).
"""
import functools

from numba import cuda, types

from . import build


def source(NP, float_targets=False):
    def gather(xb, tb, x, t, order, start):
        i = cuda.blockIdx.y
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = order[start + i]
        if j < x.shape[1]:
            xb[i, j] = x[r, j]
        if float_targets:
            if j < t.shape[1]:
                tb[i, j] = t[r, j]
        elif j == 0:
            tb[i] = t[r]
    return gather


def signature(NP, float_targets=False):
    a = build.array(NP, 2)
    tt = a if float_targets else build.I64
    return types.void(a, tt, a, tt, build.I64, types.int64)


@functools.lru_cache(maxsize=None)
def gather(NP, float_targets=False):
    return build.compile(signature(NP, float_targets), source, NP, float_targets)
