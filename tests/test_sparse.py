"""The sparse first layer (kernels/sparse.py) against the dense NumPy reference, and sparse
input through Network and fit against the same network on the same data made dense."""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import fastbp
import numba
from numba import njit
from conftest import DTYPES, NUM_TOL, assert_near
from fastbp.cpu import parallel_block
from fastbp.kernels.config import BLAS_ONE_THREAD, STEP_SPLIT_MIN
from fastbp.datasets import load_mnist
from fastbp.kernels import layout, reference
from fastbp.kernels.sparse import (on_threads, pack_rows, packed_view, padded_width, release_packed,
                                   sparse_affine_forward, sparse_tn_packed, sparse_tn_update, unpack_rows,
                                   with_packed)
from fastbp.sparse import AUTO_DENSITY, PARTS, SparseRows, as_sparse_rows, column_splits, dense_to_rows, row_counts

MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "mnist")
needs_mnist = pytest.mark.skipif(not os.path.isdir(MNIST), reason="needs ../shared/data/mnist")

DENSITIES = [0.0, 0.005, 0.05, 0.2, 0.5, 1.0]
# (N, D, M): batch 1, width 1, one input, widths around the 16/64-lane vector blocks, MNIST
SHAPES = [(1, 1, 1), (1, 7, 1), (5, 1, 3), (9, 13, 16), (7, 40, 17), (6, 30, 64), (4, 20, 65),
          (3, 11, 130), (100, 784, 50)]


def sparse_matrix(rng, n, d, density, dtype):
    x = rng.standard_normal((n, d)) * (rng.random((n, d)) < density)
    return x.astype(dtype)


def rows_of(x, dtype, rows=None, backward=True, width=0):
    """x (dense) as the kernels' Csr, rows (default all) picked from it; backward: with the
    weight gradient's scratch, its dz copy room for `width` outputs."""
    r = as_sparse_rows(sp.csr_matrix(x), x.shape[1], dtype)
    rows = np.arange(x.shape[0], dtype=np.int64) if rows is None else rows
    return r.take(rows, r.nnz if backward else 0, (len(rows), width))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("N,D,M", SHAPES)
