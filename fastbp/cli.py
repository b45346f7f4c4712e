"""`fastbp train`: train an MLP on MNIST or Fashion-MNIST from the command line.

    fastbp train --dataset mnist --hidden 50 --epochs 10 --out runs/mnist

Writes OUT/params.npz (Network.load reads it), OUT/metrics.json, OUT/curves.png and
OUT/checkpoint.npz (so --resume can extend the run); with --checkpoint-every N the
checkpoint, metrics and curves also every N epochs. Ctrl-C (SIGINT) or SIGTERM finishes the steps in flight,
writes all four and exits 130 or 143; `--resume --out OUT` continues any of them
with the settings stored in the checkpoint. Errors are one line on stderr and a
non-zero exit status, never a traceback.
"""
import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time

import numpy as np

USAGE_ERROR, RUN_ERROR = 2, 1
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells do

# A run's settings and their defaults: the one list the parser, a resume and metrics.json share.
# lr None: the optimizer's own default (fastbp.kernels.codes.DEFAULT_LR).
RUN_DEFAULTS = {"dataset": "mnist", "data_dir": None, "download": None, "hidden": [50],
                "activation": "relu", "loss": "softmax_ce", "iters": None, "epochs": None, "batch_size": 100, "lr": None,
                "optimizer": "sgd", "weight_decay": 0.0, "momentum": None, "dtype": "float32", "device": "cpu",
                "seed": 0, "checkpoint_every": None, "sparse": "auto", "lr_schedule": "constant", "power_t": 0.5,
                "early_stopping": False, "validation_fraction": 0.1, "patience": 10, "tol": 1e-4}
DEFAULT_EPOCHS = 10
# --sparse as the Network's `sparse` policy; not an identity setting: both kernels give the same
# numbers to float rounding, so a resume may switch
SPARSE_CHOICES = {"auto": "auto", "on": True, "off": False}
# what makes a run that run: a resume keeps them and refuses a different value
IDENTITY = ("dataset", "hidden", "activation", "loss", "batch_size", "lr", "optimizer", "weight_decay",
            "momentum", "dtype", "seed", "lr_schedule", "power_t", "early_stopping", "validation_fraction",
            "patience", "tol")


# --optimizer lbfgs: full-batch L-BFGS (fastbp.fit_lbfgs), --iters of its iterations; these
# minibatch settings do not apply to it
LBFGS = "lbfgs"
LBFGS_ITERS = 200  # scikit-learn's max_iter
LBFGS_REFUSES = ("epochs", "batch_size", "lr", "momentum", "lr_schedule", "power_t", "early_stopping",
                 "validation_fraction", "patience", "checkpoint_every")


class CLIError(Exception):
    """A problem with the arguments or the data, reported as one line."""

    def __init__(self, message, status=RUN_ERROR, quiet=False):
        super().__init__(message)
        self.status, self.quiet = status, quiet  # quiet: another rank reports it


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise CLIError(message, USAGE_ERROR)


def _number(kind, ok, what):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n' if kind is int else ''} "
                                             f"{kind.__name__}") from None
        if not (ok(v) and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"{text!r} must be {what}")
        return v
    return parse


