"""The first layer on sparse input: only the nonzeros are read, multiplied and written.

Sizes: N batch, D inputs, M outputs. A batch of sparse rows is a Csr value:
indptr (R+1,) int64, indices (nnz,) int32 and data (nnz,) float are R rows of a
CSR matrix with D columns (any order, no duplicates); rows (N,) int64 picks them:
batch row i is CSR row rows[i], so a minibatch is a list of rows, not a copy.
work is a TnWork, the backward's scratch: count (D,) int64 zeros, cols (D,) int64,
ti (cap,) int64 and tv (cap,) float, cap at least the batch's nonzeros, and dz
(N * Mp,) float starting on a cache line, Mp = M rounded up to whole vectors
(shorter: dz is read where it lies; see _aligned_rows).
W (D, M), b (M,), out (N, M), dz (N, M), C (D, M).

Forward:  out = act(x·W + b). Per row, a block of 4 vectors of output columns
          lives in registers (simd.py) while the row's nonzeros stream past: one
          fused multiply-add per nonzero per vector. Two sets of accumulators take
          alternate nonzeros, so two FMA chains overlap. Row i + 2's nonzeros are
          prefetched while row i is worked on.
Backward: C = beta·C + alpha·xᵀ·dz. The batch is grouped by column (in O(nnz)),
          dz copied to rows that start on cache lines unless its rows already do,
          then each row j of C that a nonzero names is read once, gets
          alpha·Σ_i x[i, j]·dz[i, :] added, and is written once; no other row is touched;
          beta != 1 (weight decay, or 0 for a fresh gradient) is one pass over C.
          alpha = 1, beta = 0: dW = xᵀ·dz. alpha = -lr, beta = 1 - lr·wd: SGD on W.
The sums run in another order than BLAS's: results agree with the dense
kernels to float rounding. reference.py's dense products are the referee.
"""
from collections import namedtuple

import numpy as np
from numba import njit, types

from .affine import _act
from .config import CACHE, FASTMATH
from .simd import VECTOR_BYTES, lanes, prefetch, vadd, vfma, vload, vstore, vzero

Csr = namedtuple("Csr", "indptr indices data rows work")


def is_csr(x):
    """At compile time (in an overload): is the numba type x a Csr batch (else a dense array)?"""
    return isinstance(x, types.BaseNamedTuple)


TnWork = namedtuple("TnWork", "count cols ti tv dz")  # sparse_tn_update's scratch; see above


def padded_width(M, dtype):
    """M rounded up to whole vectors of dtype: the row length of TnWork's dz."""
    L = lanes(dtype)
    return (M + L - 1) // L * L

# Positions in the nonzeros are made unsigned (U) in the inner loops: numba wraps a negative
# signed index around (a compare and a select per access, and a loop LLVM cannot simplify);
# an unsigned one it takes as it is. Grouping the MNIST batch by column took 34 us with
# signed positions, 18 us with unsigned ones. Mixing U with signed integers gives floats in
# numba, hence the U-typed constants.
U = types.uint64
U1, U2 = U(1), U(2)


@njit(inline="always")
def _counts(M, c0, L):
    # lanes in use of the 4 vectors of the column block starting at c0
    n = M - c0
    return min(n, L), max(min(n - L, L), 0), max(min(n - 2 * L, L), 0), max(min(n - 3 * L, L), 0)


