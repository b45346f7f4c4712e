"""Network: a multi-layer perceptron whose parameters live in one flat buffer.

params["W1"], params["b1"], ... are shaped views into that buffer (llm.c
style), laid out by param_layout; gradients come back in a buffer of the same
layout, so an optimizer update is one pass over one array. Forward and backward
for the whole network are one compiled call (fastbp.kernels.mlp).
"""
import math
import numbers
import os
from collections.abc import MutableMapping

import numpy as np

from fastbp.checks import as_batch, as_float_array, as_labels, check_params, check_seed, float_dtype
from fastbp.cuda import CudaBackend, DeviceParams
from fastbp.files import atomic_savez, load_npz
from fastbp.kernels import affine, mlp

DEVICES = ("cpu", "cuda")
ACTIVATIONS = ("relu", "sigmoid")  # hidden-layer activations a Network offers
LOSSES = ("softmax_ce", "mse")  # softmax + cross-entropy on the scores, or mean squared error
PREDICT_CHUNK = 4096  # rows per forward call in predict/loss/accuracy: bounds workspace memory
_META = ("fastbp_sizes", "fastbp_activation", "fastbp_loss")  # non-parameter entries of a saved .npz


def param_layout(sizes):
    """[(name, offset, shape), ...] for W1, b1, W2, b2, ...: the one definition of the flat layout."""
    layout, offset = [], 0
    for l in range(len(sizes) - 1):
        for name, shape in ((f"W{l + 1}", (sizes[l], sizes[l + 1])), (f"b{l + 1}", (sizes[l + 1],))):
            layout.append((name, offset, shape))
            offset += math.prod(shape)
    return layout


def _views(flat, layout):
    return {name: flat[off:off + math.prod(shape)].reshape(shape) for name, off, shape in layout}


class ParamDict(MutableMapping):
    """Named views into a flat buffer. Assigning copies into the view (shape checked), so
    `params["W1"] = new` and `params["W1"] -= lr * g` both update the buffer the kernels read."""

    def __init__(self, flat, layout):
        self.flat = flat
        self._views = _views(flat, layout)

    def __getitem__(self, name):
        return self._views[name]

    def __setitem__(self, name, value):
        if name not in self._views:
            raise KeyError(f"no parameter {name!r}; parameters are {list(self._views)}")
        view = self._views[name]
        if value is view:  # `params[k] -= ...` already updated the view in place
            return
        view[...] = check_params(name, value, view.shape)

    def __delitem__(self, name):
        raise TypeError("parameters cannot be deleted: they are views into the network's buffer")

    def __iter__(self):
        return iter(self._views)

    def __len__(self):
        return len(self._views)

    def __repr__(self):
        return "{" + ", ".join(f"{k!r}: {v.dtype}{list(v.shape)}" for k, v in self._views.items()) + "}"