def build_parser():
    from fastbp import __version__
    from fastbp.kernels.codes import DEFAULT_LR, HIDDEN_ACTIVATIONS, OPTIMIZER_HYPER, OPTIMIZERS
    from fastbp.network import DEVICES, LOSSES
    from fastbp.schedules import SCHEDULES

    positive_int = _number(int, lambda v: v > 0, "positive")
    d = RUN_DEFAULTS
    parser = _Parser(prog="fastbp", description="numba-compiled backpropagation")
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tr = sub.add_parser(
        "train", help="train an MLP on MNIST or Fashion-MNIST",
        description="Train an MLP; with --resume, options left out keep the run's own settings.")
    # every default is None here so that a resume can tell what was given; RUN_DEFAULTS fills in
    tr.add_argument("--dataset", choices=["mnist", "fashion-mnist"],
                    help=f"(default: {d['dataset']})")
    tr.add_argument("--data-dir", help="folder with the four IDX files, .gz or not (default: "
                    "$FASTBP_DATA, the user cache, system copies; MNIST falls back to the shipped sample)")
    tr.add_argument("--download", action=argparse.BooleanOptionalAction,
                    help="fetch missing files (default: into the user cache only, never into --data-dir)")
    tr.add_argument("--hidden", type=positive_int, nargs="+", metavar="N",
                    help=f"hidden layer widths (default: {' '.join(map(str, d['hidden']))})")
    tr.add_argument("--activation", choices=list(HIDDEN_ACTIVATIONS), help=f"(default: {d['activation']})")
    tr.add_argument("--loss", choices=list(LOSSES),
                    help="the output layer's loss: softmax with cross-entropy; mse, the squared error against "
                    "one-hot labels; logistic, a sigmoid per class with binary cross-entropy "
                    f"(default: {d['loss']})")
    length = tr.add_mutually_exclusive_group()
    length.add_argument("--iters", type=positive_int, help="training steps")
    length.add_argument("--epochs", type=positive_int,
                        help=f"passes over the data (default: {DEFAULT_EPOCHS})")
    tr.add_argument("--batch-size", type=positive_int, help=f"(default: {d['batch_size']})")
    tr.add_argument("--lr", type=_number(float, lambda v: v > 0, "positive"),
                    help="learning rate (default: " +
                    ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items()) + ")")
    tr.add_argument("--optimizer", choices=list(OPTIMIZERS) + [LBFGS],
                    help=f"lbfgs: full-batch L-BFGS for --iters iterations (default {LBFGS_ITERS}), "
                    f"--weight-decay its L2 term, --tol its gradient tolerance (default: {d['optimizer']})")
    tr.add_argument("--momentum", type=_number(float, lambda v: 0 <= v < 1, "in [0, 1)"),
                    help=f"for --optimizer momentum or nesterov (default: {OPTIMIZER_HYPER['momentum'][0]:g})")
    tr.add_argument("--weight-decay", type=_number(float, lambda v: v >= 0, ">= 0"),
                    help=f"L2 on the weights (default: {d['weight_decay']:g})")
    tr.add_argument("--lr-schedule", choices=list(SCHEDULES),
                    help="per epoch, as scikit-learn's MLPs: invscaling lr / (samples seen + 1) ** power_t; "
                    f"adaptive lr / 5 at each plateau (default: {d['lr_schedule']})")
    tr.add_argument("--power-t", type=_number(float, lambda v: v >= 0, ">= 0"),
                    help=f"invscaling's exponent (default: {d['power_t']:g})")
    tr.add_argument("--early-stopping", action=argparse.BooleanOptionalAction,
                    help="hold out --validation-fraction of the training images and stop when their accuracy "
                    "has not improved by --tol for more than --patience epochs (default: off)")
    tr.add_argument("--validation-fraction", type=_number(float, lambda v: 0 < v < 1, "in (0, 1)"),
                    help=f"(default: {d['validation_fraction']:g})")
    tr.add_argument("--patience", type=positive_int,
                    help=f"epochs without improvement that make a plateau (default: {d['patience']})")
    tr.add_argument("--tol", type=_number(float, lambda v: v >= 0, ">= 0"),
                    help=f"the least improvement that counts (default: {d['tol']:g})")
    tr.add_argument("--dtype", choices=["float32", "float64"], help=f"(default: {d['dtype']})")
    tr.add_argument("--device", choices=list(DEVICES), help=f"(default: {d['device']})")
    tr.add_argument("--sparse", choices=list(SPARSE_CHOICES),
                    help="the first layer's kernels: auto takes the ones that skip zero pixels when "
                    f"the images are mostly zeros; on and off force them (default: {d['sparse']})")
    tr.add_argument("--seed", type=_number(int, lambda v: v >= 0, ">= 0"),
                    help=f"weights and batch order (default: {d['seed']})")
    tr.add_argument("--out", help="output folder (default: a new runs/<dataset>-<time>)")
    tr.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                    help="write OUT/checkpoint.npz, metrics.json, curves.png every N epochs "
                    "(default: only when interrupted)")
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out with its stored settings")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--mpi", action="store_true",
                    help="data-parallel over the ranks of mpiexec -n R: each batch split between them, "
                    "rank 0 writes the results (needs fastbp[mpi])")
    return parser


