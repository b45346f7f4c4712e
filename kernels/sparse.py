"""The first layer on sparse input: only the nonzeros are read, multiplied and written.

Sizes: N batch, D inputs, M outputs. A batch of sparse rows is a Csr value:
indptr (R+1,) int64, indices (nnz,) int32 and data (nnz,) float are R rows of a
CSR matrix with D columns (any order, no duplicates); rows (N,) int64 picks them:
batch row i is CSR row rows[i], so a minibatch is a list of rows, not a copy.
work is a TnWork: count (D,) int64 zeros, cols (D,) int64, ti (cap,) int64 and
tv (cap,) float, cap at least the batch's nonzeros: the backward's scratch.
W (D, M), b (M,), out (N, M), dz (N, M), C (D, M).

Forward:  out = act(x·W + b). Per row, a block of 4 vectors of output columns
          lives in registers (simd.py) while the row's nonzeros stream past: one
          fused multiply-add per nonzero per vector. Two sets of accumulators take
          alternate nonzeros, so two FMA chains overlap.
Backward: C = beta·C + alpha·xᵀ·dz. The batch is grouped by column (in O(nnz)),
          then each row j of C that a nonzero names is read once, gets
          alpha·Σ_i x[i, j]·dz[i, :] added, and is written once; no other row is touched;
          beta != 1 (weight decay, or 0 for a fresh gradient) is one pass over C.
          alpha = 1, beta = 0: dW = xᵀ·dz. alpha = -lr, beta = 1 - lr·wd: SGD on W.
The sums run in another order than BLAS's: results agree with the dense
kernels to float rounding. reference.py's dense products are the referee.
"""
from collections import namedtuple

from numba import njit, types

from .affine import _act
from .config import CACHE, FASTMATH
from .simd import lanes, vadd, vfma, vload, vstore, vzero

Csr = namedtuple("Csr", "indptr indices data rows work")


def is_csr(x):
    """At compile time (in an overload): is the numba type x a Csr batch (else a dense array)?"""
    return isinstance(x, types.BaseNamedTuple)


TnWork = namedtuple("TnWork", "count cols ti tv")  # sparse_tn_update's scratch; see _transpose



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
    r = rows[i]
    p0, p1 = indptr[r], indptr[r + 1]
    for c0 in range(0, M, 4 * L):
        n0, n1, n2, n3 = _counts(M, c0, L)
        a0, a1 = vload(b, c0, n0), vload(b, c0 + L, n1)
        a2, a3 = vload(b, c0 + 2 * L, n2), vload(b, c0 + 3 * L, n3)
        e0, e1, e2, e3 = vzero(out), vzero(out), vzero(out), vzero(out)
        p = p0
        while p + 1 < p1:
            v, j = data[p], indices[p] * M + c0
            a0, a1 = vfma(v, vload(W, j, n0), a0), vfma(v, vload(W, j + L, n1), a1)
            a2, a3 = vfma(v, vload(W, j + 2 * L, n2), a2), vfma(v, vload(W, j + 3 * L, n3), a3)
            v, j = data[p + 1], indices[p + 1] * M + c0
            e0, e1 = vfma(v, vload(W, j, n0), e0), vfma(v, vload(W, j + L, n1), e1)
            e2, e3 = vfma(v, vload(W, j + 2 * L, n2), e2), vfma(v, vload(W, j + 3 * L, n3), e3)
            p += 2
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


@njit(cache=CACHE, fastmath=FASTMATH)
def sparse_affine_forward(out, x, W, b, act):
    # out (N, M) = act(x·W + b), x a Csr batch of N rows. One thread: split between
    # numba's threads, whole-set passes were no faster on 2 cores and stalled for ms where
    # OpenBLAS's threads spin between calls (docs/performance.md, "Sparse inputs")
    for i in range(x.rows.shape[0]):
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
    count, cols, ti, tv = x.work
    nc = _transpose(count, cols, ti, tv, x)
    M = dz.shape[1]
    L = lanes(dz)
    s = 0
    for k in range(nc):
        j = cols[k]
        e = count[j]
        for c0 in range(0, M, 4 * L):
            n0, n1, n2, n3 = _counts(M, c0, L)
            a0, a1, a2, a3 = vzero(dz), vzero(dz), vzero(dz), vzero(dz)
            for q in range(s, e):
                v, o = tv[q], ti[q] * M + c0
                a0, a1 = vfma(v, vload(dz, o, n0), a0), vfma(v, vload(dz, o + L, n1), a1)
                a2, a3 = vfma(v, vload(dz, o + 2 * L, n2), a2), vfma(v, vload(dz, o + 3 * L, n3), a3)
            r = j * M + c0
            vstore(C, r, vfma(alpha, a0, vload(C, r, n0)), n0)
            vstore(C, r + L, vfma(alpha, a1, vload(C, r + L, n1)), n1)
            vstore(C, r + 2 * L, vfma(alpha, a2, vload(C, r + 2 * L, n2)), n2)
            vstore(C, r + 3 * L, vfma(alpha, a3, vload(C, r + 3 * L, n3)), n3)
        count[j] = 0  # count is all zeros between calls
        s = e


@njit(inline="always")
def _transpose(count, cols, ti, tv, x):
    # The batch's nonzeros grouped by column in O(nnz) (no pass over all D columns):
    # cols[:nc] are the columns that occur, in order of first occurrence; column cols[k]'s
    # nonzeros are ti/tv[count[cols[k-1]] : count[cols[k]]] (batch row, value; count[cols[-1]]
    # read as 0), in batch-row order. count (D,) must be all zeros on entry. Returns nc.
    nc = 0
    for i in range(x.rows.shape[0]):
        r = x.rows[i]
        for p in range(x.indptr[r], x.indptr[r + 1]):
            j = x.indices[p]
            if count[j] == 0:
                cols[nc] = j
                nc += 1
            count[j] += 1
    pos = 0
    for k in range(nc):  # counts -> where each column's range starts
        j = cols[k]
        c = count[j]
        count[j] = pos
        pos += c
    for i in range(x.rows.shape[0]):  # scatter; count[j] moves on to the end of j's range
        r = x.rows[i]
        for p in range(x.indptr[r], x.indptr[r + 1]):
            j = x.indices[p]
            q = count[j]
            ti[q] = i
            tv[q] = x.data[p]
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
