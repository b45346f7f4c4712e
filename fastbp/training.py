"""fit: minibatch training with the whole loop over minibatches compiled.

Each epoch draws one permutation of the training rows from a seeded NumPy
Generator; the steps of the epoch then run on the network's backend (backend.py)
in chunks (a progress bar update between chunks), never one Python round trip per
step. Everything a run needs to continue (parameters, optimizer state, the
Generator's state, step, history) is a TrainState; checkpoints.py saves it, at an
epoch's end or in the middle of one (a run stopped between chunks): the epoch's
row order is drawn again from the Generator's state at that epoch's start.
"""
import math
import numbers
import sys
import time
from collections import namedtuple

import numpy as np

from fastbp.backend import CHUNK_STEPS
from fastbp.checks import check_seed
from fastbp.compiling import ensure_compiled
from fastbp.kernels.codes import DEFAULT_LR, MOMENTUM_OPTIMIZERS, OPTIMIZER_HYPER, OPTIMIZERS
from fastbp.kernels.train import Optim
from fastbp.network import Network
from fastbp.schedules import MIN_ADAPTIVE_LR, replay, schedule
from fastbp.sparse import SparseRows

class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf; the step and the last good state are in the message."""


class TrainState:
    """What a run needs to continue bit-identically: optimizer state, RNG, step, history."""

    def __init__(self, net, seed=None):
        self.opt_state = np.zeros((2, net.n_params), net.dtype)
        self.rng = np.random.default_rng(seed)
        self.step = 0
        self.epoch = 0
        self.epoch_rng = None  # the Generator's state before the current epoch drew its order; None between epochs
        self.history = {"loss": [], "epoch_step": [], "epoch_loss": [], "train_acc": [],
                        "eval_acc": [], "eval_loss": [], "val_acc": [], "epoch_seconds": []}
        self.stopped_early = None  # the epoch after which fit's schedule ended training

    @property
    def epoch_start(self):
        """The step at which the current epoch began (== step between epochs)."""
        ends = self.history["epoch_step"]
        return ends[-1] if ends else 0


def _positive_int(v, name):
    if v is not None and (not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1):
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _hyper(lr, weight_decay, optimizer, momentum):
    """The optimizer's (hyper1, hyper2), its arguments checked."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    hyper = OPTIMIZER_HYPER[optimizer]
    if momentum is not None:
        if optimizer not in MOMENTUM_OPTIMIZERS:
            raise ValueError(f"momentum is for optimizer 'momentum' or 'nesterov', not {optimizer!r}")
        if not (isinstance(momentum, numbers.Real) and 0 <= momentum < 1):
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        hyper = (float(momentum), hyper[1])
    if not (isinstance(lr, numbers.Real) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not (isinstance(weight_decay, numbers.Real) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return hyper


def total_steps(n, batch_size, iters=None, epochs=None):
    """Steps a run takes: iters, or epochs * (n // batch_size)."""
    if iters is not None and epochs is not None:
        raise ValueError("give iters or epochs, not both")
    per_epoch = max(n // batch_size, 1)
    if iters is not None:
        return iters, per_epoch
    return (epochs if epochs is not None else 1) * per_epoch, per_epoch


def fit(net, x, t, *, iters=None, epochs=None, batch_size=100, lr=None, optimizer="sgd",
        weight_decay=0.0, momentum=None, seed=None, eval_data=None, validation_data=None,
        lr_schedule="constant", power_t=0.5, early_stopping=False, patience=10, tol=1e-4,
        progress=None, verbose=False, state=None, on_epoch=None, should_stop=None, comm=None,
        train_accuracy=True):
    """Train `net` in place on x (N, D) dense or scipy.sparse, t class ids or one-hot (and for
    loss="mse" or "logistic" networks any float targets (N, C)); returns the history dict.

    iters or epochs (default 1 epoch) sets the length; an epoch is N // batch_size
    steps over one fresh permutation of the rows. history: "loss" per step (the
    minibatch loss before that step's update), and per epoch "epoch_step",
    "epoch_loss" (the mean of that epoch's minibatch losses), "train_acc",
    "eval_acc" and "eval_loss" (None without eval_data), "val_acc" (None without
    validation_data) and "epoch_seconds". train_accuracy=False skips the pass over the
    training set after each epoch ("train_acc" None): training is the same without it.
    optimizer: sgd, momentum, adagrad, adam or nesterov (Nesterov's momentum); lr None
    takes the optimizer's default (DEFAULT_LR: 0.1, 0.01, 0.01, 0.001, 0.01);
    weight_decay is L2 on the weights; momentum (for momentum and nesterov) 0.9 if None.
    lr_schedule, power_t, early_stopping, patience, tol: scikit-learn's per-epoch rules
    (fastbp/schedules.py): "constant"; "invscaling", lr / (samples seen + 1) ** power_t;
    "adaptive", lr / 5 each time the score has not improved by tol for more than
    `patience` epochs. The score is the accuracy on validation_data (rows held out from
    x) with early_stopping, which then ends training at such a plateau; else minus the
    epoch's mean loss. A run that stopped early has state.stopped_early set (its epoch).
    Same seed, same thread count: bit-identical parameters. `state` (a TrainState
    from a checkpoint) continues a run; on_epoch(state) is called after each epoch.
    progress: True/False for a tqdm bar, None for one only on a terminal.
    verbose: print one line per epoch (loss, accuracies, eval loss, time); with it or
    a bar, a first call that must compile the kernels says so.
    should_stop: a function checked between chunks of steps; when it returns True, fit
    returns early with net and state consistent at the last completed step.
    comm: an mpi4py communicator: data-parallel training (fastbp/distributed.py). Call fit
    on every rank with the same network, data and settings; each step's batch_size rows
    are split over the ranks, one Allreduce sums the gradients, and every rank ends with
    the parameters a single process would have (to float rounding). Rank 0's parameters
    and state are the run's; only rank 0 shows progress or prints; should_stop returning
    True on any rank stops every rank at the same step.
    """
    def checked():
        x_, t_, sets, optim = _checked(net, x, t, eval_data, validation_data, iters, epochs, batch_size, lr,
                                       optimizer, weight_decay, momentum, seed)
        sched = schedule(lr_schedule, power_t, early_stopping, patience, tol, "val" in sets)
        return x_, t_, sets, optim, sched

    if comm is not None:
        from fastbp import distributed
        distributed.check_comm(comm)
        x, t, sets, optim, sched = distributed.together(comm, checked)
        distributed.check_same(comm, {
            "network": repr(net), "batch_size": batch_size, "optimizer": tuple(optim), "schedule": tuple(sched),
            "iters": iters, "epochs": epochs, "seed": seed, "train_accuracy": bool(train_accuracy),
            "x": (x.shape, distributed.fingerprint(x)), "t": distributed.fingerprint(t),
            **{name: (xs.shape, distributed.fingerprint(xs, ts)) for name, (xs, ts) in sets.items()}})
    else:
        x, t, sets, optim, sched = checked()
    state = state if state is not None else TrainState(net, seed)
    if comm is not None:
        distributed.broadcast_start(comm, net, state)
        if comm.Get_rank() != 0:
            progress, verbose = False, False
    total, per_epoch = total_steps(x.shape[0], batch_size, iters, epochs)
    if total < state.step:
        raise ValueError(f"the run is already at step {state.step}; a length of {total} steps "
                         f"would move it backwards")
    if net.device == "cpu":
        ensure_compiled(net.dtype, announce=verbose or _bar_wanted(progress), sparse=isinstance(x, SparseRows))
    run = Run(x, t, sets, batch_size, optim, sched, total, per_epoch, bool(train_accuracy))
    if comm is None:
        return _loop(net, run, state, progress, verbose, on_epoch, should_stop, None)
    with distributed.abort_on_error(comm, keep=TrainingDiverged):
        return _loop(net, run, state, progress, verbose, on_epoch, should_stop, comm)


# what one fit call trains on and how, checked
Run = namedtuple("Run", "x t sets batch_size optim sched total per_epoch train_accuracy")


def _held_out(net, data, name):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (x, t)")
    xs = net.as_input(data[0], f"{name}[0]")
    return xs, net.targets(data[1], xs.shape[0], f"{name}[1]")


def _checked(net, x, t, eval_data, validation_data, iters, epochs, batch_size, lr, optimizer, weight_decay,
             momentum, seed):
    """fit's arguments checked and converted: (x, t, {"eval": ..., "val": ...} of those given, Optim)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastbp.Network, got {type(net).__name__}")
    _positive_int(iters, "iters")
    _positive_int(epochs, "epochs")
    _positive_int(batch_size, "batch_size")
    if optimizer in DEFAULT_LR and lr is None:
        lr = DEFAULT_LR[optimizer]
    hyper = _hyper(lr, weight_decay, optimizer, momentum)
    check_seed(seed)
    x = net.as_input(x, "x")  # dense, or sparse rows (converted once per fit, not per batch)
    t = net.targets(t, x.shape[0])
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size {batch_size} is larger than the {x.shape[0]} training samples")
    sets = {name: _held_out(net, data, arg) for name, data, arg in
            (("eval", eval_data, "eval_data"), ("val", validation_data, "validation_data")) if data is not None}
    return x, t, sets, Optim(OPTIMIZERS.index(optimizer), float(lr), *hyper, float(weight_decay))


def _loop(net, run, state, progress, verbose, on_epoch, should_stop, comm):
    x, sets, per_epoch = run.x, run.sets, run.per_epoch
    if comm is None:
        steps = net.backend.trainer(x, run.t, sets, run.batch_size, state.opt_state)
    else:
        from fastbp.distributed import DataParallel
        steps = DataParallel(comm, net.backend, x, run.t, sets, run.batch_size, state.opt_state, net.dtype,
                             net.n_params)
        should_stop = _any_rank(comm, should_stop)
    total = run.total
    hist = state.history
    carried = _reopen_cut_epoch(state, per_epoch) if total > state.step else 0.0
    bar = _bar(progress, total, state.step)
    say = _printer(bar)
    state.stopped_early = None
    try:
        while state.step < total:
            lr = replay(hist, run.optim.lr, run.sched, run.batch_size)
            if lr is None:
                state.stopped_early = state.epoch
                if verbose:
                    say(f"stopping after epoch {state.epoch}: " + _plateau_reason(run.sched))
                break
            optim = run.optim._replace(lr=lr)
            started, carried = time.perf_counter() - carried, 0.0
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
                chunk = min(getattr(steps, "chunk_steps", CHUNK_STEPS), n_steps - done)
                ran, losses = steps.run(done, chunk, optim, state.step)
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
            if n_steps == per_epoch:  # an epoch cut short by the run's end keeps its order: see _reopen_cut_epoch
                state.epoch_rng = None
            state.epoch += 1
            hist["epoch_step"].append(state.step)
            hist["epoch_seconds"].append(time.perf_counter() - started)
            hist["train_acc"].append(steps.evaluate("train", False)[0] if run.train_accuracy else None)
            eval_acc, eval_loss = steps.evaluate("eval") if "eval" in sets else (None, None)
            hist["eval_acc"].append(eval_acc)
            hist["eval_loss"].append(eval_loss)
            hist["val_acc"].append(steps.evaluate("val", False)[0] if "val" in sets else None)
            steps.sync_state()
            if comm is not None:
                steps.realign()
            if bar is not None:
                bar.set_postfix(loss=f"{hist['epoch_loss'][-1]:.4f}",
                                train_acc=_maybe(hist["train_acc"][-1]), eval_acc=_maybe(hist["eval_acc"][-1]))
            if verbose:
                say(epoch_line(state))
            if on_epoch is not None:
                on_epoch(state)
    finally:
        steps.sync_state()
        if bar is not None:
            bar.close()
    return hist



PER_EPOCH = ("epoch_step", "epoch_loss", "train_acc", "eval_acc", "eval_loss", "val_acc", "epoch_seconds")


def _reopen_cut_epoch(state, per_epoch):
    """A run whose length ended it inside an epoch reported that epoch as its last one, and
    kept the epoch's row order (epoch_rng). A longer run reopens it: its entries leave the
    history and its steps continue in the same order, so the longer run is bit-identical
    to one that never stopped. Returns the seconds the cut epoch had taken."""
    h = state.history
    ends = h["epoch_step"]
    if state.epoch_rng is None or not ends or state.step != ends[-1] or \
            ends[-1] - (ends[-2] if len(ends) > 1 else 0) >= per_epoch:
        return 0.0
    state.epoch -= 1
    seconds = h["epoch_seconds"][-1]
    for k in PER_EPOCH:
        h[k].pop()
    return seconds


def _plateau_reason(sched):
    what = "validation accuracy" if sched.early_stopping else "training loss"
    plateau = f"no improvement by tol={sched.tol:g} for more than {sched.patience} epochs"
    if sched.name == "adaptive":
        return f"{what}: {plateau}, with the learning rate already at or below {MIN_ADAPTIVE_LR:g}"
    return f"{what}: {plateau}"


def _any_rank(comm, should_stop):
    """should_stop made collective: True on every rank once it is True on any."""
    from mpi4py import MPI
    return lambda: comm.allreduce(bool(should_stop is not None and should_stop()), op=MPI.LOR)


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


def _maybe(acc):
    return None if acc is None else f"{acc:.4f}"


def epoch_line(state):
    """One line for the epoch just ended: mean loss, accuracies, eval loss, time."""
    h = state.history
    line = f"epoch {state.epoch:3d}  step {state.step:6d}  loss {h['epoch_loss'][-1]:.4f}"
    if h["train_acc"][-1] is not None:
        line += f"  train acc {h['train_acc'][-1]:.4f}"
    if h["eval_acc"][-1] is not None:
        line += f"  eval acc {h['eval_acc'][-1]:.4f}  eval loss {h['eval_loss'][-1]:.4f}"
    if h["val_acc"][-1] is not None:
        line += f"  val acc {h['val_acc'][-1]:.4f}"
    return line + f"  ({h['epoch_seconds'][-1]:.2f} s)"


# -- checkpoints: the network, its TrainState and the run's settings in one .npz