def _flag(key, value):
    text = " ".join(map(str, value)) if isinstance(value, list) else value
    return f"--{key.replace('_', '-')} {text}"


def resolve_settings(args, saved=None):
    """The run's settings: RUN_DEFAULTS, then a resumed run's saved ones, then what was given.
    On a resume, a given identity setting that differs from the saved one is a CLIError."""
    from fastbp.kernels.codes import DEFAULT_LR, MOMENTUM_OPTIMIZERS, OPTIMIZER_HYPER

    given = {k: getattr(args, k) for k in RUN_DEFAULTS if getattr(args, k) is not None}
    settings = dict(RUN_DEFAULTS)
    if saved is not None:
        settings.update({k: saved[k] for k in RUN_DEFAULTS if k in saved})
        if "momentum" not in saved and saved.get("optimizer") in MOMENTUM_OPTIMIZERS:  # stored before it was
            settings["momentum"] = OPTIMIZER_HYPER[saved["optimizer"]][0]
        if "hidden" not in saved and "sizes" in saved:  # settings stored before "hidden" was
            settings["hidden"] = list(saved["sizes"][1:-1])
        clash = [f"{_flag(k, given[k])} (the run has {_flag(k, settings[k]).split(' ', 1)[1]})"
                 for k in IDENTITY if k in given and given[k] != settings[k]]
        if clash:
            raise CLIError(f"--resume: {', '.join(clash)}; the run's settings are in its checkpoint: "
                           f"leave these out, or start a new --out")
        if "iters" in given or "epochs" in given:  # the length may change; the other goes
            settings["iters"] = settings["epochs"] = None
    if "data_dir" in given:  # stored for a resume, which may start from another folder
        given["data_dir"] = os.path.abspath(given["data_dir"])
    settings.update(given)
    if settings["optimizer"] == LBFGS:
        wrong = [_flag(k, given[k]).split(" ")[0] for k in LBFGS_REFUSES if k in given]
        if wrong:
            raise CLIError(f"--optimizer lbfgs: {', '.join(wrong)} do not apply (a full-batch method: "
                           f"--iters sets its iterations, --weight-decay its L2 term, --tol its gradient "
                           f"tolerance)", USAGE_ERROR)
        settings["epochs"] = None
        if settings["iters"] is None:
            settings["iters"] = LBFGS_ITERS
        return settings
    if settings["lr"] is None:
        settings["lr"] = DEFAULT_LR[settings["optimizer"]]
    if settings["optimizer"] in MOMENTUM_OPTIMIZERS:
        if settings["momentum"] is None:
            settings["momentum"] = OPTIMIZER_HYPER[settings["optimizer"]][0]
    elif settings["momentum"] is not None:
        raise CLIError(f"--momentum is for --optimizer momentum or nesterov, not {settings['optimizer']}",
                       USAGE_ERROR)
    if settings["iters"] is None and settings["epochs"] is None:
        settings["epochs"] = DEFAULT_EPOCHS
    return settings


def hold_out(x, t, fraction, seed):
    """(x, t, (x_val, t_val)): ceil(fraction * N) rows drawn by `seed` held out, both parts in
    their original order."""
    n_val = math.ceil(fraction * len(x))
    if not 0 < n_val < len(x):
        raise CLIError(f"--validation-fraction {fraction:g} leaves no rows to train or to validate on")
    held = np.zeros(len(x), bool)
    held[np.random.default_rng(seed).permutation(len(x))[:n_val]] = True
    return x[~held], t[~held], (x[held], t[held])


def load_data(dataset, data_dir, download, say):
    """((x, t), (x_test, t_test), description); MNIST falls back to the embedded sample."""
    from fastbp import datasets

    loader = datasets.load_mnist if dataset == "mnist" else datasets.load_fashion_mnist
    try:
        (x, t), (xt, tt) = loader(root=data_dir, download=download)
        where = data_dir or datasets.locate(dataset, None, False)
        return (x, t), (xt, tt), f"{dataset} from {where}"
    except (FileNotFoundError, datasets.DownloadError) as e:
        if data_dir is not None or dataset != "mnist":
            raise CLIError(str(e)) from None
    except ValueError as e:  # a malformed file, or another data set's
        raise CLIError(str(e)) from None
    (x, t), (xt, tt) = datasets.load_mnist_sample()
    why = "none could be downloaded" if download is not False else "downloads are off"
    say(f"fastbp: no full MNIST found and {why}; training on the embedded sample "
        f"({len(x)} train / {len(xt)} test images)")
    return (x, t), (xt, tt), "mnist embedded sample"