def test_forward_and_weight_update_match_the_dense_reference(rng, dtype, density, N, D, M):
    x = sparse_matrix(rng, N, D, density, dtype)
    W = (rng.standard_normal((D, M)) / np.sqrt(D)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    csr = rows_of(x, dtype, width=M)
    for act in range(3):
        out = np.full((N, M), np.nan, dtype)
        sparse_affine_forward(out, csr, W, b, act)
        assert_near(out, reference.affine_forward(x, W, b, ("identity", "relu", "sigmoid")[act]), dtype)
    dz = rng.standard_normal((N, M)).astype(dtype)
    for alpha, beta in ((1.0, 0.0), (-0.1, 1.0), (-0.1, 0.99), (0.5, 2.0)):
        C = rng.standard_normal((D, M)).astype(dtype)
        want = reference.gemm_tn_update(C.astype(np.float64), x.astype(np.float64), dz, alpha, beta)
        before = (csr.indptr.copy(), csr.indices.copy(), csr.data.copy())
        sparse_tn_update(C, csr, dz, alpha, beta)
        assert_near(C, want.astype(dtype), dtype)
        assert not csr.work.count.any()  # the scratch is left as the next call needs it
        for a, k in zip(before, (csr.indptr, csr.indices, csr.data)):
            np.testing.assert_array_equal(a, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_picked_from_the_matrix_with_repeats_and_empty_and_full_rows(rng, dtype):
    x = sparse_matrix(rng, 30, 70, 0.1, dtype)
    x[3] = 0                                   # an all-zero row
    x[5] = rng.standard_normal(70)             # a full row
    x[:, 11] = 0                               # an all-zero column
    rows = np.array([5, 3, 3, 29, 0, 5, 17], np.int64)  # any order, repeats
    W = rng.standard_normal((70, 21)).astype(dtype)
    b = rng.standard_normal(21).astype(dtype)
    out = np.empty((7, 21), dtype)
    sparse_affine_forward(out, rows_of(x, dtype, rows), W, b, 1)
    assert_near(out, reference.affine_forward(x[rows], W, b, "relu"), dtype)
    dz = rng.standard_normal((7, 21)).astype(dtype)
    C = W.copy()
    sparse_tn_update(C, rows_of(x, dtype, rows), dz, -0.3, 1.0)
    assert_near(C, W - 0.3 * x[rows].T.astype(np.float64) @ dz, dtype)
    assert (C[11] == W[11]).all()  # a row no nonzero names is not touched at all


def _placed(shape, dtype, skip):
    # an array that starts `skip` bytes past a cache line
    raw = layout.zeros(int(np.prod(shape)) + 64, dtype)
    k = skip // np.dtype(dtype).itemsize
    return raw[k:k + int(np.prod(shape))].reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [8, 16, 32, 50])
@pytest.mark.parametrize("skip", [0, 16])
@pytest.mark.parametrize("room", [True, False])
def test_weight_update_with_dz_on_or_off_cache_lines(rng, dtype, M, skip, room):
    # dz rows on cache lines are read in place; others through an aligned copy in the
    # scratch, or in place where the scratch has no room for one: all exact
    x = sparse_matrix(rng, 23, 37, 0.3, dtype)
    dz = _placed((23, M), dtype, skip)
    dz[...] = rng.standard_normal((23, M))
    C = rng.standard_normal((37, M)).astype(dtype)
    want = C - 0.2 * x.T.astype(np.float64) @ dz.astype(np.float64)
    csr = rows_of(x, dtype, width=M if room else 0)
    csr.work.dz[...] = np.nan
    sparse_tn_update(C, csr, dz, -0.2, 1.0)
    assert_near(C, want.astype(dtype), dtype)
    Mp = padded_width(M, dz)
    copied = room and (skip or M != Mp)
    assert csr.work.dz.shape[0] == (23 * Mp if room else 0)
    if copied:
        np.testing.assert_array_equal(csr.work.dz.reshape(23, Mp)[:, :M], dz)
    else:
        assert np.isnan(csr.work.dz).all()


# -- parts: the first layer's columns cut into ranges of W's rows, on threads or in turn
# (N, D, M, splits): one part, a cut at every place including width 1 and batch 1, empty
# parts, more parts than threads, the MNIST shape cut where its nonzeros halve
PARTED = [(1, 1, 1, [0, 1]), (1, 7, 3, [0, 3, 7]), (5, 7, 1, [0, 1, 2, 7]), (9, 40, 17, [0, 1, 20, 39, 40]),
          (6, 30, 65, [0, 15, 15, 30]), (23, 64, 33, [0, 8, 16, 40, 56, 64]), (100, 784, 50, None)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("N,D,M,splits", PARTED)
def test_parts_match_the_reference_on_threads_and_in_turn_alike(rng, dtype, density, N, D, M, splits):
    x = sparse_matrix(rng, N, D, density, dtype)
    x[0, :] = 0 if N > 1 else x[0, :]  # an empty row beside full ones
    r = as_sparse_rows(sp.csr_matrix(x), D, dtype)
    rows = rng.permutation(N).astype(np.int64)  # any order
    csr = r.take(rows, r.max_batch_nnz(N), (N, M), splits)
    if splits is None:  # MNIST-sized work: the default cut, where the nonzeros halve
        assert csr.work.splits.shape[0] == PARTS + 1 or density == 0.0
    W = (rng.standard_normal((D, M)) / np.sqrt(D)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    dz = rng.standard_normal((N, M)).astype(dtype)
    whole = r.take(rows, r.max_batch_nnz(N), (N, M), [0, D])
    for act in range(4):
        got = []
        for on in (False, True):
            out = np.full((N, M), np.nan, dtype)
            sparse_affine_forward(out, on_threads(csr, on), W, b, act)
            assert_near(out, reference.affine_forward(x[rows], W, b, ("identity", "relu", "sigmoid", "tanh")[act]),
                        dtype)
            got.append(out)
        np.testing.assert_array_equal(got[0], got[1])
    for alpha, beta in ((1.0, 0.0), (-0.1, 1.0), (-0.1, 0.99)):
        C0 = rng.standard_normal((D, M)).astype(dtype)
        want = reference.gemm_tn_update(C0.astype(np.float64), x[rows].astype(np.float64), dz, alpha, beta)
        got = []
        for x_ in (on_threads(csr, False), on_threads(csr, True), whole):
            C = C0.copy()
            sparse_tn_update(C, x_, dz, alpha, beta)
            assert_near(C, want.astype(dtype), dtype)
            assert not x_.work.count.any()
            got.append(C)
        # a row of C gets the same operations whichever part holds it, and with no parts at all
        np.testing.assert_array_equal(got[0], got[1])
        np.testing.assert_array_equal(got[0], got[2])


# -- W1 packed: rows padded to whole vectors on cache lines, as fit's SGD steps use it
def packed_copy(W):
    D, M = W.shape
    Wp = layout.zeros(D * padded_width(M, W), W.dtype).reshape(D, -1)
    pack_rows(Wp, W)
    return Wp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 7, 16, 17, 50, 64, 65, 100, 130])
def test_packed_rows_hold_w_and_zeros_and_unpack_exactly(rng, dtype, M):
    W = rng.standard_normal((9, M)).astype(dtype)
    Wp = packed_copy(W)
    L = 64 // np.dtype(dtype).itemsize
    assert Wp.shape == (9, -(-M // L) * L) and Wp.ctypes.data % 64 == 0
    np.testing.assert_array_equal(Wp[:, :M], W)
    assert not Wp[:, M:].any()
    back = np.full_like(W, np.nan)
    unpack_rows(back, Wp)
    np.testing.assert_array_equal(back, W)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("N,D,M,splits", PARTED)
def test_packed_sgd_matches_the_reference_on_threads_and_in_turn_alike(rng, dtype, density, N, D, M, splits):
    # (M = 65 and 33 leave a tail of 1..3 vectors after a block of four)
    x = sparse_matrix(rng, N, D, density, dtype)
    x[0, :] = 0 if N > 1 else x[0, :]
    r = as_sparse_rows(sp.csr_matrix(x), D, dtype)
    rows = rng.permutation(N).astype(np.int64)
    csr = r.take(rows, r.max_batch_nnz(N), (N, M), splits)
    W = (rng.standard_normal((D, M)) / np.sqrt(D)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    dz = rng.standard_normal((N, M)).astype(dtype)
    Wp = packed_copy(W)
    for act in range(4):  # the forward on the packed copy: bit for bit the forward on W
        out, outp = np.empty((N, M), dtype), np.empty((N, M), dtype)
        sparse_affine_forward(out, csr, W, b, act)
        sparse_affine_forward(outp, csr, Wp, b, act)
        np.testing.assert_array_equal(out, outp)
    for alpha, beta in ((1.0, 0.0), (-0.1, 1.0), (-0.1, 0.99), (0.5, 2.0)):
        C0 = rng.standard_normal((D, M)).astype(dtype)
        want = reference.gemm_tn_update(C0.astype(np.float64), x[rows].astype(np.float64), dz, alpha, beta)
        got = []
        for on in (False, True):
            Cp = packed_copy(C0)
            sparse_tn_packed(Cp, on_threads(csr, on), dz, alpha, beta)
            assert_near(Cp[:, :M], want.astype(dtype), dtype)
            assert not Cp[:, M:].any()  # the padding stays zeros
            got.append(Cp)
        np.testing.assert_array_equal(got[0], got[1])  # each row: the same operations either way


@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_sgd_touches_only_the_rows_the_batch_names(rng, dtype):
    x = sparse_matrix(rng, 30, 70, 0.1, dtype)
    x[:, 11] = 0
    rows = np.array([5, 3, 3, 29, 0, 5, 17], np.int64)  # any order, repeats
    r = as_sparse_rows(sp.csr_matrix(x), 70, dtype)
    csr = r.take(rows, r.max_batch_nnz(7), (7, 21))
    W = rng.standard_normal((70, 21)).astype(dtype)
    dz = rng.standard_normal((7, 21)).astype(dtype)
    Wp = packed_copy(W)
    sparse_tn_packed(Wp, csr, dz, -0.3, 1.0)
    assert_near(Wp[:, :21], W - 0.3 * x[rows].T.astype(np.float64) @ dz, dtype)
    np.testing.assert_array_equal(Wp[11, :21], W[11])


@njit
def _packed_round(W, x, dz):
    # a training loop's use of the packed copy: taken, one SGD step on it, given back
    xp = with_packed(x, W)
    sparse_tn_packed(packed_view(W, xp), xp, dz, -0.5, 1.0)
    seen = packed_view(W, xp).copy()
    release_packed(W, xp)
    return xp.work.pack, seen


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [50, 64])
def test_a_packed_copy_is_taken_and_given_back_and_an_aligned_w_is_its_own(rng, dtype, M):
    x = sparse_matrix(rng, 20, 40, 0.3, dtype)
    r = as_sparse_rows(sp.csr_matrix(x), 40, dtype)
    csr = r.take(np.arange(20, dtype=np.int64), r.max_batch_nnz(20), (20, M))
    W = layout.zeros(40 * M, dtype).reshape(40, M)
    W[...] = rng.standard_normal((40, M))
    W0 = W.copy()
    dz = rng.standard_normal((20, M)).astype(dtype)
    pack, seen = _packed_round(W, csr, dz)
    assert pack
    assert_near(W, W0 - 0.5 * x.T.astype(np.float64) @ dz, dtype)
    np.testing.assert_array_equal(seen[:, :M], W)
    assert not csr.work.pack  # the caller's Csr is not changed
    own = M * np.dtype(dtype).itemsize % 64 == 0
    assert (seen.shape[1] == M) == own  # 64 outputs: W is its own packed copy, no room used
    if not own:
        np.testing.assert_array_equal(csr.work.packed[:40 * seen.shape[1]].reshape(40, -1), seen)


# (dtype, M, Ws): W packed to rows of Ws (four whole vectors), M outputs of it; and where
# W is its own packed copy (M = Ws)
BLOCKED = [(np.float32, 1, 64), (np.float32, 17, 64), (np.float32, 50, 64), (np.float32, 64, 64),
           (np.float64, 1, 32), (np.float64, 25, 32), (np.float64, 32, 32)]


@pytest.mark.parametrize("dtype,M,Ws", BLOCKED)
@pytest.mark.parametrize("N,D,density", [(1, 40, 0.3), (7, 40, 0.0), (9, 784, 0.2), (100, 784, 0.19),
                                         (40, 3000, 0.005), (5, 300, 1.0)])
def test_the_blocked_forward_on_packed_rows_matches_the_reference(rng, dtype, M, Ws, N, D, density):
    # one part (a forward pass's work) on rows with room for four whole vectors: W's rows in
    # blocks, every batch row once per block (text-like rows: few blocks)
    x = sparse_matrix(rng, N, D, density, dtype)
    x[0, :] = 0 if N > 1 else x[0, :]
    r = as_sparse_rows(sp.csr_matrix(x), D, dtype)
    rows = rng.permutation(N).astype(np.int64)
    W = (rng.standard_normal((D, M)) / np.sqrt(D)).astype(dtype)
    Wp = layout.zeros(D * Ws, dtype).reshape(D, Ws)
    Wp[:, :M] = W
    b = rng.standard_normal(M).astype(dtype)
    for act in range(4):
        out = np.full((N, M), np.nan, dtype)
        sparse_affine_forward(out, r.take(rows), Wp, b, act)
        assert_near(out, reference.affine_forward(x[rows], W, b, ("identity", "relu", "sigmoid", "tanh")[act]), dtype)


def test_a_training_loop_stopped_by_a_non_finite_loss_gives_w1_back(rng):
    # train_steps stops before the update of a step whose loss is not finite; W1 must hold
    # the steps before it, through the packed copy, as on the dense path
    from fastbp.kernels.train import Model, Optim, Work, train_steps
    from fastbp.kernels.mlp import HalfSquared
    sizes = np.array([30, 50, 3], np.int64)
    lay = layout.param_layout(sizes)
    x = sparse_matrix(rng, 40, 30, 0.3, np.float32)
    t = rng.standard_normal((40, 3)).astype(np.float32)
    order = np.arange(40, dtype=np.int64)
    t[25] = np.inf  # in the third batch of 10
    r = as_sparse_rows(sp.csr_matrix(x), 30, np.float32)
    params0 = layout.zeros(layout.param_count(lay), np.float32)
    params0[...] = rng.standard_normal(params0.shape) * 0.1
    got = {}
    for name, xin in (("sparse", r.take(np.zeros(0, np.int64), r.max_batch_nnz(10), (10, 50))), ("dense", x)):
        params = params0.copy()
        acts, deltas = layout.workspace(sizes, 10, np.float32)
        work = Work(layout.zeros(params.size, np.float32), acts, deltas, np.empty((10, 30), np.float32),
                    np.empty((10, 3), np.float32))
        losses = np.zeros(4)
        done = train_steps(params, np.zeros((2, params.size), np.float32), work, xin, HalfSquared(t), order, 0, 4,
                           Model(layout.offsets(lay), sizes, 1), Optim(0, 0.1, 0.0, 0.0, 0.0), 0, losses)
        assert done == 2 and not np.isfinite(losses[2])
        got[name] = params
    assert not np.array_equal(got["sparse"], params0)
    assert_near(got["sparse"], got["dense"], np.float32)


def test_cuts_are_where_each_rows_part_begins(rng):
    x = sparse_matrix(rng, 50, 97, 0.3, np.float32)
    r = as_sparse_rows(sp.csr_matrix(x), 97, np.float32)
    splits = np.array([0, 10, 11, 60, 97], np.int64)
    for rows in (r, r.part(7, 31)):  # a part's indptr holds positions into the whole arrays
        cuts = rows.cuts(splits)
        assert cuts.shape == (3, rows.shape[0])
        for i in range(rows.shape[0]):
            a, e = rows.indptr[i], rows.indptr[i + 1]
            want = a + np.searchsorted(rows.indices[a:e], splits[1:-1])
            np.testing.assert_array_equal(cuts[:, i], want)
        a, e = rows.indptr[0], rows.indptr[-1]
        np.testing.assert_array_equal(rows.column_counts(), np.bincount(rows.indices[a:e], minlength=97))


def test_each_parts_scratch_starts_on_its_own_cache_line(rng):
    # a line written by two parts would move between the cores at every write
    x = sparse_matrix(rng, 300, 97, 0.3, np.float32)
    r = as_sparse_rows(sp.csr_matrix(x), 97, np.float32)
    w = r.work(r.max_batch_nnz(40), (40, 50), np.array([0, 8, 40, 97], np.int64))
    for a in (w.count, w.cols, w.ti, w.tv, w.dz, w.parts):
        assert a.ctypes.data % 64 == 0
    assert (w.starts * 4 % 64 == 0).all() and (w.starts * 8 % 64 == 0).all()


@pytest.mark.parametrize("dtype,width", [(np.float32, 50), (np.float32, 64), (np.float64, 50), (np.float32, 1),
                                         (np.float64, 3)])
@needs_mnist
def test_the_cut_halves_the_nonzeros_on_a_cache_line(dtype, width):
    (x, _), _ = load_mnist(root=MNIST, download=False)
    r = as_sparse_rows(sp.csr_matrix(x[:3000]), 784, dtype)
    counts = r.column_counts()
    splits = column_splits(counts, width, dtype, 2)
    assert splits[0] == 0 and splits[-1] == 784 and splits.shape == (3,)
    cut = int(splits[1])
    assert cut * width * np.dtype(dtype).itemsize % 64 == 0  # no line of W1 is written by both parts
    assert cut % 8 == 0  # nor of the scratch's int64 arrays per column (count, cols)
    step = np.lcm(64 // np.gcd(width * np.dtype(dtype).itemsize, 64), 8)
    before = np.r_[0, np.cumsum(counts)]
    # the best such cut: no other multiple of step leaves the halves nearer equal
    others = np.arange(step, 784, step)
    assert abs(before[cut] - before[-1] / 2) == np.abs(before[others] - before[-1] / 2).min()
    assert 0.4 < before[cut] / before[-1] < 0.6


def test_one_part_where_no_cut_gives_both_parts_work():
    one = np.array([0, 40], np.int64)
    np.testing.assert_array_equal(column_splits(np.r_[5, np.zeros(39, np.int64)], 16, np.float32, 2), one)
    np.testing.assert_array_equal(column_splits(np.zeros(40, np.int64), 16, np.float32, 2), one)
    np.testing.assert_array_equal(column_splits(np.ones(40, np.int64), 16, np.float32, 1), one)
    # width 1 float32: a cut only every 16 rows, none inside 10 columns
    np.testing.assert_array_equal(column_splits(np.ones(10, np.int64), 1, np.float32, 2), [0, 10])


@needs_mnist
def test_small_batches_take_one_part_and_mnist_batches_two():
    (x, _), _ = load_mnist(root=MNIST, download=False)
    r = as_sparse_rows(sp.csr_matrix(x[:2000]), 784, np.float32)
    assert r.splits(100, 50).shape[0] == PARTS + 1  # ~15,000 nonzeros a batch
    assert r.splits(100, 1).shape[0] == PARTS + 1   # as many nonzeros, each as dear at width 1
    np.testing.assert_array_equal(r.splits(2, 50), [0, 784])  # ~300: threads would cost more
    assert r.splits(2, 200).shape[0] == PARTS + 1   # ~300 four times over: 4 blocks of outputs


def _sparse_fit(x, t, **kw):
    net = fastbp.Network([x.shape[1], 40, 4], seed=0, sparse=True)
    fastbp.fit(net, x, t, epochs=2, batch_size=50, lr=0.1, seed=0, progress=False, **kw)
    return net.flat_params


def test_fit_gives_the_same_numbers_on_threads_in_turn_and_in_a_forked_child(rng, monkeypatch):
    import multiprocessing as mp
    from fastbp import cpu
    x = sp.csr_matrix(sparse_matrix(rng, 400, 300, 0.3, np.float32))
    t = rng.integers(0, 4, 400)
    seen, real = [], cpu.threads

    def spy(xk, sizes, n):  # what each call of the compiled loop ran on
        return _Recorded(real(xk, sizes, n), seen)
    monkeypatch.setattr(cpu, "threads", spy)
    threaded = _sparse_fit(x, t)
    assert seen and all(seen) == (numba.get_num_threads() > 1)
    seen.clear()
    with monkeypatch.context() as m:  # as a forked child runs it, in this process: the parts in turn
        m.setattr(cpu, "_FORKED", [True])
        in_turn = _sparse_fit(x, t)
    assert seen and not any(seen)
    np.testing.assert_array_equal(threaded, in_turn)

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=lambda: q.put(_sparse_fit(x, t)))
    p.start()
    child = q.get(timeout=300)
    p.join(60)
    assert p.exitcode == 0
    np.testing.assert_array_equal(threaded, child)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 0.001)])
