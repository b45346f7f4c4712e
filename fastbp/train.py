"""fit: minibatch training with the whole loop over minibatches compiled.

Each epoch draws one permutation of the training rows from a seeded NumPy
Generator; the steps of the epoch then run inside kernels/train.py in chunks
(a progress bar update between chunks), never one Python round trip per step.
Everything a run needs to continue (parameters, optimizer state, the
Generator's state, step, history) is a TrainState; checkpoints save it.
"""
import contextlib
import json
import math
import numbers
import os
import sys
import time

import numpy as np

from fastbp.checks import as_batch, as_labels
from fastbp.kernels import optimizers
from fastbp.kernels.train import train_steps
from fastbp.network import Network
from fastbp.files import atomic_savez, load_npz

# optimizer: (hyper1, hyper2) defaults, the book's: momentum 0.9; Adam beta1 0.9, beta2 0.999
OPTIMIZER_DEFAULTS = {"sgd": (0.0, 0.0), "momentum": (0.9, 0.0), "adagrad": (0.0, 0.0),
                      "adam": (0.9, 0.999)}
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
        self.history = {"loss": [], "epoch_step": [], "train_acc": [], "eval_acc": [],
                        "epoch_seconds": []}


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


def fit(net, x, t, *, iters=None, epochs=None, batch_size=100, lr=0.1, optimizer="sgd",
        weight_decay=0.0, seed=None, eval_data=None, progress=None, state=None, on_epoch=None):
    """Train `net` in place on x (N, D), t (ids or one-hot); returns the history dict.

    iters or epochs (default 1 epoch) sets the length; an epoch is N // batch_size
    steps over one fresh permutation of the rows. history: "loss" per step (the
    minibatch loss before that step's update), and per epoch "epoch_step",
    "train_acc", "eval_acc" (None without eval_data) and "epoch_seconds".
    optimizer: sgd, momentum, adagrad or adam; weight_decay is L2 on the weights.
    Same seed, same thread count: bit-identical parameters. `state` (a TrainState
    from a checkpoint) continues a run; on_epoch(state) is called after each epoch.
    progress: True/False for a tqdm bar, None for one only on a terminal.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastbp.Network, got {type(net).__name__}")
    if net.loss_type != "softmax_ce":
        raise ValueError(f"fit trains loss='softmax_ce' networks; for loss={net.loss_type!r} use "
                         f"net.gradient() and an update of your own")
    _positive_int(iters, "iters")
    _positive_int(epochs, "epochs")
    _positive_int(batch_size, "batch_size")
    _hyper(lr, weight_decay, optimizer)
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

    opt = optimizers.OPTIMIZERS.index(optimizer)
    h1, h2 = OPTIMIZER_DEFAULTS[optimizer]
    hyper = (opt, float(lr), h1, h2, float(weight_decay))
    evals = (xe, te) if eval_data is not None else None
    steps = (_CudaSteps if net.device == "cuda" else _CpuSteps)(net, x, t, evals, state, batch_size)
    hist = state.history
    bar = _bar(progress, total, state.step)
    try:
        while state.step < total:
            started = time.perf_counter()
            order = state.rng.permutation(x.shape[0]).astype(np.int64)
            steps.new_epoch(order)
            n_steps = min(per_epoch, total - state.step)
            done = 0
            while done < n_steps:
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
            state.epoch += 1
            hist["epoch_step"].append(state.step)
            hist["epoch_seconds"].append(time.perf_counter() - started)
            hist["train_acc"].append(steps.accuracy("train"))
            hist["eval_acc"].append(steps.accuracy("eval") if eval_data is not None else None)
            steps.sync_state()
            if bar is not None:
                bar.set_postfix(loss=f"{hist['loss'][-1]:.4f}", train_acc=f"{hist['train_acc'][-1]:.4f}",
                                eval_acc=hist["eval_acc"][-1] and f"{hist['eval_acc'][-1]:.4f}")
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

    def sync_state(self):
        pass  # the optimizer state is state.opt_state itself


class _CudaSteps:
    """The same loop on the GPU (kernels/cuda/mlp.py): the data set is uploaded once, each
    epoch's row order once; the host reads back the chunk's losses and the stop flag."""

    def __init__(self, net, x, t, evals, state, batch_size):
        cuda = net._cuda.cuda
        self.net, self.state, self.dev = net, state, net._cuda.dev
        self.x, self.t = cuda.to_device(x), cuda.to_device(t)
        # accuracy passes: device rows, host labels
        self.data = {"train": (self.x, t)}
        if evals is not None:
            self.data["eval"] = (cuda.to_device(evals[0]), evals[1])
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

    def sync_state(self):
        self.opt_state.copy_to_host(self.state.opt_state)


def _bar(progress, total, initial):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


# -- checkpoints: the network, its TrainState and the run's settings in one .npz

def save_checkpoint(path, net, state, config):
    """Atomically write params, optimizer state, RNG state, step, history and config to path."""
    h = state.history
    atomic_savez(
        path, **dict(net.params.items()), **net._meta(),
        ckpt_opt_state=state.opt_state,
        ckpt_rng=np.array(json.dumps(state.rng.bit_generator.state)),
        ckpt_step=np.array(state.step), ckpt_epoch=np.array(state.epoch),
        ckpt_loss=np.array(h["loss"], np.float64),
        ckpt_epoch_step=np.array(h["epoch_step"], np.int64),
        ckpt_train_acc=np.array(h["train_acc"], np.float64),
        ckpt_eval_acc=np.array([np.nan if a is None else a for a in h["eval_acc"]], np.float64),
        ckpt_epoch_seconds=np.array(h["epoch_seconds"], np.float64),
        ckpt_config=np.array(json.dumps(config, sort_keys=True)))


def load_checkpoint(path, config, device="cpu"):
    """(net, state) from a checkpoint written with the same config; anything else is a ValueError.
    The network is built on `device`."""
    arrays = load_npz(path, "checkpoint")
    keys = ["ckpt_opt_state", "ckpt_rng", "ckpt_step", "ckpt_epoch", "ckpt_loss", "ckpt_epoch_step",
            "ckpt_train_acc", "ckpt_eval_acc", "ckpt_epoch_seconds", "ckpt_config"]
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path}: not a fastbp checkpoint (missing {missing})")
    try:
        saved = json.loads(str(arrays["ckpt_config"]))
    except ValueError:
        raise ValueError(f"{path}: unreadable run settings") from None
    if saved != json.loads(json.dumps(config, sort_keys=True)):
        diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
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
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: bad RNG state ({e})") from None
    state.step, state.epoch = int(arrays["ckpt_step"]), int(arrays["ckpt_epoch"])
    h = state.history
    h["loss"] = arrays["ckpt_loss"].tolist()
    h["epoch_step"] = arrays["ckpt_epoch_step"].tolist()
    h["train_acc"] = arrays["ckpt_train_acc"].tolist()
    h["eval_acc"] = [None if np.isnan(a) else a for a in arrays["ckpt_eval_acc"].tolist()]
    h["epoch_seconds"] = arrays["ckpt_epoch_seconds"].tolist()
    if len(h["loss"]) != state.step or len(h["train_acc"]) != state.epoch:
        raise ValueError(f"{path}: history does not match step {state.step} / epoch {state.epoch}")
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


def compile_for(dtype, activation="relu"):
    """Compile (or load from cache) every kernel fit uses for this dtype, under compile_lock."""
    with compile_lock():
        net = Network([2, 2, 2], activation=activation, dtype=dtype, seed=0)
        x = np.zeros((2, 2), net.dtype)
        t = np.zeros(2, np.int64)
        for opt in OPTIMIZER_DEFAULTS:
            fit(net, x, t, iters=1, batch_size=2, optimizer=opt, seed=0, eval_data=(x, t),
                progress=False)
        net.loss(x, t)