# -- the run folder: claimed by one process at a time, never reused by a new run

def new_run_folder(dataset):
    """A folder runs/<dataset>-<time> created here and now (exclusive: -2, -3, ... on collision)."""
    stem = os.path.join("runs", f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs("runs", exist_ok=True)
    for k in range(1, 10000):
        path = stem if k == 1 else f"{stem}-{k}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise CLIError(f"cannot find a free folder name {stem}-N")


def _lock_folder(out):
    """An exclusive lock on the folder itself (flock on its descriptor), held until exit;
    another fastbp train on the same folder is refused instead of overwriting it."""
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): the exclusive mkdir above is all there is
        return None
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise CLIError(f"{out} is in use by another fastbp train") from None
    return fd


def _holds_run(out):
    return any(os.path.exists(os.path.join(out, f)) for f in ("checkpoint.npz", "params.npz", "metrics.json"))


@contextlib.contextmanager
def run_folder(out, resume, dataset):
    """Yield the run's folder, created (new runs) and locked; removed again if this process
    created it and left it empty (an error or an interruption before anything was written)."""
    if resume and not out:
        raise CLIError("--resume needs the --out folder of the run to continue")
    created = False
    try:
        if out is None:
            out, created = new_run_folder(dataset), True
        else:
            created = not os.path.isdir(out)
            os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create {out}: {e.strerror}") from None
    lock = _lock_folder(out)
    try:
        if resume and not os.path.isfile(os.path.join(out, "checkpoint.npz")):
            raise CLIError(f"--resume: no checkpoint at {os.path.join(out, 'checkpoint.npz')}")
        if not resume and _holds_run(out):
            raise CLIError(f"{out} already holds a run; continue it with --resume or choose another --out")
        for name in os.listdir(out):  # a run killed mid-write leaves its temporary file behind
            if name.startswith(".fastbp-") and name.endswith(".tmp"):
                os.unlink(os.path.join(out, name))
        yield out
    finally:
        if lock is not None:
            os.close(lock)
        if created and not os.listdir(out):
            os.rmdir(out)


class Signals:
    """SIGINT and SIGTERM set `signum` instead of killing the process, so training stops
    between chunks of steps with everything consistent; a second one exits at once (the
    files being written stay whole: each is renamed into place only when complete). The
    old handlers come back on exit."""

    def __init__(self):
        self.signum = None

    def _handle(self, signum, frame):
        if self.signum is not None:
            print(f"fastbp: {signal.Signals(signum).name} again: stopping without writing", file=sys.stderr,
                  flush=True)
            raise SystemExit(EXIT_ON_SIGNAL[signum])
        self.signum = signum

    def __enter__(self):
        self.old = {s: signal.signal(s, self._handle) for s in EXIT_ON_SIGNAL}
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)

    def __call__(self):
        return self.signum is not None


