"""A real `fastbp train` killed with SIGKILL, resumed, and trainings racing on a cold cache."""
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
from fastbp.checkpoints import load_checkpoint


def cli(args, env):
    return [sys.executable, "-m", "fastbp", "train", *args], dict(os.environ, **env)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    fake_mnist(folder, n_train=1000, n_test=100)
    return folder


def stamp(path):
    # which write of the file this is (None: not there): each one replaces it (atomic_savez)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def run_args(data, out, epochs):
    return ["--data-dir", str(data), "--no-download", "--no-progress", "--hidden", "64",
            "--batch-size", "50", "--optimizer", "adam", "--lr", "0.001", "--seed", "7",
            "--epochs", str(epochs), "--checkpoint-every", "1", "--out", str(out)]


def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path, data):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    # an epoch here is ~1 ms of training and ~0.3 s of writing the checkpoint, metrics and
    # curves (every epoch); each killed process first writes a checkpoint of its own
    # (training, not importing, when it dies), then lives `delay` longer: a few epochs each
    epochs = 40
    cmd, e = cli(run_args(data, tmp_path / "whole", epochs), env)
    subprocess.run(cmd, env=e, check=True, capture_output=True, timeout=300)

    out = tmp_path / "killed"
    ckpt = out / "checkpoint.npz"
    kills = 0
    for delay in (0.3, 0.7, 0.2):  # three kills, at different moments of the run
        before = stamp(ckpt)
        cmd, e = cli(run_args(data, out, epochs) + (["--resume"] if before else []), env)
        proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and (
                stamp(ckpt) in (None, before)):
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


FIT_VERBOSE = ("import numpy as np, fastbp\n"
               "net = fastbp.Network([3, 4, 2], dtype='float64', seed=0)\n"
               "fastbp.fit(net, np.ones((8, 3)), np.zeros(8, int), batch_size=4, verbose=True)\n")


