"""`fastbp train`: train an MLP on MNIST or Fashion-MNIST from the command line.

    fastbp train --dataset mnist --hidden 50 --epochs 10 --lr 0.1 --out runs/mnist

Writes OUT/params.npz (Network.load reads it), OUT/metrics.json,
OUT/curves.png and, with --checkpoint-every N, OUT/checkpoint.npz every N
epochs (--resume continues from it). Errors are one line on stderr and a
non-zero exit status, never a traceback.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

USAGE_ERROR, RUN_ERROR = 2, 1


class CLIError(Exception):
    """A problem with the arguments or the data, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise CLIError(f"{self.prog}: {message}")


def _positive(kind):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not (v > 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return v
    return parse


def _non_negative_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return v


def build_parser():
    from fastbp.kernels.optimizers import OPTIMIZERS
    from fastbp.network import ACTIVATIONS, DEVICES

    parser = _Parser(prog="fastbp", description="numba-compiled backpropagation")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tr = sub.add_parser("train", help="train an MLP on MNIST or Fashion-MNIST")
    tr.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    tr.add_argument("--data-dir", help="folder with the four IDX files (default: search, then download)")
    tr.add_argument("--no-download", action="store_true", help="never download")
    tr.add_argument("--hidden", type=_positive(int), nargs="+", default=[50], metavar="N",
                    help="hidden layer widths (default: 50)")
    tr.add_argument("--activation", default="relu", choices=list(ACTIVATIONS))
    length = tr.add_mutually_exclusive_group()
    length.add_argument("--iters", type=_positive(int), help="training steps")
    length.add_argument("--epochs", type=_positive(int), help="passes over the data (default: 10)")
    tr.add_argument("--batch-size", type=_positive(int), default=100)
    tr.add_argument("--lr", type=_positive(float), default=0.1)
    tr.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS))
    tr.add_argument("--weight-decay", type=_non_negative_float, default=0.0)
    tr.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    tr.add_argument("--device", default="cpu", choices=list(DEVICES))
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", help="output folder (default: runs/<dataset>-<time>)")
    tr.add_argument("--checkpoint-every", type=_positive(int), metavar="N",
                    help="write OUT/checkpoint.npz every N epochs")
    tr.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


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
    except ValueError as e:  # a malformed file
        raise CLIError(str(e)) from None
    (x, t), (xt, tt) = datasets.load_mnist_sample()
    why = "none could be downloaded" if download else "downloads are off"
    say(f"fastbp: no full MNIST found and {why}; training on the embedded sample "
        f"({len(x)} train / {len(xt)} test images)")
    return (x, t), (xt, tt), "mnist embedded sample"


