"""The seed layers (Deep Learning from Scratch ch. 5), backed by fastbp's kernels.

Same names and the same forward(...)/backward(dout) protocol as the book's
common/layers.py and layer_naive.py, so its code runs unchanged. Differences:
arrays go through the numba kernels; every input is checked first; backward
never writes into the caller's dout (the book's Relu zeroes it in place);
cross-entropy is exact log-sum-exp, not log(y + 1e-7).
"""
import numbers

import numpy as np

from fastbp.checks import as_float_array, as_labels, float_dtype
from fastbp.kernels import affine, mse_loss, relu, sigmoid, softmax_loss
from fastbp.kernels.codes import IDENTITY


class MulLayer:
    """z = x * y; backward swaps the inputs: dx = dout * y, dy = dout * x."""

    def __init__(self):
        self.x = None
        self.y = None

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y

    def backward(self, dout):
        return dout * self.y, dout * self.x


class AddLayer:
    """z = x + y; backward passes dout to both inputs unchanged."""

    def forward(self, x, y):
        return x + y

    def backward(self, dout):
        return dout * 1, dout * 1


def _is_scalar(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


class _Elementwise:
    """An activation on arrays of any shape, or on a Python number (gives a float back)."""

    _forward = _backward = None  # the kernels, set by each subclass

    def __init__(self):
        self.out = None
        self._scalar = False

    def forward(self, x):
        self._scalar = _is_scalar(x)
        xa = as_float_array(x, "x")
        out = np.empty_like(xa)
        self._forward(out.reshape(-1), xa.reshape(-1))
        self.out = out
        return out.item() if self._scalar else out

    def backward(self, dout):
        if self.out is None:
            raise RuntimeError("backward called before forward")
        d = as_float_array(dout, "dout", self.out.dtype)
        if d.shape != self.out.shape:
            raise ValueError(f"dout must have the forward output's shape {self.out.shape}, got {d.shape}")
        dx = np.empty_like(d)
        self._backward(dx.reshape(-1), d.reshape(-1), self.out.reshape(-1))
        return dx.item() if self._scalar else dx


class Relu(_Elementwise):
    """y = max(x, 0); dx = dout where x > 0, else 0."""

    _forward = staticmethod(relu.relu_forward)
    _backward = staticmethod(relu.relu_backward)

    @property
    def mask(self):
        # the book's name: True where x <= 0, where backward sends 0
        return None if self.out is None else self.out <= 0


class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)); dx = dout * y * (1 - y)."""

    _forward = staticmethod(sigmoid.sigmoid_forward)
    _backward = staticmethod(sigmoid.sigmoid_backward)


class Affine:
    """out = x·W + b over N samples; x may be (N, D) or (N, ...) with D features per sample.

    After backward, dW and db hold the parameter gradients and dx comes back in
    x's original shape. W (D, M) and b (M,) are used as given (updates to them
    in place are seen), in their float dtype.
    """

    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def _params(self):
        W = np.asarray(self.W)
        dt = float_dtype(W.dtype if W.dtype.kind == "f" else np.float64, "W.dtype")
        W = as_float_array(W, "W", dt)
        b = as_float_array(self.b, "b", dt)
        if W.ndim != 2:
            raise ValueError(f"W must be 2-D (D, M), got shape {W.shape}")
        if b.shape != (W.shape[1],):
            raise ValueError(f"b must have shape ({W.shape[1]},) to match W {W.shape}, got {b.shape}")
        return W, b

    def forward(self, x):
        W, b = self._params()
        xa = np.asarray(x)
        if xa.ndim < 2:
            raise ValueError(f"x must be (N, {W.shape[0]}) or (N, ...) with {W.shape[0]} features "
                             f"per sample, got shape {xa.shape}")
        if xa.shape[0] == 0:
            raise ValueError(f"x must hold at least one sample, got shape {xa.shape}")
        features = int(np.prod(xa.shape[1:]))
        if features != W.shape[0]:
            raise ValueError(f"x must have {W.shape[0]} features per sample to match W {W.shape}, "
                             f"got shape {xa.shape} ({features} features)")
        self.original_x_shape = xa.shape
        self.x = as_float_array(xa, "x", W.dtype).reshape(xa.shape[0], features)
        out = np.empty((xa.shape[0], W.shape[1]), W.dtype)
        affine.affine_forward(out, self.x, W, b, IDENTITY)
        return out

    def backward(self, dout):
        if self.x is None:
            raise RuntimeError("backward called before forward")
        W, _ = self._params()
        N, D = self.x.shape
        d = as_float_array(dout, "dout", W.dtype)
        if d.shape != (N, W.shape[1]):
            raise ValueError(f"dout must have shape ({N}, {W.shape[1]}), got {d.shape}")
        dx = np.empty((N, D), W.dtype)
        self.dW = np.empty_like(W)
        self.db = np.empty(W.shape[1], W.dtype)
        dz = np.empty_like(d)  # identity activation: dz is a copy of dout, dout stays untouched
        affine.affine_backward(dx, self.dW, self.db, dz, d, d, self.x, W, IDENTITY)
        return dx.reshape(self.original_x_shape)


class _Loss:
    """What the loss layers share: forward keeps y (what backward needs) and the targets;
    backward(dout) scales the kernel's gradient by the upstream d loss."""

    _backward = None  # the kernel: (dx, y, targets, dout)

    def __init__(self):
        self.loss = self.y = self.t = None
        self._targets = None

    @staticmethod
    def _scores(x, name, what):
        xa = np.asarray(x)
        if xa.ndim != 2 or 0 in xa.shape:
            raise ValueError(f"{name} must be 2-D {what} (N, C) with N, C >= 1, got shape {xa.shape}")
        return as_float_array(xa, name)

    def backward(self, dout=1):
        if self.y is None:
            raise RuntimeError("backward called before forward")
        if not _is_scalar(dout) or not np.isfinite(dout):
            raise ValueError(f"dout must be a finite number (d loss), got {dout!r}")
        dx = np.empty_like(self.y)
        self._backward(dx, self.y, self._targets, float(dout))
        return dx


class SoftmaxWithLoss(_Loss):
    """Softmax over classes, then mean cross-entropy against t (class ids or one-hot rows)."""

    _backward = staticmethod(softmax_loss.softmax_loss_backward)

    def forward(self, x, t):
        xa = self._scores(x, "x", "scores")
        self._targets = as_labels(t, xa.shape[0], xa.shape[1])
        self.t = t
        self.y = np.empty_like(xa)  # the softmax output, as in the book
        self.loss = softmax_loss.softmax_loss_forward(self.y, xa, self._targets)
        return self.loss


class MeanSquaredLoss(_Loss):
    """Mean over every entry of (y - t)², as the notes' sigmoid example computes it; t: targets shaped like y
    (N, C), or class ids (N,) taken as one-hot rows. backward(dout) gives dy."""

    _backward = staticmethod(mse_loss.mse_loss_backward)

    def forward(self, y, t):
        self.y = self._scores(y, "y", "predictions")
        ta = np.asarray(t)
        if ta.ndim == 1:
            ta = np.eye(self.y.shape[1])[as_labels(ta, *self.y.shape)]
        elif ta.shape != self.y.shape:
            raise ValueError(f"t must have y's shape {self.y.shape} (or be (N,) class ids), got {ta.shape}")
        self.t = self._targets = as_float_array(ta, "t", self.y.dtype)
        self.loss = mse_loss.mse_loss_forward(self.y, self.t)
        return self.loss
