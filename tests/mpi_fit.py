"""Run under mpiexec by tests/test_mpi.py: fit(comm=COMM_WORLD) on each case of a JSON list.

    mpiexec -n R python tests/mpi_fit.py CASES.json OUT_PREFIX

Each case: sizes, dtype, optimizer, lr, weight_decay, batch_size, iters, n (rows), seed,
sparse (train on a scipy CSR), device, activation, loss, fit (more keywords for fit; with early_stopping the
eval rows are also the validation rows). The data comes from tests/mpi_data.py (the same on
every rank). Every rank writes OUT_PREFIX.rank<R>.npz: per case its final flat parameters,
losses, accuracies, and the seconds its Allreduces took.
"""
import json
import sys

import numpy as np
from mpi4py import MPI

import fastbp
from mpi_data import case_data, fit_keywords


def main(cases_path, prefix):
    comm = MPI.COMM_WORLD
    cases = json.load(open(cases_path))
    out = {}
    for k, c in enumerate(cases):
        if c.get("device") == "cuda":
            from fastbp.distributed import use_local_gpu
            use_local_gpu(comm)
        x, t, xe, te = case_data(c)
        # a different seed on each rank: fit broadcasts rank 0's parameters
        net = fastbp.Network(c["sizes"], dtype=c["dtype"], seed=c["seed"] + comm.Get_rank(),
                             device=c.get("device", "cpu"), activation=c.get("activation", "relu"),
                             loss=c.get("loss", "softmax_ce"))
        h = fastbp.fit(net, x, t, iters=c["iters"], batch_size=c["batch_size"], lr=c["lr"],
                       optimizer=c["optimizer"], weight_decay=c["weight_decay"], seed=c["seed"],
                       eval_data=(xe, te), progress=False, comm=comm, **fit_keywords(c, xe, te))
        out[f"{k}_params"] = np.array(net.flat_params)
        out[f"{k}_loss"] = np.array(h["loss"])
        out[f"{k}_acc"] = np.array([h["train_acc"], h["eval_acc"], h["eval_loss"]], np.float64)
    np.savez(f"{prefix}.rank{comm.Get_rank()}.npz", **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
