"""Checkpoints: a network, its TrainState and the run's settings in one .npz, written
atomically, read without pickles, every entry checked before anything is built."""
import json

import numpy as np

from fastbp.files import atomic_savez, load_npz
from fastbp.network import Network
from fastbp.training import PER_EPOCH as _PER_EPOCH, TrainState

_CKPT_KEYS = ["ckpt_opt_state", "ckpt_rng", "ckpt_step", "ckpt_epoch", "ckpt_loss", "ckpt_epoch_step",
              "ckpt_train_acc", "ckpt_eval_acc", "ckpt_epoch_seconds", "ckpt_config"]


def save_checkpoint(path, net, state, config):
    """Atomically write params, optimizer state, RNG state, step, history and the run's
    settings (`config`, a JSON-able dict) to path."""
    h = state.history
    floats = lambda v: np.array([np.nan if a is None else a for a in v], np.float64)  # noqa: E731
    atomic_savez(
        path, **net.file_arrays(),
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
    net = Network.from_arrays(arrays, path, device)
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
