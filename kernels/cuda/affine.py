"""Affine forward and backward on the device, as gemm launches with everything elementwise fused.

Sizes: B batch, D inputs, M outputs. x (B, D), W (D, M), b (M,), out (B, M).
Forward:  out = act(x·W + b)                      1 launch (bias + act in the epilogue)
Backward: dz (B, M) = d loss / d (x·W + b), i.e. already multiplied by act'
          dW = xᵀ·dz and db = Σ_rows dz          1 launch (column sums fused, no atomics)
          dz_prev = (dz·Wᵀ) * act'(x)            1 launch, only when x is a hidden layer's
                                                 output (x = act(...)): the previous layer's
                                                 activation backward rides in the epilogue
Each function returns its launches as (kernel, blocks, threads, args), so a
network builds its whole step once and replays it (DeviceMLP). The launch
configuration is applied at each launch, not stored: the simulator's
kernel[blocks, threads] reconfigures and returns the one shared kernel object.
"""
from . import gemm as G


def _launch(version, ta, tb, epi, C, A, B, v, H, act):
    NP = C.dtype.type
    k = G.kernel(version, ta, tb, epi, NP)
    blocks, threads = G.launch_shape(version, C.shape[0], C.shape[1])
    return k, blocks, threads, (C, A, B, v, H, act)


def forward(out, x, W, b, act):
    """[(kernel, blocks, threads, args)] for out = act(x·W + b)."""
    _, H = G.dummies(out.dtype.type)
    return [_launch(G.pick(*out.shape), False, False, G.EPI_BIAS_ACT, out, x, W, b, H, act)]


def backward(dW, db, dz, x, dx=None, W=None, act_prev=0):
    """[(kernel, blocks, threads, args)] for dW, db from dz (B, M) and x (B, D); with dx, also
    dx = (dz·Wᵀ) * act_prev'(x) (x is then the previous layer's output)."""
    dv, dH = G.dummies(dW.dtype.type)
    plan = [_launch(G.pick(*dW.shape), True, False, G.EPI_COLSUM, dW, x, dz, db, dH, 0)]
    if dx is not None:
        plan.append(_launch(G.pick(*dx.shape), False, True, G.EPI_ACT_GRAD, dx, dz, W, dv, x, act_prev))
    return plan


def run(plan, stream=0):
    for kernel, blocks, threads, args in plan:
        kernel[blocks, threads, stream](*args)