def test_a_wide_network_trains_to_the_same_numbers_on_threads_and_in_turn(rng, monkeypatch, optimizer, lr):
    # later products past BLAS_ONE_THREAD in blocks of rows on numba's threads with BLAS on
    # one thread, and Adam's step past STEP_SPLIT_MIN parameters in ranges there, against the
    # parts in turn with BLAS on its own threads
    from fastbp import cpu
    x = sp.csr_matrix(sparse_matrix(rng, 300, 200, 0.2, np.float32))
    t = rng.integers(0, 4, 300)
    sizes = [200, 64, 256, 256, 4]
    assert 50 * 256 * 256 > BLAS_ONE_THREAD and layout.param_count(layout.param_layout(sizes)) > STEP_SPLIT_MIN

    def train():
        net = fastbp.Network(sizes, seed=0, sparse=True)
        fastbp.fit(net, x, t, epochs=2, batch_size=50, lr=lr, optimizer=optimizer, seed=0, progress=False,
                   train_accuracy=False)
        return net.flat_params.copy()
    seen, real = [], cpu.threads
    monkeypatch.setattr(cpu, "threads", lambda xk, s, n: _Recorded(real(xk, s, n), seen))
    threaded = train()
    assert seen and all(seen) == (numba.get_num_threads() > 1)
    seen.clear()
    with monkeypatch.context() as m:
        m.setattr(cpu, "_FORKED", [True])
        in_turn = train()
    assert seen and not any(seen)
    assert_near(threaded, in_turn, np.float32)


