"""Mean squared error: L = mean over all N*C entries of (y - t)², as the notes' sigmoid example computes it
(((y - t)**2).mean()); backward dy = dout * 2 (y - t) / (N*C).

Sizes: y (N, C) predictions, t (N, C) float targets of the same dtype. The sum is
accumulated in float64 (no fastmath, for the reason given in softmax_loss.py).
"""
import numpy as np
from numba import njit

from .config import CACHE


@njit(inline="always")
def _sum_squared_error(y, t):
    # Σ (y - t)² over the (N, C) entries, in float64
    N, C = y.shape
    total = 0.0
    for i in range(N):
        for j in range(C):
            d = np.float64(y[i, j]) - np.float64(t[i, j])
            total += d * d
    return total


@njit(cache=CACHE)
def mse_loss_forward(y, t):
    # y, t are (N, C); returns the mean of (y - t)²
    N, C = y.shape
    return _sum_squared_error(y, t) / (N * C)


@njit(cache=CACHE)
def mse_loss_backward(dy, y, t, dout):
    # y, t are (N, C), dout the scalar d loss; dy (N, C) = dout * 2 (y - t) / (N C)
    N, C = y.shape
    scale = y.dtype.type(2.0 * dout / (N * C))
    for i in range(N):
        for j in range(C):
            dy[i, j] = scale * (y[i, j] - t[i, j])


@njit(cache=CACHE)
def mse_loss_forward_backward(dy, y, t):
    # fused for training: writes dy (dout = 1) and returns the loss
    mse_loss_backward(dy, y, t, 1.0)
    return mse_loss_forward(y, t)


# Half the squared error, summed over the C outputs and averaged over the N rows: the loss
# whose gradient is (y - t) / N, the one scikit-learn's MLPRegressor steps along.

@njit(cache=CACHE)
def half_sse_forward(y, t):
    # y, t are (N, C); returns ½ Σ (y - t)² / N
    return 0.5 * _sum_squared_error(y, t) / y.shape[0]


@njit(cache=CACHE)
def half_sse_forward_backward(dy, y, t):
    # dy (N, C) = (y - t) / N; returns the loss
    N, C = y.shape
    inv = y.dtype.type(1.0 / N)
    for i in range(N):
        for j in range(C):
            dy[i, j] = (y[i, j] - t[i, j]) * inv
    return half_sse_forward(y, t)
