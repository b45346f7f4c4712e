"""Data-parallel training with real processes under a real mpiexec (the mpich wheel's, in this
environment): fit(comm=...) and `fastbp train --mpi` against a single process, uneven
batches, errors on one rank, a killed rank, signals, a resume on another number of ranks."""
import json
import os
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastbp
from mpi_data import case_data, fit_keywords

pytest.importorskip("mpi4py.MPI", reason="MPI tests need fastbp[mpi] (mpi4py and the mpich wheel)")
HERE = Path(__file__).resolve().parent
# fastbp[mpi] installs mpich's mpiexec beside python; an mpi4py built against a system MPI
# (as on GPU machines) comes with that MPI's mpiexec on the PATH instead
MPIEXEC = Path(sys.executable).parent / "mpiexec"
if not MPIEXEC.exists() and shutil.which("mpiexec"):
    MPIEXEC = Path(shutil.which("mpiexec"))


def mpiexec(n, *args, timeout=300, env=None, cwd=HERE, check=True):
    assert MPIEXEC.exists(), "fastbp[mpi] is installed but no mpiexec is beside python or on the PATH"
    res = subprocess.run([str(MPIEXEC), "-n", str(n), *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def _case(opt, dtype, **kw):
    c = {"sizes": [6, 5, 3], "dtype": dtype, "optimizer": opt, "lr": {"sgd": 0.1, "momentum": 0.05, "adagrad": 0.05,
         "adam": 0.01, "nesterov": 0.05}[opt], "weight_decay": 0.01, "batch_size": 7, "iters": 50, "n": 40, "seed": 3}
    return {**c, **kw}


# every optimizer in both dtypes at a batch of 7 (2 ranks: 3 + 4 rows, 3 ranks: 2 + 2 + 3); a batch
# of 2 (the third rank has no rows), three layers, tanh; sparse input; a batch of 1
CASES = [_case(o, d) for o in ("sgd", "momentum", "adagrad", "adam") for d in ("float64", "float32")] + [
    _case("sgd", "float64", batch_size=2, sizes=[6, 5, 4, 3], activation="tanh", weight_decay=0.0),
    _case("adam", "float64", sparse=True, n=41, seed=5),
    _case("momentum", "float64", batch_size=1, iters=20, seed=6),
    _case("nesterov", "float64", seed=7),
    _case("adam", "float64", seed=9, loss="logistic"),  # float targets (the labels one-hot)
    # the schedule's decisions (here: stop after epoch 3 of 10) are the same on every rank
    _case("sgd", "float64", seed=8, fit={"lr_schedule": "invscaling", "early_stopping": True, "patience": 1,
                                         "tol": 10.0}),
]
TOL = {"float64": 1e-12, "float32": 1e-5}


def one_process(c):
    x, t, xe, te = case_data(c)
    net = fastbp.Network(c["sizes"], dtype=c["dtype"], seed=c["seed"], activation=c.get("activation", "relu"),
                         loss=c.get("loss", "softmax_ce"))
    h = fastbp.fit(net, x, t, iters=c["iters"], batch_size=c["batch_size"], lr=c["lr"], optimizer=c["optimizer"],
                   weight_decay=c["weight_decay"], seed=c["seed"], eval_data=(xe, te), progress=False,
                   **fit_keywords(c, xe, te))
    return net.flat_params, h


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_ranks_train_the_parameters_one_process_trains(tmp_path, ranks):
    (tmp_path / "cases.json").write_text(json.dumps(CASES))
    mpiexec(ranks, sys.executable, HERE / "mpi_fit.py", tmp_path / "cases.json", tmp_path / "out")
    got = [np.load(tmp_path / f"out.rank{r}.npz") for r in range(ranks)]
    for k, c in enumerate(CASES):
        params, h = one_process(c)
        for r in range(1, ranks):  # one Allreduce result, one update: the ranks never drift apart
            assert np.array_equal(got[r][f"{k}_params"], got[0][f"{k}_params"]), (c, r)
        tol = TOL[c["dtype"]]
        np.testing.assert_allclose(got[0][f"{k}_params"], params, rtol=0, atol=tol, err_msg=str(c))
        np.testing.assert_allclose(got[0][f"{k}_loss"], h["loss"], rtol=tol, atol=tol, err_msg=str(c))
        if c.get("fit", {}).get("early_stopping"):
            assert h["epoch_step"] == [5, 10, 15] and len(got[0][f"{k}_loss"]) == 15
        train_acc, eval_acc, eval_loss = got[0][f"{k}_acc"]
        assert list(train_acc) == h["train_acc"] and list(eval_acc) == h["eval_acc"], c
        np.testing.assert_allclose(eval_loss, h["eval_loss"], rtol=tol)


def _script(tmp_path, body):
    path = tmp_path / "script.py"
    path.write_text("import sys, numpy as np\nfrom mpi4py import MPI\nimport fastbp\n"
                    "comm = MPI.COMM_WORLD\nrank = comm.Get_rank()\n"
                    "x = np.random.default_rng(0).random((30, 4))\nt = np.arange(30) % 3\n"
                    "net = fastbp.Network([4, 5, 3], seed=rank)\n" + body)
    return path


@pytest.mark.parametrize("body, message", [
    # different data on one rank: found before any step, named, on every rank
    ("x[3, 1] += rank\n", "ranks were given different networks, data or settings (x:"),
    ("fastbp.fit(net, x, t, iters=2, batch_size=10 + rank, comm=comm)\n", "batch_size: rank 0 10, rank 1 11"),
    # a bad argument on rank 1 only: rank 1 says what, rank 0 says which rank
    ("t = t if rank == 0 else t + 5\n", "t must hold class ids in [0, 3)"),
])
def test_disagreeing_ranks_all_raise_a_clear_error(tmp_path, body, message):
    fit = "" if "fastbp.fit" in body else "fastbp.fit(net, x, t, iters=2, batch_size=10, comm=comm)\n"
    script = _script(tmp_path, "try:\n" + "".join("    " + line + "\n" for line in (body + fit).splitlines()) +
                     "except ValueError as e:\n    said = str(e)\n"
                     "else:\n    said = 'trained'\n"
                     "open(f'{__file__}.{rank}', 'w').write(said)\n")
    started = time.monotonic()
    mpiexec(2, sys.executable, script, timeout=120)
    said = [Path(f"{script}.{r}").read_text() for r in range(2)]
    assert all(message in s for s in said), said
    assert time.monotonic() - started < 60


def test_an_error_on_one_rank_while_training_aborts_every_rank(tmp_path):
    # should_stop raising on rank 1 stands for anything going wrong on one rank mid-run: the
    # other would wait in the next Allreduce forever; instead the whole job ends, within seconds
    script = _script(tmp_path, "calls = []\ndef stop():\n    calls.append(1)\n"
                     "    if rank == 1 and len(calls) == 3:\n        raise RuntimeError('disk on fire')\n"
                     "    return False\n"
                     "fastbp.fit(net, x, t, iters=100000, batch_size=10, comm=comm, should_stop=stop)\n")
    started = time.monotonic()
    res = mpiexec(2, sys.executable, script, timeout=120, check=False)
    assert res.returncode != 0 and time.monotonic() - started < 60
    assert "fastbp: rank 1 of 2: RuntimeError: disk on fire; aborting every rank" in res.stderr


def test_ranks_that_drift_apart_are_realigned_at_the_epoch_end(tmp_path):
    # stands for an MPI library whose Allreduce differs in the last bit between ranks
    script = _script(tmp_path, "import warnings\n"
                     "def on_epoch(st):\n    if rank == 1 and st.epoch == 1:\n"
                     "        net.backend.set_flat(net.flat_params + 1e-3)\n"
                     "with warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n"
                     "    fastbp.fit(net, x, t, epochs=3, batch_size=10, comm=comm, on_epoch=on_epoch)\n"
                     "np.save(f'{__file__}.{rank}.npy', net.flat_params)\n"
                     "open(f'{__file__}.{rank}', 'w').write(' | '.join(str(m.message) for m in w))\n")
    mpiexec(2, sys.executable, script, timeout=120)
    np.testing.assert_array_equal(np.load(f"{script}.0.npy"), np.load(f"{script}.1.npy"))
    warned = Path(f"{script}.0").read_text()
    assert warned.count("the ranks' parameters differ (ranks [1] from rank 0's)") == 1, warned


def test_comm_is_checked_and_a_one_rank_communicator_trains_as_without():
    from mpi4py import MPI
    x = np.random.default_rng(0).random((30, 4))
    t = np.arange(30) % 3
    with pytest.raises(TypeError, match="comm must be an mpi4py intracommunicator"):
        fastbp.fit(fastbp.Network([4, 5, 3], seed=0), x, t, comm="world")
    nets = [fastbp.Network([4, 5, 3], seed=0, dtype="float64") for _ in range(2)]
    fastbp.fit(nets[0], x, t, iters=20, batch_size=7, optimizer="adam", seed=1)
    fastbp.fit(nets[1], x, t, iters=20, batch_size=7, optimizer="adam", seed=1, comm=MPI.COMM_SELF)
    np.testing.assert_allclose(nets[1].flat_params, nets[0].flat_params, rtol=0, atol=1e-14)


# -- fastbp train --mpi: real runs on the embedded MNIST sample

COMMON = ["train", "--no-download", "--hidden", "20", "--batch-size", "500", "--dtype", "float64",
          "--optimizer", "momentum", "--no-progress"]


def cli(ranks, *args, tmp_path, check=True, timeout=300):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("FASTBP_DATA", None)
    cmd = [sys.executable, "-m", "fastbp", *COMMON, *args]
    if ranks is None:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)
        assert not check or res.returncode == 0, res.stderr
        return res
    return mpiexec(ranks, *cmd, "--mpi", env=env, cwd=tmp_path, check=check, timeout=timeout)


def params(folder):
    with np.load(folder / "params.npz") as f:
        return {k: f[k] for k in f if k[0] in "Wb"}


def assert_same_params(a, b, atol=1e-12):
    for k in b:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


def test_train_mpi_writes_once_what_one_process_writes(tmp_path):
    one = cli(None, "--epochs", "2", "--out", tmp_path / "one", tmp_path=tmp_path)
    two = cli(2, "--epochs", "2", "--out", tmp_path / "two", tmp_path=tmp_path)
    assert_same_params(params(tmp_path / "two"), params(tmp_path / "one"))
    # rank 0 alone speaks and writes: each line once, the same four files
    assert two.stdout.count("fastbp: test accuracy") == 1 and two.stdout.count("epoch   1") == 1, two.stdout
    assert "on 2 MPI ranks" in two.stdout and two.stderr.count("embedded sample") <= 1
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    m1, m2 = (json.loads((tmp_path / f / "metrics.json").read_text()) for f in ("one", "two"))
    assert m2["config"]["ranks"] == 2 and m2["status"] == "finished"
    np.testing.assert_allclose(m2["history"]["loss"], m1["history"]["loss"], rtol=1e-12)
    assert m2["history"]["train_acc"] == m1["history"]["train_acc"]


def test_resume_on_another_number_of_ranks(tmp_path):
    cli(None, "--epochs", "3", "--out", tmp_path / "whole", tmp_path=tmp_path)
    cli(2, "--epochs", "1", "--out", tmp_path / "part", tmp_path=tmp_path)
    res = cli(3, "--epochs", "2", "--resume", "--out", tmp_path / "part", tmp_path=tmp_path)
    assert "resuming" in res.stdout and "on 3 MPI ranks" in res.stdout
    res = cli(None, "--epochs", "3", "--resume", "--out", tmp_path / "part", tmp_path=tmp_path)
    assert_same_params(params(tmp_path / "part"), params(tmp_path / "whole"))
    # an error found by rank 0 alone (the run is further on than asked) stops every rank, said once
    res = cli(2, "--epochs", "1", "--resume", "--out", tmp_path / "part", tmp_path=tmp_path, check=False)
    assert res.returncode == 1 and res.stderr.count("would move it backwards") == 1, res.stderr


def _ranks_of(marker):
    """{rank: pid} of the processes whose command line holds `marker` (from /proc: PMI_RANK)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in cmd and b"fastbp" in cmd:
            rank = [e.split(b"=", 1)[1] for e in env if e.startswith(b"PMI_RANK=")]
            if rank:
                found[int(rank[0])] = int(pid)
    return found


def _start(tmp_path, out, *args):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("FASTBP_DATA", None)
    return subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable, "-m", "fastbp", *COMMON, "--mpi",
                             "--out", str(out), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


def test_a_killed_rank_stops_the_others_and_the_checkpoint_survives(tmp_path):
    out = tmp_path / "run"
    proc = _start(tmp_path, out, "--epochs", "2000", "--checkpoint-every", "1")
    _wait_for(out / "checkpoint.npz", proc)
    time.sleep(0.5)
    pids = _ranks_of(str(out))
    assert sorted(pids) == [0, 1], pids
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    said = "".join(proc.communicate(timeout=60))
    assert proc.returncode != 0 and time.monotonic() - killed < 10, said
    # mpiexec's own report: which process ended how, and that it stopped the rest
    assert "BAD TERMINATION" in said and "Killed (signal 9)" in said, said
    for pid in pids.values():  # no rank left behind
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    from fastbp.checkpoints import load_checkpoint
    net, state = load_checkpoint(out / "checkpoint.npz")  # whole and readable
    assert state.epoch >= 1 and state.step == state.epoch * 28
    res = cli(None, "--resume", "--epochs", str(state.epoch + 1), "--out", out, tmp_path=tmp_path)
    assert "resuming" in res.stdout


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_every_rank_at_one_step_and_the_run_resumes(tmp_path, sig, status):
    out = tmp_path / "run"
    proc = _start(tmp_path, out, "--epochs", "2000", "--checkpoint-every", "1")
    _wait_for(out / "checkpoint.npz", proc)
    proc.send_signal(sig)  # mpiexec passes it on to every rank
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert stderr.count(f"interrupted ({sig.name}) at step") == 1, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    step = metrics["step"]
    # the interrupted run continued on one process lands where an uninterrupted one does
    cli(None, "--iters", str(step + 20), "--resume", "--out", out, tmp_path=tmp_path)
    cli(None, "--iters", str(step + 20), "--out", tmp_path / "whole", tmp_path=tmp_path)
    assert_same_params(params(out), params(tmp_path / "whole"))
