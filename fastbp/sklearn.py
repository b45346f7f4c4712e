"""scikit-learn estimators on fastbp's kernels: MLPClassifier and MLPRegressor.

    from fastbp.sklearn import MLPClassifier     # also fastbp.MLPClassifier
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(50,))).fit(X, y)

Drop-ins for sklearn.neural_network's estimators: the same parameters, defaults and
meanings, fitted attributes and methods, and the same arithmetic. Initial weights,
shuffling and the early-stopping split draw from `random_state` exactly as
scikit-learn's do, the losses and solver steps are scikit-learn's rules
(kernels/sk_solvers.py), so with the same settings both print the same loss_curve_
to rounding. The work runs on fastbp's kernels: an epoch of minibatches is one
compiled call over one flat parameter buffer, sparse or mostly-zero input takes the
sparse first layer (fastbp.sparse), and L-BFGS drives scipy.optimize.minimize with
a compiled loss and gradient over that buffer. With device="cuda" the same steps run
on the GPU (kernels/cuda/sk_solvers.py).

Two differences, both where scikit-learn's numbers stop being useful: the
log-losses are exact (scikit-learn clips probabilities to [eps, 1 - eps], which
only changes a loss beyond -log(eps) = 36 per sample), and `dtype` (fastbp's own)
may ask for float32 work on float64 data. Needs scikit-learn (pip install
'fastbp[sklearn]'); `import fastbp` does not import it.
"""
import numbers
import warnings

import numpy as np

try:
    import sklearn  # noqa: F401
except ModuleNotFoundError as e:
    if e.name != "sklearn":
        raise
    raise ModuleNotFoundError("fastbp's scikit-learn estimators need scikit-learn: pip install 'fastbp[sklearn]'",
                              name="sklearn") from None
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d, shuffle
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from fastbp.kernels import codes
from fastbp.kernels import layout as lay
from fastbp.kernels.mlp import HalfSquared, Logistic
from fastbp.kernels.sk_solvers import Solver, l2_penalty, sk_epoch, sk_loss_grad
from fastbp.cpu import CpuBackend, threads, whole
from fastbp.kernels.train import Model
from fastbp.lbfgs import minimize_flat
from fastbp.network import PREDICT_CHUNK
from fastbp.schedules import invscaling, on_plateau, plateau_step
from fastbp.sparse import SparseRows, as_input, check_policy

__all__ = ["MLPClassifier", "MLPRegressor"]

ACTIVATIONS = {"identity": codes.IDENTITY, "logistic": codes.SIGMOID, "tanh": codes.TANH, "relu": codes.RELU}


