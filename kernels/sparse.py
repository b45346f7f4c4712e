"""The first layer on sparse input: only the nonzeros are read, multiplied and written.

Sizes: N batch, D inputs, M outputs, T parts. A batch of sparse rows is a Csr value:
indptr (R+1,) int64, indices (nnz,) int32 and data (nnz,) float are R rows of a
CSR matrix with D columns (no duplicates, each row's columns in increasing order);
rows (N,) int64 picks them: batch row i is CSR row rows[i], so a minibatch is a
list of rows, not a copy. work is a TnWork (below): the parts and the scratch.
W (D, M), b (M,), out (N, M), dz (N, M), C (D, M).

Parts: the columns of x (the rows of W) are cut into T ranges, splits (T+1,) int64
from 0 to D, each range holding about as many of the data set's nonzeros
(fastbp/sparse.py picks them). Part t reads and writes only rows splits[t] to
splits[t+1] - 1 of W, so with work.threaded the parts run on numba's threads at
once, each core keeping its own rows of W in its own cache; otherwise in turn on
the calling thread. Every sum runs in the same order either way: the results do
not depend on the threads. With one part (splits [0, D]) a row is one part.

Forward:  out = act(x·W + b). Per row and part, a block of 4 vectors of output
          columns lives in registers (simd.py) while the part's nonzeros stream
          past: one fused multiply-add per nonzero per vector. Two sets of
          accumulators take alternate nonzeros, so two FMA chains overlap. Row
          i + 2's nonzeros are prefetched while row i is worked on. Part 0 sums
          into out from b, part t > 0 into its block of work.parts; then
          out = act(out + parts[0] + ...), in part order.
Backward: C = beta·C + alpha·xᵀ·dz. Each part groups its nonzeros of the batch by
          column (in O(nnz)), dz copied first to rows that start on cache lines
          unless its rows already do (on threads, each part its own copy); then
          each row j of C that a nonzero names is read once, gets
          alpha·Σ_i x[i, j]·dz[i, :] added, and is written once; no
          other row is touched; beta != 1 (weight decay, or 0 for a fresh gradient)
          is one pass over the part's rows of C. In turn, all parts are grouped at
          once: each row of C gets the same operations in the same order.
          alpha = 1, beta = 0: dW = xᵀ·dz. alpha = -lr, beta = 1 - lr·wd: SGD on W.
Packed:   on W packed (each row padded to whole vectors on its own cache lines:
          pack_rows; or a W whose rows are so already) the backward needs no grouping:
          sparse_tn_packed adds each nonzero's data·alpha·dz row into W's row at once,
          W's rows walked in blocks that stay in L1 (faster at every width measured,
          64 to 256 float32; docs/sparse.md). A training loop packs W1 for its
          steps and puts it back after (with_packed, release_packed; kernels/train.py);
          the forward reads the packed rows as they are (W's rows may be longer than
          out's). In one part (a forward pass's work) on rows with room for four whole
          vectors, the forward walks W's rows in L1-sized blocks too (_forward_blocked).
The sums run in another order than BLAS's: results agree with the dense
kernels to float rounding. reference.py's dense products are the referee.
"""
from collections import namedtuple

import numpy as np
from numba import njit, prange, types
from numba.extending import overload
from numba.np.ufunc.parallel import _launch_threads

from .affine import _act
from .codes import IDENTITY
from .config import CACHE, FASTMATH
from .simd import (VECTOR_BYTES, block_lanes, count_nonzero, lanes, prefetch, store_nonzero, vadd, vfma, vload,
                   vmul, vstore, vzero)

# The threaded parts are parallel functions called from compiled functions that are not.
# numba starts its threads, and registers the symbols parallel code calls, when it compiles
# or loads a parallel function, but a function that only calls one can reach that code
# first when it comes from the cache (numba issue 8578; seen here as "LLVM ERROR: Symbol not
# found: allocate_sched" in a fresh process). Started at import, they are always there.
_launch_threads()

Csr = namedtuple("Csr", "indptr indices data rows work")


def on_threads(x, on):
    """Csr x with its parts on numba's threads (on) or in turn on the calling thread."""
    return x._replace(work=x.work._replace(threaded=on))


