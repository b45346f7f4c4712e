"""Softmax + cross-entropy on the device, and the argmax that turns scores into classes.

Sizes: N batch, C classes. logits (N, C), t (N,) int64 class ids in [0, C) (checked
on the host before upload).

Two versions, side by side:

softmax_ce (few classes; DeviceMLP uses it up to config.ROW_THREAD_MAX_CLASSES):
ONE block; thread k takes rows k, k + BLOCK, ... whole. With C = 10 a warp or
block per row would leave most lanes idle and need a second launch (or float
atomics) for the batch mean; here the per-thread sums meet in a shared-memory
tree in a fixed order, so the mean loss is reproducible and lands in the same
launch.
softmax_ce_rows + mean_loss (wide heads): one block per row, its threads striding
the classes, shared-memory trees for the row max and sum; each row's loss goes to
row_loss, and a one-block kernel sums them in a fixed order. Two launches.

Per row, both do the CPU's math (kernels/softmax_loss.py): the loss is
(m - x[t]) + log(s) in float64 through the row max m, dlogits = (softmax -
onehot) / N in the kernel's dtype. The loss is the one float64 quantity in a
float32 kernel, on purpose.

losses[slot] receives the mean loss; on the first non-finite one, stop[0] = slot + 1
(the optimizer kernel then leaves the parameters alone: see optimizers.py).
"""
import functools
import math

import numpy as np
from numba import cuda, types

from . import build, config


