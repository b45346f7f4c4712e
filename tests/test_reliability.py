"""A real `fastbp train` killed with SIGKILL, resumed, and two trainings racing on a cold cache."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastbp
from conftest import fake_mnist
from fastbp.train import load_checkpoint


def cli(args, env):
    return [sys.executable, "-m", "fastbp", "train", *args], dict(os.environ, **env)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    fake_mnist(folder, n_train=1000, n_test=100)
    return folder


def run_args(data, out, epochs):
    return ["--data-dir", str(data), "--no-download", "--no-progress", "--hidden", "64",
            "--batch-size", "50", "--optimizer", "adam", "--lr", "0.001", "--seed", "7",
            "--epochs", str(epochs), "--checkpoint-every", "1", "--out", str(out)]


def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path, data):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    epochs = 150
    cmd, e = cli(run_args(data, tmp_path / "whole", epochs), env)
    subprocess.run(cmd, env=e, check=True, capture_output=True, timeout=300)

    out = tmp_path / "killed"
    ckpt = out / "checkpoint.npz"
    kills = 0
    for delay in (0.3, 0.7, 0.2):  # three kills, at different moments of the run
        cmd, e = cli(run_args(data, out, epochs) + (["--resume"] if ckpt.exists() else []), env)
        proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        # whatever the moment, the last checkpoint loads whole and is a consistent state
        with np.load(ckpt, allow_pickle=False) as z:
            config = json.loads(str(z["ckpt_config"]))
        net, state = load_checkpoint(ckpt, config)
        assert state.step == 20 * state.epoch and len(state.history["loss"]) == state.step
    assert kills >= 2, "training finished before it could be killed; make the run longer"
    assert not (out / "params.npz").exists()
    cmd, e = cli(run_args(data, out, epochs) + ["--resume"], env)
    res = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stdout
    a = fastbp.Network.load(tmp_path / "whole" / "params.npz")
    b = fastbp.Network.load(out / "params.npz")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_divergence_names_the_step_and_keeps_the_last_checkpoint(tmp_path, data):
    out = tmp_path / "run"
    args = ["--data-dir", str(data), "--no-download", "--no-progress", "--lr", "1e30",
            "--epochs", "3", "--checkpoint-every", "1", "--out", str(out)]
    cmd, e = cli(args, {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    res = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "training diverged: loss became" in err[0] and "at step " in err[0]
    assert "no checkpoint was written" in err[0] or "last good checkpoint kept" in err[0]
    assert not (out / "params.npz").exists()


def test_two_trainings_on_a_cold_numba_cache(tmp_path, data):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    procs = []
    for k in range(2):
        cmd, e = cli(["--data-dir", str(data), "--no-download", "--no-progress", "--epochs", "2",
                      "--seed", "3", "--out", str(tmp_path / f"run{k}")], env)
        procs.append(subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    a, b = (fastbp.Network.load(tmp_path / f"run{k}" / "params.npz") for k in range(2))
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert any((tmp_path / "numba").rglob("*.nbi"))  # the shared cache was really used


def test_float32_and_float64_trainings_race_on_a_cold_cache(tmp_path, data):
    # different signatures compiled at the same moment into one cache: the case where two
    # processes could number their cache files alike; compile_lock serialises first compiles
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    args = ["--data-dir", str(data), "--no-download", "--no-progress", "--epochs", "2", "--seed", "3"]
    procs = []
    for dtype in ("float32", "float64", "float64", "float32"):
        cmd, e = cli([*args, "--dtype", dtype, "--out", str(tmp_path / f"run-{dtype}-{len(procs)}")], env)
        procs.append(subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    for dtype in ("float32", "float64"):
        runs = [fastbp.Network.load(p / "params.npz") for p in tmp_path.glob(f"run-{dtype}-*")]
        assert len(runs) == 2 and runs[0].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(runs[0].flat_params, runs[1].flat_params)
    # a later process loads everything from that cache instead of compiling; machine code
    # compiled here or loaded from a cache gives the same bits (fastmath made them differ)
    cmd, e = cli([*args, "--out", str(tmp_path / "again")], env)
    assert subprocess.run(cmd, env=e, capture_output=True, timeout=300).returncode == 0
    again = fastbp.Network.load(tmp_path / "again" / "params.npz")
    first = fastbp.Network.load(next(tmp_path.glob("run-float32-*")) / "params.npz")
    np.testing.assert_array_equal(again.flat_params, first.flat_params)
