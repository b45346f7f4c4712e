"""How every CUDA kernel here is made, in one place.

A factory `source(NP, ...)` returns the kernel's Python function for one dtype (its
literals typed NP, so float32 stays float32) and a few compile-time constants; a
`signature(NP)` gives its explicit types; compile() jits the pair eagerly, so a launch
only checks types, and loads it from the disk cache (disk_cache.py) when this machine has
built it before. The NVVM test (tests/test_cuda_compile.py) compiles the same pairs to PTX
without a GPU.
"""
import numpy as np
from numba import cuda, from_dtype, types

from . import config

I64 = types.Array(types.int64, 1, "C")    # row orders, labels, the stop flag
F64 = types.Array(types.float64, 1, "C")  # losses


def scalar(NP):
    """numba's scalar type for np.float32 / np.float64."""
    return from_dtype(np.dtype(NP))


def array(NP, ndim):
    """A C-contiguous array type of NP with ndim dimensions."""
    return types.Array(scalar(NP), ndim, "C")


def compile(signature, factory, *args):
    """The kernel factory(*args) makes, for exactly `signature`: loaded from the disk cache,
    else compiled now (and saved there). What cuda.jit(signature) does, with the disk cache in
    place of numba's (whose key leaves out what a kernel inlines from other files and
    config.py's settings, disk_cache.py)."""
    source = factory(*args)
    if config.SIMULATOR:  # nothing to compile or cache: the simulator runs the Python
        return cuda.jit(signature)(source)
    from . import disk_cache
    kernel = cuda.jit(source)  # a lazy dispatcher, as cuda.jit(signature) makes before compiling
    cache = disk_cache.for_kernel(source, disk_cache.kernel_key(factory, args))
    if cache is not None:
        kernel._cache = cache
    kernel.compile(signature)
    kernel._specialized = True  # as cuda.jit(signature): one signature, launches skip dispatch
    kernel.disable_compile()
    return kernel
