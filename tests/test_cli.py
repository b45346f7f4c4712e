"""`fastbp train` as a user runs it: a real subprocess, real files, one-line errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import fake_mnist
import fastbp


def fastbp_cli(*args, cache, check=True):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    env.pop("FASTBP_DATA", None)
    res = subprocess.run([sys.executable, "-m", "fastbp", *args], capture_output=True, text=True,
                         env=env, timeout=300, stdin=subprocess.DEVNULL)
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


@pytest.mark.parametrize("args,rc,match", [
    (["train", "--dataset", "cifar"], 2, "invalid choice: 'cifar'"),
    (["train", "--lr", "abc"], 2, "--lr: 'abc' is not a float"),
    (["train", "--lr", "-1"], 2, "--lr: '-1' must be positive"),
    (["train", "--epochs", "0"], 2, "--epochs: '0' must be positive"),
    (["train", "--weight-decay", "nan"], 2, "must be >= 0"),
    (["train", "--iters", "5", "--epochs", "2"], 2, "not allowed with argument"),
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
