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
Each thread sums k in order 0..K-1 in the dtype of C (like cuBLAS; no split-K).
"""
import functools

from numba import cuda, types

from . import build, config
from .activations import make_activations

EPI_NONE, EPI_BIAS_ACT, EPI_ACT_GRAD, EPI_COLSUM = 0, 1, 2, 3
VERSIONS = ("naive", "tiled", "regblock")


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

    if version == "regblock":
        T, R, BK = shape or config.REG
        BM = T * R  # block tile is BM x BM; thread (ty, tx) owns rows ty + r*T, cols tx + c*T

        def gemm(C, A, B, v, H, act):
            M, N = C.shape
            K = A.shape[0] if ta else A.shape[1]
            sA = cuda.shared.array((BK, BM), NP)  # sA[k, i]: k-major, a row read is a broadcast
            sB = cuda.shared.array((BK, BM), NP)  # sB[k, j]
            acc = cuda.local.array((R, R), NP)
            a = cuda.local.array(R, NP)
            b = cuda.local.array(R, NP)
            cs = cuda.local.array(R, NP)
            tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
            tid = ty * T + tx
            i0, j0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BM
            colsum = epi == EPI_COLSUM and cuda.blockIdx.y == 0 and ty == 0
            for r in range(R):
                cs[r] = zero
                for c in range(R):
                    acc[r, c] = zero
            for k0 in range(0, K, BK):
                for e in range(tid, BK * BM, T * T):
                    # consecutive threads take consecutive addresses of A/B as stored
                    if ta:
                        kk, ii = e // BM, e % BM
                        k, i = k0 + kk, i0 + ii
                        sA[kk, ii] = A[k, i] if k < K and i < M else zero
                    else:
                        ii, kk = e // BK, e % BK
                        k, i = k0 + kk, i0 + ii
                        sA[kk, ii] = A[i, k] if k < K and i < M else zero
                    if tb:
                        jj, kk = e // BK, e % BK
                        k, j = k0 + kk, j0 + jj
                        sB[kk, jj] = B[j, k] if k < K and j < N else zero
                    else:
                        kk, jj = e // BM, e % BM
                        k, j = k0 + kk, j0 + jj
                        sB[kk, jj] = B[k, j] if k < K and j < N else zero
                cuda.syncthreads()
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
                        store(C, v, H, act, i, j, acc[r, c])
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
    if version == "regblock":
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