class Ranks:
    """Who does what under --mpi (mpiexec -n R fastbp train --mpi ...): rank 0 owns the run
    folder, every file and every line of output; every rank loads the data and trains
    (fit(comm=...)). Without --mpi: one rank, no MPI. A CLIError reaches every rank, so
    none is left waiting; only rank 0 prints it (`quiet` on the others)."""

    def __init__(self, mpi):
        self.comm, self.rank, self.size = None, 0, 1
        if mpi:
            try:
                from mpi4py import MPI
            except ImportError as e:
                raise CLIError(f"--mpi needs mpi4py and an MPI library: pip install 'fastbp[mpi]' ({e})",
                               USAGE_ERROR) from None
            self.comm, self.rank, self.size = MPI.COMM_WORLD, MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()

    @property
    def root(self):
        return self.rank == 0

    def from_root(self, fn, shared=lambda result: result):
        """fn() on rank 0, which gets its result; the other ranks get shared(result), or its CLIError."""
        if self.comm is None:
            return fn()
        if self.root:
            try:
                result = fn()
            except CLIError as e:
                self.comm.bcast(("error", str(e), e.status))
                raise
            self.comm.bcast(("ok", shared(result)))
            return result
        msg = self.comm.bcast(None)
        if msg[0] == "error":
            raise CLIError(msg[1], msg[2], quiet=True)
        return msg[1]

    def on_every(self, fn):
        """fn() on every rank; a CLIError on any is raised on every rank."""
        if self.comm is None:
            return fn()
        try:
            result, err = fn(), None
        except CLIError as e:
            result, err = None, e
        errors = self.comm.allgather(None if err is None else (str(err), err.status))
        for rank, e in enumerate(errors):
            if e is not None:
                raise CLIError(e[0] if rank == 0 else f"rank {rank}: {e[0]}", e[1], quiet=not self.root)
        return result

    def max(self, value):
        if self.comm is None:  # without --mpi, mpi4py (an optional extra) may not be installed
            return value
        from mpi4py import MPI
        return self.comm.allreduce(value, op=MPI.MAX)


def train(args):
    ranks = Ranks(args.mpi)
    if ranks.comm is None:
        return _train(args, ranks)
    from fastbp.distributed import abort_on_error
    with abort_on_error(ranks.comm, keep=CLIError):  # an error on one rank alone: no rank left waiting
        return _train(args, ranks)


