"""`fastbp train` as a user runs it: a real subprocess, real files, one-line errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import fake_mnist, hiding
import fastbp

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")


def fastbp_cli(*args, cache, check=True, env=None):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), **(env or {}))
    env.pop("FASTBP_DATA", None)
    # in the test's own folder: a run without --out goes to ./runs/
    res = subprocess.run([sys.executable, "-m", "fastbp", *args], capture_output=True, text=True,
                         env=env, timeout=300, stdin=subprocess.DEVNULL, cwd=cache.parent)
    if check:
        assert res.returncode == 0, res.stderr
    return res


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_train_on_embedded_sample_writes_all_outputs(tmp_path, cache):
    out = tmp_path / "run"
    res = fastbp_cli("train", "--no-download", "--epochs", "2", "--hidden", "32", "16",
                     "--optimizer", "adam", "--lr", "0.002", "--out", str(out), cache=cache)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("fastbp: no full MNIST found and downloads are off; training on the "
                               "embedded sample (14000 train / 2000 test images)")
    assert [line.split()[:2] for line in lines if line.startswith("epoch")] == [["epoch", "1"],
                                                                                  ["epoch", "2"]]
    net = fastbp.Network.load(out / "params.npz")
    assert net.sizes == (784, 32, 16, 10)
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["optimizer"] == "adam" and m["config"]["steps"] == 280
    assert len(m["history"]["loss"]) == 280 and len(m["history"]["eval_acc"]) == 2
    assert m["final"]["test_acc"] > 0.85
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    assert "Traceback" not in res.stderr


def test_data_dir_and_resume_bit_identical(tmp_path, cache):
    data = tmp_path / "data"
    data.mkdir()
    fake_mnist(data, n_train=300, n_test=50)
    common = ["train", "--data-dir", str(data), "--no-download", "--batch-size", "50",
              "--optimizer", "momentum", "--seed", "4"]
    fastbp_cli(*common, "--epochs", "4", "--out", str(tmp_path / "whole"), cache=cache)
    fastbp_cli(*common, "--epochs", "2", "--checkpoint-every", "1", "--out", str(tmp_path / "part"),
               cache=cache)
    res = fastbp_cli(*common, "--epochs", "4", "--checkpoint-every", "1", "--resume",
                     "--out", str(tmp_path / "part"), cache=cache)
    assert "resuming" in res.stdout and "at step 12 (epoch 2)" in res.stdout
    a = fastbp.Network.load(tmp_path / "whole" / "params.npz")
    b = fastbp.Network.load(tmp_path / "part" / "params.npz")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


def test_train_without_the_optional_extras_keeps_its_results(tmp_path, cache):
    # mpi4py and scikit-learn come with optional extras: a run without --mpi needs neither,
    # also not in the check after the last step for a signal on another rank (a traceback
    # there would leave the run with nothing written); --mpi without mpi4py is a one-line error
    hidden = hiding(tmp_path / "no-extras", "mpi4py", "sklearn")
    data = tmp_path / "data"
    data.mkdir()
    fake_mnist(data, n_train=300, n_test=50)
    common = ["train", "--data-dir", str(data), "--no-download", "--epochs", "1", "--hidden", "8"]
    res = fastbp_cli(*common, "--out", str(tmp_path / "run"), cache=cache, env=hidden)
    assert "Traceback" not in res.stderr
    net = fastbp.Network.load(tmp_path / "run" / "params.npz")
    assert net.sizes == (784, 8, 10)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]["test_acc"] >= 0
    res = fastbp_cli(*common, "--mpi", "--out", str(tmp_path / "mpi"), cache=cache, env=hidden, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "--mpi needs mpi4py and an MPI library: pip install 'fastbp[mpi]'" in res.stderr


def test_sparse_on_and_off_train_the_same_network(tmp_path, cache):
    # the flag picks the first layer's kernels, not the result: float64 runs agree to rounding,
    # and the setting is recorded with the run
    data = tmp_path / "data"
    data.mkdir()
    fake_mnist(data, n_train=300, n_test=50)
    common = ["train", "--data-dir", str(data), "--no-download", "--batch-size", "32", "--epochs", "2",
              "--dtype", "float64", "--hidden", "20", "7"]
    for flag, first in (("on", "sparse"), ("off", "dense")):
        res = fastbp_cli(*common, "--sparse", flag, "--out", str(tmp_path / flag), cache=cache)
        assert f", {first} first layer;" in res.stdout
    on, off = (fastbp.Network.load(tmp_path / f / "params.npz") for f in ("on", "off"))
    assert not np.array_equal(on.flat_params, fastbp.Network(on.sizes, seed=0, dtype="float64").flat_params)
    np.testing.assert_allclose(on.flat_params, off.flat_params, rtol=1e-10, atol=1e-12)
    assert json.loads((tmp_path / "on" / "metrics.json").read_text())["config"]["sparse"] == "on"
    res = fastbp_cli(*common, "--sparse", "maybe", cache=cache, check=False)
    assert res.returncode == 2 and "--sparse: invalid choice: 'maybe'" in res.stderr


@pytest.mark.parametrize("args,rc,match", [
    (["train", "--dataset", "cifar"], 2, "invalid choice: 'cifar'"),
    (["train", "--lr", "abc"], 2, "--lr: 'abc' is not a float"),
    (["train", "--lr", "-1"], 2, "--lr: '-1' must be positive"),
    (["train", "--epochs", "0"], 2, "--epochs: '0' must be positive"),
    (["train", "--weight-decay", "nan"], 2, "must be >= 0"),
    (["train", "--momentum", "1"], 2, "--momentum: '1' must be in [0, 1)"),
    (["train", "--lr-schedule", "cosine"], 2, "invalid choice: 'cosine'"),
    (["train", "--validation-fraction", "1"], 2, "--validation-fraction: '1' must be in (0, 1)"),
    (["train", "--patience", "0"], 2, "--patience: '0' must be positive"),
    (["train", "--momentum", "0.5"], 2, "--momentum is for --optimizer momentum or nesterov, not sgd"),
    (["train", "--iters", "5", "--epochs", "2"], 2, "not allowed with argument"),
    (["train", "--optimizer", "lbfgs", "--batch-size", "5", "--lr", "0.1"], 2,
     "--optimizer lbfgs: --batch-size, --lr do not apply (a full-batch method: --iters sets its iterations"),
    (["train", "--optimizer", "lbfgs", "--epochs", "3"], 2, "--optimizer lbfgs: --epochs do not apply"),
    (["train", "--optimizer", "lbfgs", "--device", "cuda"], 2, "runs in one process on the CPU: no --mpi"),
    (["train", "--data-dir", "/nonexistent/mnist"], 1, "no such directory"),
    (["train", "--resume"], 1, "--resume needs the --out folder"),
    (["train", "--dataset", "fashion-mnist", "--no-download"], 1, "no fashion-mnist files"),
    (["train", "--batch-size", "99999", "--no-download"], 1, "larger than the 14000"),
    (["fly"], 2, "invalid choice: 'fly'"),
])
def test_errors_are_one_line_without_traceback(tmp_path, cache, args, rc, match):
    if "fashion-mnist" in args and os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Debian's Fashion-MNIST is installed here")
    res = fastbp_cli(*args, cache=cache, check=False)
    assert res.returncode == rc
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastbp: error: ") and match in err[0], res.stderr


def test_existing_run_and_missing_checkpoint_are_refused(tmp_path, cache):
    out = tmp_path / "run"
    out.mkdir()
    res = fastbp_cli("train", "--no-download", "--resume", "--out", str(out), cache=cache, check=False)
    assert res.returncode == 1 and "no checkpoint at" in res.stderr
    (out / "params.npz").write_bytes(b"precious")
    res = fastbp_cli("train", "--no-download", "--out", str(out), cache=cache, check=False)
    assert res.returncode == 1 and "already holds a run" in res.stderr
    assert (out / "params.npz").read_bytes() == b"precious"  # nothing the user has is lost


# -- a resume never moves a run backwards, and needs nothing but --out

def small_run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    fake_mnist(data, n_train=300, n_test=50)
    return ["train", "--data-dir", str(data), "--no-download", "--batch-size", "50", "--hidden", "16",
            "--optimizer", "adam", "--seed", "4", "--no-progress"]


def test_resume_with_fewer_epochs_is_refused_and_nothing_is_touched(tmp_path, cache):
    common = small_run(tmp_path)
    out = tmp_path / "R"
    fastbp_cli(*common, "--epochs", "4", "--checkpoint-every", "2", "--out", str(out), cache=cache)
    fastbp_cli("train", "--epochs", "6", "--resume", "--out", str(out), cache=cache)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = fastbp_cli("train", "--epochs", "3", "--resume", "--out", str(out), cache=cache, check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == (f"fastbp: error: --resume: {out} is already at step 36 (epoch 6); "
                                  f"--epochs 3 (18 steps) would move it backwards, and a resume never does")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    m = json.loads((out / "metrics.json").read_text())
    assert m["step"] == 36 and len(m["history"]["loss"]) == 36 and m["config"]["steps"] == 36
    # the same length again: complete, nothing rewritten
    res = fastbp_cli("train", "--resume", "--out", str(out), cache=cache)
    assert "is complete at step 36 (epoch 6); nothing to do" in res.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_takes_the_stored_settings_and_names_contradictions(tmp_path, cache):
    common = small_run(tmp_path)
    fastbp_cli(*common, "--epochs", "4", "--weight-decay", "0.01", "--out", str(tmp_path / "whole"),
               cache=cache)
    part = tmp_path / "part"
    fastbp_cli(*common, "--epochs", "2", "--weight-decay", "0.01", "--checkpoint-every", "1",
               "--out", str(part), cache=cache)
    res = fastbp_cli("train", "--resume", "--out", str(part), "--lr", "0.01", "--hidden", "16", "8",
                     "--seed", "4", cache=cache, check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "fastbp: error: --resume: --hidden 16 8 (the run has 16), --lr 0.01 (the run has 0.001); "
        "the run's settings are in its checkpoint: leave these out, or start a new --out")
    # only --out and the new length: data folder, optimizer, width, seed, weight decay come from the run
    res = fastbp_cli("train", "--resume", "--out", str(part), "--epochs", "4", cache=cache)
    assert "resuming" in res.stdout and "adam lr 0.001" in res.stdout
    a = fastbp.Network.load(tmp_path / "whole" / "params.npz")
    b = fastbp.Network.load(part / "params.npz")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((part / "metrics.json").read_text())
    assert resumed["history"]["loss"] == whole["history"]["loss"]
    assert resumed["config"]["weight_decay"] == 0.01 and resumed["config"]["epochs"] == 4


def test_nesterov_with_its_momentum_is_a_stored_setting(tmp_path, cache):
    common = small_run(tmp_path)[:-5] + ["--no-progress"]  # without --optimizer adam --seed 4
    out = tmp_path / "run"
    fastbp_cli(*common, "--optimizer", "nesterov", "--momentum", "0.8", "--epochs", "2", "--out", str(out),
               cache=cache)
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert (config["optimizer"], config["momentum"], config["lr"]) == ("nesterov", 0.8, 0.01)
    res = fastbp_cli("train", "--resume", "--out", str(out), "--momentum", "0.9", "--epochs", "3", cache=cache,
                     check=False)
    assert res.returncode == 1 and "--momentum 0.9 (the run has 0.8)" in res.stderr
    fastbp_cli("train", "--resume", "--out", str(out), "--epochs", "3", cache=cache)
    # the same run through fit: the CLI passes the momentum on
    x, t = fastbp.datasets.load_mnist(root=str(tmp_path / "data"), download=False)[0]
    net = fastbp.Network([784, 16, 10], seed=0)
    fastbp.fit(net, x, t, epochs=3, batch_size=50, optimizer="nesterov", momentum=0.8, seed=0)
    np.testing.assert_array_equal(fastbp.Network.load(out / "params.npz").flat_params, net.flat_params)


def test_early_stopping_holds_out_images_stops_at_a_plateau_and_stays_stopped(tmp_path, cache):
    common = small_run(tmp_path)
    out = tmp_path / "run"
    # tol 10: no epoch improves by that much, so with patience 1 the third epoch ends it
    args = ["--early-stopping", "--validation-fraction", "0.2", "--patience", "1", "--tol", "10",
            "--lr-schedule", "invscaling", "--power-t", "0.1"]
    res = fastbp_cli(*common, *args, "--epochs", "20", "--out", str(out), cache=cache)
    assert "early stopping on 60 held-out images" in res.stdout and "stopped early after epoch 3" in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_early"] == 3 and metrics["status"] == "finished" and metrics["step"] == 12
    assert len(metrics["history"]["val_acc"]) == 3 and metrics["final"]["val_acc"] is not None
    # the same as fit on the 240 rows the seed leaves for training, validated on the other 60
    (x, t), _ = fastbp.datasets.load_mnist(root=str(tmp_path / "data"), download=False)
    held = np.zeros(300, bool)
    held[np.random.default_rng(4).permutation(300)[:60]] = True
    net = fastbp.Network([784, 16, 10], seed=4)
    fastbp.fit(net, x[~held], t[~held], epochs=20, batch_size=50, optimizer="adam", seed=4, lr_schedule="invscaling",
               power_t=0.1, early_stopping=True, validation_data=(x[held], t[held]), patience=1, tol=10.0)
    np.testing.assert_array_equal(fastbp.Network.load(out / "params.npz").flat_params, net.flat_params)
    # a resume decides the same from the stored history: nothing more to train
    res = fastbp_cli("train", "--resume", "--out", str(out), "--epochs", "30", cache=cache)
    assert "stopped early after epoch 3" in res.stdout
    assert json.loads((out / "metrics.json").read_text())["step"] == 12
    res = fastbp_cli("train", "--resume", "--out", str(out), "--patience", "5", cache=cache, check=False)
    assert res.returncode == 1 and "--patience 5 (the run has 1)" in res.stderr


def test_any_finished_run_can_be_extended(tmp_path, cache):
    common = small_run(tmp_path)
    fastbp_cli(*common, "--epochs", "3", "--out", str(tmp_path / "whole"), cache=cache)
    fastbp_cli(*common, "--epochs", "2", "--out", str(tmp_path / "short"), cache=cache)  # no --checkpoint-every
    res = fastbp_cli("train", "--resume", "--out", str(tmp_path / "short"), "--epochs", "3", cache=cache)
    assert "resuming" in res.stdout
    a = fastbp.Network.load(tmp_path / "whole" / "params.npz")
    b = fastbp.Network.load(tmp_path / "short" / "params.npz")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    # a run of --iters that ended inside an epoch, extended, continues that epoch's batches
    fastbp_cli(*common, "--iters", "45", "--out", str(tmp_path / "iters"), cache=cache)
    fastbp_cli("train", "--resume", "--out", str(tmp_path / "iters"), "--iters", "90", cache=cache)
    fastbp_cli(*common, "--iters", "90", "--out", str(tmp_path / "iters-whole"), cache=cache)
    a = fastbp.Network.load(tmp_path / "iters-whole" / "params.npz")
    b = fastbp.Network.load(tmp_path / "iters" / "params.npz")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


# -- run folders

def test_default_run_folders_are_created_exclusively(tmp_path, monkeypatch):
    from fastbp.cli import new_run_folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt: "20260101-000000")  # the same second, always
    made = [new_run_folder("mnist") for _ in range(3)]
    assert made == [os.path.join("runs", "mnist-20260101-000000" + s) for s in ("", "-2", "-3")]


def test_runs_started_together_keep_every_result(tmp_path, cache):
    data = tmp_path / "data"
    data.mkdir()
    fake_mnist(data, n_train=200, n_test=20)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    cmd = [sys.executable, "-m", "fastbp", "train", "--data-dir", str(data), "--no-download",
           "--epochs", "1", "--batch-size", "50", "--no-progress"]
    procs = [subprocess.Popen(cmd + ["--seed", str(k)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 3
    seeds = sorted(json.loads((r / "metrics.json").read_text())["config"]["seed"] for r in runs)
    assert seeds == [0, 1, 2]


def test_a_folder_in_use_is_refused(tmp_path, cache):
    import fcntl
    out = tmp_path / "busy"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running fastbp train holds it
    try:
        res = fastbp_cli("train", "--no-download", "--out", str(out), cache=cache, check=False)
    finally:
        os.close(fd)
    assert res.returncode == 1 and f"{out} is in use by another fastbp train" in res.stderr
    assert list(out.iterdir()) == []


def test_an_error_before_training_leaves_no_empty_folder(tmp_path, cache):
    res = fastbp_cli("train", "--no-download", "--batch-size", "99999", cache=cache, check=False)
    assert res.returncode == 1 and "larger than the 14000" in res.stderr
    assert list((tmp_path / "runs").iterdir()) == []


# -- the command line itself

@pytest.mark.parametrize("loss", ["logistic", "mse"])
def test_the_output_loss_is_a_stored_setting(tmp_path, cache, loss):
    common = small_run(tmp_path)
    out = tmp_path / "run"
    res = fastbp_cli(*common, "--loss", loss, "--epochs", "2", "--out", str(out), cache=cache)
    assert f"loss='{loss}'" in res.stderr + res.stdout  # the first line names the network
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["loss"] == loss
    res = fastbp_cli("train", "--resume", "--out", str(out), "--loss", "softmax_ce", "--epochs", "3", cache=cache,
                     check=False)
    assert res.returncode == 1 and "--loss softmax_ce (the run has " + loss + ")" in res.stderr
    fastbp_cli("train", "--resume", "--out", str(out), "--epochs", "3", cache=cache)
    # the same run through fit, on one-hot targets of the labels
    x, t = fastbp.datasets.load_mnist(root=str(tmp_path / "data"), download=False)[0]
    net = fastbp.Network([784, 16, 10], seed=4, loss=loss)
    fastbp.fit(net, x, t, epochs=3, batch_size=50, optimizer="adam", seed=4)
    back = fastbp.Network.load(out / "params.npz")
    assert back.loss_type == loss
    np.testing.assert_array_equal(back.flat_params, net.flat_params)


def test_lbfgs_run_is_fit_lbfgs_and_records_each_iteration(tmp_path, cache):
    common = small_run(tmp_path)
    common = common[:4] + ["--hidden", "16", "--seed", "4", "--no-progress"]  # no --batch-size, no adam
    out = tmp_path / "run"
    res = fastbp_cli(*common, "--optimizer", "lbfgs", "--iters", "6", "--weight-decay", "0.001", "--out", str(out),
                     cache=cache)
    assert "L-BFGS over all 300 images, up to 6 iterations" in res.stdout
    assert [l.split()[1] for l in res.stdout.splitlines() if l.startswith("epoch")] == list("123456")
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "finished" and m["config"]["optimizer"] == "lbfgs" and m["step"] == 6
    assert len(m["history"]["eval_acc"]) == 6 and m["final"]["test_acc"] == m["history"]["eval_acc"][-1]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and not (out / "checkpoint.npz").exists()
    # the same through the library: --weight-decay λ is scikit-learn's alpha = λ·N
    x, t = fastbp.datasets.load_mnist(root=str(tmp_path / "data"), download=False)[0]
    net = fastbp.Network([784, 16, 10], seed=4)
    r = fastbp.fit_lbfgs(net, x, t, alpha=0.001 * 300, max_iter=6)
    np.testing.assert_array_equal(fastbp.Network.load(out / "params.npz").flat_params, net.flat_params)
    assert m["history"]["loss"][-1] == pytest.approx(r.fun, rel=1e-12)
    res = fastbp_cli("train", "--resume", "--out", str(out), cache=cache, check=False)
    assert res.returncode == 1 and "no checkpoint at" in res.stderr


def test_help_shows_every_default_and_version(cache):
    res = fastbp_cli("train", "--help", cache=cache)
    text = " ".join(res.stdout.split())
    for default in ("(default: mnist)", "(default: 50)", "(default: relu)", "(default: 10)",
                    "(default: 100)", "0.1 for sgd, 0.01 for momentum, 0.01 for adagrad, 0.001 for adam",
                    "(default: sgd)", "(default: softmax_ce)", "(default: 0)", "(default: float32)",
                    "(default: cpu)", "(default: auto)", "lbfgs: full-batch L-BFGS for --iters iterations (default 200)",
                    "a new runs/<dataset>-<time>"):
        assert default in text, default
    assert fastbp_cli("--version", cache=cache).stdout.strip() == f"fastbp {fastbp.__version__}"


@pytest.mark.parametrize("args,match", [
    (["train", "--seed", "-1"], "fastbp: error: argument --seed: '-1' must be >= 0"),
    (["train", "--lr", "-1"], "fastbp: error: argument --lr: '-1' must be positive"),
    (["train", "--epochs", "x"], "fastbp: error: argument --epochs: 'x' is not an int"),
])
def test_usage_errors_have_one_prefix(cache, args, match):
    res = fastbp_cli(*args, cache=cache, check=False)
    assert res.returncode == 2 and res.stderr.strip() == match


def test_default_lr_follows_the_optimizer(tmp_path, cache):
    common = small_run(tmp_path)
    args = ["momentum" if a == "adam" else a for a in common]
    res = fastbp_cli(*args, "--epochs", "1", "--out", str(tmp_path / "m"), cache=cache)
    assert "momentum lr 0.01," in res.stdout
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["config"]["lr"] == 0.01


@needs_mnist
def test_fashion_mnist_from_an_mnist_folder_is_refused(tmp_path, cache):
    res = fastbp_cli("train", "--dataset", "fashion-mnist", "--data-dir", str(MNIST), "--out",
                     str(tmp_path / "f"), cache=cache, check=False)
    assert res.returncode == 1
    assert "is mnist's official test file" in res.stderr and "this folder holds mnist" in res.stderr
    assert not (tmp_path / "f").exists()


def test_a_data_dir_missing_a_file_is_not_downloaded_into(tmp_path, cache):
    data = tmp_path / "data"
    data.mkdir()
    fake_mnist(data, n_train=100, n_test=10)
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    before = sorted(os.listdir(data))
    res = fastbp_cli("train", "--data-dir", str(data), "--out", str(tmp_path / "r"), cache=cache, check=False)
    assert res.returncode == 1 and "missing mnist files ['t10k-labels-idx1-ubyte.gz']" in res.stderr
    assert "--download" in res.stderr and "downloading" not in res.stderr
    assert sorted(os.listdir(data)) == before


def test_files_get_the_users_umask(tmp_path, cache):
    common = small_run(tmp_path)
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        out = tmp_path / f"u{mask:o}"
        res = subprocess.run([sys.executable, "-m", "fastbp", *common, "--epochs", "1", "--checkpoint-every",
                              "1", "--out", str(out)], capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, XDG_CACHE_HOME=str(cache)), preexec_fn=lambda: os.umask(mask))
        assert res.returncode == 0, res.stderr
        modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
        assert modes == {n: mode for n in ("params.npz", "metrics.json", "curves.png", "checkpoint.npz")}


def test_make_train_installs_only_what_training_needs():
    dry = subprocess.run(["make", "-n", "-B", "train"], cwd=REPO, capture_output=True, text=True)
    installs = [line for line in dry.stdout.splitlines() if "pip install" in line and " -e " in line]
    assert installs and all("[dev]" not in line for line in installs), dry.stdout
    dry = subprocess.run(["make", "-n", "-B", "test"], cwd=REPO, capture_output=True, text=True)
    assert any("'.[dev]'" in line for line in dry.stdout.splitlines()), dry.stdout


def test_make_trains_recipe_reaches_095_on_the_shipped_sample(tmp_path, cache):
    line = next(l for l in (REPO / "Makefile").read_text().splitlines() if l.startswith("TRAIN_ARGS :="))
    res = fastbp_cli("train", *line.split(":=")[1].split(), "--no-progress", "--out", str(tmp_path / "r"),
                     cache=cache)
    assert "embedded sample (14000 train / 2000 test images)" in res.stdout
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["final"]["test_acc"] >= 0.95, m["final"]
    assert res.stdout.splitlines()[-1].endswith(
        f"wrote {tmp_path / 'r'}/params.npz, metrics.json, curves.png, checkpoint.npz")
