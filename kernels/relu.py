"""ReLU: y = max(x, 0); backward passes dout where the forward output was positive.

Arrays are flat (n,) views of any shape; the Python layer ravels them.
Backward takes the forward OUTPUT y, not x: y > 0 exactly where x > 0, and the
fused Affine epilogue keeps only y, so both paths use the same rule.
"""
from numba import njit

from .config import CACHE, FASTMATH


@njit(inline="always")
def relu(v):
    # np.maximum(v, 0): NaN stays NaN, -inf becomes 0 (v - v would make it NaN);
    # type(v)(0) is a zero of v's own type, so float32 stays float32
    if v > 0 or v != v:
        return v
    return type(v)(0)


@njit(inline="always")
def relu_grad(y):
    # d relu / dx, written in terms of the output y
    return type(y)(1) if y > 0 else type(y)(0)


@njit(cache=CACHE, fastmath=FASTMATH)
def relu_forward(out, x):
    # x is (n,), out is (n,); out may be x (in place)
    for i in range(x.shape[0]):
        out[i] = relu(x[i])


@njit(cache=CACHE, fastmath=FASTMATH)
def relu_backward(dx, dout, y):
    # dout is (n,), y is (n,) the forward output, dx is (n,); dx may be dout
    for i in range(dout.shape[0]):
        dx[i] = dout[i] if y[i] > 0 else dout[i] - dout[i]
