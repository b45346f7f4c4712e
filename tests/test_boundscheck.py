"""Proof that `make test`'s second run really has numba's bounds checking on."""
import numba
import numpy as np
import pytest

from fastbp.kernels import affine, relu


@pytest.mark.skipif(not numba.config.BOUNDSCHECK, reason="runs in make test's NUMBA_BOUNDSCHECK=1 pass")
def test_out_of_bounds_access_raises_instead_of_reading_stray_memory():
    with pytest.raises(IndexError):
        relu.relu_forward(np.empty(2), np.ones(3))  # out is shorter than x
    with pytest.raises(IndexError):
        affine.bias_act_backward(np.empty((2, 3)), np.empty(2), np.ones((2, 3)), np.ones((2, 3)), 0)
