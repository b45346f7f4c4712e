"""The optimizer update over the whole flat device parameter buffer: one launch per step.

All arrays (P,) in the flat layout (fastbp.kernels.layout). One thread per
parameter, the CPU's rules and rounding (kernels/optimizers.py; the GPU may fuse
a multiply-add, so results agree to float32 rounding, not bit for bit):

    sgd       p -= lr * g
    momentum  v = mu * v - lr * g;  p += v                       (v in s0)
    nesterov  v = mu * v - lr * g;  p += mu * v - lr * g          (v in s0)
    adagrad   h += g * g;  p -= lr * g / (sqrt(h) + 1e-7)        (h in s0)
    adam      m += c1 (g - m);  v += c2 (g² - v);  p -= lr_t * m / (sqrt(v) + 1e-7)   (m, v in s0, s1)

with g = grad + wd * p where decay[i] is 1 (W entries), grad alone for biases.
stop (1,) int64: non-zero once a loss went non-finite (softmax_loss.py); the
update is then skipped, so the parameters keep the last good state.
"""
import functools
import math

from numba import cuda, types

from . import build

from ..codes import ADAGRAD, MOMENTUM, NESTEROV, SGD  # Adam is the remaining branch


@functools.lru_cache(maxsize=None)
def make_apply(NP):
    """apply(params, s0, s1, decay, i, grad, opt, lr, lr_t, mu, c1, c2, wd): parameter i's update
    from its gradient `grad`, a device function for scalar type NP; the update kernel below and
    the epoch kernel (epoch.py) both call it."""
    zero, eps = NP(0), NP(1e-7)

    @cuda.jit(device=True)
    def apply(params, s0, s1, decay, i, grad, opt, lr, lr_t, mu, c1, c2, wd):
        p = params[i]
        g = grad + (wd * p if decay[i] else zero)
        if opt == SGD:
            params[i] = p - lr * g
        elif opt == MOMENTUM:
            v = mu * s0[i] - lr * g
            s0[i] = v
            params[i] = p + v
        elif opt == NESTEROV:
            v = mu * s0[i] - lr * g
            s0[i] = v
            params[i] = p + (mu * v - lr * g)
        elif opt == ADAGRAD:
            h = s0[i] + g * g
            s0[i] = h
            params[i] = p - lr * g / (math.sqrt(h) + eps)
        else:
            m = s0[i] + c1 * (g - s0[i])
            v = s1[i] + c2 * (g * g - s1[i])
            s0[i] = m
            s1[i] = v
            params[i] = p - lr_t * m / (math.sqrt(v) + eps)

    return apply


def source(NP):
    apply = make_apply(NP)

    def update(params, grads, s0, s1, decay, stop, opt, lr, lr_t, mu, c1, c2, wd):
        i = cuda.grid(1)
        if i >= params.shape[0] or stop[0] != 0:
            return
        apply(params, s0, s1, decay, i, grads[i], opt, lr, lr_t, mu, c1, c2, wd)

    return update


def signature(NP):
    ty, a = build.scalar(NP), build.array(NP, 1)
    return types.void(a, a, a, a, types.Array(types.uint8, 1, "C"), build.I64,
                      types.int64, ty, ty, ty, ty, ty, ty)


@functools.lru_cache(maxsize=None)
def update(NP):
    """Compiled; launch as [ceil(P / config.BLOCK), config.BLOCK]."""
    return build.compile(signature(NP), source, NP)