def _check_params(est):
    """Every constructor parameter checked, naming it, before any work (ValueError/TypeError)."""
    def number(name, kind, low=None, high=None, low_open=False, high_open=False):
        v = getattr(est, name)
        if isinstance(v, bool) or not isinstance(v, kind):
            raise TypeError(f"{name} must be a{'n integer' if kind is numbers.Integral else ' number'}, "
                            f"got {v!r}")
        bad = (low is not None and (v < low or (low_open and v == low))) or \
              (high is not None and (v > high or (high_open and v == high))) or v != v
        if bad:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            raise ValueError(f"{name} must be {' and '.join(s for s in (lo, hi) if s)}, got {v!r}")

    def choice(name, options):
        v = getattr(est, name)
        if not isinstance(v, str) or v not in options:
            raise ValueError(f"{name} must be one of {sorted(options)}, got {v!r}")

    def flag(name):
        if not isinstance(getattr(est, name), (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {getattr(est, name)!r}")

    sizes = est.hidden_layer_sizes
    sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in sizes):
        raise TypeError(f"hidden_layer_sizes must be integers, got {est.hidden_layer_sizes!r}")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}")
    choice("activation", ACTIVATIONS)
    choice("solver", ("lbfgs", "sgd", "adam"))
    number("alpha", numbers.Real, 0)
    if not (isinstance(est.batch_size, str) and est.batch_size == "auto"):
        number("batch_size", numbers.Integral, 1)
    choice("learning_rate", ("constant", "invscaling", "adaptive"))
    number("learning_rate_init", numbers.Real, 0, low_open=True)
    number("power_t", numbers.Real, 0)
    number("max_iter", numbers.Integral, 1)
    flag("shuffle")
    number("tol", numbers.Real, 0)
    flag("warm_start")
    number("momentum", numbers.Real, 0, 1)
    flag("nesterovs_momentum")
    flag("early_stopping")
    number("validation_fraction", numbers.Real, 0, 1, high_open=True)
    number("beta_1", numbers.Real, 0, 1, high_open=True)
    number("beta_2", numbers.Real, 0, 1, high_open=True)
    number("epsilon", numbers.Real, 0, low_open=True)
    if est.n_iter_no_change != np.inf:
        number("n_iter_no_change", numbers.Integral, 1)
    number("max_fun", numbers.Integral, 1)
    if est.dtype is not None and np.dtype(est.dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {est.dtype!r}")
    check_policy(est.sparse)
    choice("device", ("cpu", "cuda"))
    return [int(s) for s in sizes]


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: the solvers and the flat buffer."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, dtype=None, sparse="auto", device="cpu"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.sparse = sparse
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- the flat buffer: coefs_/intercepts_ are packed into it for every call, so that
    # whatever a user assigned to them is what the kernels use

    def _sizes(self):
        return [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]

    def _model(self):
        sizes = self._sizes()
        layout = lay.param_layout(sizes)
        return Model(lay.offsets(layout), np.array(sizes, np.int64), ACTIVATIONS[self.activation]), layout

    def _pack(self, dtype):
        model, layout = self._model()
        flat = lay.zeros(lay.param_count(layout), dtype)
        for p in layout:
            src = (self.coefs_ if p.kind == "W" else self.intercepts_)[p.layer]
            flat[p.offset:p.offset + src.size] = np.asarray(src).reshape(-1)
        return flat, model, layout

    def _unpack(self, flat, layout):
        """coefs_ and intercepts_ as fresh arrays (not views: a later fit reuses nothing)."""
        self.coefs_ = [flat[p.offset:p.offset + p.shape[0] * p.shape[1]].reshape(p.shape).copy()
                       for p in layout if p.kind == "W"]
        self.intercepts_ = [flat[p.offset:p.offset + p.shape[0]].copy() for p in layout if p.kind == "b"]

    def _work_dtype(self, X):
        return np.dtype(self.dtype) if self.dtype is not None else X.dtype

    def _kernel_input(self, X, dtype, name="X"):
        """Dense C-contiguous, or fastbp's SparseRows, as the `sparse` policy says (on cuda: dense)."""
        return as_input(X, X.shape[1], dtype, self.sparse if self.device == "cpu" else False, name)

    def _loss_kind(self):
        """The output loss by the name the device kernels use (kernels/cuda/mlp.py)."""
        return {"softmax": "softmax_ce", "logistic": "logistic", "identity": "half_squared"}[self.out_activation_]

    def _backend(self, flat, model, layout):
        """Network's backend for forward passes over these parameters, on self.device."""
        if self.device == "cuda":
            from fastbp.cuda import CudaBackend
            return CudaBackend(self._sizes(), model.act, layout, flat, PREDICT_CHUNK, self._loss_kind())
        return CpuBackend(self._sizes(), model.act, layout, flat, PREDICT_CHUNK)

    # -- forward passes

    def _forward(self, X, check_input=True):
        """The output layer's activations (N, n_outputs_): softmax, logistic or identity."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        flat, model, layout = self._pack(self._coef_dtype())
        backend = self._backend(flat, model, layout)
        return _output_activation(backend.logits(self._kernel_input(X, flat.dtype)), self.out_activation_)

    def _coef_dtype(self):
        return np.asarray(self.coefs_[0]).dtype

    # -- fitting

    def _fit(self, X, y, incremental=False):
        hidden = _check_params(self)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        dtype = self._work_dtype(X)
        if first_pass:
            self._initialize(y, layer_units, dtype)
        elif self._sizes() != layer_units:
            raise ValueError(f"warm_start/partial_fit: the network is {self._sizes()}, but this X, y and "
                             f"hidden_layer_sizes make {layer_units}; refit from scratch instead")
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, y, dtype)
        else:
            self._fit_stochastic(X, y, dtype, incremental)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain "
                             "large values and need to be preprocessed.")
        return self

    def _initialize(self, y, layer_units, dtype):
        # as scikit-learn's _initialize: the same draws from the same random state
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self.coefs_, self.intercepts_ = [], []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
            self.intercepts_.append(self._random_state.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if self.solver in ("sgd", "adam"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _targets(self, y, dtype):
        """y (N, n_outputs_) in the form the kernels take: class ids, Logistic or HalfSquared."""
        if self.out_activation_ == "softmax":
            return np.ascontiguousarray(np.argmax(y, axis=1), dtype=np.int64)
        t = np.ascontiguousarray(y, dtype=dtype)
        return Logistic(t) if self.out_activation_ == "logistic" else HalfSquared(t)

    def _fit_lbfgs(self, X, y, dtype):
        flat, model, layout = self._pack(dtype)
        x = self._kernel_input(X, dtype)
        t = self._targets(y, dtype)
        if self.device == "cuda":
            loss_grad = _device_loss_grad(self, flat, model, layout, x, t)
        else:
            x = whole(x, model.sizes[1])
            sizes, n = model.sizes, X.shape[0]
            grads = lay.zeros(flat.size, dtype)
            acts, deltas = lay.workspace(sizes, n, dtype)

            def loss_grad(p):
                with threads(x, sizes, n) as xk:
                    return sk_loss_grad(grads, acts, deltas, p, model, xk, t, float(self.alpha)), grads

        callback = (lambda r: print(f"L-BFGS: loss = {r.fun:.8f}")) if self.verbose else None
        res = minimize_flat(flat, loss_grad, self.max_iter, self.max_fun, self.tol, callback)
        if res.status != 0:
            warnings.warn(f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}): "
                          f"{res.message}. Increase the number of iterations (max_iter) or scale the data.",
                          ConvergenceWarning, stacklevel=3)
        self.n_iter_ = min(res.nit, self.max_iter)
        self.loss_ = float(res.fun)
        self._unpack(flat, layout)

    def _fit_stochastic(self, X, y, dtype, incremental):
        flat, model, layout = self._pack(dtype)
        if not incremental or not hasattr(self, "_solver_state"):
            self._solver_state = np.zeros((2, flat.size), dtype)
            self._adam_t = 0
            self._lr = float(self.learning_rate_init)
        state = self._solver_state.astype(dtype, copy=False)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            X, X_val, y, y_val = train_test_split(X, y, random_state=self._random_state,
                                                  test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the "
                                 "size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        n = X.shape[0]
        batch_size = min(200, n) if self.batch_size == "auto" else self.batch_size
        if batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                          stacklevel=3)
        batch_size = int(np.clip(batch_size, 1, n))
        x, t = self._kernel_input(X, dtype), self._targets(y, dtype)
        epochs = (_DeviceEpochs if self.device == "cuda" else _HostEpochs)(self, flat, model, layout, x, t, state,
                                                                           batch_size)
        sample_idx = np.arange(n, dtype=np.int64)
        try:
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = shuffle(sample_idx, random_state=self._random_state)
                solver = Solver(self.solver == "adam", self._lr, float(self.momentum),
                                bool(self.nesterovs_momentum), float(self.beta_1), float(self.beta_2),
                                float(self.epsilon))
                total, self._adam_t = epochs.run(np.ascontiguousarray(sample_idx, dtype=np.int64), solver,
                                                 float(self.alpha), self._adam_t)
                self._unpack(epochs.flat(), layout)
                self.n_iter_ += 1
                self.loss_ = total / n
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(X_val if self.early_stopping else None,
                                                  y_val if self.early_stopping else None)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._lr = invscaling(float(self.learning_rate_init), self.t_, self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score did not improve" if self.early_stopping else \
                        "Training loss did not improve"
                    msg = f"{what} more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                                  "the optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
            self._unpack(epochs.flat(), layout)
        self._solver_state = epochs.solver_state()
        if self.early_stopping:
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts

    def _trigger_stopping(self, msg):
        # fastbp.schedules: adaptive sgd divides the rate by 5 until it is at most 1e-6
        lr = on_plateau(self.learning_rate if self.solver == "sgd" else "constant", self._lr)
        if lr is None:
            if self.verbose:
                small = " Learning rate too small." if self.solver == "sgd" and self.learning_rate == "adaptive" else ""
                print(msg + small + " Stopping.")
            return True
        self._lr = lr
        if self.verbose:
            print(msg + f" Setting learning rate to {self._lr:f}")
        return False

    def _update_no_improvement_count(self, X_val, y_val):
        if self.early_stopping:
            self.validation_scores_.append(self._score(X_val, y_val))
            if self.verbose:
                print(f"Validation score: {self.validation_scores_[-1]:f}")
            last, before = self.validation_scores_[-1], self.best_validation_score_
            self.best_validation_score_, self._no_improvement_count = plateau_step(
                last, before, self._no_improvement_count, self.tol)
            if last > before:
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:  # the score is minus the loss
            best, self._no_improvement_count = plateau_step(-self.loss_curve_[-1], -self.best_loss_,
                                                            self._no_improvement_count, self.tol)
            self.best_loss_ = -best

    def _score(self, X, y):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return (accuracy_score if is_classifier(self) else r2_score)(y, y_pred)

    def fit(self, X, y):
        """Fit the model to data matrix X (dense or sparse) and targets y; returns self."""
        return self._fit(X, y, incremental=False)

    def predict(self, X):
        """Classifier: the predicted labels (n_samples,), or an indicator matrix for
        multilabel. Regressor: (n_samples,) for one target, (n_samples, n_outputs) for several."""
        check_is_fitted(self)
        return self._predict(X)

    def _validate_xy(self, X, y, reset, **kw):
        # scikit-learn's validation of X and y; a y of one column becomes 1-D (with its warning)
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset, **kw)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _stochastic(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True


class _HostEpochs:
    """The stochastic solvers' epochs on the CPU: one compiled call each (kernels/sk_solvers.py)."""

    def __init__(self, est, flat, model, layout, x, t, state, batch_size):
        dtype = flat.dtype
        if isinstance(x, SparseRows):
            x = x.take(np.zeros(0, np.int64), x.max_batch_nnz(batch_size), (batch_size, model.sizes[1]))
            xb = np.empty((1, 1), dtype)
        else:
            xb = np.empty((batch_size, x.shape[1]), dtype)
        yb = np.empty(batch_size, np.int64) if isinstance(t, np.ndarray) else np.empty((batch_size, t.t.shape[1]), dtype)
        acts, deltas = lay.workspace(model.sizes, batch_size, dtype)
        self._buffers = (lay.zeros(flat.size, dtype), state, acts, deltas, xb, yb)
        self._x, self._t = x, t
        self._flat, self._state, self._model, self._B = flat, state, model, batch_size

    def run(self, order, solver, alpha, step):
        # a sparse first layer's parts on numba's threads where cpu.threads allows them
        with threads(self._x, self._model.sizes, self._B) as x:
            return sk_epoch(self._flat, *self._buffers, x, self._t, order, self._B, self._model, solver, alpha, step)

    def flat(self):
        return self._flat

    def solver_state(self):
        return self._state


class _DeviceEpochs:
    """The same epochs on the GPU (kernels/cuda/sk_solvers.py): the parameters, the solver's
    state and the data set are uploaded once per fit, each epoch's row order once."""

    def __init__(self, est, flat, model, layout, x, t, state, batch_size):
        from fastbp.cuda import require_cuda
        self.cuda = require_cuda()
        from fastbp.kernels.cuda.mlp import DeviceMLP
        kind = est._loss_kind()
        t = t if isinstance(t, np.ndarray) else t.t
        self.dev = DeviceMLP(model.sizes, model.act, layout, flat, kind)
        self.x, self.t, self.state = self.cuda.to_device(x), self.cuda.to_device(t), self.cuda.to_device(state)
        self.B, self.div = batch_size, (t.shape[1] if kind == "half_squared" else 1)

    def run(self, order, solver, alpha, step):
        from fastbp.kernels.cuda.sk_solvers import sk_epoch as device_epoch
        return device_epoch(self.dev, self.x, self.t, self.cuda.to_device(order), self.B, solver, alpha, step,
                            self.state, self.div)

    def flat(self):
        return self.dev.params.copy_to_host()

    def solver_state(self):
        return self.state.copy_to_host()


def _device_loss_grad(est, flat, model, layout, x, t):
    """L-BFGS's loss and gradient function on the GPU: the network's loss and gradient over
    the whole set there, scikit-learn's L2 term (kernels/sk_solvers.py) added on the host,
    where scipy's buffers are anyway."""
    from fastbp.cuda import require_cuda
    cuda = require_cuda()
    from fastbp.kernels.cuda.mlp import DeviceMLP
    kind = est._loss_kind()
    t = t if isinstance(t, np.ndarray) else t.t
    dev = DeviceMLP(model.sizes, model.act, layout, flat, kind)
    xd, td = cuda.to_device(x), cuda.to_device(t)
    n, div, alpha = x.shape[0], (t.shape[1] if kind == "half_squared" else 1), float(est.alpha)
    ws, losses = dev.workspace(n), cuda.device_array(1, np.float64)
    grads = np.empty_like(flat)

    def loss_grad(p):
        dev.params.copy_to_device(p)
        dev.loss_grad(ws, xd, td, losses, 0)
        dev.grads.copy_to_host(grads)
        sq = l2_penalty(grads, p, model.offsets, model.sizes, alpha / n)  # on the host, as sk_loss_grad
        return float(losses.copy_to_host()[0]) / div + 0.5 * alpha * sq / n, grads
    return loss_grad


def _output_activation(z, name):
    if name == "softmax":
        z = z - z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z
    if name == "logistic":
        with np.errstate(over="ignore"):
            return 1 / (1 + np.exp(-z))
    return z


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier on fastbp's kernels.

    Parameters, attributes and methods as sklearn.neural_network.MLPClassifier's;
    fastbp's own: dtype None (X's float type: float32 stays float32, anything else
    float64), "float32" or "float64"; sparse "auto" (the first layer skips zeros for
    sparse X and for dense X at most 20% nonzero), True or False (fastbp.sparse);
    device "cpu" or "cuda" (the same steps on the GPU: docs/cuda.md). Labels of any type
    scikit-learn takes; multiclass gets softmax outputs, binary and multilabel (an
    indicator matrix) logistic ones.
    """

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X, y, incremental, reset):
        X, y = self._validate_xy(X, y, reset)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(f"warm_start can only be used where `y` has the same classes as in the "
                                     f"previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    @available_if(lambda est: est._stochastic())
    def partial_fit(self, X, y, classes=None):
        """One epoch over X, y; classes (all labels) is needed on the first call."""
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if not first and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                                 f"was: {self.classes_!r}")
            if first:
                self._label_binarizer = LabelBinarizer()
                self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
                self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, incremental=True)

    def _outputs(self, X, check_input=True):
        # the output layer's values, (n_samples,) for a single output
        y_pred = self._forward(X, check_input)
        return y_pred.ravel() if self.n_outputs_ == 1 else y_pred

    def _predict(self, X, check_input=True):
        return self._label_binarizer.inverse_transform(self._outputs(X, check_input))

    def predict_proba(self, X):
        """Probabilities (n_samples, n_classes), columns in the order of classes_."""
        check_is_fitted(self)
        y_pred = self._outputs(X)
        return np.vstack([1 - y_pred, y_pred]).T if y_pred.ndim == 1 else y_pred

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor (squared error) on
    fastbp's kernels. Parameters, attributes and methods as scikit-learn's; dtype,
    sparse and device as MLPClassifier's. One target or several."""

    def _out_activation(self):
        return "identity"

    def _validate_input(self, X, y, incremental, reset):
        return self._validate_xy(X, y, reset, y_numeric=True)

    @available_if(lambda est: est._stochastic())
    def partial_fit(self, X, y):
        """One epoch over X, y."""
        return self._fit(X, y, incremental=True)

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred
