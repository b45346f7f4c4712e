"""How every CUDA kernel here is made, in one place.

A factory `source(NP, ...)` returns the kernel's Python function for one dtype (its
literals typed NP, so float32 stays float32) and a few compile-time constants; a
`signature(NP)` gives its explicit types; compile() jits the pair eagerly, so a launch
only checks types. The NVVM test (tests/test_cuda_compile.py) compiles the same pairs
to PTX without a GPU.
"""
import numpy as np
from numba import cuda, from_dtype, types

I64 = types.Array(types.int64, 1, "C")    # row orders, labels, the stop flag
F64 = types.Array(types.float64, 1, "C")  # losses


def scalar(NP):
    """numba's scalar type for np.float32 / np.float64."""
    return from_dtype(np.dtype(NP))


def array(NP, ndim):
    """A C-contiguous array type of NP with ndim dimensions."""
    return types.Array(scalar(NP), ndim, "C")


def compile(signature, source):
    """The kernel, compiled now for exactly `signature`."""
    return cuda.jit(signature)(source)