class _Recorded:
    def __init__(self, cm, seen):
        self.cm, self.seen = cm, seen

    def __enter__(self):
        x = self.cm.__enter__()
        if x.work.splits.shape[0] > 2:  # not the one-part runs that compile the kernels first
            self.seen.append(bool(x.work.threaded))
        return x

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


# -- Network and fit: sparse input against the same data dense
FORMATS = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix, "csr_array": sp.csr_array}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sizes", [[40, 17, 5], [1, 1, 2], [40, 65, 9, 3], [40, 64, 5]])
def test_network_on_sparse_input_is_the_network_on_dense(rng, dtype, fmt, sizes):
    x = sparse_matrix(rng, 23, sizes[0], 0.15, np.float64)
    t = rng.integers(0, sizes[-1], 23)
    dense = fastbp.Network(sizes, seed=3, dtype=dtype, sparse=False)
    sparse = fastbp.Network(sizes, seed=3, dtype=dtype, sparse=True)
    for net in (dense, sparse):  # biases off 0: an all-zero row would sit on ReLU's kink
        net.params["b1"] = np.linspace(-0.5, 0.7, sizes[1])
    xs = FORMATS[fmt](x)
    assert_near(sparse.predict(xs), dense.predict(x), dtype)
    assert sparse.loss(xs, t) == pytest.approx(dense.loss(x, t), rel=NUM_TOL[dtype]["rtol"])
    assert sparse.accuracy(xs, t) == dense.accuracy(x, t)
    gs, gd = sparse.gradient(xs, t), dense.gradient(x, t)
    for k in gd:
        assert_near(gs[k], gd[k], dtype)
    # and against central differences of the float64 function
    num = sparse.numerical_gradient(xs, t, h=1e-6)
    for k in gd:
        np.testing.assert_allclose(gs[k], num[k], **NUM_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,n", [([30, 12, 4], 1), ([30, 12, 4], 257), ([30, 12, 4], 1000),
                                     ([30, 9, 700, 3], 300), ([30, 300, 300, 3], 70),
                                     ([30, 50, 4], 600), ([30, 30, 4], 600), ([30, 64, 4], 300)])
