"""Network: a multi-layer perceptron whose parameters live in one flat buffer.

params["W1"], params["b1"], ... are shaped views into that buffer (llm.c
style), laid out by fastbp.kernels.layout; gradients come back in a buffer of the
same layout, so an optimizer update is one pass over one array. Network is the
API and the argument checks; the work is its backend's (backend.py: CpuBackend
runs forward and backward of the whole network as one compiled call, CudaBackend
the same on a GPU).
"""
import math
import numbers
import os

import numpy as np

from fastbp.checks import as_float_array, as_labels, check_seed, class_ids, float_dtype
from fastbp.cpu import CpuBackend, named_views
from fastbp.files import atomic_savez, load_npz
from fastbp.kernels import codes, mlp
from fastbp.kernels import layout as lay
from fastbp.sparse import SparseRows, as_input, check_policy

DEVICES = ("cpu", "cuda")
ACTIVATIONS = codes.HIDDEN_ACTIVATIONS
# softmax + cross-entropy on the scores; mean squared error; independent sigmoid outputs with
# binary cross-entropy summed over the outputs, averaged over the rows (multi-label)
LOSSES = ("softmax_ce", "mse", "logistic")
PREDICT_CHUNK = 4096  # rows per forward call in predict/loss/accuracy: bounds workspace memory
_META = ("fastbp_sizes", "fastbp_activation", "fastbp_loss")  # non-parameter entries of a saved .npz


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

    sizes: layer widths, e.g. [784, 50, 10]. activation: "relu", "sigmoid" or "tanh" for
    the hidden layers. weight_init: "he", "xavier", a std (float), or None for
    He with ReLU and Xavier with sigmoid or tanh; biases start at 0. dtype: "float32"
    (default) or "float64". seed: int for reproducible weights (the same on
    either device). loss: "softmax_ce" (default); "mse": mean squared error
    between the last layer's output and targets (one-hot from class ids, or any
    float (N, C) array); "logistic": a sigmoid on each output with binary
    cross-entropy, summed over the outputs and averaged over the rows, against
    targets in [0, 1] (N, C) (multi-label; one-hot from class ids). accuracy takes the
    largest output as the class for both.
    device: "cpu", or "cuda": parameters, gradients and workspaces live on the GPU
    (fastbp.cuda); methods still take and return host arrays. params["W1"] then
    reads a read-only host copy and assignment uploads.
    sparse: which first layer inputs take (fastbp.sparse): "auto" (default) the
    sparse kernels for scipy.sparse input and for dense input that is mostly zeros,
    True always, False never. Every method (and fit) takes dense arrays and
    scipy.sparse matrices alike. On cuda, inputs are made dense.
    """

    def __init__(self, sizes, activation="relu", weight_init=None, dtype="float32", seed=None,
                 device="cpu", loss="softmax_ce", sparse="auto"):
        self.sizes = _check_sizes(sizes)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.loss_type = loss
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        self.activation = activation
        self.dtype = float_dtype(dtype)
        check_seed(seed)
        self.device = device
        self.sparse = sparse
        self.layout = lay.param_layout(self.sizes)
        self.n_params = lay.param_count(self.layout)
        flat = lay.zeros(self.n_params, self.dtype)
        views = named_views(flat, self.layout)
        rng = np.random.default_rng(seed)
        for l in range(len(self.sizes) - 1):
            std = _init_std(weight_init, activation, self.sizes[l])
            W = views[f"W{l + 1}"]
            W[...] = std * rng.standard_normal(W.shape)
        act = codes.ACTIVATIONS.index(activation)
        if device == "cuda":  # uploads the initialised weights; from now on the device copy is the one
            from fastbp.cuda import CudaBackend
            self.backend = CudaBackend(self.sizes, act, self.layout, flat, PREDICT_CHUNK, loss)
        else:
            self.backend = CpuBackend(self.sizes, act, self.layout, flat, PREDICT_CHUNK, loss)

    def __repr__(self):
        loss = "" if self.loss_type == "softmax_ce" else f", loss={self.loss_type!r}"
        device = "" if self.device == "cpu" else f", device={self.device!r}"
        return (f"Network({list(self.sizes)}, activation={self.activation!r}, "
                f"dtype={self.dtype.name!r}{loss}{device}, params={self.n_params})")

    @property
    def sparse(self):
        """"auto", True or False: see the class docstring. Assignable."""
        return self._sparse

    @sparse.setter
    def sparse(self, value):
        self._sparse = check_policy(value)

    @property
    def params(self):
        """{"W1": ..., "b1": ...}: views into the flat buffer (on cuda: read-only host copies;
        assigning uploads)."""
        return self.backend.params

    @property
    def flat_params(self):
        """The one buffer every parameter view points into (on cuda: a read-only host copy)."""
        return self.backend.flat_params

    def as_input(self, x, name="x"):
        """x checked (errors name it `name`) and in the form the backend takes: a dense
        (N, D0) C-contiguous array in the network's dtype, or fastbp.sparse.SparseRows
        when the `sparse` policy picks the sparse first layer. fit converts once with it."""
        return as_input(x, self.sizes[0], self.dtype, self.sparse if self.device == "cpu" else False, name)


    def _xt(self, x, t):
        xb = self.as_input(x)
        return xb, self.targets(t, xb.shape[0])

    def targets(self, t, n, name="t"):
        """t for n rows, checked, as the loss takes it: class ids (N,) int64 for softmax_ce;
        float targets (N, C) in the net's dtype for mse and logistic (class ids one-hot)."""
        c = self.sizes[-1]
        if self.loss_type == "softmax_ce":
            return as_labels(t, n, c, name)
        arr = np.asarray(t)
        if arr.ndim == 2 and arr.dtype.kind in "iuf":
            if arr.shape != (n, c):
                raise ValueError(f"{name} as targets must have shape ({n}, {c}), got {arr.shape}")
            arr = as_float_array(arr, name, self.dtype)
            if self.loss_type == "logistic" and not ((arr >= 0) & (arr <= 1)).all():
                raise ValueError(f"{name} for loss='logistic' must lie in [0, 1]")
            return arr
        return np.eye(c, dtype=self.dtype)[as_labels(t, n, c, name)]

    # -- the book's API
    def predict(self, x):
        """Scores (logits) (N, C) for x (N, D), before softmax."""
        return self.backend.logits(self.as_input(x))

    def loss(self, x, t):
        """The mean loss over the batch (softmax cross-entropy, or MSE for loss="mse"), a float."""
        return self.backend.loss(*self._xt(x, t))


    def accuracy(self, x, t):
        """Fraction of samples whose highest score is the label."""
        x, t = self._xt(x, t)
        return float(np.mean(self.backend.classes(x) == class_ids(t)))

    def gradient(self, x, t):
        """Backprop: {"W1": dL/dW1, ...} as views into one new flat buffer (grads["W1"].base)."""
        x, t = self._xt(x, t)
        grads = np.empty(self.n_params, self.dtype)
        self.backend.loss_grad(grads, x, t)
        return named_views(grads, self.layout)

    def numerical_gradient(self, x, t, h=1e-4):
        """Central differences (f(p+h) - f(p-h)) / 2h for every parameter: the slow referee.

        Evaluated in float64 whatever the network's dtype (on a copy of the
        parameters; the network is not touched): in float32, loss rounding
        divided by 2h would swamp the gradient. Returns float64 arrays.
        """
        if not (isinstance(h, numbers.Real) and math.isfinite(h) and h > 0):
            raise ValueError(f"h must be a positive finite step, got {h!r}")
        x, t = self._xt(x, t)
        x = (x.toarray() if isinstance(x, SparseRows) else x).astype(np.float64)
        t = t if t.ndim == 1 else t.astype(np.float64)
        t = mlp.targets_for(self.loss_type, t)
        params = self.flat_params.astype(np.float64)
        grads = np.empty_like(params)
        acts = np.empty(lay.acts_length(self.sizes, x.shape[0]), np.float64)
        mlp.mlp_numerical_gradient(grads, acts, params, lay.offsets(self.layout), np.array(self.sizes, np.int64),
                                   x, t, codes.ACTIVATIONS.index(self.activation), float(h))
        return named_views(grads, self.layout)

    # -- files: .npz, never pickle
    def save(self, path):
        """Write the parameters to exactly `path` (.npz), atomically: a crash leaves the old file."""
        atomic_savez(path, **self.file_arrays())

    def file_arrays(self):
        """What save() writes (checkpoints too): the parameters by name and the architecture."""
        return {**dict(self.params.items()), "fastbp_sizes": np.array(self.sizes, np.int64),
                "fastbp_activation": np.array(self.activation), "fastbp_loss": np.array(self.loss_type)}

    @classmethod
    def load(cls, path, device="cpu"):
        """A Network (on `device`) from a file written by save(); every name, shape and dtype
        is checked first."""
        path = os.fspath(path)
        return cls.from_arrays(load_npz(path, "params"), path, device)

    @classmethod
    def from_arrays(cls, arrays, path, device="cpu"):
        """The Network that `arrays` (file_arrays(), from a params file or a checkpoint) describe,
        on `device`; every entry is checked before anything is assigned. `path` names the
        source in errors; entries named ckpt_* are the checkpoint's and are ignored."""
        net = cls._from_meta(arrays, path, device)
        net._assign(arrays, path)
        return net

    @staticmethod
    def _from_meta(arrays, path, device="cpu"):
        # the Network that `arrays` describe, parameters not yet set
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
        expected = [p.name for p in self.layout]
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
