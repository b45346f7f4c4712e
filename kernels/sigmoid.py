"""Sigmoid: y = 1 / (1 + exp(-x)); backward dx = dout * y * (1 - y).

Arrays are flat (n,) views of any shape. Forward uses the two-branch form so
exp never overflows (exp(-x) for x << 0 would be inf; it is harmless but the
branch keeps the result exact down to the smallest subnormal).
"""
import numpy as np
from numba import njit

from .config import CACHE, FASTMATH


@njit(inline="always")
def sigmoid(v):
    one = type(v)(1)
    if v >= 0:
        return one / (one + np.exp(-v))
    e = np.exp(v)
    return e / (one + e)


@njit(inline="always")
def sigmoid_grad(y):
    # d sigmoid / dx, written in terms of the output y
    return y * (type(y)(1) - y)


@njit(cache=CACHE, fastmath=FASTMATH)
def sigmoid_forward(out, x):
    # x is (n,), out is (n,); out may be x (in place)
    for i in range(x.shape[0]):
        out[i] = sigmoid(x[i])


@njit(cache=CACHE, fastmath=FASTMATH)
def sigmoid_backward(dx, dout, y):
    # dout is (n,), y is (n,) the forward output, dx is (n,); dx may be dout
    for i in range(dout.shape[0]):
        dx[i] = dout[i] * sigmoid_grad(y[i])