@njit(inline="always")
def _row_forward(out, i, indptr, indices, data, rows, W, b, act):
    # out[i, :] = act(x[rows[i], :]·W + b)
    M = out.shape[1]
    L = lanes(out)
    r = U(rows[i])
    p0, p1 = U(indptr[r]), U(indptr[r + U1])
    for c0 in range(0, M, 4 * L):
        n0, n1, n2, n3 = _counts(M, c0, L)
        a0, a1 = vload(b, c0, n0), vload(b, c0 + L, n1)
        a2, a3 = vload(b, c0 + 2 * L, n2), vload(b, c0 + 3 * L, n3)
        e0, e1, e2, e3 = vzero(out), vzero(out), vzero(out), vzero(out)
        p = p0
        while p + U1 < p1:
            v, j = data[p], indices[p] * M + c0
            a0, a1 = vfma(v, vload(W, j, n0), a0), vfma(v, vload(W, j + L, n1), a1)
            a2, a3 = vfma(v, vload(W, j + 2 * L, n2), a2), vfma(v, vload(W, j + 3 * L, n3), a3)
            v, j = data[p + U1], indices[p + U1] * M + c0
            e0, e1 = vfma(v, vload(W, j, n0), e0), vfma(v, vload(W, j + L, n1), e1)
            e2, e3 = vfma(v, vload(W, j + 2 * L, n2), e2), vfma(v, vload(W, j + 3 * L, n3), e3)
            p += U2
        if p < p1:
            v, j = data[p], indices[p] * M + c0
            a0, a1 = vfma(v, vload(W, j, n0), a0), vfma(v, vload(W, j + L, n1), a1)
            a2, a3 = vfma(v, vload(W, j + 2 * L, n2), a2), vfma(v, vload(W, j + 3 * L, n3), a3)
        o = i * M + c0
        vstore(out, o, vadd(a0, e0), n0)
        vstore(out, o + L, vadd(a1, e1), n1)
        vstore(out, o + 2 * L, vadd(a2, e2), n2)
        vstore(out, o + 3 * L, vadd(a3, e3), n3)
    for c in range(M):
        out[i, c] = _act(out[i, c], act)


AHEAD = 2  # the forward asks for row i + AHEAD's nonzeros while it works on row i


@njit(inline="always")
def _prefetch_row(x, i):
    # batch row i's indices and data, one request per cache line: a minibatch's rows lie
    # anywhere in the data set, and each starts with a miss the hardware cannot foresee
    r = U(x.rows[i])
    p0, p1 = x.indptr[r], x.indptr[r + U1]
    for p in range(p0, p1 + lanes(x.indices), lanes(x.indices)):  # a vector's bytes: a cache line
        prefetch(x.indices, p)
    for p in range(p0, p1 + lanes(x.data), lanes(x.data)):
        prefetch(x.data, p)


@njit(cache=CACHE, fastmath=FASTMATH)
def sparse_affine_forward(out, x, W, b, act):
    # out (N, M) = act(x·W + b), x a Csr batch of N rows, on the calling thread (whole-set
    # passes give each of numba's threads blocks of rows: mlp.py, mlp_logits_blocks)
    N = x.rows.shape[0]
    for i in range(min(AHEAD, N)):
        _prefetch_row(x, i)
    for i in range(N):
        if i + AHEAD < N:
            _prefetch_row(x, i + AHEAD)
        _row_forward(out, i, x.indptr, x.indices, x.data, x.rows, W, b, act)


@njit(cache=CACHE, fastmath=FASTMATH)
def sparse_tn_update(C, x, dz, alpha, beta):
    # C (D, M) = beta·C + alpha·xᵀ·dz, x a Csr batch of N rows, dz (N, M).
    # Column by column of x (the batch transposed first, into x.work): each row of C that
    # the batch names is loaded once, gets all its nonzeros' dz rows (dz stays in L1) and
    # is stored once. Row by row instead, a row of C is read and written once per nonzero,
    # and the dirty lines go back and forth to L2 (measured 1.6x slower on MNIST batches).
    if beta == 0:
        C[...] = 0
    elif beta != 1:
        for j in range(C.shape[0]):
            for c in range(C.shape[1]):
                C[j, c] *= beta
    count, cols, ti, tv, scratch = x.work
    d = _aligned_rows(dz, scratch)
    nc = _transpose(count, cols, ti, tv, x, d.shape[1])
    M = dz.shape[1]
    L = lanes(dz)
    s = 0
    for k in range(nc):
        j = cols[k]
        e = count[j]
        for c0 in range(0, M, 4 * L):
            n0, n1, n2, n3 = _counts(M, c0, L)
            a0, a1, a2, a3 = vzero(dz), vzero(dz), vzero(dz), vzero(dz)
            for q in range(U(s), U(e)):
                v, o = tv[q], ti[q] + c0
                a0, a1 = vfma(v, vload(d, o, n0), a0), vfma(v, vload(d, o + L, n1), a1)
                a2, a3 = vfma(v, vload(d, o + 2 * L, n2), a2), vfma(v, vload(d, o + 3 * L, n3), a3)
            r = j * M + c0
            vstore(C, r, vfma(alpha, a0, vload(C, r, n0)), n0)
            vstore(C, r + L, vfma(alpha, a1, vload(C, r + L, n1)), n1)
            vstore(C, r + 2 * L, vfma(alpha, a2, vload(C, r + 2 * L, n2)), n2)
            vstore(C, r + 3 * L, vfma(alpha, a3, vload(C, r + 3 * L, n3)), n3)
        count[j] = 0  # count is all zeros between calls
        s = e


