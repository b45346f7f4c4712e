"""Tanh: y = tanh(x); backward dx = dout * (1 - y²).

Arrays are flat (n,) views of any shape. np.tanh saturates to ±1 without
overflow for any finite x, so no branches are needed (unlike sigmoid.py).
"""
import numpy as np
from numba import njit

from .config import CACHE, FASTMATH


@njit(inline="always")
def tanh(v):
    return np.tanh(v)


@njit(inline="always")
def tanh_grad(y):
    # d tanh / dx, written in terms of the output y
    return type(y)(1) - y * y


@njit(cache=CACHE, fastmath=FASTMATH)
def tanh_forward(out, x):
    # x is (n,), out is (n,); out may be x (in place)
    for i in range(x.shape[0]):
        out[i] = tanh(x[i])


@njit(cache=CACHE, fastmath=FASTMATH)
def tanh_backward(dx, dout, y):
    # dout is (n,), y is (n,) the forward output, dx is (n,); dx may be dout
    for i in range(dout.shape[0]):
        dx[i] = dout[i] * tanh_grad(y[i])