@cuda.jit(device=True)
def _block_sum(partial, tid, block):
    # partial (block,) in shared memory, block a power of two: a tree leaves the sum in
    # partial[0], always in the same order (reproducible)
    cuda.syncthreads()
    step = block // 2
    while step > 0:
        if tid < step:
            partial[tid] += partial[tid + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit(device=True)
def _rows_sum(partial, row_loss, n, tid, block):
    # the sum of row_loss[:n] into partial[0] (block,), in a fixed order: each thread's rows
    # tid, tid + block, ..., then the tree
    acc = np.float64(0.0)
    for i in range(tid, n, block):
        acc += row_loss[i]
    partial[tid] = acc
    _block_sum(partial, tid, block)


@cuda.jit(device=True)
def _store_mean(losses, stop, total, n, slot):
    loss = total / n
    losses[slot] = loss
    if not math.isfinite(loss) and stop[0] == 0:
        stop[0] = slot + 1


@functools.lru_cache(maxsize=None)
def softmax_ce_source(NP, grad=True, block=None):
    BLOCK = block or config.ROWS_BLOCK  # a power of two
    zero = NP(0)

    def softmax_ce(dlogits, losses, logits, t, slot, stop):
        # logits (N, C), t (N,); writes dlogits (N, C) when grad, losses[slot], maybe stop[0]
        partial = cuda.shared.array(BLOCK, np.float64)
        tid = cuda.threadIdx.x
        N, C = logits.shape
        inv_n = NP(1.0) / NP(N)
        acc = np.float64(0.0)
        for i in range(tid, N, BLOCK):
            m = logits[i, 0]
            for j in range(1, C):
                if logits[i, j] > m:
                    m = logits[i, j]
            s = zero
            for j in range(C):
                e = math.exp(logits[i, j] - m)
                if grad:
                    dlogits[i, j] = e
                s += e
            label = t[i]
            acc += (np.float64(m) - np.float64(logits[i, label])) + math.log(np.float64(s))
            if grad:
                scale = inv_n / s
                for j in range(C):
                    dlogits[i, j] *= scale
                dlogits[i, label] -= inv_n
        partial[tid] = acc
        _block_sum(partial, tid, BLOCK)
        if tid == 0:
            _store_mean(losses, stop, partial[0], N, slot)

    return softmax_ce


def softmax_ce_signature(NP):
    return types.void(build.array(NP, 2), build.F64, build.array(NP, 2), build.I64,
                      types.int64, build.I64)


@functools.lru_cache(maxsize=None)
def softmax_ce(NP, grad=True, block=None):
    """Compiled; launch as [1, block or config.ROWS_BLOCK]."""
    return build.compile(softmax_ce_signature(NP), softmax_ce_source, NP, grad, block)


@functools.lru_cache(maxsize=None)
def softmax_ce_rows_source(NP, grad=True, block=None):
    BLOCK = block or config.ROWS_BLOCK  # a power of two
    zero = NP(0)

    def softmax_ce_rows(dlogits, row_loss, logits, t):
        # block i: row i of logits (N, C); writes dlogits[i] when grad, row_loss[i] (float64)
        sh = cuda.shared.array(BLOCK, NP)
        i, tid = cuda.blockIdx.x, cuda.threadIdx.x
        N, C = logits.shape
        inv_n = NP(1.0) / NP(N)
        m = logits[i, 0]
        for j in range(tid, C, BLOCK):
            if logits[i, j] > m:
                m = logits[i, j]
        sh[tid] = m
        cuda.syncthreads()
        step = BLOCK // 2
        while step > 0:
            if tid < step and sh[tid + step] > sh[tid]:
                sh[tid] = sh[tid + step]
            cuda.syncthreads()
            step //= 2
        m = sh[0]
        cuda.syncthreads()  # everyone has read the max before sh is reused
        s = zero
        for j in range(tid, C, BLOCK):
            e = math.exp(logits[i, j] - m)
            if grad:
                dlogits[i, j] = e
            s += e
        sh[tid] = s
        _block_sum(sh, tid, BLOCK)
        s = sh[0]
        label = t[i]
        if grad:
            scale = inv_n / s
            for j in range(tid, C, BLOCK):
                dlogits[i, j] *= scale
                if j == label:
                    dlogits[i, j] -= inv_n
        if tid == 0:
            row_loss[i] = (np.float64(m) - np.float64(logits[i, label])) + math.log(np.float64(s))

    return softmax_ce_rows


def softmax_ce_rows_signature(NP):
    return types.void(build.array(NP, 2), build.F64, build.array(NP, 2),
                      build.I64)


@functools.lru_cache(maxsize=None)
def softmax_ce_rows(NP, grad=True, block=None):
    """Compiled; launch as [N, block or config.ROWS_BLOCK], then mean_loss."""
    return build.compile(softmax_ce_rows_signature(NP), softmax_ce_rows_source, NP, grad, block)


@functools.lru_cache(maxsize=None)
def mean_loss_source(block=None):
    BLOCK = block or config.ROWS_BLOCK

    def mean_loss(losses, row_loss, slot, stop):
        # losses[slot] = mean of row_loss (N,), summed in a fixed order; stop as softmax_ce
        partial = cuda.shared.array(BLOCK, np.float64)
        tid = cuda.threadIdx.x
        N = row_loss.shape[0]
        _rows_sum(partial, row_loss, N, tid, BLOCK)
        if tid == 0:
            _store_mean(losses, stop, partial[0], N, slot)

    return mean_loss


def mean_loss_signature():
    return types.void(build.F64, build.F64, types.int64, build.I64)


@functools.lru_cache(maxsize=None)
def mean_loss(block=None):
    """Compiled; launch as [1, block or config.ROWS_BLOCK]."""
    return build.compile(mean_loss_signature(), mean_loss_source, block)


def argmax_source(NP):
    def argmax_rows(pred, logits):
        # logits (N, C); pred (N,) int64 = index of each row's first largest score (np.argmax)
        i = cuda.grid(1)
        if i < logits.shape[0]:
            best, arg = logits[i, 0], 0
            for j in range(1, logits.shape[1]):
                if logits[i, j] > best:
                    best, arg = logits[i, j], j
            pred[i] = arg
    return argmax_rows


def argmax_signature(NP):
    return types.void(build.I64, build.array(NP, 2))


@functools.lru_cache(maxsize=None)
def argmax_rows(NP):
    """Compiled; launch as [ceil(N / config.BLOCK), config.BLOCK]."""
    return build.compile(argmax_signature(NP), argmax_source, NP)