def _check_sizes(sizes):
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TypeError(f"sizes must be a sequence of layer widths like [784, 50, 10], got {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"sizes must name at least an input and an output width, got {list(sizes)}")
    for s in sizes:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 1:
            raise ValueError(f"sizes must be positive integers, got {list(sizes)}")
    return tuple(int(s) for s in sizes)


def _init_std(weight_init, activation, fan_in):
    if weight_init is None:  # the book's advice (ch. 6): He for ReLU, Xavier for sigmoid
        weight_init = "he" if activation == "relu" else "xavier"
    if weight_init == "he":
        return math.sqrt(2.0 / fan_in)
    if weight_init == "xavier":
        return math.sqrt(1.0 / fan_in)
    if isinstance(weight_init, numbers.Real) and not isinstance(weight_init, bool) \
            and math.isfinite(weight_init) and weight_init > 0:
        return float(weight_init)
    raise ValueError(f"weight_init must be 'he', 'xavier' or a positive std, got {weight_init!r}")


class Network:
    """A fully connected network: Affine → act → ... → Affine → softmax cross-entropy (or MSE).

    sizes: layer widths, e.g. [784, 50, 10]. activation: "relu" or "sigmoid" for
    the hidden layers. weight_init: "he", "xavier", a std (float), or None for
    He with ReLU and Xavier with sigmoid; biases start at 0. dtype: "float32"
    (default) or "float64". seed: int for reproducible weights (the same on
    either device). loss: "softmax_ce" (default), or "mse": mean squared error
    between the last layer's output and targets (one-hot from class ids, or any
    float (N, C) array).
    device: "cpu", or "cuda": parameters, gradients and workspaces live on the GPU
    (fastbp.cuda); methods still take and return host arrays. params["W1"] then
    reads a read-only host copy and assignment uploads. softmax_ce only.
    """

    def __init__(self, sizes, activation="relu", weight_init=None, dtype="float32", seed=None,
                 device="cpu", loss="softmax_ce"):
        self.sizes = _check_sizes(sizes)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.loss_type = loss
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if device == "cuda" and loss != "softmax_ce":
            raise ValueError(f"device='cuda' supports loss='softmax_ce' only, got loss={loss!r}")
        self.activation = activation
        self.dtype = float_dtype(dtype)
        check_seed(seed)
        self.device = device
        self.layout = param_layout(self.sizes)
        self._n_params = sum(math.prod(shape) for _, _, shape in self.layout)
        flat = np.zeros(self._n_params, self.dtype)
        self.params = ParamDict(flat, self.layout)
        rng = np.random.default_rng(seed)
        for l in range(len(self.sizes) - 1):
            std = _init_std(weight_init, activation, self.sizes[l])
            W = self.params[f"W{l + 1}"]
            W[...] = std * rng.standard_normal(W.shape)
        self._sizes = np.array(self.sizes, np.int64)
        self._offsets = np.array([off for _, off, _ in self.layout], np.int64)
        self._act = affine.ACTIVATIONS.index(activation)
        self._workspaces = {}
        self._cuda = None
        if device == "cuda":  # upload the initialised weights; from now on the device copy is the one
            self._cuda = CudaBackend(self.sizes, self._act, self.layout, flat, PREDICT_CHUNK)
            self.params = DeviceParams(self._cuda.dev, self.layout)

    def __repr__(self):
        loss = "" if self.loss_type == "softmax_ce" else f", loss={self.loss_type!r}"
        device = "" if self.device == "cpu" else f", device={self.device!r}"
        return (f"Network({list(self.sizes)}, activation={self.activation!r}, "
                f"dtype={self.dtype.name!r}{loss}{device}, params={self._n_params})")

    @property
    def flat_params(self):
        """The one buffer every parameter view points into (on cuda: a read-only host copy)."""
        return self.params.flat

    # -- workspaces: kernels allocate nothing, so the buffers they write live here
    def _workspace(self, n):
        ws = self._workspaces.get(n)
        if ws is None:
            if len(self._workspaces) >= 4:
                self._workspaces.clear()
            acts = np.empty(n * sum(self.sizes[1:]), self.dtype)
            deltas = np.empty(2 * n * max(self.sizes[1:]), self.dtype)
            ws = self._workspaces[n] = (acts, deltas)
        return ws

    def _x(self, x):
        return as_batch(x, self.sizes[0], self.dtype)

    def _xt(self, x, t):
        # class ids (N,) int64 for cross-entropy; float targets (N, C) in the net's dtype for MSE
        xb = self._x(x)
        n, c = xb.shape[0], self.sizes[-1]
        if self.loss_type == "softmax_ce":
            return xb, as_labels(t, n, c)
        arr = np.asarray(t)
        if arr.ndim == 2 and arr.dtype.kind in "iuf":
            if arr.shape != (n, c):
                raise ValueError(f"t as targets must have shape ({n}, {c}), got {arr.shape}")
            return xb, as_float_array(arr, "t", self.dtype)
        return xb, np.eye(c, dtype=self.dtype)[as_labels(t, n, c)]

    def _chunks(self, n):
        return range(0, n, PREDICT_CHUNK)

    # -- the book's API
    def predict(self, x):
        """Scores (logits) (N, C) for x (N, D), before softmax."""
        return self._logits(self._x(x))

    def _logits(self, x):
        if self._cuda is not None:
            return self._cuda.logits(x)
        out = np.empty((x.shape[0], self.sizes[-1]), self.dtype)
        for s in self._chunks(x.shape[0]):
            xc = x[s:s + PREDICT_CHUNK]
            acts, _ = self._workspace(xc.shape[0])
            mlp.mlp_forward(acts, self.params.flat, self._offsets, self._sizes, xc, self._act)
            out[s:s + xc.shape[0]] = acts[-xc.shape[0] * self.sizes[-1]:].reshape(-1, self.sizes[-1])
        return out

    def loss(self, x, t):
        """The mean loss over the batch (softmax cross-entropy, or MSE for loss="mse"), a float."""
        return self._loss(*self._xt(x, t))

    def _loss(self, x, t):
        if self._cuda is not None:
            return self._cuda.loss(x, t)
        total = 0.0
        for s in self._chunks(x.shape[0]):
            xc, tc = x[s:s + PREDICT_CHUNK], t[s:s + PREDICT_CHUNK]
            acts, _ = self._workspace(xc.shape[0])
            total += xc.shape[0] * mlp.mlp_loss(acts, self.params.flat, self._offsets, self._sizes,
                                                xc, tc, self._act)
        return total / x.shape[0]

    def accuracy(self, x, t):
        """Fraction of samples whose highest score is the label."""
        return self._accuracy(*self._xt(x, t))

    def _accuracy(self, x, t):
        labels = t if t.ndim == 1 else t.argmax(axis=1)  # MSE targets: the largest is the class
        pred = self._cuda.classes(x) if self._cuda is not None else self._logits(x).argmax(axis=1)
        return float(np.mean(pred == labels))

    def gradient(self, x, t):
        """Backprop: {"W1": dL/dW1, ...} as views into one new flat buffer (grads["W1"].base)."""
        x, t = self._xt(x, t)
        grads = np.empty(self._n_params, self.dtype)
        self._loss_grad(grads, x, t)
        return _views(grads, self.layout)

    def _loss_grad(self, grads, x, t):
        # the hot path for training loops: arguments already checked
        if self._cuda is not None:
            return self._cuda.loss_grad(grads, x, t)
        acts, deltas = self._workspace(x.shape[0])
        # the kernel picks the loss from the targets' form: ids (N,) or MSE targets (N, C)
        return mlp.mlp_loss_grad(grads, acts, deltas, self.params.flat, self._offsets, self._sizes,
                                 x, t, self._act)

    def numerical_gradient(self, x, t, h=1e-4):
        """Central differences (f(p+h) - f(p-h)) / 2h for every parameter: the slow referee.

        Evaluated in float64 whatever the network's dtype (on a copy of the
        parameters; the network is not touched): in float32, loss rounding
        divided by 2h would swamp the gradient. Returns float64 arrays.
        """
        if not (isinstance(h, numbers.Real) and math.isfinite(h) and h > 0):
            raise ValueError(f"h must be a positive finite step, got {h!r}")
        x, t = self._xt(x, t)
        x = x.astype(np.float64)
        t = t if t.ndim == 1 else t.astype(np.float64)
        params = self.params.flat.astype(np.float64)
        grads = np.empty_like(params)
        acts = np.empty(x.shape[0] * sum(self.sizes[1:]), np.float64)
        mlp.mlp_numerical_gradient(grads, acts, params, self._offsets, self._sizes, x, t, self._act,
                                   float(h))
        return _views(grads, self.layout)

    # -- files: .npz, never pickle
    def save(self, path):
        """Write the parameters to exactly `path` (.npz), atomically: a crash leaves the old file."""
        atomic_savez(path, **dict(self.params.items()), **self._meta())

    def _meta(self):
        return {"fastbp_sizes": self._sizes, "fastbp_activation": np.array(self.activation),
                "fastbp_loss": np.array(self.loss_type)}

    @classmethod
    def load(cls, path, device="cpu"):
        """A Network (on `device`) from a file written by save(); every name, shape and dtype
        is checked first."""
        path = os.fspath(path)
        arrays = load_npz(path, "params")
        net = cls._from_meta(arrays, path, device)
        net._assign(arrays, path)
        return net

    @staticmethod
    def _from_meta(arrays, path, device="cpu"):
        # the Network that `arrays` (from save or a checkpoint) describes, parameters not yet set
        missing = [k for k in _META[:2] if k not in arrays]  # files from before "loss" lack it
        if missing:
            raise ValueError(f"{path}: not a fastbp params file (missing {missing})")
        sizes, act = arrays["fastbp_sizes"], arrays["fastbp_activation"]
        loss = arrays.get("fastbp_loss", np.array("softmax_ce"))
        if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or \
                any(a.ndim != 0 or a.dtype.kind != "U" for a in (act, loss)):
            raise ValueError(f"{path}: malformed fastbp_sizes/fastbp_activation/fastbp_loss entries")
        try:
            net = Network([int(s) for s in sizes], activation=str(act), loss=str(loss),
                          dtype=arrays.get("W1", np.empty(0)).dtype, device=device)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None
        return net

    def _assign(self, arrays, path):
        # check every name, shape, dtype and value in `arrays` first, then copy them all in
        expected = [name for name, _, _ in self.layout]
        extra = sorted(set(arrays) - set(expected) - set(_META) - {k for k in arrays if k.startswith("ckpt_")})
        absent = [n for n in expected if n not in arrays]
        if extra or absent:
            raise ValueError(f"{path}: parameters do not match sizes {list(self.sizes)}: "
                             f"missing {absent}, unexpected {extra}")
        for name in expected:
            a, view = arrays[name], self.params[name]
            if a.shape != view.shape or a.dtype != view.dtype:
                raise ValueError(f"{path}: {name} must be {view.dtype}{view.shape}, got {a.dtype}{a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{path}: {name} holds NaN or Inf")
        for name in expected:
            self.params[name] = arrays[name]


class TwoLayerNet(Network):
    """The book's TwoLayerNet(input_size, hidden_size, output_size, weight_init_std=0.01):
    Affine → ReLU → Affine → SoftmaxWithLoss. Extra keywords go to Network (dtype, seed, ...)."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, **kwargs):
        super().__init__([input_size, hidden_size, output_size], weight_init=weight_init_std, **kwargs)