def test_whole_set_passes_split_over_threads_are_the_dense_network(rng, dtype, sizes, n):
    # blocks of rows on numba's threads (cpu.parallel_block): one row, a block and one row
    # more, many blocks, blocks of an odd size, and a net too wide for them (blocks of
    # MAX_BLOCK rows with BLAS held to one thread)
    x = sparse_matrix(rng, n, sizes[0], 0.2, np.float64)
    t = rng.integers(0, sizes[-1], n)
    dense = fastbp.Network(sizes, seed=3, dtype=dtype, sparse=False)
    sparse = fastbp.Network(sizes, seed=3, dtype=dtype, sparse=True)
    for net in (dense, sparse):
        net.params["b1"] = np.linspace(-0.5, 0.7, sizes[1])
    xs = sp.csr_matrix(x)
    assert_near(sparse.predict(xs), dense.predict(x), dtype)
    assert sparse.accuracy(xs, t) == dense.accuracy(x, t)
    assert sparse.loss(xs, t) == pytest.approx(dense.loss(x, t), rel=NUM_TOL[dtype]["rtol"])
    threads = numba.get_num_threads()
    try:  # each block is computed alike whichever thread takes it
        numba.set_num_threads(1)
        one = sparse.predict(xs)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, sparse.predict(xs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [17, 20])