def test_float32_and_float64_trainings_race_on_a_cold_cache(tmp_path, data):
    # different signatures compiled at the same moment into one cache: the case where two
    # processes could number their cache files alike; compile_lock serialises first compiles.
    # Beside them fit(verbose=True) in a fifth process: on the cold cache it says it is
    # compiling (it waits for the lock or compiles), on the warm one it does not
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    args = ["--data-dir", str(data), "--no-download", "--no-progress", "--epochs", "2", "--seed", "3"]
    procs = []
    for dtype in ("float32", "float64", "float64", "float32"):
        cmd, e = cli([*args, "--dtype", dtype, "--out", str(tmp_path / f"run-{dtype}-{len(procs)}")], env)
        procs.append(subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    fit_env = dict(os.environ, **env)
    procs.append(subprocess.Popen([sys.executable, "-c", FIT_VERBOSE], env=fit_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "fastbp: compiling kernels (first run only) ..." in err
    assert results[-1][0].startswith("epoch   1  step      2  loss ")
    assert any((tmp_path / "numba").rglob("*.nbi"))  # the shared cache was really used
    for dtype in ("float32", "float64"):
        runs = [fastbp.Network.load(p / "params.npz") for p in tmp_path.glob(f"run-{dtype}-*")]
        assert len(runs) == 2 and runs[0].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(runs[0].flat_params, runs[1].flat_params)
    # a later process loads everything from that cache instead of compiling; machine code
    # compiled here or loaded from a cache gives the same bits (fastmath made them differ)
    cmd, e = cli([*args, "--out", str(tmp_path / "again")], env)
    res = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "compiling" not in res.stderr, res.stderr
    again = fastbp.Network.load(tmp_path / "again" / "params.npz")
    first = fastbp.Network.load(next(tmp_path.glob("run-float32-*")) / "params.npz")
    np.testing.assert_array_equal(again.flat_params, first.flat_params)
    res = subprocess.run([sys.executable, "-c", FIT_VERBOSE], env=fit_env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("epoch   1  step      2  loss ") and "compiling" not in res.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_keeps_the_work_and_resume_alone_continues_it(tmp_path, data, sig, code):
    # no --checkpoint-every: before, Ctrl-C or SIGTERM left the folder empty
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["--data-dir", str(data), "--no-download", "--no-progress", "--hidden", "64", "--batch-size",
            "10", "--optimizer", "adam", "--seed", "7", "--epochs", "60"]  # 100 steps an epoch: 2 chunks
    cmd, e = cli(args + ["--out", str(tmp_path / "whole")], env)
    subprocess.run(cmd, env=e, check=True, capture_output=True, timeout=300)

    out = tmp_path / "stopped"
    cmd, e = cli(args + ["--out", str(out)], env)
    proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # training is under way once an epoch has ended
        if line.startswith("epoch   2"):
            break
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "epoch  60" not in stdout, "the run finished before the signal; make it longer"
    err = stderr.strip().splitlines()
    name = signal.Signals(sig).name
    assert len(err) == 1 and err[0].startswith(f"fastbp: interrupted ({name}) at step "), stderr
    assert err[0].endswith(f"continue with fastbp train --resume --out {out}")
    m = json.loads((out / "metrics.json").read_text())
    step = m["interrupted"]["step"]
    assert m["status"] == "interrupted" and m["interrupted"]["signal"] == name and step >= 200
    assert len(m["history"]["loss"]) == step == m["step"] and f"of 6000 (epoch {m['epoch']})" in err[0]
    assert m["final"]["epoch"] == m["epoch"] == len(m["history"]["train_acc"])
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert fastbp.Network.load(out / "params.npz").sizes == (784, 64, 10)
    _, state = load_checkpoint(out / "checkpoint.npz")
    assert state.step == step

    cmd, e = cli(["--resume", "--out", str(out)], env)  # the stored settings, nothing repeated
    res = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"resuming {out} at step {step}" in res.stdout
    a = fastbp.Network.load(tmp_path / "whole" / "params.npz")
    b = fastbp.Network.load(out / "params.npz")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    done = json.loads((out / "metrics.json").read_text())
    assert done["status"] == "finished" and "interrupted" not in done
    assert done["history"]["loss"] == whole["history"]["loss"]
    assert done["final"]["loss"] == whole["final"]["loss"] == whole["history"]["epoch_loss"][-1]


def test_checkpoints_write_metrics_and_curves_too(tmp_path, data):
    out = tmp_path / "run"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd, e = cli(run_args(data, out, 3), env)
    subprocess.run(cmd, env=e, check=True, capture_output=True, timeout=300)
    # the state after the last checkpoint as a SIGKILL would leave it: metrics and curves are there
    (out / "params.npz").unlink()
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "finished" and m["step"] == 60
    cmd, e = cli(run_args(data, tmp_path / "killed", 150), env)
    proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch   3"):
            break
    proc.kill()
    proc.communicate()
    m = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert m["status"] == "running" and m["step"] >= 40 and len(m["history"]["train_acc"]) == m["epoch"]
    assert (tmp_path / "killed" / "curves.png").exists() and not (tmp_path / "killed" / "params.npz").exists()


def test_import_fastbp_gives_its_modules_and_a_clone_beside_a_script_does_not_shadow_it(tmp_path):
    # a clone named fastbp next to the user's script: the folder is on sys.path first
    (tmp_path / "fastbp" / "fastbp").mkdir(parents=True)
    (tmp_path / "fastbp" / "README.md").write_text("a clone")
    script = tmp_path / "script.py"
    script.write_text("import fastbp\n"
                      "print(fastbp.Network.__name__, fastbp.datasets.load_mnist.__name__,\n"
                      "      fastbp.layers.Affine.__name__, fastbp.graph.Graph.__name__)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["Network", "load_mnist", "Affine", "Graph"]


def test_a_signal_stops_an_lbfgs_run_after_its_iteration_and_keeps_it(tmp_path, data):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "lbfgs"
    cmd, e = cli(["--data-dir", str(data), "--no-download", "--no-progress", "--hidden", "64", "--optimizer",
                  "lbfgs", "--iters", "100000", "--tol", "0", "--out", str(out)], env)
    proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # iterations are under way
        if line.startswith("epoch   2"):
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    err = stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastbp: interrupted (SIGINT) after L-BFGS iteration "), stderr
    assert err[0].endswith("(an L-BFGS run does not resume)")
    m = json.loads((out / "metrics.json").read_text())
    k = m["interrupted"]["step"]
    assert m["status"] == "interrupted" and k >= 2 and m["step"] == len(m["history"]["loss"]) == k
    assert "does not resume" in m["interrupted"]["note"] and f"iteration {k} " in err[0]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and not (out / "checkpoint.npz").exists()
    net = fastbp.Network.load(out / "params.npz")  # the parameters of the last iteration recorded
    (x, t), _ = fastbp.datasets.load_mnist(root=str(data), download=False)
    assert net.accuracy(x, t) == m["history"]["train_acc"][-1]
