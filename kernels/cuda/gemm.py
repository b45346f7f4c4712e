"""C = op(A)·op(B) with a fused epilogue, in three versions kept side by side (llm.c's dev/cuda).

Sizes: C (M, N); op(A) (M, K) is A or Aᵀ (ta); op(B) (K, N) is B or Bᵀ (tb).
Every version takes the same arguments (C, A, B, v, H, act) and ends in the same
epilogue, chosen at compile time:

    EPI_NONE      C = A·B
    EPI_BIAS_ACT  C = act(A·B + v)          Affine forward: v is the bias (N,)
    EPI_ACT_GRAD  C = (A·B) * act'(H)       Affine dx fused with the previous layer's act':
                                            H (M, N) is that layer's output
    EPI_COLSUM    C = A·B and v = column sums of op(B)   Affine dW = xᵀ·dz with db = Σ dz
                                            (only the blocks of the first row of tiles sum,
                                            in a fixed order: no atomics, reproducible)

Unused v / H are any small array of the right type. act: 0 identity, 1 relu, 2 sigmoid, 3 tanh.

    naive     one thread per output, K-loop from global memory (the referee)
    tiled     TILE x TILE threads stage TILE x TILE tiles of op(A), op(B) in shared memory;
              transposed operands are read along their rows, so loads stay coalesced
    regblock  T x T threads compute an (R*T) x (R*T) block tile, R x R outputs per thread in
              registers from BK-deep shared tiles: R² multiply-adds per 2R shared loads
              (the tiled kernel does 1 per 2)
    pipelined regblock with the next tile's global loads issued before this tile's
              multiply-adds, into registers (stored to shared memory after them), so their
              latency hides behind the arithmetic instead of stalling every tile
Each thread sums k in order 0..K-1 in the dtype of C (like cuBLAS; no split-K).
"""
import functools

from numba import cuda, types

from . import build, config
from .activations import make_activations

EPI_NONE, EPI_BIAS_ACT, EPI_ACT_GRAD, EPI_COLSUM = 0, 1, 2, 3
VERSIONS = ("naive", "tiled", "regblock", "pipelined")


def signature(NP):
    a = build.array(NP, 2)
    return types.void(a, a, a, build.array(NP, 1), a, types.int64)


