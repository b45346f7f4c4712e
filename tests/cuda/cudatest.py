"""Shared by the CUDA tests: they run under numba's simulator (`make test` runs them in their
own pytest process with NUMBA_ENABLE_CUDASIM=1 set before numba is imported) or unchanged
on a real GPU; anywhere else they are skipped."""
import numpy as np
import pytest
from conftest import cuda_tests_runnable


needs_device = pytest.mark.skipif(
    not cuda_tests_runnable(), reason="no GPU: run with NUMBA_ENABLE_CUDASIM=1 (make test does)")

# GPU vs CPU kernels: same math, different summation order and fused multiply-adds
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
# A loss is summed in float64 on both sides, but a float32 kernel's exp and log of its
# float32 values are the GPU's own (libdevice), an ulp or so from the CPU's: on an H100 the
# softmax loss of float32 logits was 5e-8 from the CPU's, relatively. Not so the simulator,
# which runs NumPy's.
LOSS_RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def near(got, want, dtype, scale=None):
    tol = TOL[dtype]
    scale = scale if scale is not None else max(1.0, float(np.max(np.abs(want))) if np.size(want) else 1.0)
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["rtol"] * scale + tol["atol"])