def _train(args, ranks):
    import fastbp
    from fastbp.checkpoints import load_checkpoint, read_config
    from fastbp.compiling import ensure_compiled
    from fastbp.sparse import SparseRows
    from fastbp.training import TrainingDiverged, TrainState, fit, total_steps

    progress = ranks.root and not args.no_progress and sys.stderr.isatty()

    def say(msg):
        if not ranks.root:
            return
        if progress:  # printed above the bar instead of through it (tqdm.write prints plainly when none is up)
            from tqdm.auto import tqdm
            tqdm.write(msg)
        else:
            print(msg, flush=True)

    with contextlib.ExitStack() as stack:
        stopped = stack.enter_context(Signals())

        def settings():  # rank 0: the run folder (created, locked) and the run's settings
            if args.data_dir is not None and not os.path.isdir(args.data_dir):
                raise CLIError(f"--data-dir {args.data_dir}: no such directory")
            out = stack.enter_context(run_folder(args.out, args.resume, args.dataset or "mnist"))
            try:
                saved = read_config(os.path.join(out, "checkpoint.npz")) if args.resume else None
            except ValueError as e:
                raise CLIError(str(e)) from None
            s = resolve_settings(args, saved)
            if s["optimizer"] == LBFGS and (args.mpi or s["device"] != "cpu"):
                raise CLIError("--optimizer lbfgs runs in one process on the CPU: no --mpi, no --device cuda",
                               USAGE_ERROR)
            if s["device"] == "cuda":  # given, or the resumed run's
                from fastbp.cuda import DeviceUnavailable, require_cuda
                try:
                    require_cuda()
                except DeviceUnavailable as e:
                    raise CLIError(str(e)) from None
            return out, saved, s

        out, saved, s = ranks.from_root(settings)
        ckpt = os.path.join(out, "checkpoint.npz")
        if s["device"] == "cuda" and ranks.comm is not None:
            from fastbp.distributed import use_local_gpu
            use_local_gpu(ranks.comm)
        def load():
            return load_data(s["dataset"], s["data_dir"], s["download"], say)
        # rank 0 first, so that a download into a shared cache happens once; then the others
        data = ranks.from_root(load, shared=lambda d: None)
        (x, t), (xt, tt), source = ranks.on_every(lambda: data if ranks.root else load())
        validation = None
        if s["early_stopping"]:  # rows held out by the run's seed: the same ones on a resume
            x, t, validation = ranks.on_every(lambda: hold_out(x, t, s["validation_fraction"], s["seed"]))
        if s["batch_size"] > len(x):
            raise CLIError(f"--batch-size {s['batch_size']} is larger than the {len(x)} training images",
                           quiet=not ranks.root)
        steps, per_epoch = total_steps(len(x), s["batch_size"], s["iters"], s["epochs"])
        sizes = [x.shape[1], *s["hidden"], 10]

        def resumed():  # rank 0: the checkpoint, or None when the run is already complete
            if saved.get("train_size", len(x)) != len(x):
                raise CLIError(f"--resume: the run trained on {saved['train_size']} images; "
                               f"this {source} has {len(x)}")
            try:
                net, state = load_checkpoint(ckpt, device=s["device"])
            except ValueError as e:
                raise CLIError(str(e)) from None
            length = f"--iters {steps}" if s["iters"] else f"--epochs {s['epochs']} ({steps} steps)"
            if steps < state.step:
                raise CLIError(f"--resume: {out} is already at step {state.step} (epoch {state.epoch}); "
                               f"{length} would move it backwards, and a resume never does")
            if steps == state.step and os.path.isfile(os.path.join(out, "params.npz")):
                say(f"fastbp: {out} is complete at step {state.step} (epoch {state.epoch}); nothing to do "
                    f"(a larger --epochs or --iters trains on)")
                return None
            say(f"fastbp: resuming {out} at step {state.step} (epoch {state.epoch})")
            return net, state

        # rank 0: (net, state) or None; the others: whether there is a run to continue
        loaded = ranks.from_root(resumed, shared=lambda r: r is not None) if saved is not None else False
        if saved is not None and not loaded:
            return 0
        if ranks.root and loaded:
            net, state = loaded
        else:  # a new run; under --mpi the other ranks' networks get rank 0's state in fit
            net = fastbp.Network(sizes, activation=s["activation"], dtype=s["dtype"], seed=s["seed"],
                                 device=s["device"], loss=s["loss"])
            state = TrainState(net, s["seed"])
        net.sparse = SPARSE_CHOICES[s["sparse"]]
        config = {**s, "sizes": sizes, "train_size": len(x), "steps": steps, "ranks": ranks.size}
        n_train, n_test = len(x), len(xt)
        x, xt = net.as_input(x, "x"), net.as_input(xt, "x_test")  # once here, not again in fit
        first = "sparse" if isinstance(x, SparseRows) else "dense"
        on = f" on {ranks.size} MPI ranks" if ranks.comm is not None else ""
        if s["lr_schedule"] != "constant":
            on += f", {s['lr_schedule']} learning rate"
        if validation is not None:
            on += f", early stopping on {len(validation[1])} held-out images"
        results = Results(out, net, config, source, f"{net} on {source}")
        if s["optimizer"] == LBFGS:
            say(f"fastbp: {source}: {n_train} train / {n_test} test; {net}, {first} first layer; L-BFGS over "
                f"all {n_train} images, up to {s['iters']} iterations; results in {out}")
            ensure_compiled(net.dtype, sparse=isinstance(x, SparseRows))
            return _train_lbfgs(net, (x, t), (xt, tt), s, results, stopped, say)
        say(f"fastbp: {source}: {n_train} train / {n_test} test; {net}, {first} first layer; "
            f"{s['optimizer']} lr {s['lr']:g}, "
            f"batch {s['batch_size']}, {steps} steps ({per_epoch} per epoch){on}; results in {out}")
        saved_epoch = [state.epoch if saved is not None else None]

        def on_epoch(st):
            every = s["checkpoint_every"]
            if every and (st.epoch % every == 0 or st.step == steps):
                if ranks.root:
                    results.checkpoint(st)
                    results.write(st, "running", params=False)
                saved_epoch[0] = st.epoch

        start_step = state.step
        if s["device"] == "cpu":  # before the clock starts (the cuda kernels compiled with the Network)
            ensure_compiled(net.dtype, sparse=isinstance(x, SparseRows))
        started = time.perf_counter()
        try:
            history = fit(net, x, t, iters=steps, batch_size=s["batch_size"], lr=s["lr"],
                          optimizer=s["optimizer"], weight_decay=s["weight_decay"], momentum=s["momentum"],
                          validation_data=validation, lr_schedule=s["lr_schedule"], power_t=s["power_t"],
                          early_stopping=s["early_stopping"], patience=s["patience"], tol=s["tol"], seed=s["seed"],
                          eval_data=(xt, tt), progress=progress, verbose=ranks.root, state=state,
                          on_epoch=on_epoch, should_stop=stopped, comm=ranks.comm)
        except TrainingDiverged as e:
            kept = (f"last good checkpoint kept: {ckpt} (epoch {saved_epoch[0]})"
                    if saved_epoch[0] is not None else "no checkpoint was written (use --checkpoint-every)")
            raise CLIError(f"training diverged: {e}; {kept}; try a smaller --lr", quiet=not ranks.root) from None
        results.seconds = time.perf_counter() - started
        signum = ranks.max(stopped.signum or 0)  # under --mpi the signal may have reached one rank only
        if signum and state.step < steps:
            name = signal.Signals(signum).name
            if state.step == start_step:
                say(f"fastbp: interrupted ({name}) before step {start_step + 1}; nothing new to write")
                return EXIT_ON_SIGNAL[signum]
            if ranks.root:
                results.checkpoint(state)
                results.write(state, "interrupted", signal=name)
                print(f"fastbp: interrupted ({name}) at step {state.step} of {steps} (epoch {state.epoch}); "
                      f"wrote {out}/params.npz, metrics.json, curves.png, checkpoint.npz; continue with "
                      f"fastbp train --resume --out {out}", file=sys.stderr, flush=True)
            return EXIT_ON_SIGNAL[signum]
        if ranks.root:
            if saved_epoch[0] != state.epoch:  # every run can be extended with --resume
                results.checkpoint(state)
            results.write(state, "finished")
        early = f" (stopped early after epoch {state.stopped_early})" if state.stopped_early else ""
        say(f"fastbp: test accuracy {history['eval_acc'][-1]:.4f} after {state.step} steps{early} in "
            f"{results.seconds:.1f} s; wrote {out}/params.npz, metrics.json, curves.png, checkpoint.npz")
        return 0