def source(version, ta, tb, epi, NP, shape=None):
    """The Python function of one gemm variant (kernel() compiles it)."""
    if epi == EPI_COLSUM and tb:
        raise ValueError("EPI_COLSUM sums the columns of B itself: tb must be False")
    act_apply, act_grad = make_activations(NP)
    zero = NP(0)

    @cuda.jit(device=True)
    def a_at(A, i, k):  # op(A)[i, k]
        return A[k, i] if ta else A[i, k]

    @cuda.jit(device=True)
    def b_at(B, k, j):  # op(B)[k, j]
        return B[j, k] if tb else B[k, j]

    @cuda.jit(device=True)
    def store(C, v, H, act, i, j, acc):
        if epi == EPI_BIAS_ACT:
            acc = act_apply(acc + v[j], act)
        elif epi == EPI_ACT_GRAD:
            acc = acc * act_grad(H[i, j], act)
        C[i, j] = acc

    if version == "naive":
        def gemm(C, A, B, v, H, act):
            M, N = C.shape
            K = A.shape[0] if ta else A.shape[1]
            j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
            i = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
            if i < M and j < N:
                acc = zero
                for k in range(K):
                    acc += a_at(A, i, k) * b_at(B, k, j)
                store(C, v, H, act, i, j, acc)
                if epi == EPI_COLSUM and i == 0:
                    s = zero
                    for k in range(K):
                        s += B[k, j]
                    v[j] = s
        return gemm

    if version == "tiled":
        T = shape or config.TILE
        TP = T + 1  # shared shapes must be compile-time constants, not expressions

        def gemm(C, A, B, v, H, act):
            M, N = C.shape
            K = A.shape[0] if ta else A.shape[1]
            sA = cuda.shared.array((T, TP), NP)  # sA[i, k]; +1 column: no bank conflicts
            sB = cuda.shared.array((T, TP), NP)  # sB[k, j]
            tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
            i0, j0 = cuda.blockIdx.y * T, cuda.blockIdx.x * T
            colsum = epi == EPI_COLSUM and cuda.blockIdx.y == 0 and ty == 0
            acc = zero
            s = zero
            for k0 in range(0, K, T):
                # thread (ty, tx) reads element tx of a row of A/B as stored (coalesced)
                if ta:
                    sA[tx, ty] = A[k0 + ty, i0 + tx] if k0 + ty < K and i0 + tx < M else zero
                else:
                    sA[ty, tx] = A[i0 + ty, k0 + tx] if i0 + ty < M and k0 + tx < K else zero
                if tb:
                    sB[tx, ty] = B[j0 + ty, k0 + tx] if j0 + ty < N and k0 + tx < K else zero
                else:
                    sB[ty, tx] = B[k0 + ty, j0 + tx] if k0 + ty < K and j0 + tx < N else zero
                cuda.syncthreads()
                for kk in range(T):
                    acc += sA[ty, kk] * sB[kk, tx]
                if colsum:
                    for kk in range(T):
                        s += sB[kk, tx]
                cuda.syncthreads()
            i, j = i0 + ty, j0 + tx
            if i < M and j < N:
                store(C, v, H, act, i, j, acc)
                if colsum:
                    v[j] = s
        return gemm

    if version in ("regblock", "pipelined"):
        T, R, BK = shape or config.REG
        BM = T * R  # block tile is BM x BM; thread (ty, tx) owns rows ty + r*T, cols tx + c*T
        NT = T * T
        LOADS = (BK * BM + NT - 1) // NT  # elements of each operand's tile a thread loads
        pipelined = version == "pipelined"
        # The accumulators stay in registers only if every loop indexing them is unrolled. NVVM
        # does not unroll the R² stores when each holds an activation's branches and R² is 64:
        # the accumulators then live in local memory (tests/test_cuda_compile.py checks the
        # PTX). Past 16 outputs a thread, such epilogues run as a second pass over C.
        two_pass = R * R > 16 and (epi == EPI_BIAS_ACT or epi == EPI_ACT_GRAD)

        # thread tid's share of a BK-deep tile: elements e = tid + u·NT, u < LOADS, where
        # consecutive threads take consecutive addresses of A/B as stored (coalesced). A
        # stored k-major is Aᵀ (ta), B stored k-major is B itself (not tb).
        @cuda.jit(device=True)
        def place(e, k_major):  # (k, other) offsets of element e in a BK x BM tile
            if k_major:
                return e // BM, e % BM
            return e % BK, e // BK

        @cuda.jit(device=True)
        def load(X, k_major, k0, o0, e, K, O):  # X[k, o] if k_major else X[o, k]; 0 past the edges
            kk, oo = place(e, k_major)
            k, o = k0 + kk, o0 + oo
            if k < K and o < O:
                return X[k, o] if k_major else X[o, k]
            return zero

        @cuda.jit(device=True)
        def fetch(A, B, pa, pb, k0, i0, j0, tid, M, N, K):  # global -> registers
            for u in range(LOADS):
                e = tid + u * NT
                if e < BK * BM:
                    pa[u] = load(A, ta, k0, i0, e, K, M)
                    pb[u] = load(B, not tb, k0, j0, e, K, N)

        @cuda.jit(device=True)
        def stash(sA, sB, pa, pb, tid):  # registers -> shared, sA[k, i] and sB[k, j]
            for u in range(LOADS):
                e = tid + u * NT
                if e < BK * BM:
                    kk, ii = place(e, ta)
                    sA[kk, ii] = pa[u]
                    kk, jj = place(e, not tb)
                    sB[kk, jj] = pb[u]

        def gemm(C, A, B, v, H, act):
            M, N = C.shape
            K = A.shape[0] if ta else A.shape[1]
            sA = cuda.shared.array((BK, BM), NP)  # sA[k, i]: k-major, a row read is a broadcast
            sB = cuda.shared.array((BK, BM), NP)  # sB[k, j]
            acc = cuda.local.array((R, R), NP)
            a = cuda.local.array(R, NP)
            b = cuda.local.array(R, NP)
            cs = cuda.local.array(R, NP)
            pa = cuda.local.array(LOADS, NP)
            pb = cuda.local.array(LOADS, NP)
            tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
            tid = ty * T + tx
            i0, j0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BM
            colsum = epi == EPI_COLSUM and cuda.blockIdx.y == 0 and ty == 0
            for r in range(R):
                cs[r] = zero
                for c in range(R):
                    acc[r, c] = zero
            if pipelined:
                fetch(A, B, pa, pb, 0, i0, j0, tid, M, N, K)
            for k0 in range(0, K, BK):
                if not pipelined:
                    fetch(A, B, pa, pb, k0, i0, j0, tid, M, N, K)
                stash(sA, sB, pa, pb, tid)
                cuda.syncthreads()
                if pipelined and k0 + BK < K:
                    # the next tile's loads are in flight while this one is multiplied
                    fetch(A, B, pa, pb, k0 + BK, i0, j0, tid, M, N, K)
                for kk in range(BK):
                    for r in range(R):
                        a[r] = sA[kk, ty + r * T]
                        b[r] = sB[kk, tx + r * T]
                    for r in range(R):
                        for c in range(R):
                            acc[r, c] += a[r] * b[c]
                    if colsum:
                        for c in range(R):
                            cs[c] += b[c]
                cuda.syncthreads()
            for r in range(R):
                i = i0 + ty + r * T
                for c in range(R):
                    j = j0 + tx + c * T
                    if i < M and j < N:
                        if two_pass:
                            C[i, j] = acc[r, c]
                        else:
                            store(C, v, H, act, i, j, acc[r, c])
            if two_pass:  # the epilogue on this thread's own outputs, read back
                for r in range(R):
                    i = i0 + ty + r * T
                    for c in range(R):
                        j = j0 + tx + c * T
                        if i < M and j < N:
                            store(C, v, H, act, i, j, C[i, j])
            if colsum:
                for c in range(R):
                    j = j0 + tx + c * T
                    if j < N:
                        v[j] = cs[c]
        return gemm

    raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")


