"""The CUDA kernels (numba-cuda `@cuda.jit`): the CPU kernels' GPU twins.

Imported only when a Network asks for device="cuda" (numba-cuda is an optional
extra: `pip install 'fastbp[cuda]'`). Every kernel is built by a factory for one
dtype and a few compile-time constants (tile sizes, transposes, epilogue) and
compiled eagerly with an explicit signature, so a launch only checks types (or loaded from
the disk cache, when this machine has built it before).

    build.py          how each kernel is made: source factory, signature, eager compile
    disk_cache.py     kernels built once per machine: loaded from disk by later processes
    config.py         tile and block sizes (small ones under the simulator)
    activations.py    relu / sigmoid / tanh device functions and their derivatives
    gemm.py           C = op(A)·op(B) with a fused epilogue: naive, tiled, register-blocked
    affine.py         Affine forward/backward as gemm launches (bias, act, act', db fused)
    softmax_loss.py   softmax + cross-entropy forward+backward, argmax
    optimizers.py     SGD/Momentum/AdaGrad/Adam over the flat parameter buffer
    gather.py         the minibatch gather
    mlp.py            DeviceMLP: buffers and the launch plan of a whole network
"""
import numpy as _np

# numba-cuda (0.30, in maintenance) registers an overload for np.row_stack when its typing
# loads at the first compile; NumPy 2.5 removed that alias of np.vstack, so on NumPy >= 2.5
# every kernel compile fails with "module 'numpy' has no attribute 'row_stack'"
# (NVIDIA/numba-cuda issue 907, closed without a fix). Putting the alias back is all it takes.
if not hasattr(_np, "row_stack"):
    _np.row_stack = _np.vstack

