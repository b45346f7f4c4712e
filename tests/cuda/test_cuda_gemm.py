"""Every gemm version, transpose and epilogue against NumPy, float32 and float64, at shapes
that are not multiples of the tiles (batch 1, width 1, K = 1, edges in every dimension)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import cuda

from cudatest import needs_device, near
from fastbp.kernels.cuda import config
from fastbp.kernels.cuda import gemm as G
from fastbp.kernels.cuda.activations import RELU, SIGMOID

pytestmark = needs_device
DTYPES = [np.float32, np.float64]


def _operands(rng, M, N, K, ta, tb, dtype):
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return A, B, (A.T if ta else A) @ (B.T if tb else B)


def _run(version, A, B, M, N, ta=False, tb=False, epi=G.EPI_NONE, v=None, H=None, act=0, shape=None):
    C = cuda.to_device(np.full((M, N), np.nan, A.dtype))  # NaN: an output never written shows
    dv = cuda.to_device(v) if v is not None else None
    G.gemm(C, cuda.to_device(A), cuda.to_device(B), ta, tb, epi,
           v=dv, H=cuda.to_device(H) if H is not None else None, act=act, version=version, shape=shape)
    return C.copy_to_host(), (dv.copy_to_host() if dv is not None else None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("version", G.VERSIONS)
def test_transposes(version, ta, tb, dtype, rng):
    M, N, K = 5, 7, 9
    A, B, want = _operands(rng, M, N, K, ta, tb, dtype)
    got, _ = _run(version, A, B, M, N, ta, tb)
    near(got, want, dtype)
    assert got.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (1, 7, 3), (6, 1, 5), (9, 10, 17), (5, 6, 1)])
@pytest.mark.parametrize("version", ["tiled", "regblock", "pipelined"])
def test_awkward_shapes(version, M, N, K, dtype, rng):
    A, B, want = _operands(rng, M, N, K, False, False, dtype)
    got, _ = _run(version, A, B, M, N)
    near(got, want, dtype)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version,shape,M,N,K", [(v, None, 6, 5, 7) for v in G.VERSIONS] + [
    # 25 outputs a thread: the epilogue as a second pass over C (gemm.py), 10 x 10 block tiles
    # crossed at both edges
    ("regblock", (2, 5, 3), 13, 11, 7), ("pipelined", (2, 5, 3), 13, 11, 7)])
def test_epilogues(version, shape, M, N, K, dtype, rng):
    A, B, prod = _operands(rng, M, N, K, False, False, dtype)
    b = rng.standard_normal(N).astype(dtype)
    for act, f in ((0, lambda z: z), (RELU, lambda z: np.maximum(z, 0)), (SIGMOID, _sigmoid)):
        got, _ = _run(version, A, B, M, N, epi=G.EPI_BIAS_ACT, v=b, act=act, shape=shape)
        near(got, f(prod + b), dtype)
    H = rng.uniform(-1, 1, (M, N)).astype(dtype)  # a previous layer's outputs
    for act, fprime in ((RELU, lambda y: (y > 0).astype(dtype)), (SIGMOID, lambda y: y * (1 - y))):
        got, _ = _run(version, A, B, M, N, epi=G.EPI_ACT_GRAD, H=H, act=act, shape=shape)
        near(got, prod * fprime(H), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K", [(7, 5, 9), (1, 1, 1), (3, 1, 10)])
@pytest.mark.parametrize("version", G.VERSIONS)
def test_colsum_is_the_bias_gradient(version, M, N, K, dtype, rng):
    # dW = xᵀ·dz and db = Σ_rows dz in one launch; x is (K, M) as stored, dz (K, N)
    x, dz, want = _operands(rng, M, N, K, True, False, dtype)
    db = np.full(N, np.nan, dtype)
    got, got_db = _run(version, x, dz, M, N, ta=True, epi=G.EPI_COLSUM, v=db)
    near(got, want, dtype)
    near(got_db, dz.sum(axis=0), dtype)


@pytest.mark.parametrize("version,shape", [("tiled", 16)] + [("regblock", s) for s in config.REG_CANDIDATES]
                         + [("pipelined", s) for s in config.REG_CANDIDATES if s[1] == 8])
def test_full_size_tiles(version, shape, rng):
    # the GPU's launch shapes (config.py, and the register-blocked shapes the SGEMM benchmark
    # times against them), at a size that still crosses tile edges
    M, N, K = 17, 18, 9
    for ta, tb in ((False, False), (True, False), (False, True)):
        A, B, want = _operands(rng, M, N, K, ta, tb, np.float32)
        got, _ = _run(version, A, B, M, N, ta, tb, shape=shape)
        near(got, want, np.float32)


def test_colsum_needs_untransposed_b():
    with pytest.raises(ValueError, match="tb must be False"):
        G.source("tiled", True, True, G.EPI_COLSUM, np.float32)


def test_gemm_refuses_shapes_that_do_not_fit():
    d = lambda *shape: cuda.device_array(shape, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match="does not give C"):
        G.gemm(d(3, 4), d(3, 5), d(6, 4))
    with pytest.raises(ValueError, match="needs v"):
        G.gemm(d(3, 4), d(5, 3), d(5, 4), ta=True, epi=G.EPI_COLSUM)
    with pytest.raises(ValueError, match="needs H"):
        G.gemm(d(3, 4), d(3, 5), d(5, 4), epi=G.EPI_ACT_GRAD, H=d(4, 3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(G.VERSIONS), ta=st.booleans(), tb=st.booleans(),
       M=st.integers(1, 9), N=st.integers(1, 9), K=st.integers(1, 11), seed=st.integers(0, 2 ** 16))
def test_random_shapes_and_transposes(version, ta, tb, M, N, K, seed):
    # any shape against the tiles (4 here, so 1..9 crosses 0, 1 or 2 edges), any transposes
    rng = np.random.default_rng(seed)
    A, B, want = _operands(rng, M, N, K, ta, tb, np.float32)
    got, _ = _run(version, A, B, M, N, ta, tb)
    near(got, want, np.float32)
