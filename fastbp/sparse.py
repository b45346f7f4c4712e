"""Sparse input: scipy.sparse matrices, and dense arrays that are mostly zeros.

Such inputs go to the sparse first layer (fastbp/kernels/sparse.py), which touches
only the nonzeros. A Network's `sparse` setting picks the path for every input:

    "auto"  scipy.sparse input sparse; dense input sparse when at most AUTO_DENSITY
            of its entries are nonzero (where the sparse kernels are the faster,
            measured: docs/sparse.md)
    True    always sparse (dense input is converted)
    False   always dense (sparse input is expanded with toarray())

Sparse input is checked whole before any kernel sees it (shape, index ranges,
finite values; a hand-built CSR with indices out of range is a ValueError, not a
crash), converted once to CSR with duplicates summed, in the network's dtype, and
never modified: the caller's matrix is left as it was.
"""
import math

import numpy as np
import scipy.sparse as sp

from fastbp.checks import as_batch, float_dtype
from fastbp.kernels import layout
from fastbp.kernels.simd import lanes
from fastbp.kernels.sparse import (Csr, TnWork, csr_column_counts, csr_cuts, dense_row_counts, dense_to_csr, forward_work,
                                   padded_width)

POLICIES = ("auto", True, False)
AUTO_DENSITY = 0.25  # dense input at most this fraction nonzero takes the sparse path under "auto"


def check_policy(sparse, name="sparse"):
    if not any(sparse is p or (isinstance(sparse, str) and sparse == p) for p in POLICIES):
        raise ValueError(f"{name} must be 'auto', True or False, got {sparse!r}")
    return sparse


# A training step's first layer runs in parts, each owning a range of W1's rows (kernels/
# sparse.py), on numba's threads where it may (fastbp/cpu.py: threads). The number of parts
# is fixed, not the number of cores, so that a run gives the same numbers on any machine,
# in a forked child, or on one core; and 1 where a batch's work is too small to share: below
# MIN_PART_WORK nonzeros per batch times blocks of 4 vectors of outputs (64 float32 or 32
# float64 outputs) two parallel regions cost more than they save (measured on MNIST rows:
# even at 4 rows of 50 outputs, 600 nonzeros; 1.2x faster at 1,500, 1.5x at 5,000).
PARTS = 2
MIN_PART_WORK = 1024
ROOM_STEP = layout.ALIGN // 4  # entries: a whole number of cache lines of int64 and of float32 or float64


