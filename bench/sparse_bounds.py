"""What bounds the sparse first layer on this machine: the training step's two kernels on
one thread next to bare loops that do only their memory and arithmetic work per nonzero,
over the same MNIST batch's nonzeros (100 rows x 784 -> 50, float32, W1 packed to rows of
64 on cache lines, as fit's SGD steps run them), in ns per nonzero. One process, the
contenders alternating round by round, each from compiled code (bench/sparse.py: repeat_forward,
repeat_sgd), medians.

    forward kernel     sparse_affine_forward, its two parts in turn on one thread
    load + FMA, L2     per nonzero: its row of W (4 whole vectors) loaded and multiplied into
                       4 accumulators, two sets taking alternate nonzeros (the forward's
                       inner loop and nothing else); W as fit packs it: 784 x 64 float32,
                       200 KB, beyond L1
    load + FMA, L1     the same with the columns folded onto 64 rows of W (16 KB, in L1)
    update kernel      sparse_tn_packed (dW1 and the SGD step), one part on one thread
    load+FMA+store     per nonzero: its row of W loaded, a multiple of a vector added, stored
                       (the packed update's inner loop and nothing else), rows folded into L1
    stores only        per nonzero: 4 whole vectors stored into its row, nothing loaded

Then the dense BLAS products the kernels replace (two threads), and what 3x faster than
them would take.

    python -m bench.sparse_bounds [--rounds 9]
"""
import argparse
import os
import platform
import time

import numpy as np
from numba import njit

from fastbp.datasets import load_mnist
from fastbp.kernels.simd import vadd, vfma, vload, vstore, vzero

from bench.sparse import (REPS, SHARED, apart, interleaved, mnist_batch, packed, per_rep, repeat_forward,
                          repeat_sgd)

L = 16  # float32 lanes in a 64-byte vector


@njit
def load_fma(W, cols, vals, out, reps):
    # per nonzero k: 4 vectors of W's row cols[k] times vals[k] into accumulators, two sets
    # taking alternate nonzeros; W (R, 64)
    for _ in range(reps):
        a0, a1, a2, a3 = vzero(W), vzero(W), vzero(W), vzero(W)
        e0, e1, e2, e3 = vzero(W), vzero(W), vzero(W), vzero(W)
        for k in range(0, cols.shape[0] - 1, 2):
            v, j = vals[k], cols[k] * 64
            a0, a1 = vfma(v, vload(W, j, L), a0), vfma(v, vload(W, j + L, L), a1)
            a2, a3 = vfma(v, vload(W, j + 2 * L, L), a2), vfma(v, vload(W, j + 3 * L, L), a3)
            v, j = vals[k + 1], cols[k + 1] * 64
            e0, e1 = vfma(v, vload(W, j, L), e0), vfma(v, vload(W, j + L, L), e1)
            e2, e3 = vfma(v, vload(W, j + 2 * L, L), e2), vfma(v, vload(W, j + 3 * L, L), e3)
        vstore(out, 0, vadd(vadd(vadd(a0, e0), vadd(a1, e1)), vadd(vadd(a2, e2), vadd(a3, e3))), L)


@njit
def load_fma_store(W, cols, vals, d, reps):
    # per nonzero k: W's row cols[k] += vals[k]·d (4 vectors loaded, multiplied in, stored)
    d0, d1, d2, d3 = vload(d, 0, L), vload(d, L, L), vload(d, 2 * L, L), vload(d, 3 * L, L)
    for _ in range(reps):
        for k in range(cols.shape[0]):
            v, j = vals[k], cols[k] * 64
            vstore(W, j, vfma(v, d0, vload(W, j, L)), L)
            vstore(W, j + L, vfma(v, d1, vload(W, j + L, L)), L)
            vstore(W, j + 2 * L, vfma(v, d2, vload(W, j + 2 * L, L)), L)
            vstore(W, j + 3 * L, vfma(v, d3, vload(W, j + 3 * L, L)), L)


@njit
def stores(W, cols, d, reps):
    # per nonzero k: 4 vectors stored into W's row cols[k]
    d0, d1, d2, d3 = vload(d, 0, L), vload(d, L, L), vload(d, 2 * L, L), vload(d, 3 * L, L)
    for _ in range(reps):
        for k in range(cols.shape[0]):
            j = cols[k] * 64
            vstore(W, j, d0, L)
            vstore(W, j + L, d1, L)
            vstore(W, j + 2 * L, d2, L)
            vstore(W, j + 3 * L, d3, L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--data-dir", default=SHARED)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"numpy {np.__version__}; {time.strftime('%Y-%m-%d')}")
    x = load_mnist(root=args.data_dir, download=False)[0][0]
    m = mnist_batch(x)  # bench.sparse's first-layer batch
    one, two, xb, W, Wp, b, dz, out, nnz = m.one, m.two, m.xb, m.W, m.Wp, m.b, m.dz, m.out, m.nnz
    pos = np.concatenate([np.arange(m.batch.indptr[r], m.batch.indptr[r + 1]) for r in m.rows])
    cols, vals = m.batch.indices[pos].astype(np.int64), m.batch.data[pos]  # the forward's order
    W_l1 = packed(W[:64])  # 64 x 64: 16 KB (Wp: 784 x 64 on cache lines)
    folded = cols % 64
    d = np.full(64, 1e-30, np.float32)
    sink = packed(np.zeros((1, 16), np.float32)).reshape(-1)
    t = per_rep(interleaved({  # every contender REPS times over the batch from compiled code
        "forward kernel": lambda: repeat_forward(out, one, Wp, b, REPS),
        "load + FMA, L2": lambda: load_fma(Wp, cols, vals, sink, REPS),
        "load + FMA, L1": lambda: load_fma(W_l1, folded, vals, sink, REPS),
        "update kernel": lambda: repeat_sgd(Wp, one, dz, REPS),
        "load+FMA+store": lambda: load_fma_store(W_l1, folded, vals, d, REPS),
        "stores only": lambda: stores(W_l1, folded, d, REPS),
    }, args.rounds, 1))
    per = {k: v * 1e3 / nnz for k, v in t.items()}
    print(f"MNIST batch of 100, {nnz} nonzeros, W1 784 x 50 packed to rows of 64; one thread, ns per nonzero:")
    for k, v in per.items():
        print(f"  {k:16} {v:5.2f} ns  ({v * nnz / 1e3:6.1f} us for the batch)")
    two_t = per_rep(apart({"forward, 2 threads": lambda: repeat_forward(out, two, Wp, b, REPS),
                           "update, 2 threads": lambda: repeat_sgd(Wp, two, dz, REPS)},
                          {"dense forward": lambda: repeat_forward(out, xb, W, b, REPS),
                           "dense update": lambda: repeat_sgd(W, xb, dz, REPS)}, args.rounds, 1))
    for part, floor in (("forward", "load + FMA, L2"), ("update", "load+FMA+store")):
        dense = two_t[f"dense {part}"]
        print(f"  {part}: 2 threads {two_t[f'{part}, 2 threads']:5.1f} us, dense (BLAS, 2 threads) {dense:5.1f} us, "
              f"x{dense / two_t[f'{part}, 2 threads']:.2f}; 3x needs <= {dense / 3:4.1f} us; the bare loop on "
              f"two cores, perfectly split: {per[floor] * nnz / 2e3:4.1f} us")


if __name__ == "__main__":
    main()