def test_whole_set_passes_on_w1_packed_are_the_forward_on_w1_bit_for_bit(rng, dtype, hidden):
    # the blocks read a packed copy of W1 too narrow for the blocked forward (rows of 32
    # float32 or 24 float64), which sums each row as the batch forward on W1 does
    from fastbp.kernels.mlp import mlp_forward, mlp_logits_blocks
    from fastbp.kernels.sparse import forward_work
    sizes = np.array([40, hidden, 5], np.int64)
    lay = layout.param_layout(sizes)
    params = layout.zeros(layout.param_count(lay), dtype)
    params[...] = rng.standard_normal(params.shape)
    x = sparse_matrix(rng, 70, 40, 0.2, dtype)
    r = as_sparse_rows(sp.csr_matrix(x), 40, dtype)
    rows = np.arange(70, dtype=np.int64)
    got = np.empty((70, 5), dtype)
    mlp_logits_blocks(got, params, layout.offsets(lay), sizes, r.take(rows), 1, 16)
    acts = np.empty(layout.acts_length(sizes, 70), dtype)
    csr = r.take(rows)._replace(work=forward_work(params))
    mlp_forward(acts, params, layout.offsets(lay), sizes, csr, 1)
    np.testing.assert_array_equal(got, layout.logits_of(acts, sizes, 70))


_SETUP = """
import numpy as np, scipy.sparse as sp, fastbp
x = sp.random(600, 30, density=0.2, random_state=0, format="csr", dtype=np.float32)
net = fastbp.Network([30, 12, 4], seed=0, sparse=True)
want = fastbp.Network([30, 12, 4], seed=0, sparse=False).predict(x.toarray())
"""