def train(args):
    import fastbp
    from fastbp.train import (TrainingDiverged, compile_for, fit, load_checkpoint, save_checkpoint,
                              total_steps)

    if args.device == "cuda":
        from fastbp.cuda import DeviceUnavailable, require_cuda
        try:
            require_cuda()
        except DeviceUnavailable as e:
            raise CLIError(str(e)) from None
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CLIError(f"--data-dir {args.data_dir}: no such directory")
    if args.resume and not args.out:
        raise CLIError("--resume needs the --out folder of the run to continue")
    out = args.out or os.path.join("runs", f"{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    ckpt = os.path.join(out, "checkpoint.npz")
    if args.resume and not os.path.isfile(ckpt):
        raise CLIError(f"--resume: no checkpoint at {ckpt}")
    if not args.resume and os.path.isdir(out) and \
            any(os.path.exists(os.path.join(out, f)) for f in ("checkpoint.npz", "params.npz")):
        raise CLIError(f"{out} already holds a run; continue it with --resume or choose another --out")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create {out}: {e.strerror}") from None
    for name in os.listdir(out):  # a run killed mid-write leaves its temporary file behind
        if name.startswith(".fastbp-") and name.endswith(".tmp"):
            os.unlink(os.path.join(out, name))

    progress = not args.no_progress and sys.stderr.isatty()

    def say(msg):
        if progress:  # printed above the bar instead of through it (tqdm.write prints plainly when none is up)
            from tqdm.auto import tqdm
            tqdm.write(msg)
        else:
            print(msg, flush=True)

    (x, t), (xt, tt), source = load_data(args.dataset, args.data_dir, not args.no_download, say)
    sizes = [x.shape[1], *args.hidden, 10]
    if args.batch_size > len(x):
        raise CLIError(f"--batch-size {args.batch_size} is larger than the {len(x)} training images")
    steps, per_epoch = total_steps(len(x), args.batch_size, args.iters,
                                   None if args.iters else (args.epochs or 10))
    config = {"dataset": args.dataset, "train_size": len(x), "sizes": sizes,
              "activation": args.activation, "dtype": args.dtype, "optimizer": args.optimizer,
              "lr": args.lr, "weight_decay": args.weight_decay, "batch_size": args.batch_size,
              "seed": args.seed}  # what a resumed run must share; its length may differ
    if args.resume:
        try:
            net, state = load_checkpoint(ckpt, config, device=args.device)
        except ValueError as e:
            raise CLIError(str(e)) from None
        say(f"fastbp: resuming {out} at step {state.step} (epoch {state.epoch})")
    else:
        net, state = fastbp.Network(sizes, activation=args.activation, dtype=args.dtype,
                                    seed=args.seed, device=args.device), None
    say(f"fastbp: {source}: {len(x)} train / {len(xt)} test; {net}; {args.optimizer} lr {args.lr}, "
        f"batch {args.batch_size}, {steps} steps ({per_epoch} per epoch)")
    saved_epoch = [state.epoch if state else None]

    def on_epoch(st):
        h = st.history
        say(f"epoch {st.epoch:3d}  step {st.step:6d}  loss {np.mean(h['loss'][-per_epoch:]):.4f}  "
            f"train acc {h['train_acc'][-1]:.4f}  test acc {h['eval_acc'][-1]:.4f}  "
            f"({h['epoch_seconds'][-1]:.2f} s)")
        if args.checkpoint_every and (st.epoch % args.checkpoint_every == 0 or st.step == steps):
            save_checkpoint(ckpt, net, st, config)
            saved_epoch[0] = st.epoch

    if args.device == "cpu":  # (cuda kernels compiled when the Network was made)
        compile_for(args.dtype, args.activation)  # one process at a time on a cold cache
    started = time.perf_counter()
    try:
        history = fit(net, x, t, iters=steps, batch_size=args.batch_size, lr=args.lr,
                      optimizer=args.optimizer, weight_decay=args.weight_decay, seed=args.seed,
                      eval_data=(xt, tt), progress=progress, state=state, on_epoch=on_epoch)
    except TrainingDiverged as e:
        kept = (f"last good checkpoint kept: {ckpt} (epoch {saved_epoch[0]})"
                if saved_epoch[0] is not None else "no checkpoint was written (use --checkpoint-every)")
        raise CLIError(f"training diverged: {e}; {kept}; try a smaller --lr") from None
    seconds = time.perf_counter() - started

    net.save(os.path.join(out, "params.npz"))
    metrics = {"config": {**config, "steps": steps}, "data": source, "seconds": seconds,
               "final": {"train_acc": history["train_acc"][-1], "test_acc": history["eval_acc"][-1],
                         "loss": history["loss"][-1]},
               "history": history}
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    plot_curves(os.path.join(out, "curves.png"), history, per_epoch, f"{net} on {source}")
    say(f"fastbp: test accuracy {history['eval_acc'][-1]:.4f} after {steps} steps in {seconds:.1f} s; "
        f"wrote {out}/params.npz, metrics.json, curves.png")
    return 0


def plot_curves(path, history, per_epoch, title):
    """Loss per step (and its per-epoch mean) beside train/test accuracy per epoch, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = np.asarray(history["loss"])
    epochs = np.arange(1, len(history["train_acc"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(np.arange(1, len(loss) + 1), loss, lw=0.5, alpha=0.4, label="minibatch loss")
    ends = np.asarray(history["epoch_step"])
    means = [loss[max(e - per_epoch, 0):e].mean() for e in ends]
    a.plot(ends, means, "o-", ms=3, label="epoch mean")
    a.set(xlabel="step", ylabel="cross-entropy loss", yscale="log", title="loss")
    a.legend()
    b.plot(epochs, history["train_acc"], "o-", ms=3, label="train")
    b.plot(epochs, history["eval_acc"], "s-", ms=3, label="test")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    b.grid(alpha=0.3)
    b.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        return train(args)
    except CLIError as e:
        print(f"fastbp: error: {e}", file=sys.stderr)
        return USAGE_ERROR if str(e).startswith("fastbp") else RUN_ERROR
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
