"""Data-parallel training on the GPU: two ranks under a real mpiexec, each on its GPU (rank
by local rank; under the simulator both on the simulated one), the gradient reduced through
host memory; the parameters land where one CPU process puts them."""
import json
import os
import sys

import numpy as np
import pytest

from cudatest import needs_device, near

pytestmark = needs_device
pytest.importorskip("mpi4py.MPI", reason="MPI tests need fastbp[mpi] (mpi4py and the mpich wheel)")

from test_mpi import HERE, mpiexec, one_process  # noqa: E402  (after the skip)

CASES = [{"sizes": [6, 5, 3], "dtype": "float64", "optimizer": "momentum", "lr": 0.05, "weight_decay": 0.01,
          "batch_size": 7, "iters": 6, "n": 30, "seed": 3, "device": "cuda"},
         {"sizes": [6, 4, 3], "dtype": "float32", "optimizer": "adam", "lr": 0.01, "weight_decay": 0.0,
          "batch_size": 3, "iters": 6, "n": 30, "seed": 4, "device": "cuda", "activation": "tanh"}]


def test_two_gpu_ranks_train_what_one_cpu_process_trains(tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps(CASES))
    mpiexec(2, sys.executable, HERE / "mpi_fit.py", tmp_path / "cases.json", tmp_path / "out", env=dict(os.environ))
    got = [np.load(tmp_path / f"out.rank{r}.npz") for r in range(2)]
    for k, c in enumerate(CASES):
        params, h = one_process({**c, "device": "cpu"})
        dtype = np.dtype(c["dtype"]).type
        assert np.array_equal(got[1][f"{k}_params"], got[0][f"{k}_params"])
        near(got[0][f"{k}_params"], params, dtype)
        near(got[0][f"{k}_loss"], np.array(h["loss"]), dtype)
        # on a mismatch: both histories and how far the parameters are apart
        assert list(got[0][f"{k}_acc"][0]) == h["train_acc"], (
            k, got[0][f"{k}_acc"], h, float(np.abs(got[0][f"{k}_params"] - params).max()))