def _run(code, **env):
    r = subprocess.run([sys.executable, "-c", _SETUP + code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_child_forked_after_a_threaded_pass_predicts():
    # GNU OpenMP cannot run a parallel region in a forked child: numba kills the child
    out = _run("""
import multiprocessing as mp
net.predict(x)
def child(q):
    q.put(float(np.abs(net.predict(x) - want).max()))
ctx = mp.get_context("fork")
q = ctx.Queue(); p = ctx.Process(target=child, args=(q,)); p.start(); p.join(120)
print(p.exitcode, q.get(timeout=5) if p.exitcode == 0 else None)
""")
    code, err = out.split()
    assert code == "0" and float(err) < 1e-5


def test_threads_predicting_at_once_under_numbas_workqueue_layer():
    # the workqueue layer terminates the process when two threads enter parallel code at once
    out = _run("""
import threading
errs = []
def work():
    for _ in range(30):
        errs.append(float(np.abs(net.predict(x) - want).max()))
ts = [threading.Thread(target=work) for _ in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
import numba
print(numba.threading_layer(), len(errs), max(errs))
""", NUMBA_THREADING_LAYER="workqueue")
    layer, n, err = out.split()
    assert layer == "workqueue" and n == "90" and float(err) < 1e-5


def test_parallel_blocks_keep_every_blas_call_on_the_calling_thread():
    for sizes in ([784, 50, 10], [784, 10], [30, 9, 700, 3], [20000, 50, 2]):
        block = parallel_block(sizes)
        widest = max([sizes[l] * sizes[l + 1] for l in range(1, len(sizes) - 1)] + [1])
        assert 32 <= block <= 256 and block * widest <= BLAS_ONE_THREAD
    assert parallel_block([784, 256, 128, 10]) == 0  # 8 rows a block: one thread, bigger calls


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_unsorted_and_duplicate_indices_are_summed_and_the_callers_matrix_untouched(rng, index_dtype):
    # row 0: column 3 twice (1.5 + 0.5) and columns out of order; row 1 empty; row 2: column 0
    data = np.array([1.5, 2.0, 0.5, -1.0, 4.0])
    indices = np.array([3, 1, 3, 5, 0], index_dtype)
    indptr = np.array([0, 4, 4, 5], index_dtype)
    xs = sp.csr_matrix((data, indices, indptr), shape=(3, 6))
    kept = (xs.data.copy(), xs.indices.copy(), xs.indptr.copy())
    dense = np.zeros((3, 6))
    dense[0, 3], dense[0, 1], dense[0, 5], dense[2, 0] = 2.0, 2.0, -1.0, 4.0
    net = fastbp.Network([6, 4, 2], seed=0, dtype="float64", sparse=True)
    np.testing.assert_allclose(net.predict(xs), fastbp.Network([6, 4, 2], seed=0, dtype="float64",
                                                               sparse=False).predict(dense), rtol=1e-12)
    for a, b in zip(kept, (xs.data, xs.indices, xs.indptr)):
        np.testing.assert_array_equal(a, b)
    assert not xs.has_sorted_indices


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [1, 7, 8, 16, 17, 33, 784])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
def test_dense_to_rows_is_scipys_csr(rng, dtype, D, density):
    # a vector of x at a time (kernels/simd.py: count_nonzero, store_nonzero): every width
    # against whole vectors, empty and full rows; -0.0 is a zero, as for scipy
    x = sparse_matrix(rng, 13, D, density, dtype)
    x[x < -0.5] = -0.0
    x[3] = 0.0
    counts = row_counts(x)
    np.testing.assert_array_equal(counts, (x != 0).sum(axis=1))
    got, want = dense_to_rows(x, counts), sp.csr_matrix(x)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)
    assert got.data.dtype == dtype and got.indices.dtype == np.int32


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_dense_input_in_any_layout_takes_the_sparse_path_alike(rng, layout):
    x = sparse_matrix(rng, 20, 30, 0.1, np.float32)
    xl = np.asfortranarray(x) if layout == "fortran" else np.repeat(x, 2, axis=1)[:, ::2]
    assert not xl.flags.c_contiguous
    net = fastbp.Network([30, 8, 4], seed=1, sparse=True)
    np.testing.assert_array_equal(net.predict(xl), net.predict(x))
    assert isinstance(net.as_input(xl), SparseRows)


def test_auto_policy_follows_the_density(rng):
    net = fastbp.Network([50, 8, 4], seed=1)
    assert net.sparse == "auto"
    thin = sparse_matrix(rng, 10, 50, AUTO_DENSITY / 3, np.float32)
    thick = rng.standard_normal((10, 50)).astype(np.float32)
    assert isinstance(net.as_input(thin), SparseRows)
    assert isinstance(net.as_input(thick), np.ndarray)
    assert isinstance(net.as_input(sp.csr_matrix(thick)), SparseRows)  # scipy input stays sparse
    net.sparse = False
    assert isinstance(net.as_input(sp.csr_matrix(thin)), np.ndarray)
    with pytest.raises(ValueError, match="sparse must be"):
        net.sparse = "yes"
    with pytest.raises(ValueError, match="sparse must be"):
        fastbp.Network([5, 2], sparse=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer,wd", [("sgd", 0.0), ("sgd", 0.01), ("adam", 0.01), ("momentum", 0.0)])
@pytest.mark.parametrize("hidden", [24, 32])
def test_fit_on_sparse_input_trains_as_on_dense(rng, dtype, optimizer, wd, hidden):
    # hidden 24: SGD steps on a packed copy of W1; 32: W1's rows are whole vectors on cache
    # lines already (float32 and float64), W1 is updated where it lies, nonzero by nonzero
    x = sparse_matrix(rng, 300, 60, 0.1, np.float64)
    t = (x[:, :5].sum(axis=1) > 0).astype(np.int64) + 2 * (x[:, 5:10].sum(axis=1) > 0)
    nets = [fastbp.Network([60, hidden, 4], seed=2, dtype=dtype, sparse=s) for s in (False, True)]
    hists = [fastbp.fit(net, xi, t, epochs=4, batch_size=16, optimizer=optimizer, weight_decay=wd, seed=5,
                        eval_data=(xi[:50], t[:50]))
             for net, xi in zip(nets, (x, sp.csr_matrix(x)))]
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hists[1]["loss"], hists[0]["loss"], **tol)
    np.testing.assert_allclose(nets[1].flat_params, nets[0].flat_params, **tol)
    assert hists[1]["train_acc"] == hists[0]["train_acc"]
    assert hists[1]["train_acc"][-1] > 0.5  # it learns: the largest class is ~0.35


