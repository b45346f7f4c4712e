"""Affine (fully connected) layer with its bias and activation fused in.

Sizes: N batch, D inputs, M outputs. x (N, D), W (D, M), b (M,), out (N, M).
Forward:  out = act(x·W + b)  -- one BLAS product, then ONE pass adds the bias
          and applies the activation (the epilogue).
Backward: from dout = d loss / d out, one pass forms dz = dout * act'(out) and
          db = column sums of dz (the prologue); then dW = xᵀ·dz and
          dx = dz·Wᵀ are BLAS products.
act is a code from codes.py (IDENTITY, RELU, SIGMOID, TANH). The Python layer Affine uses IDENTITY.

Matrix products: np.dot inside @njit (BLAS) by default. The hand-written loops
in matmul.py are kept and tested; at the MNIST shapes BLAS was as fast or
faster except on sparse input at width 1024 (docs/performance.md, "Matrix products").
"""
from numba import njit

from .codes import ACTIVATIONS, IDENTITY, RELU, SIGMOID, TANH  # noqa: F401  (ACTIVATIONS, IDENTITY: for callers)
from .config import CACHE, FASTMATH
from .matmul import matmul_nn_blas as matmul_nn
from .matmul import matmul_nt_blas as matmul_nt
from .matmul import matmul_tn_blas as matmul_tn
from .matmul import product
from .relu import relu, relu_grad
from .sigmoid import sigmoid, sigmoid_grad
from .tanh import tanh, tanh_grad



@njit(inline="always")
def _act(v, act):
    if act == RELU:
        return relu(v)
    if act == SIGMOID:
        return sigmoid(v)
    if act == TANH:
        return tanh(v)
    return v


@njit(inline="always")
def _act_grad(y, act):
    if act == RELU:
        return relu_grad(y)
    if act == SIGMOID:
        return sigmoid_grad(y)
    if act == TANH:
        return tanh_grad(y)
    return type(y)(1)


@njit(inline="always")
def _bias_act(out, b, act):
    # the epilogue: out = act(out + b), b broadcast over out's rows
    N, M = out.shape
    for i in range(N):
        for j in range(M):
            out[i, j] = _act(out[i, j] + b[j], act)


@njit(cache=CACHE, fastmath=FASTMATH)
def affine_forward(out, x, W, b, act):
    # x is (N, D), W is (D, M), b is (M,), out is (N, M)
    matmul_nn(out, x, W)
    _bias_act(out, b, act)


@njit(cache=CACHE, fastmath=FASTMATH)
def affine_forward_split(out, x, W, b, act, blocks):
    # affine_forward with its product in blocks of rows on numba's threads where it is large
    # and blocks > 1 (matmul.product)
    product(out, x, W, False, False, 1.0, 0.0, blocks)
    _bias_act(out, b, act)


@njit(cache=CACHE, fastmath=FASTMATH)
def bias_act_backward(dz, db, dout, out, act):
    # dout, out are (N, M); writes dz (N, M) = dout * act'(out) and db (M,) = sum_i dz;
    # dz may be dout (in place: the training loop's case). LLVM vectorises the row loop
    # only after a runtime check that dz, dout, out and db do not overlap, and dz == dout
    # fails it: in place took 2.0 us on a 100 x 50 ReLU layer, 0.65 us out of place. So in
    # place is its own loop that names dz alone.
    N, M = dout.shape
    for j in range(M):
        db[j] = 0
    if dz.ctypes.data == dout.ctypes.data and dz.strides == dout.strides:
        for i in range(N):
            _grad_row_in_place(dz[i], db, out[i], act)
        return
    for i in range(N):
        for j in range(M):
            g = dout[i, j] * _act_grad(out[i, j], act)
            dz[i, j] = g
            db[j] += g


@njit(inline="always")
def _grad_row_in_place(dz, db, out, act):
    # dz (M,) *= act'(out), db (M,) += the result
    for j in range(dz.shape[0]):
        g = dz[j] * _act_grad(out[j], act)
        dz[j] = g
        db[j] += g


@njit(cache=CACHE, fastmath=FASTMATH)
def affine_backward_weights(dW, db, dz, dout, out, x, act):
    # The first layer's backward: no dx. x is (N, D); dW is (D, M), db is (M,), dz is (N, M)
    bias_act_backward(dz, db, dout, out, act)
    matmul_tn(dW, x, dz)


@njit(cache=CACHE, fastmath=FASTMATH)
def affine_backward(dx, dW, db, dz, dout, out, x, W, act):
    # dout, out are (N, M), x is (N, D), W is (D, M); dx is (N, D), dW (D, M), db (M,), dz (N, M)
    affine_backward_weights(dW, db, dz, dout, out, x, act)
    matmul_nt(dx, dz, W)