def _train_lbfgs(net, train, test, s, results, stopped, say):
    """--optimizer lbfgs: fastbp.fit_lbfgs over every training image, --weight-decay λ as the
    L2 term (alpha = λ·N, so the gradient gets λ·W as with the minibatch optimizers). Each
    iteration is recorded as an epoch of one step (its loss the L-BFGS objective, then both
    accuracies and the test loss), so the output files read as for the others. A signal
    stops it after the iteration under way; there is no checkpoint: L-BFGS keeps no state
    a run could resume from."""
    from fastbp.lbfgs import fit_lbfgs
    from fastbp.training import TrainState, epoch_line

    (x, t), (xt, tt) = train, test
    state = TrainState(net, s["seed"])
    h = state.history
    started = last = time.perf_counter()

    def record(r):
        nonlocal last
        now = time.perf_counter()
        state.step = state.epoch = state.step + 1
        for key, v in (("loss", float(r.fun)), ("epoch_step", state.step), ("epoch_loss", float(r.fun)),
                       ("train_acc", net.accuracy(x, t)), ("eval_acc", net.accuracy(xt, tt)),
                       ("eval_loss", net.loss(xt, tt)), ("val_acc", None), ("epoch_seconds", now - last)):
            h[key].append(v)
        last = now
        say(epoch_line(state))
        if stopped():
            raise StopIteration

    res = fit_lbfgs(net, x, t, alpha=s["weight_decay"] * len(t), max_iter=s["iters"], tol=s["tol"],
                    callback=record)
    results.seconds = time.perf_counter() - started
    if stopped():
        name = signal.Signals(stopped.signum).name
        results.write(state, "interrupted", signal=name)
        print(f"fastbp: interrupted ({name}) after L-BFGS iteration {state.step} of up to {s['iters']}; wrote "
              f"{results.out}/params.npz, metrics.json, curves.png (an L-BFGS run does not resume)",
              file=sys.stderr, flush=True)
        return EXIT_ON_SIGNAL[stopped.signum]
    results.write(state, "finished")
    acc = f"test accuracy {h['eval_acc'][-1]:.4f} after" if h["eval_acc"] else "stopped before"
    say(f"fastbp: {acc} {state.step} L-BFGS iterations ({res.message}) in {results.seconds:.1f} s; wrote "
        f"{results.out}/params.npz, metrics.json, curves.png")
    return 0