# -- bad sparse input: a ValueError or TypeError naming the argument, before any kernel runs
def hand_built_csr(indices, indptr=(0, 2, 3), data=(1.0, 2.0, 3.0), shape=(2, 5)):
    # scipy checks little when built this way; the kernels would read out of bounds
    m = sp.csr_matrix(shape)
    m.data, m.indices, m.indptr = np.array(data), np.array(indices), np.array(indptr)
    return m


@pytest.mark.parametrize("bad,match", [
    (lambda: sp.csr_matrix(np.ones((3, 4))), r"x must have shape \(N, 5\)"),
    (lambda: sp.csr_matrix((0, 5)), "at least one sample"),
    (lambda: sp.csr_matrix(np.array([[0, np.nan, 0, 0, 1.0]])), "finite"),
    (lambda: sp.csr_matrix(np.array([[0, 1e39, 0, 0, 1.0]])), "too large for float32"),
    (lambda: hand_built_csr([0, 5, 1]), r"column indices must be in \[0, 5\)"),
    (lambda: hand_built_csr([0, -1, 1]), r"column indices must be in \[0, 5\)"),
    (lambda: hand_built_csr([0, 1, 1], indptr=(0, 2, 9)), "indptr"),
    (lambda: hand_built_csr([0, 1, 1], indptr=(0, 2)), "indptr must have 3 entries"),
    (lambda: sp.coo_matrix((np.ones(2), (np.array([0, 7]), np.array([0, 1]))), shape=(8, 5)).tocsr()[:2],
     None),  # a valid slice: no error
])
def test_bad_sparse_input_is_refused_with_the_argument_named(bad, match):
    net = fastbp.Network([5, 3, 2], seed=0)
    x = bad()
    t = np.zeros(x.shape[0], np.int64)
    if match is None:
        net.predict(x)
        return
    for call in (lambda: net.predict(x), lambda: net.gradient(x, t),
                 lambda: fastbp.fit(net, x, t, batch_size=1)):
        with pytest.raises(ValueError, match=match):
            call()
    with pytest.raises(ValueError, match="eval_data\\[0\\]"):
        fastbp.fit(net, np.zeros((2, 5)), [0, 1], batch_size=1, eval_data=(x, t))


def test_coo_with_indices_out_of_range_is_refused():
    m = sp.coo_matrix((np.ones(2), (np.array([0, 1]), np.array([0, 1]))), shape=(2, 5))
    m.col[1] = 9  # as a hand-built matrix may hold
    with pytest.raises(ValueError, match=r"x: column indices must be in \[0, 5\)"):
        fastbp.Network([5, 3, 2]).predict(m)


def test_non_numeric_sparse_input_is_a_type_error():
    m = sp.csr_matrix(np.ones((2, 5), dtype=np.complex128))
    with pytest.raises(TypeError, match="x must hold integers or floats"):
        fastbp.Network([5, 3, 2]).predict(m)


def _blas_threads():
    import threadpoolctl
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_wide_later_layers_run_on_numbas_threads_with_blas_on_one(monkeypatch):
    # a later layer whose products over a batch would wake BLAS's threads: the parts and
    # those products on numba's threads, every BLAS library on one thread meanwhile, and
    # BLAS's own threads back after; where BLAS cannot be limited, the parts in turn
    from fastbp import cpu
    x = sparse_matrix(np.random.default_rng(0), 400, 300, 0.3, np.float32)
    r = as_sparse_rows(sp.csr_matrix(x), 300, np.float32)
    batch = r.take(np.arange(50, dtype=np.int64), r.max_batch_nnz(50), (50, 40))
    assert batch.work.splits.shape[0] == PARTS + 1
    many = numba.get_num_threads() > 1
    before = _blas_threads()
    with cpu.threads(batch, (300, 40, 4), 50) as xk:
        assert xk.work.threaded == many
        assert _blas_threads() == before
    with cpu.threads(batch, (300, 40, 256, 128, 4), 50) as xk:  # 50 x 256 x 128 > BLAS_ONE_THREAD
        assert xk.work.threaded == many
        if many:
            assert _blas_threads() and set(_blas_threads()) == {1}
    assert _blas_threads() == before

    @contextlib.contextmanager
    def cannot():
        yield False
    monkeypatch.setattr(cpu, "blas_on_one_thread", cannot)
    with cpu.threads(batch, (300, 40, 256, 128, 4), 50) as xk:
        assert not xk.work.threaded
