"""ReLU, sigmoid and tanh as device functions, with their derivatives in terms of the output.

Built per dtype (make_activations(np.float32)) so every literal has the kernel's
type: a bare 0 or 1.0 would make float32 math float64. act codes are the CPU's
(fastbp.kernels.codes).
"""
import functools
import math

from numba import cuda

from ..codes import RELU, SIGMOID, TANH


@functools.lru_cache(maxsize=None)
def make_activations(NP):
    """(act_apply(v, act), act_grad(y, act)) device functions for scalar type NP."""
    zero, one = NP(0), NP(1)

    @cuda.jit(device=True)
    def act_apply(v, act):
        if act == RELU:
            return v if v > zero or v != v else zero  # as the CPU: NaN stays NaN, -inf gives 0
        if act == SIGMOID:  # two branches so exp never overflows, as on the CPU
            if v >= zero:
                return one / (one + math.exp(-v))
            e = math.exp(v)
            return e / (one + e)
        if act == TANH:
            return math.tanh(v)
        return v

    @cuda.jit(device=True)
    def act_grad(y, act):
        if act == RELU:
            return one if y > zero else zero
        if act == SIGMOID:
            return y * (one - y)
        if act == TANH:
            return one - y * y
        return one

    return act_apply, act_grad