@functools.lru_cache(maxsize=None)
def kernel(version, ta, tb, epi, NP, shape=None):
    """The compiled kernel (explicit signature: compiled now, launched without type inference)."""
    return build.compile(signature(NP), source, version, ta, tb, epi, NP, shape)


def launch_shape(version, M, N, shape=None):
    """(blocks, threads) covering an (M, N) output."""
    if version in ("regblock", "pipelined"):
        T, R, _ = shape or config.REG
        side = T * R
    else:
        T = side = shape or config.TILE
    return ((N + side - 1) // side, (M + side - 1) // side), (T, T)


def pick(M, N):
    """The version used for an (M, N) output (see config.REGBLOCK_MIN_OUTPUTS)."""
    return "regblock" if M * N >= config.REGBLOCK_MIN_OUTPUTS else "tiled"


@functools.lru_cache(maxsize=None)
def dummies(NP):
    """A (1,) and a (1, 1) device array to pass for an unused v / H (made once per dtype:
    device allocations are slow)."""
    return cuda.device_array(1, NP), cuda.device_array((1, 1), NP)


def gemm(C, A, B, ta=False, tb=False, epi=EPI_NONE, v=None, H=None, act=0, version=None, shape=None):
    """One launch of the chosen variant on device arrays (convenience for tests and benchmarks;
    DeviceMLP configures its launches once instead). Shapes are checked here: the kernel
    does not bounds-check."""
    M, N = C.shape
    Ma, K = (A.shape[1], A.shape[0]) if ta else A.shape
    Kb, Nb = (B.shape[1], B.shape[0]) if tb else B.shape
    if (Ma, Kb, Nb) != (M, K, N):
        raise ValueError(f"gemm: op(A) {Ma}x{K} · op(B) {Kb}x{Nb} does not give C {M}x{N}")
    if epi in (EPI_BIAS_ACT, EPI_COLSUM) and (v is None or v.shape != (N,)):
        raise ValueError(f"gemm: this epilogue needs v of shape ({N},)")
    if epi == EPI_ACT_GRAD and (H is None or H.shape != (M, N)):
        raise ValueError(f"gemm: EPI_ACT_GRAD needs H of shape ({M}, {N})")
    NP = C.dtype.type
    version = version or pick(*C.shape)
    k = kernel(version, ta, tb, epi, NP, shape)
    blocks, threads = launch_shape(version, C.shape[0], C.shape[1], shape)
    dv, dH = dummies(NP)
    k[blocks, threads](C, A, B, dv if v is None else v, dH if H is None else H, act)