def column_splits(counts, width, dtype, parts):
    """(T+1,) int64 cuts from 0 to D: the columns (W1's rows) in T <= parts ranges holding
    about equal shares of the nonzeros, counts (D,) of them per column; each cut on a row of
    W1 (width outputs of dtype) that starts on a cache line, and on a line of the scratch's
    per-column int64 arrays (TnWork.count, .cols), so no line is written by two parts: one
    line written by both moves between the cores at every write (with MNIST's cut between
    two central pixels, a 2-thread update took 57 us instead of 33). [0, D] (one part) where
    no cut leaves every part some nonzeros."""
    D = counts.shape[0]
    step = math.lcm(layout.ALIGN // math.gcd(width * np.dtype(dtype).itemsize, layout.ALIGN),
                    layout.ALIGN // np.dtype(np.int64).itemsize)
    before = np.r_[0, np.cumsum(counts)]  # before[j]: the nonzeros in columns 0..j-1
    at = np.arange(step, D, step)          # where a cut may go
    cuts = [0]
    for k in range(1, parts):
        if at.size:
            c = int(at[np.argmin(np.abs(before[at] - before[-1] * k / parts))])
            if c > cuts[-1]:
                cuts.append(c)
    splits = np.array(cuts + [D], np.int64)
    return splits if (np.diff(before[splits]) > 0).all() else np.array([0, D], np.int64)


class SparseRows:
    """A checked CSR matrix in the kernels' form: indptr (N+1,) int64, indices (nnz,) int32
    sorted within each row, data (nnz,) in the network's dtype; n_cols columns. batch() and
    take() give rows of it as the kernels' Csr value (no copy of the matrix), with backward
    scratch if asked."""

    def __init__(self, indptr, indices, data, n_cols):
        self.indptr, self.indices, self.data = indptr, indices, data
        self.shape = (indptr.shape[0] - 1, n_cols)
        self.dtype = data.dtype
        self._work, self._cap, self._splits, self._counts = None, 0, {}, None
        self._no_work = forward_work(data)

    @property
    def nnz(self):
        return int(self.indptr[-1] - self.indptr[0])

    def part(self, start, stop):
        """Rows start..stop-1 as SparseRows sharing this matrix's arrays (indptr keeps its
        absolute positions into indices and data)."""
        return SparseRows(self.indptr[start:stop + 1], self.indices, self.data, self.shape[1])

    def __len__(self):
        return self.shape[0]

    def batch(self, start=0, stop=None, width=0):
        """Rows start..stop-1 as a Csr; with width > 0, with the scratch of a weight gradient
        for a first layer of that many outputs."""
        stop = self.shape[0] if stop is None else min(stop, self.shape[0])
        cap = int(self.indptr[stop] - self.indptr[start]) if width else 0
        return self.take(np.arange(start, stop, dtype=np.int64), cap, (stop - start, width))

    def take(self, rows, cap=0, dz_shape=(0, 0), splits=None):
        """The Csr of these rows ((n,) int64, each in range) with weight-gradient scratch for
        batches of up to `cap` nonzeros and a dz of up to dz_shape (rows, outputs); cap 0:
        a forward pass only. splits: the parts (kernels/sparse.py), else as splits() says."""
        return Csr(self.indptr, self.indices, self.data, rows, self.work(cap, dz_shape, splits))

    def max_batch_nnz(self, batch_size):
        """The most nonzeros any batch_size rows hold together."""
        lengths = np.diff(self.indptr)
        return int(np.sort(lengths)[-batch_size:].sum())

    def column_counts(self):
        """(D,) int64: the nonzeros in each column."""
        if self._counts is None:
            self._counts = np.zeros(self.shape[1], np.int64)
            csr_column_counts(self._counts, self.indptr, self.indices)
        return self._counts

    def cuts(self, splits):
        """(T-1, N) int64 for parts splits (T+1,): cuts[t-1, r], the first position in row r
        (into indices and data) whose column is at least splits[t]."""
        out = np.empty((splits.shape[0] - 2, self.shape[0]), np.int64)
        csr_cuts(out, self.indptr, self.indices, np.asarray(splits, np.int64))
        return out

    def splits(self, batch_size, width):
        """The parts a first layer of `width` outputs runs in for batches of batch_size rows:
        PARTS of them where a mean batch's work reaches MIN_PART_WORK (see there), else one."""
        blocks = -(-width // (4 * lanes(self.dtype)))
        parts = PARTS if self.nnz * batch_size * blocks >= MIN_PART_WORK * max(self.shape[0], 1) else 1
        key = (parts, width)
        if key not in self._splits:
            self._splits[key] = column_splits(self.column_counts(), width, self.dtype, parts)
        return self._splits[key]

    def work(self, cap, dz_shape=(0, 0), splits=None):
        """The kernels' TnWork (kernels/sparse.py) for batches of up to cap nonzeros and
        dz_shape, in parts `splits` (default: splits()); kept and grown as needed, its count
        array all zeros between kernel calls. cap 0: a forward pass's, without scratch."""
        if cap == 0:
            return self._no_work
        N, M = dz_shape
        splits = self.splits(N, M) if splits is None else np.asarray(splits, np.int64)
        size, parts = (splits.shape[0] - 1) * N * padded_width(M, self.data), (splits.shape[0] - 2) * N * M
        packed = self.shape[1] * padded_width(M, self.data)  # room for W1 packed (kernels/sparse.py)
        w = self._work
        if w is not None:
            packed = max(packed, w.packed.shape[0])
        if w is not None and np.array_equal(w.splits, splits):
            if cap <= self._cap and size <= w.dz.shape[0] and parts <= w.parts.shape[0] and packed <= w.packed.shape[0]:
                return w
            cap, size, parts = max(cap, self._cap), max(size, w.dz.shape[0]), max(parts, w.parts.shape[0])
        # part t's room in ti/tv: its nonzeros in a batch, at most cap and at most the set's,
        # rounded up to whole cache lines (each part's share starts on its own line, as do
        # count and cols: every array the parts write is aligned, see column_splits)
        before = np.r_[0, np.cumsum(self.column_counts())]
        room = np.minimum(np.diff(before[splits]), cap)
        starts = np.r_[0, np.cumsum(-(-room // ROOM_STEP) * ROOM_STEP)].astype(np.int64)
        D = self.shape[1]
        self._work = TnWork(splits, self.cuts(splits), False, layout.zeros(parts, self.dtype),
                            layout.zeros(D, np.int64), layout.zeros(D, np.int64), layout.zeros(starts[-1], np.int64),
                            layout.zeros(starts[-1], self.dtype), starts, layout.zeros(size, self.dtype),
                            layout.zeros(packed, self.dtype), False)
        self._cap = cap
        return self._work

    def tocsr(self):
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)

    def toarray(self):
        return self.tocsr().toarray()

    def __repr__(self):
        return f"SparseRows({self.shape[0]}x{self.shape[1]}, nnz={self.nnz}, {self.dtype})"


def _check_pointers(indptr, n_major, n_indices, name):
    if indptr.ndim != 1 or indptr.shape[0] != n_major + 1:
        raise ValueError(f"{name}: indptr must have {n_major + 1} entries, got shape {indptr.shape}")
    if indptr.dtype.kind not in "iu":
        raise TypeError(f"{name}: indptr must hold integers, got dtype {indptr.dtype}")
    if indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] > n_indices:
        raise ValueError(f"{name}: indptr must start at 0, never decrease and end at most at "
                         f"the {n_indices} stored entries")


def _check_indices(indices, n, what, name):
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{name}: {what} indices must be integers, got dtype {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"{name}: {what} indices must be in [0, {n}), got values from "
                         f"{indices.min()} to {indices.max()}")


def _check_structure(x, name):
    """The index arrays of a CSR, CSC or COO matrix are in range (scipy's own conversions
    trust them; a hand-built matrix may not)."""
    n_rows, n_cols = x.shape
    if x.format in ("csr", "csc"):
        major, minor = (n_rows, n_cols) if x.format == "csr" else (n_cols, n_rows)
        _check_pointers(x.indptr, major, x.indices.shape[0], name)
        if x.data.shape[0] < x.indptr[-1]:
            raise ValueError(f"{name}: data holds {x.data.shape[0]} values, indptr names {x.indptr[-1]}")
        _check_indices(x.indices[:x.indptr[-1]], minor, "column" if x.format == "csr" else "row", name)
    elif x.format == "coo":
        row, col = x.coords if hasattr(x, "coords") else (x.row, x.col)
        if not (row.shape == col.shape == x.data.shape):
            raise ValueError(f"{name}: row, col and data must have one length each")
        _check_indices(row, n_rows, "row", name)
        _check_indices(col, n_cols, "column", name)


def as_sparse_rows(x, n_features, dtype, name="x"):
    """A scipy.sparse matrix (any format) as SparseRows of shape (N >= 1, n_features) in dtype."""
    dtype = float_dtype(dtype)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (N, {n_features}), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample, got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold integers or floats, got dtype {x.dtype}")
    _check_structure(x, name)
    with np.errstate(over="ignore"):  # a float32 overflow is refused just below
        csr = sp.csr_matrix(x, dtype=dtype, copy=True)  # a private copy: summing duplicates sorts in place
    csr.sum_duplicates()
    if not np.isfinite(csr.data).all():
        raise ValueError(f"{name} must be finite in {dtype.name}: it holds NaN or Inf"
                         + (" (or values too large for float32)" if dtype == np.float32 else ""))
    return SparseRows(csr.indptr.astype(np.int64), csr.indices.astype(np.int32),
                      np.ascontiguousarray(csr.data), n_features)


def row_counts(x):
    """The nonzeros of each row of a dense (N, D) array, (N,) int64."""
    counts = np.empty(x.shape[0], np.int64)
    dense_row_counts(counts, x)
    return counts


def dense_to_rows(x, counts):
    """SparseRows of a checked dense (N, D) C-contiguous array whose row_counts are counts:
    two compiled passes (count, fill) instead of scipy's conversion, which is ~10x slower."""
    indptr = np.zeros(x.shape[0] + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices, data = np.empty(indptr[-1], np.int32), np.empty(indptr[-1], x.dtype)
    dense_to_csr(indices, data, indptr, x)
    return SparseRows(indptr, indices, data, x.shape[1])


def as_input(x, n_features, dtype, sparse="auto", name="x"):
    """x checked for a network with n_features inputs: a C-contiguous dense array, or
    SparseRows when `sparse` (see the module's docstring) says the sparse path."""
    if isinstance(x, SparseRows):  # already checked (fit passes its data on)
        if x.shape[1] != n_features or x.dtype != dtype:
            raise ValueError(f"{name} must be ({x.shape[0]}, {n_features}) {np.dtype(dtype).name}, got "
                             f"{x.shape} {x.dtype}")
        return x if sparse is not False else x.toarray()
    if sp.issparse(x):
        rows = as_sparse_rows(x, n_features, dtype, name)
        return rows if sparse is not False else rows.toarray()
    arr = as_batch(x, n_features, dtype, name)
    if sparse is False:
        return arr
    counts = row_counts(arr)
    if sparse is True or counts.sum() <= AUTO_DENSITY * arr.size:
        return dense_to_rows(arr, counts)
    return arr