def is_csr(x):
    """At compile time (in an overload): is the numba type x a Csr batch (else a dense array)?"""
    return isinstance(x, types.BaseNamedTuple)


# A Csr's work: splits (T+1,) int64 and threaded (bool), the parts and whether they run on
# threads; cuts (T-1, R) int64, where each row's part t >= 1 begins: the first position in
# CSR row r whose column is at least splits[t]; parts ((T-1)·N·M,) float, the forward's
# sums of parts 1..T-1. The backward's scratch: count (D,) int64 zeros, cols (D,) int64
# (part t uses cols[splits[t]:splits[t+1]]), ti and tv (cap,) int64 and float, part t's
# grouped nonzeros in ti/tv[starts[t]:starts[t+1]] (starts (T+1,) int64; each part's room
# at least its nonzeros in a batch, in whole cache lines), and dz (T·N·Mp,) float starting
# on a cache line, Mp = M rounded up to whole vectors: room for a copy of dz per part on
# threads, the first used in turn (shorter: dz is read where it lies; see _aligned_rows).
# packed (>= D·Mp,) float starting on a cache line: room for W packed (pack_rows), and pack
# (bool): whether the kernels use that copy instead of the W they are given (only while a
# training loop keeps it, kernels/train.py: with_packed). A forward pass needs none of it.
TnWork = namedtuple("TnWork", "splits cuts threaded parts count cols ti tv starts dz packed pack")


@njit(cache=CACHE)
def forward_work(like):
    """The TnWork of a Csr for forward passes only: no scratch and one part (cuts (0, 0));
    `like`: an array of the data's dtype. A backward pass needs SparseRows.work's."""
    none = np.zeros(0, np.int64)
    return TnWork(none, np.zeros((0, 0), np.int64), False, like[:0], none, none, none, like[:0], none, like[:0],
                  like[:0], False)


@njit(inline="always")
def _packing(w, packed):
    # TnWork w with `packed` as W packed, and pack on
    return TnWork(w.splits, w.cuts, w.threaded, w.parts, w.count, w.cols, w.ti, w.tv, w.starts, w.dz, packed, True)


@njit(inline="always")
def packed_forward_work(packed):
    """forward_work with W packed (`packed`, pack_for_passes's) for the kernels to read."""
    return _packing(forward_work(packed), packed)


@njit(inline="always")
def pack_for_passes(W):
    """W (D, M) packed into a new (D·Mp,) array (pack_rows), for a pass that reads W many
    times over (predict over a data set; one part per block of rows: _forward_blocked where
    the rows have room); W itself, flat, where is_packable."""
    D, M = W.shape
    if is_packable(W):
        return W.reshape(D * M)
    Mp, L = padded_width(M, W), lanes(W)
    raw = np.empty(D * Mp + L, W.dtype)
    k = (-(raw.ctypes.data // W.itemsize)) % L  # entries to the next cache line
    room = raw[k:k + D * Mp]
    pack_rows(room.reshape((D, Mp)), W)
    return room


@njit(cache=CACHE)
def padded_width(M, like):
    """M rounded up to whole vectors of the dtype of `like` (an array): the row length of
    TnWork's dz, and of _aligned_rows's copy of dz."""
    L = lanes(like)
    return (M + L - 1) // L * L

# Positions in the nonzeros are made unsigned (U) in the inner loops: numba wraps a negative
# signed index around (a compare and a select per access, and a loop LLVM cannot simplify);
# an unsigned one it takes as it is. Grouping the MNIST batch by column took 34 us with
# signed positions, 18 us with unsigned ones. Mixing U with signed integers gives floats in
# numba, hence the U-typed constants.
U = types.uint64
U1, U2 = U(1), U(2)


@njit(inline="always")
def _span(indptr, cuts, rows, i, t):
    # [lo, hi): the positions of batch row i's nonzeros in part t's columns (all of the
    # row's with one part)
    r = U(rows[i])
    lo = U(indptr[r]) if t == 0 else U(cuts[t - 1, r])
    hi = U(indptr[r + U1]) if t >= cuts.shape[0] else U(cuts[t, r])
    return lo, hi


@njit(inline="always")
def _row_sum(out, i, p0, p1, indices, data, W, b, bias):
    # out[i, :] = (b if bias else 0) + Σ over positions p in [p0, p1) of data[p]·W[indices[p], :]
    M, Ws = out.shape[1], W.shape[1]  # W's rows may be longer than out's (packed: pack_rows)
    L = lanes(out)
    for c0 in range(0, M, 4 * L):
        n0, n1, n2, n3 = block_lanes(M, c0, L)
        a0, a1, a2, a3 = vzero(out), vzero(out), vzero(out), vzero(out)
        if bias:
            a0, a1 = vload(b, c0, n0), vload(b, c0 + L, n1)
            a2, a3 = vload(b, c0 + 2 * L, n2), vload(b, c0 + 3 * L, n3)
        e0, e1, e2, e3 = vzero(out), vzero(out), vzero(out), vzero(out)
        p = p0
        while p + U1 < p1:
            v, j = data[p], indices[p] * Ws + c0
            a0, a1 = vfma(v, vload(W, j, n0), a0), vfma(v, vload(W, j + L, n1), a1)
            a2, a3 = vfma(v, vload(W, j + 2 * L, n2), a2), vfma(v, vload(W, j + 3 * L, n3), a3)
            v, j = data[p + U1], indices[p + U1] * Ws + c0
            e0, e1 = vfma(v, vload(W, j, n0), e0), vfma(v, vload(W, j + L, n1), e1)
            e2, e3 = vfma(v, vload(W, j + 2 * L, n2), e2), vfma(v, vload(W, j + 3 * L, n3), e3)
            p += U2
        if p < p1:
            v, j = data[p], indices[p] * Ws + c0
            a0, a1 = vfma(v, vload(W, j, n0), a0), vfma(v, vload(W, j + L, n1), a1)
            a2, a3 = vfma(v, vload(W, j + 2 * L, n2), a2), vfma(v, vload(W, j + 3 * L, n3), a3)
        o = i * M + c0
        vstore(out, o, vadd(a0, e0), n0)
        vstore(out, o + L, vadd(a1, e1), n1)
        vstore(out, o + 2 * L, vadd(a2, e2), n2)
        vstore(out, o + 3 * L, vadd(a3, e3), n3)


AHEAD = 2  # the forward asks for row i + AHEAD's nonzeros while it works on row i


@njit(inline="always")
def _prefetch_row(indptr, indices, data, rows, i):
    # batch row i's indices and data, one request per cache line: a minibatch's rows lie
    # anywhere in the data set, and each starts with a miss the hardware cannot foresee
    r = U(rows[i])
    p0, p1 = indptr[r], indptr[r + U1]
    for p in range(p0, p1 + lanes(indices), lanes(indices)):  # a vector's bytes: a cache line
        prefetch(indices, p)
    for p in range(p0, p1 + lanes(data), lanes(data)):
        prefetch(data, p)


@njit(inline="always")
def _part_out(out, parts, t):
    # where part t's sums go: out for part 0, its block of parts for t > 0
    N, M = out.shape
    return out if t == 0 else parts[(t - 1) * N * M:t * N * M].reshape((N, M))


@njit(inline="always")
def _combine_row(out, parts, T, act, i):
    # out[i] = act(out[i] + the T - 1 parts' row i), a vector at a time
    N, M = out.shape
    L = lanes(out)
    if T > 1:
        for c0 in range(0, M, L):
            n = min(M - c0, L)
            v = vload(out, i * M + c0, n)
            for k in range(T - 1):
                v = vadd(v, vload(parts, (k * N + i) * M + c0, n))
            vstore(out, i * M + c0, v, n)
    if act != IDENTITY:
        for c in range(M):
            out[i, c] = _act(out[i, c], act)


@njit(inline="always")
def _forward_part(out, parts, indptr, indices, data, rows, W, b, cuts, t):
    # part t's sums of every row (the bias in part 0's), without the act
    N = out.shape[0]
    dst = _part_out(out, parts, t)
    for i in range(min(AHEAD, N)):
        _prefetch_row(indptr, indices, data, rows, i)
    for i in range(N):
        if i + AHEAD < N:
            _prefetch_row(indptr, indices, data, rows, i + AHEAD)
        lo, hi = _span(indptr, cuts, rows, i, t)
        _row_sum(dst, i, lo, hi, indices, data, W, b, t == 0)


@njit(inline="always")
def _spans_and_blocks(indptr, cuts, rows, t, width, W):
    # Each batch row's span of part t (_span) as two small arrays, cursor (where its
    # nonzeros not yet taken begin) and ends, and how many blocks to walk the part's `width`
    # rows of W (D, Ws) in: about PACKED_BLOCK_BYTES each, but no more than leave each
    # batch row some PACKED_BLOCK_NONZEROS nonzeros a block on average. Every block visits
    # every row: on text-like rows (0.5% of 20,000 columns) a block per 32 KiB of W would
    # visit each row 157 times per batch for less than one nonzero a visit.
    N = rows.shape[0]
    cursor, ends = np.empty(N, np.uint64), np.empty(N, np.uint64)
    nnz = 0
    for i in range(N):
        cursor[i], ends[i] = _span(indptr, cuts, rows, i, t)
        nnz += ends[i] - cursor[i]
    by_bytes = -(-(width * W.shape[1] * W.itemsize) // PACKED_BLOCK_BYTES)
    return cursor, ends, max(1, min(by_bytes, nnz // max(1, N * PACKED_BLOCK_NONZEROS)))


# A forward in one part over W packed (rows of whole vectors on cache lines, at most four
# of them: M <= 64 float32) walks W's rows in blocks that stay in L1, as the packed update
# does, every batch row once per block, its four vectors of sums in registers across the
# row's nonzeros in the block, W read in whole vectors. Whole-set passes take it (one part
# per block of rows on each thread): predict over the 24,000 MNIST rows on one thread took
# 10.98 ms row by row, 9.43 ms in blocks (docs/sparse.md). Its sums run in column order
# with one set of accumulators: the row-by-row kernel's values to rounding, not bit for bit.
@njit(inline="always")
def _forward_blocked(out, indptr, indices, data, rows, W, b, cuts):
    N, M = out.shape
    Ws, L = W.shape[1], lanes(out)
    n0, n1, n2, n3 = block_lanes(M, 0, L)
    for i in range(N):
        o = i * M
        vstore(out, o, vload(b, 0, n0), n0)
        vstore(out, o + L, vload(b, L, n1), n1)
        vstore(out, o + 2 * L, vload(b, 2 * L, n2), n2)
        vstore(out, o + 3 * L, vload(b, 3 * L, n3), n3)
    D = W.shape[0]
    cursor, ends, nb = _spans_and_blocks(indptr, cuts, rows, 0, D, W)
    for k in range(nb):
        e = D * (k + 1) // nb
        for i in range(N):
            q, hi = cursor[i], ends[i]
            if q >= hi or indices[q] >= e:
                continue
            o = i * M
            a0, a1 = vload(out, o, n0), vload(out, o + L, n1)
            a2, a3 = vload(out, o + 2 * L, n2), vload(out, o + 3 * L, n3)
            while q < hi and indices[q] < e:
                v, j = data[q], indices[q] * Ws
                a0, a1 = vfma(v, vload(W, j, L), a0), vfma(v, vload(W, j + L, L), a1)
                a2, a3 = vfma(v, vload(W, j + 2 * L, L), a2), vfma(v, vload(W, j + 3 * L, L), a3)
                q += U1
            vstore(out, o, a0, n0)
            vstore(out, o + L, a1, n1)
            vstore(out, o + 2 * L, a2, n2)
            vstore(out, o + 3 * L, a3, n3)
            cursor[i] = q


@njit(cache=CACHE, fastmath=FASTMATH, parallel=True)
def _forward_threads(out, parts, indptr, indices, data, rows, W, b, cuts):
    # the parts at once, one per thread (a parallel loop takes arrays, not tuples)
    for t in prange(cuts.shape[0] + 1):
        _forward_part(out, parts, indptr, indices, data, rows, W, b, cuts, t)


@njit(cache=CACHE, fastmath=FASTMATH)
def sparse_affine_forward(out, x, W, b, act):
    # out (N, M) = act(x·W + b), x a Csr batch of N rows (whole-set passes give each of
    # numba's threads blocks of rows instead: mlp.py, mlp_logits_blocks). One part on W
    # packed with room for four whole vectors: in blocks (_forward_blocked). Without threads
    # the parts one after another, each over every row (row by row, a row's parts one after
    # another, took 37 us for the MNIST batch against 31: each part's rows of W stay nearer).
    w = x.work
    T = w.cuts.shape[0] + 1
    L = lanes(out)
    if T == 1 and out.shape[1] <= 4 * L <= W.shape[1] and is_packable(W):
        _forward_blocked(out, x.indptr, x.indices, x.data, x.rows, W, b, w.cuts)
    elif T > 1 and w.threaded:
        _forward_threads(out, w.parts, x.indptr, x.indices, x.data, x.rows, W, b, w.cuts)
    else:
        for t in range(T):
            _forward_part(out, w.parts, x.indptr, x.indices, x.data, x.rows, W, b, w.cuts, t)
    for i in range(out.shape[0]):
        _combine_row(out, w.parts, T, act, i)


@njit(inline="always")
def _scale_rows(C, j0, j1, beta):
    # rows j0..j1-1 of C *= beta (set to 0 for beta 0, whatever they held; untouched for 1)
    if beta == 0:
        C[j0:j1] = 0
    elif beta != 1:
        for j in range(j0, j1):
            for c in range(C.shape[1]):
                C[j, c] *= beta


@njit(inline="always")
def _tn_part(C, d, M, indptr, indices, data, rows, count, cols, ti, tv, j0, j1, cuts, t, alpha, beta):
    # rows j0..j1-1 of C = beta·C + alpha·xᵀ·dz over them, the batch's nonzeros in those
    # columns being part t of each row by cuts (all of it with no cuts); d: dz's rows
    # (N, >= M) as _aligned_rows gives them; cols, ti, tv: this part's scratch.
    # Column by column of x (the part of the batch transposed first): each row of C that
    # the batch names is loaded once, gets all its nonzeros' dz rows (dz stays in L1) and is
    # stored once. Row by row instead (as sparse_tn_packed goes), on rows that straddle cache
    # lines every nonzero's stores do too: 1.9x slower on MNIST batches (M = 50, float32).
    # Every row of C gets the same operations in the same order whichever part holds it.
    _scale_rows(C, j0, j1, beta)
    nc = _transpose(count, cols, ti, tv, indptr, indices, data, rows, cuts, t, d.shape[1])
    L = lanes(d)
    s = 0
    for k in range(nc):
        j = cols[k]
        e = count[j]
        for c0 in range(0, M, 4 * L):
            n0, n1, n2, n3 = block_lanes(M, c0, L)
            a0, a1, a2, a3 = vzero(d), vzero(d), vzero(d), vzero(d)
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


@njit(cache=CACHE, fastmath=FASTMATH, parallel=True)
def _tn_threads(C, dz, scratch, indptr, indices, data, rows, count, cols, ti, tv, starts, splits, cuts, alpha, beta):
    # the parts at once, one per thread: each writes only its rows of C and of count, its own
    # shares of cols, ti and tv, and its own copy of dz (scratch holds one per part): dz comes
    # from the calling thread's core, and one sequential read of it per part is cheaper than
    # that core's lines fetched one by one as the nonzeros name them
    T = splits.shape[0] - 1
    share = scratch.shape[0] // T
    for t in prange(T):
        j0, j1, q0, q1 = splits[t], splits[t + 1], starts[t], starts[t + 1]
        d = _aligned_rows(dz, scratch[t * share:(t + 1) * share])
        _tn_part(C, d, dz.shape[1], indptr, indices, data, rows, count, cols[j0:j1], ti[q0:q1], tv[q0:q1], j0, j1,
                 cuts, t, alpha, beta)


@njit(cache=CACHE, fastmath=FASTMATH)
def sparse_tn_update(C, x, dz, alpha, beta):
    # C (D, M) = beta·C + alpha·xᵀ·dz, x a Csr batch of N rows with backward scratch, dz (N, M).
    # Without threads, all parts at once: each row of C gets what its part would give it.
    w = x.work
    if w.splits.shape[0] > 2 and w.threaded:
        _tn_threads(C, dz, w.dz, x.indptr, x.indices, x.data, x.rows, w.count, w.cols, w.ti, w.tv,
                    w.starts, w.splits, w.cuts, alpha, beta)
    else:
        _tn_part(C, _aligned_rows(dz, w.dz), dz.shape[1], x.indptr, x.indices, x.data, x.rows, w.count, w.cols,
                 w.ti, w.tv, 0, C.shape[0], w.cuts[:0], 0, alpha, beta)


# The update on W packed (every row of W on its own cache lines, Mp entries, a whole number
# of vectors, zeros past M; or W itself where its rows already are: is_packable). Then it
# goes nonzero by nonzero, with no grouping by column: row i's alpha·dz in registers, W's
# row j loaded, data[p]·(alpha·dz[i]) added and stored, four whole vectors per nonzero.
# W's rows are walked in blocks of about PACKED_BLOCK_BYTES, every batch row once per
# block, so the rows being written stay in L1. On rows that straddle cache lines (M = 50
# float32: 200 bytes) the same loop took 146 us for the MNIST batch on one thread against
# the grouped update's 77 (a store across two lines costs two); on packed rows 40 us
# (docs/sparse.md).
PACKED_BLOCK_BYTES = 32 * 1024
PACKED_BLOCK_NONZEROS = 8


def is_packable(W):
    """Are W's rows whole vectors on cache lines already, so that W is its own packed copy?"""


@overload(is_packable)
def _is_packable(W):
    def impl(W):
        return W.shape[1] % lanes(W) == 0 and W.ctypes.data % VECTOR_BYTES == 0
    return impl


@njit(cache=CACHE)
def pack_rows(Wp, W):
    # Wp (D, Mp) = W (D, M), zeros in columns M..Mp-1 (once per training call: plain slices)
    M = W.shape[1]
    Wp[:, :M] = W
    Wp[:, M:] = 0


@njit(cache=CACHE)
def unpack_rows(W, Wp):
    # W (D, M) = Wp[:, :M]
    W[:, :] = Wp[:, :W.shape[1]]


@njit(inline="always")
def _scatter(Wp, q, hi, e, indices, data, c0, x0, x1, x2, x3, m0, m1, m2, m3):
    # Wp[indices[p], c0:c0 + 4 vectors] += data[p]·(x0, x1, x2, x3), lanes m0..m3 of each, for
    # the positions p from q on (before hi) whose column is below e; returns the first not taken
    Mp, L = Wp.shape[1], lanes(Wp)
    while q < hi and indices[q] < e:
        v, r = data[q], indices[q] * Mp + c0
        vstore(Wp, r, vfma(v, x0, vload(Wp, r, m0)), m0)
        vstore(Wp, r + L, vfma(v, x1, vload(Wp, r + L, m1)), m1)
        vstore(Wp, r + 2 * L, vfma(v, x2, vload(Wp, r + 2 * L, m2)), m2)
        vstore(Wp, r + 3 * L, vfma(v, x3, vload(Wp, r + 3 * L, m3)), m3)
        q += U1
    return q


@njit(inline="always")
def _tn_packed_part(Wp, dz, indptr, indices, data, rows, j0, j1, cuts, t, alpha, beta):
    # rows j0..j1-1 of Wp = beta·Wp + alpha·xᵀ·dz over them (part t of each batch row by
    # cuts; all of it with none), in blocks; each row of Wp gets its nonzeros in batch-row order
    N, M = dz.shape
    Mp = Wp.shape[1]
    L = lanes(Wp)
    cursor, ends, nb = _spans_and_blocks(indptr, cuts, rows, t, j1 - j0, Wp)
    for k in range(nb):
        s, e = j0 + (j1 - j0) * k // nb, j0 + (j1 - j0) * (k + 1) // nb
        _scale_rows(Wp, s, e, beta)
        for i in range(N):
            q0, hi = cursor[i], ends[i]
            if q0 >= hi or indices[q0] >= e:
                continue
            q = q0
            for c0 in range(0, Mp, 4 * L):
                n0, n1, n2, n3 = block_lanes(M, c0, L)  # dz's lanes; Wp's rows have room for 4 vectors
                o = i * M + c0
                x0, x1 = vmul(alpha, vload(dz, o, n0)), vmul(alpha, vload(dz, o + L, n1))
                x2, x3 = vmul(alpha, vload(dz, o + 2 * L, n2)), vmul(alpha, vload(dz, o + 3 * L, n3))
                # whole vectors, as many as are left of the row (up to 4), constant masks: plain
                # loads and stores, none past the row. A masked store there, even with no lane
                # on, lies on the next row of Wp, which the next nonzero (often the next
                # column) loads; AMD Zen 4 makes such a load wait until the store is in cache
                # (no forwarding from a masked store): with such stores the update took 131
                # and 134 us for the MNIST batch on one thread at 32 and 48 columns, this way
                # 28 and 39
                k = min(Mp - c0, 4 * L)
                if k == 4 * L:
                    q = _scatter(Wp, q0, hi, e, indices, data, c0, x0, x1, x2, x3, L, L, L, L)
                elif k == 3 * L:
                    q = _scatter(Wp, q0, hi, e, indices, data, c0, x0, x1, x2, x3, L, L, L, 0)
                elif k == 2 * L:
                    q = _scatter(Wp, q0, hi, e, indices, data, c0, x0, x1, x2, x3, L, L, 0, 0)
                else:
                    q = _scatter(Wp, q0, hi, e, indices, data, c0, x0, x1, x2, x3, L, 0, 0, 0)
            cursor[i] = q


@njit(cache=CACHE, fastmath=FASTMATH, parallel=True)
def _tn_packed_threads(Wp, dz, indptr, indices, data, rows, splits, cuts, alpha, beta):
    # the parts at once, one per thread, each on its own rows of Wp (whole cache lines)
    for t in prange(splits.shape[0] - 1):
        _tn_packed_part(Wp, dz, indptr, indices, data, rows, splits[t], splits[t + 1], cuts, t, alpha, beta)


@njit(cache=CACHE, fastmath=FASTMATH)
def sparse_tn_packed(Wp, x, dz, alpha, beta):
    # Wp (D, Mp) packed (pack_rows, or a W that is_packable) = beta·Wp + alpha·xᵀ·dz, x a Csr
    # batch of N rows, dz (N, M). Without threads one part over all rows of Wp: each row gets
    # the same operations in the same order either way.
    w = x.work
    a, b = Wp.dtype.type(alpha), Wp.dtype.type(beta)
    if w.splits.shape[0] > 2 and w.threaded:
        _tn_packed_threads(Wp, dz, x.indptr, x.indices, x.data, x.rows, w.splits, w.cuts, a, b)
    else:
        _tn_packed_part(Wp, dz, x.indptr, x.indices, x.data, x.rows, 0, Wp.shape[0], w.cuts[:0], 0, a, b)


@njit(inline="always")
def packed_view(W, x):
    """The W the kernels use for Csr x: its work's packed copy while a training loop keeps
    one (x.work.pack), else W itself."""
    w = x.work
    if w.pack:
        Mp = padded_width(W.shape[1], W)
        return w.packed[:W.shape[0] * Mp].reshape((W.shape[0], Mp))
    return W


def with_packed(x, W):
    """x for a training loop's SGD steps on W (D, M): a Csr whose work has W packed (its
    packed room filled by pack_rows, or W itself where is_packable) and pack on; a dense x,
    or a Csr without room, as it is. release_packed(W, x) puts the steps' W back."""


@overload(with_packed)
def _with_packed(x, W):
    if not is_csr(x):
        return lambda x, W: x

    def impl(x, W):
        w = x.work
        D, M = W.shape
        Mp = padded_width(M, W)
        if is_packable(W):
            room = W.reshape(D * M)
        elif w.packed.shape[0] >= D * Mp and w.packed.ctypes.data % VECTOR_BYTES == 0:
            room = w.packed
            pack_rows(room[:D * Mp].reshape((D, Mp)), W)
        else:
            return x
        return Csr(x.indptr, x.indices, x.data, x.rows, _packing(w, room))
    return impl


def release_packed(W, x):
    """W = the packed copy of it that with_packed gave x (nothing to do if W is its own)."""


@overload(release_packed)
def _release_packed(W, x):
    if not is_csr(x):
        return lambda W, x: None

    def impl(W, x):
        if x.work.pack and x.work.packed.ctypes.data != W.ctypes.data:
            unpack_rows(W, packed_view(W, x))
    return impl


@njit(inline="always")
def _aligned_rows(dz, scratch):
    # dz (N, M) itself if each row starts on a cache line, else a copy (N, Mp) in scratch
    # that does: the loop above reads a row of dz per nonzero, and a vector that straddles
    # two lines costs two loads (a 50-wide layer's rows are 200 bytes apart; the copy took
    # the MNIST batch's accumulation from 23 to 18 us). Without room in scratch, dz as it is.
    N, M = dz.shape
    L, Mp = lanes(dz), padded_width(M, dz)
    if (M == Mp and dz.ctypes.data % VECTOR_BYTES == 0) or scratch.shape[0] < N * Mp \
            or scratch.ctypes.data % VECTOR_BYTES != 0:
        return dz
    d = scratch[:N * Mp].reshape((N, Mp))
    for i in range(N):
        for c0 in range(0, Mp, L):
            vstore(d, i * Mp + c0, vload(dz, i * M + c0, min(M - c0, L)), L)
    return d


@njit(inline="always")
def _transpose(count, cols, ti, tv, indptr, indices, data, rows, cuts, t, stride):
    # Part t's nonzeros of the batch grouped by column in O(nnz) (no pass over all D
    # columns): cols[:nc] are the columns that occur, in order of first occurrence; column
    # cols[k]'s nonzeros are ti/tv[count[cols[k-1]] : count[cols[k]]] (batch row times
    # stride, value; count[cols[-1]] read as 0), in batch-row order. count must be all
    # zeros on entry in part t's columns. Returns nc.
    nc = 0
    N = rows.shape[0]
    for i in range(N):
        lo, hi = _span(indptr, cuts, rows, i, t)
        for p in range(lo, hi):
            j = U(indices[p])
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
    for i in range(N):  # scatter; count[j] moves on to the end of j's range
        lo, hi = _span(indptr, cuts, rows, i, t)
        o = i * stride
        for p in range(lo, hi):
            j = U(indices[p])
            q = count[j]
            ti[U(q)] = o
            tv[U(q)] = data[p]
            count[j] = q + 1
    return nc


@njit(cache=CACHE)
def csr_cuts(out, indptr, indices, splits):
    # out (T-1, R) int64: out[t-1, r], the first position in CSR row r (R rows, indptr
    # (R+1,), each row's indices in increasing order) whose column is at least splits[t]
    for r in range(out.shape[1]):
        lo, hi = indptr[r], indptr[r + 1]
        for t in range(out.shape[0]):
            out[t, r] = lo + np.searchsorted(indices[lo:hi], splits[t + 1])


@njit(cache=CACHE)
def csr_column_counts(counts, indptr, indices):
    # counts (D,) int64, zeros on entry: the nonzeros of each column of the CSR rows
    for p in range(indptr[0], indptr[-1]):
        counts[indices[p]] += 1


@njit(cache=CACHE)
def dense_row_counts(counts, x):
    # counts (N,) int64: the nonzeros of each row of x (N, D) C-contiguous, a vector at a time
    N, D = x.shape
    L = lanes(x)
    for i in range(N):
        c = 0
        for j0 in range(0, D, L):
            c += count_nonzero(x, i * D + j0, min(D - j0, L))
        counts[i] = c


@njit(cache=CACHE)
def dense_to_csr(indices, data, indptr, x):
    # x (N, D) C-contiguous into CSR: indptr (N+1,) already the running sums of
    # dense_row_counts; fills indices (nnz,) int32 and data (nnz,) in column order, a vector
    # of x at a time (its nonzeros packed by one compress-store: no branch per entry, which
    # mispredicts on a row's zeros and nonzeros as they come)
    N, D = x.shape
    L = lanes(x)
    for i in range(N):
        q = indptr[i]
        for j0 in range(0, D, L):
            q += store_nonzero(data, indices, q, x, i * D + j0, min(D - j0, L), j0)