@njit(inline="always")
def _aligned_rows(dz, scratch):
    # dz (N, M) itself if each row starts on a cache line, else a copy (N, Mp) in scratch
    # that does: the loop above reads a row of dz per nonzero, and a vector that straddles
    # two lines costs two loads (a 50-wide layer's rows are 200 bytes apart; the copy took
    # the MNIST batch's accumulation from 23 to 18 us). Without room in scratch, dz as it is.
    N, M = dz.shape
    L = lanes(dz)
    Mp = (M + L - 1) // L * L
    if (M == Mp and dz.ctypes.data % VECTOR_BYTES == 0) or scratch.shape[0] < N * Mp \
            or scratch.ctypes.data % VECTOR_BYTES != 0:
        return dz
    d = scratch[:N * Mp].reshape((N, Mp))
    for i in range(N):
        for c0 in range(0, Mp, L):
            vstore(d, i * Mp + c0, vload(dz, i * M + c0, min(M - c0, L)), L)
    return d


@njit(inline="always")
def _transpose(count, cols, ti, tv, x, stride):
    # The batch's nonzeros grouped by column in O(nnz) (no pass over all D columns):
    # cols[:nc] are the columns that occur, in order of first occurrence; column cols[k]'s
    # nonzeros are ti/tv[count[cols[k-1]] : count[cols[k]]] (batch row times stride, value;
    # count[cols[-1]] read as 0), in batch-row order. count (D,) must be all zeros on entry.
    # Returns nc.
    nc = 0
    for i in range(x.rows.shape[0]):
        r = U(x.rows[i])
        for p in range(U(x.indptr[r]), U(x.indptr[r + U1])):
            j = U(x.indices[p])
            c = count[j]
            if c == 0:
                cols[nc] = j
                nc += 1
            count[j] = c + 1
    pos = 0
    for k in range(nc):  # counts -> where each column's range starts
        j = cols[k]
        c = count[j]
        count[j] = pos
        pos += c
    for i in range(x.rows.shape[0]):  # scatter; count[j] moves on to the end of j's range
        r = U(x.rows[i])
        o = i * stride
        for p in range(U(x.indptr[r]), U(x.indptr[r + U1])):
            j = U(x.indices[p])
            q = count[j]
            ti[U(q)] = o
            tv[U(q)] = x.data[p]
            count[j] = q + 1
    return nc


@njit(cache=CACHE)
def dense_row_counts(counts, x):
    # counts (N,) int64: the nonzeros of each row of x (N, D)
    for i in range(x.shape[0]):
        c = 0
        for j in range(x.shape[1]):
            c += x[i, j] != 0
        counts[i] = c


@njit(cache=CACHE)
def dense_to_csr(indices, data, indptr, x):
    # x (N, D) into CSR: indptr (N+1,) already the running sums of dense_row_counts;
    # fills indices (nnz,) int32 and data (nnz,) in column order
    for i in range(x.shape[0]):
        q = indptr[i]
        for j in range(x.shape[1]):
            v = x[i, j]
            if v != 0:
                indices[q] = j
                data[q] = v
                q += 1