class Results:
    """What a run writes into its folder, each file atomically and with the user's umask."""

    def __init__(self, out, net, config, source, title):
        self.out, self.net, self.config, self.source, self.title = out, net, config, source, title
        self.seconds = 0.0

    def path(self, name):
        return os.path.join(self.out, name)

    def checkpoint(self, state):
        from fastbp.checkpoints import save_checkpoint
        save_checkpoint(self.path("checkpoint.npz"), self.net, state, self.config)

    def write(self, state, status, params=True, signal=None):
        """params.npz (unless params=False), metrics.json and curves.png for the run so far."""
        from fastbp.files import atomic_write_text
        h = state.history
        lbfgs = self.config.get("optimizer") == LBFGS  # no checkpoint, no resume
        if params:
            self.net.save(self.path("params.npz"))
        metrics = {"status": status, "step": state.step, "epoch": state.epoch, "stopped_early": state.stopped_early,
                   "config": self.config, "data": self.source, "seconds": self.seconds,
                   "final": None, "history": h}
        if h["epoch_step"]:  # the last completed epoch's numbers
            metrics["final"] = {"epoch": state.epoch, "loss": h["epoch_loss"][-1],
                                "train_acc": h["train_acc"][-1], "test_acc": h["eval_acc"][-1],
                                "val_acc": h["val_acc"][-1],
                                "test_loss": h["eval_loss"][-1]}
        if signal is not None:
            metrics["interrupted"] = {"step": state.step, "signal": signal,
                                      "note": f"interrupted at step {state.step} by {signal}; " +
                                              ("this run does not resume" if lbfgs else
                                               "--resume continues from checkpoint.npz")}
        atomic_write_text(self.path("metrics.json"), json.dumps(metrics, indent=1))
        note = {"finished": "", "running": f", step {state.step} (running)",
                "interrupted": f", interrupted at step {state.step}"}[status]
        name = LOSS_NAMES[self.net.loss_type]
        if lbfgs and self.config.get("weight_decay"):
            name += " + L2 term"
        plot_curves(self.path("curves.png"), h, self.title + note, name, full_batch=lbfgs)


LOSS_NAMES = {"softmax_ce": "cross-entropy loss", "mse": "mean squared error", "logistic": "binary cross-entropy"}


def plot_curves(path, history, title, loss_name=LOSS_NAMES["softmax_ce"], full_batch=False):
    """Loss per step (and its per-epoch mean) beside train/test accuracy per epoch, as a PNG;
    full_batch: each step is an L-BFGS iteration over the whole set (one line of losses)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from fastbp.files import atomic_file

    loss = np.asarray(history["loss"])
    epochs = np.arange(1, len(history["train_acc"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if full_batch:
        a.plot(np.arange(1, len(loss) + 1), loss, "o-", ms=3)
        a.set(xlabel="L-BFGS iteration", ylabel=loss_name, yscale="log", title="loss over the whole training set")
    else:
        a.plot(np.arange(1, len(loss) + 1), loss, lw=0.5, alpha=0.4, label="minibatch loss")
        a.plot(history["epoch_step"], history["epoch_loss"], "o-", ms=3, label="epoch mean")
        a.set(xlabel="step", ylabel=loss_name, yscale="log", title="loss")
        a.legend()
    b.plot(epochs, history["train_acc"], "o-", ms=3, label="train")
    if any(v is not None for v in history["eval_acc"]):
        b.plot(epochs, history["eval_acc"], "s-", ms=3, label="test")
    if any(v is not None for v in history.get("val_acc", [])):
        b.plot(epochs, history["val_acc"], "^-", ms=3, label="validation")
    b.set(xlabel="L-BFGS iteration" if full_batch else "epoch", ylabel="accuracy", title="accuracy")
    b.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    b.grid(alpha=0.3)
    b.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        return train(args)
    except CLIError as e:
        if not e.quiet:
            print(f"fastbp: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:  # before the handlers are up, or after they are gone
        print("fastbp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
