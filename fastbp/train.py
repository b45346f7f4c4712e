"""fit: minibatch training with the whole loop over minibatches compiled.

Each epoch draws one permutation of the training rows from a seeded NumPy
Generator; the steps of the epoch then run inside kernels/train.py in chunks
(a progress bar update between chunks), never one Python round trip per step.
Everything a run needs to continue (parameters, optimizer state, the
Generator's state, step, history) is a TrainState; checkpoints save it, at an
epoch's end or in the middle of one (a run stopped by a signal): the epoch's
row order is drawn again from the Generator's state at that epoch's start.
"""
import contextlib
import json
import math
import numbers
import os
import sys
import threading
import time

import numpy as np

from fastbp.checks import as_batch, as_labels, check_seed
from fastbp.kernels import optimizers
from fastbp.kernels.train import train_steps
from fastbp.network import Network
from fastbp.files import atomic_savez, load_npz

# optimizer: (hyper1, hyper2) defaults, the book's: momentum 0.9; Adam beta1 0.9, beta2 0.999
OPTIMIZER_DEFAULTS = {"sgd": (0.0, 0.0), "momentum": (0.9, 0.0), "adagrad": (0.0, 0.0),
                      "adam": (0.9, 0.999)}
# learning rate when none is given: SGD the ch05 recipe's 0.1; the others as the book's
# optimizer comparison (ch06) runs them. Adam at 0.1 reaches ~85% on MNIST instead of ~97%.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adagrad": 0.01, "adam": 0.001}
CHUNK_STEPS = 50  # steps per compiled call: enough to amortise the call, small enough for a live bar


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf; the step and the last good state are in the message."""


class TrainState:
    """What a run needs to continue bit-identically: optimizer state, RNG, step, history."""

    def __init__(self, net, seed=None):
        self.opt_state = np.zeros((2, net._n_params), net.dtype)
        self.rng = np.random.default_rng(seed)
        self.step = 0
        self.epoch = 0
        self.epoch_rng = None  # the Generator's state before the current epoch drew its order; None between epochs
        self.history = {"loss": [], "epoch_step": [], "epoch_loss": [], "train_acc": [],
                        "eval_acc": [], "eval_loss": [], "epoch_seconds": []}

    @property
    def epoch_start(self):
        """The step at which the current epoch began (== step between epochs)."""
        ends = self.history["epoch_step"]
        return ends[-1] if ends else 0


def _positive_int(v, name):
    if v is not None and (not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1):
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _hyper(lr, weight_decay, optimizer):
    if optimizer not in OPTIMIZER_DEFAULTS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZER_DEFAULTS)}, got {optimizer!r}")
    if not (isinstance(lr, numbers.Real) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not (isinstance(weight_decay, numbers.Real) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")


def total_steps(n, batch_size, iters=None, epochs=None):
    """Steps a run takes: iters, or epochs * (n // batch_size)."""
    if iters is not None and epochs is not None:
        raise ValueError("give iters or epochs, not both")
    per_epoch = max(n // batch_size, 1)
    if iters is not None:
        return iters, per_epoch
    return (epochs if epochs is not None else 1) * per_epoch, per_epoch


def fit(net, x, t, *, iters=None, epochs=None, batch_size=100, lr=None, optimizer="sgd",
        weight_decay=0.0, seed=None, eval_data=None, progress=None, verbose=False, state=None,
        on_epoch=None, should_stop=None):
    """Train `net` in place on x (N, D), t (ids or one-hot); returns the history dict.

    iters or epochs (default 1 epoch) sets the length; an epoch is N // batch_size
    steps over one fresh permutation of the rows. history: "loss" per step (the
    minibatch loss before that step's update), and per epoch "epoch_step",
    "epoch_loss" (the mean of that epoch's minibatch losses), "train_acc",
    "eval_acc" and "eval_loss" (None without eval_data) and "epoch_seconds".
    optimizer: sgd, momentum, adagrad or adam; lr None takes the optimizer's
    default (DEFAULT_LR: 0.1, 0.01, 0.01, 0.001); weight_decay is L2 on the weights.
    Same seed, same thread count: bit-identical parameters. `state` (a TrainState
    from a checkpoint) continues a run; on_epoch(state) is called after each epoch.
    progress: True/False for a tqdm bar, None for one only on a terminal.
    verbose: print one line per epoch (loss, accuracies, eval loss, time); with it or
    a bar, a first call that must compile the kernels says so.
    should_stop: a function checked between chunks of steps; when it returns True, fit
    returns early with net and state consistent at the last completed step.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastbp.Network, got {type(net).__name__}")
    if net.loss_type != "softmax_ce":
        raise ValueError(f"fit trains loss='softmax_ce' networks; for loss={net.loss_type!r} use "
                         f"net.gradient() and an update of your own")
    _positive_int(iters, "iters")
    _positive_int(epochs, "epochs")
    _positive_int(batch_size, "batch_size")
    if optimizer in DEFAULT_LR and lr is None:
        lr = DEFAULT_LR[optimizer]
    _hyper(lr, weight_decay, optimizer)
    check_seed(seed)
    x = as_batch(x, net.sizes[0], net.dtype, "x")
    t = as_labels(t, x.shape[0], net.sizes[-1], "t")
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size {batch_size} is larger than the {x.shape[0]} training samples")
    if eval_data is not None:
        if not (isinstance(eval_data, (tuple, list)) and len(eval_data) == 2):
            raise TypeError("eval_data must be a pair (x_eval, t_eval)")
        xe = as_batch(eval_data[0], net.sizes[0], net.dtype, "eval_data[0]")
        te = as_labels(eval_data[1], xe.shape[0], net.sizes[-1], "eval_data[1]")
    total, per_epoch = total_steps(x.shape[0], batch_size, iters, epochs)
    state = state if state is not None else TrainState(net, seed)
    if total < state.step:
        raise ValueError(f"the run is already at step {state.step}; a length of {total} steps "
                         f"would move it backwards")
    if net.device == "cpu":
        ensure_compiled(net.dtype, announce=verbose or _bar_wanted(progress))

    opt = optimizers.OPTIMIZERS.index(optimizer)
    h1, h2 = OPTIMIZER_DEFAULTS[optimizer]
    hyper = (opt, float(lr), h1, h2, float(weight_decay))
    evals = (xe, te) if eval_data is not None else None
    steps = (_CudaSteps if net.device == "cuda" else _CpuSteps)(net, x, t, evals, state, batch_size)
    hist = state.history
    bar = _bar(progress, total, state.step)
    say = _printer(bar)
    try:
        while state.step < total:
            started = time.perf_counter()
            done = state.step - state.epoch_start  # > 0: continuing an epoch stopped midway
            if state.epoch_rng is None:
                state.epoch_rng = state.rng.bit_generator.state
            else:  # an epoch stopped after drawing its order: the same order, the Generator just past it
                state.rng.bit_generator.state = state.epoch_rng
            order = state.rng.permutation(x.shape[0]).astype(np.int64)
            steps.new_epoch(order)
            n_steps = min(per_epoch, total - state.epoch_start)
            while done < n_steps:
                if should_stop is not None and should_stop():
                    return hist
                chunk = min(CHUNK_STEPS, n_steps - done)
                ran, losses = steps.run(done, chunk, hyper, state.step)
                hist["loss"].extend(losses[:ran].tolist())
                if ran < chunk:
                    raise TrainingDiverged(
                        f"loss became {losses[ran]} at step {state.step + ran + 1} (epoch "
                        f"{state.epoch + 1}); parameters hold the state before that step")
                state.step += chunk
                done += chunk
                if bar is not None:
                    bar.update(chunk)
                    bar.set_postfix(loss=f"{losses[chunk - 1]:.4f}", refresh=False)
            hist["epoch_loss"].append(float(np.mean(hist["loss"][state.epoch_start:])))
            state.epoch_rng = None
            state.epoch += 1
            hist["epoch_step"].append(state.step)
            hist["epoch_seconds"].append(time.perf_counter() - started)
            hist["train_acc"].append(steps.accuracy("train"))
            hist["eval_acc"].append(steps.accuracy("eval") if eval_data is not None else None)
            hist["eval_loss"].append(steps.loss("eval") if eval_data is not None else None)
            steps.sync_state()
            if bar is not None:
                bar.set_postfix(loss=f"{hist['epoch_loss'][-1]:.4f}", train_acc=f"{hist['train_acc'][-1]:.4f}",
                                eval_acc=hist["eval_acc"][-1] and f"{hist['eval_acc'][-1]:.4f}")
            if verbose:
                say(epoch_line(state))
            if on_epoch is not None:
                on_epoch(state)
    finally:
        steps.sync_state()
        if bar is not None:
            bar.close()
    return hist


class _CpuSteps:
    """The compiled CPU loop (kernels/train.py) over host buffers."""

    def __init__(self, net, x, t, evals, state, batch_size):
        self.net, self.x, self.t, self.state = net, x, t, state
        self.data = {"train": (x, t), "eval": evals}
        self.grads = np.empty_like(net.flat_params)
        self.acts, self.deltas = net._workspace(batch_size)
        self.xb = np.empty((batch_size, x.shape[1]), net.dtype)
        self.tb = np.empty(batch_size, np.int64)
        self.losses = np.empty(CHUNK_STEPS, np.float64)

    def new_epoch(self, order):
        self.order = order

    def run(self, first, chunk, hyper, t0):
        """(steps completed, losses): stops before a step whose loss is not finite."""
        net = self.net
        opt, lr, h1, h2, wd = hyper
        ran = train_steps(net.flat_params, self.grads, self.state.opt_state, self.acts, self.deltas,
                          self.xb, self.tb, self.x, self.t, self.order, first, chunk, net._offsets,
                          net._sizes, net._act, opt, lr, h1, h2, wd, t0, self.losses)
        return ran, self.losses

    def accuracy(self, which):
        return self.net._accuracy(*self.data[which])

    def loss(self, which):
        return self.net._loss(*self.data[which])

    def sync_state(self):
        pass  # the optimizer state is state.opt_state itself


class _CudaSteps:
    """The same loop on the GPU (kernels/cuda/mlp.py): the data set is uploaded once, each
    epoch's row order once; the host reads back the chunk's losses and the stop flag."""

    def __init__(self, net, x, t, evals, state, batch_size):
        cuda = net._cuda.cuda
        self.net, self.state, self.dev = net, state, net._cuda.dev
        self.x, self.t = cuda.to_device(x), cuda.to_device(t)
        # accuracy passes: device rows, host labels; the eval loss from the host rows
        self.data = {"train": (self.x, t)}
        if evals is not None:
            self.data["eval"] = (cuda.to_device(evals[0]), evals[1])
        self.evals = evals
        self.opt_state = cuda.to_device(state.opt_state)
        self.ws = self.dev.workspace(batch_size)
        self.losses = cuda.device_array(CHUNK_STEPS, np.float64)
        self.cuda = cuda

    def new_epoch(self, order):
        self.order = self.cuda.to_device(order)

    def run(self, first, chunk, hyper, t0):
        opt, lr, h1, h2, wd = hyper
        self.dev.train_steps(self.ws, self.x, self.t, self.order, first, chunk, opt, lr, h1, h2, wd, t0,
                             self.opt_state, self.losses)
        losses = self.losses.copy_to_host()
        stop = int(self.dev.stop.copy_to_host()[0])
        return (stop - 1 if stop else chunk), losses

    def accuracy(self, which):
        x, t = self.data[which]
        return float(np.mean(self.net._cuda.classes(x) == t))

    def loss(self, which):
        assert which == "eval"
        return self.net._cuda.loss(*self.evals)

    def sync_state(self):
        self.opt_state.copy_to_host(self.state.opt_state)


def _bar_wanted(progress):
    return sys.stderr.isatty() if progress is None else bool(progress)


def _bar(progress, total, initial):
    if not _bar_wanted(progress):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _printer(bar):
    """print, or tqdm.write above the bar while one is up."""
    if bar is None:
        return lambda msg: print(msg, flush=True)
    from tqdm.auto import tqdm
    return tqdm.write


def epoch_line(state):
    """One line for the epoch just ended: mean loss, accuracies, eval loss, time."""
    h = state.history
    line = (f"epoch {state.epoch:3d}  step {state.step:6d}  loss {h['epoch_loss'][-1]:.4f}  "
            f"train acc {h['train_acc'][-1]:.4f}")
    if h["eval_acc"][-1] is not None:
        line += f"  eval acc {h['eval_acc'][-1]:.4f}  eval loss {h['eval_loss'][-1]:.4f}"
    return line + f"  ({h['epoch_seconds'][-1]:.2f} s)"


# -- checkpoints: the network, its TrainState and the run's settings in one .npz

_CKPT_KEYS = ["ckpt_opt_state", "ckpt_rng", "ckpt_step", "ckpt_epoch", "ckpt_loss", "ckpt_epoch_step",
              "ckpt_train_acc", "ckpt_eval_acc", "ckpt_epoch_seconds", "ckpt_config"]
_PER_EPOCH = ("epoch_step", "epoch_loss", "train_acc", "eval_acc", "eval_loss", "epoch_seconds")


def save_checkpoint(path, net, state, config):
    """Atomically write params, optimizer state, RNG state, step, history and the run's
    settings (`config`, a JSON-able dict) to path."""
    h = state.history
    floats = lambda v: np.array([np.nan if a is None else a for a in v], np.float64)  # noqa: E731
    atomic_savez(
        path, **dict(net.params.items()), **net._meta(),
        ckpt_opt_state=state.opt_state,
        ckpt_rng=np.array(json.dumps(state.rng.bit_generator.state)),
        ckpt_epoch_rng=np.array(json.dumps(state.epoch_rng)),
        ckpt_step=np.array(state.step), ckpt_epoch=np.array(state.epoch),
        ckpt_loss=np.array(h["loss"], np.float64),
        ckpt_epoch_step=np.array(h["epoch_step"], np.int64),
        **{f"ckpt_{k}": floats(h[k]) for k in _PER_EPOCH if k != "epoch_step"},
        ckpt_config=np.array(json.dumps(config, sort_keys=True)))


def read_config(path):
    """The run settings stored in a checkpoint (a dict), without building anything."""
    arrays = load_npz(path, "checkpoint")
    if "ckpt_config" not in arrays:
        raise ValueError(f"{path}: not a fastbp checkpoint (missing ['ckpt_config'])")
    try:
        saved = json.loads(str(arrays["ckpt_config"]))
    except ValueError:
        saved = None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: unreadable run settings")
    return saved


def load_checkpoint(path, config=None, device="cpu"):
    """(net, state) from a checkpoint; anything malformed is a ValueError. With `config`,
    every key given must hold the same value in the checkpoint's settings. The network is
    built on `device`."""
    arrays = load_npz(path, "checkpoint")
    missing = [k for k in _CKPT_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: not a fastbp checkpoint (missing {missing})")
    saved = read_config(path)
    if config is not None:
        config = json.loads(json.dumps(config, sort_keys=True))
        diff = sorted(k for k in config if saved.get(k) != config[k])
        if diff:
            raise ValueError(f"{path}: was written by a run with other settings ({', '.join(diff)}); "
                             f"resume with the same arguments or start a new --out")
    net = Network._from_meta(arrays, path, device)
    net._assign(arrays, path)
    state = TrainState(net)
    opt_state = arrays["ckpt_opt_state"]
    if opt_state.shape != state.opt_state.shape or opt_state.dtype != net.dtype \
            or not np.isfinite(opt_state).all():
        raise ValueError(f"{path}: optimizer state does not fit the network")
    state.opt_state[...] = opt_state
    try:
        state.rng.bit_generator.state = json.loads(str(arrays["ckpt_rng"]))
        epoch_rng = json.loads(str(arrays.get("ckpt_epoch_rng", "null")))
        if epoch_rng is not None:  # the same checks, on a scratch Generator
            np.random.default_rng().bit_generator.state = epoch_rng
        state.epoch_rng = epoch_rng
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: bad RNG state ({e})") from None
    state.step, state.epoch = int(arrays["ckpt_step"]), int(arrays["ckpt_epoch"])
    h = state.history
    h["loss"] = arrays["ckpt_loss"].tolist()
    h["epoch_step"] = arrays["ckpt_epoch_step"].tolist()
    for k in _PER_EPOCH[1:]:
        if f"ckpt_{k}" in arrays:
            h[k] = [None if np.isnan(a) else a for a in arrays[f"ckpt_{k}"].tolist()]
        else:  # checkpoints written before the key existed
            h[k] = [None] * state.epoch
    if h["epoch_loss"] and h["epoch_loss"][0] is None:
        h["epoch_loss"] = [float(np.mean(h["loss"][a:b]))
                           for a, b in zip([0] + h["epoch_step"][:-1], h["epoch_step"])]
    if len(h["loss"]) != state.step or any(len(h[k]) != state.epoch for k in _PER_EPOCH) \
            or state.step < state.epoch_start:
        raise ValueError(f"{path}: history does not match step {state.step} / epoch {state.epoch}")
    if state.step > state.epoch_start and state.epoch_rng is None:
        raise ValueError(f"{path}: stopped inside an epoch but holds no RNG state for it")
    return net, state


# -- compiling before training, one process at a time

@contextlib.contextmanager
def compile_lock():
    """An exclusive lock across processes (fcntl; a no-op where there is none) held while
    kernels compile. numba writes each cache file atomically, but two processes filling a
    cold cache at once can both number a new signature's file alike; the lock keeps
    first compiles one at a time, the cache consistent."""
    try:
        import fcntl
    except ImportError:  # Windows: numba's own atomic writes are all there is
        yield
        return
    from fastbp import kernels
    from fastbp.datasets import cache_dir
    # beside the cache numba uses: NUMBA_CACHE_DIR, else kernels/__pycache__, else the user's
    candidates = [os.environ.get("NUMBA_CACHE_DIR"),
                  os.path.join(os.path.dirname(os.path.abspath(kernels.__file__)), "__pycache__"),
                  cache_dir()]
    f = None
    for folder in filter(None, candidates):
        try:
            os.makedirs(folder, exist_ok=True)
            f = open(os.path.join(folder, "fastbp-compile.lock"), "a")
            break
        except OSError:
            continue
    if f is None:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_COMPILED = set()  # dtypes whose CPU kernels this process has compiled or loaded


def compile_for(dtype, activation="relu"):
    """Compile (or load from cache) every kernel fit uses for this dtype, under compile_lock.
    The activation is a runtime code: one compile serves both."""
    dtype = np.dtype(dtype)
    with compile_lock():
        _COMPILED.add(dtype)  # before the small fits below, which would come back here
        net = Network([2, 2, 2], activation=activation, dtype=dtype, seed=0)
        x = np.zeros((2, 2), net.dtype)
        t = np.zeros(2, np.int64)
        for opt in OPTIMIZER_DEFAULTS:
            fit(net, x, t, iters=1, batch_size=2, optimizer=opt, seed=0, eval_data=(x, t),
                progress=False)
        net.loss(x, t)


def ensure_compiled(dtype, announce=True):
    """compile_for once per process; when `announce`, say so if it takes more than a second
    (a cold cache: seconds) and stay quiet when the kernels load from numba's cache."""
    if dtype in _COMPILED:
        return
    timer = None
    if announce:
        timer = threading.Timer(1.0, lambda: print("fastbp: compiling kernels (first run only) ...",
                                                   file=sys.stderr, flush=True))
        timer.daemon = True
        timer.start()
    try:
        compile_for(dtype)
    finally:
        if timer is not None:
            timer.cancel()
