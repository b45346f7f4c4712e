"""Data-parallel steps on one machine: 1 process with R BLAS threads against R MPI ranks with
one thread each, on the 24,000 shared MNIST training images (float32, SGD).

The script launches every contender itself (mpiexec from fastbp[mpi], beside python),
alternating them round by round, and reports the median time per step and the share of
it spent in the step's Allreduce (waiting for the slower rank included). Each run times
--steps training steps of one epoch's batches after --warmup untimed ones; accuracy
passes are not timed.

    python -m bench.mpi_scaling [--ranks 2] [--rounds 5] [--steps 40]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "mnist")
CONFIGS = [((784, 1024, 1024, 10), 256), ((784, 50, 10), 100)]


def worker(sizes, batch, steps, warmup, data_dir, distributed, out):
    """Under mpiexec: time `steps` steps; rank 0 writes {seconds, reduce_seconds} to out."""
    import fastbp
    from fastbp.compiling import ensure_compiled
    from fastbp.datasets import load_mnist
    from fastbp.kernels.codes import OPTIMIZER_HYPER, OPTIMIZERS
    from fastbp.kernels.train import Optim
    from fastbp.training import TrainState
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    (x, t), _ = load_mnist(root=data_dir, download=False)
    net = fastbp.Network(list(sizes), seed=0, sparse=False)
    ensure_compiled(net.dtype)
    x = net.as_input(x)
    state = TrainState(net, 0)
    optim = Optim(OPTIMIZERS.index("sgd"), 0.1, *OPTIMIZER_HYPER["sgd"], 0.0)
    if distributed:
        from fastbp.distributed import DataParallel
        steps_of = DataParallel(comm, net.backend, x, t, {}, batch, state.opt_state, net.dtype, net.n_params)
    else:
        steps_of = net.backend.trainer(x, t, {}, batch, state.opt_state)
    steps_of.new_epoch(state.rng.permutation(len(t)).astype(np.int64))
    steps_of.run(0, warmup, optim, 0)
    comm.Barrier()
    reduce_before = getattr(steps_of, "reduce_seconds", 0.0)
    start = time.perf_counter()
    done = warmup
    while done < warmup + steps:
        n = min(50, warmup + steps - done)
        steps_of.run(done, n, optim, done)
        done += n
    seconds = time.perf_counter() - start
    reduced = getattr(steps_of, "reduce_seconds", 0.0) - reduce_before
    if comm.Get_rank() == 0:
        with open(out, "w") as f:
            json.dump({"seconds": seconds / steps, "reduce": reduced / steps}, f)


def launch(ranks, threads, distributed, sizes, batch, steps, warmup, data_dir):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               NUMBA_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "bench.mpi_scaling", "--worker", out,
               "--sizes", *map(str, sizes), "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup),
               "--data-dir", data_dir] + (["--distributed"] if distributed else [])
        subprocess.run(cmd, check=True, env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(out) as f:
            return json.load(f)


# links for the cost model: bandwidth in bits/s and the latency of one message
LINKS = [("10 Gbit/s Ethernet, TCP", 10e9, 25e-6), ("100 Gbit/s, RDMA", 100e9, 5e-6)]


def ring_allreduce(nbytes, n, bandwidth, latency):
    """Seconds for a ring Allreduce of nbytes over n machines: 2(n-1) messages of nbytes/n each
    (reduce-scatter, then allgather), so 2(n-1)/n * nbytes over the link, plus 2(n-1) latencies."""
    return 2 * (n - 1) / n * nbytes * 8 / bandwidth + 2 * (n - 1) * latency


def scaling(compute, nbytes, bandwidth, latency, most=4096):
    """For a step of `compute` seconds on one machine split over n (same global batch): the n
    with the shortest step, and the largest n still at >= 50% parallel efficiency."""
    step = {n: compute / n + ring_allreduce(nbytes, n, bandwidth, latency) for n in range(1, most + 1)}
    best = min(step, key=step.get)
    half = max(n for n in step if compute / (n * step[n]) >= 0.5)
    return best, step[best], half


def model_table(measured):
    """measured: {(sizes, batch): seconds per step of one process}."""
    from fastbp.kernels import layout
    print("\n| network, batch | bytes reduced / step | one machine ms / step | link | fastest with N machines | "
          "its ms / step | last machine count at >= 50% efficiency |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (sizes, batch), compute in measured.items():
        nbytes = 4 * (layout.param_count(layout.param_layout(sizes)) + 1)  # float32 gradient + the loss
        for name, bw, lat in LINKS:
            best, t, half = scaling(compute, nbytes, bw, lat)
            print(f"| {'-'.join(map(str, sizes))}, {batch} | {nbytes:,} | {compute * 1e3:.3f} | {name} | "
                  f"{best} | {t * 1e3:.3f} | {half} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--data-dir", default=SHARED)
    p.add_argument("--worker")
    p.add_argument("--sizes", type=int, nargs="+")
    p.add_argument("--batch", type=int)
    p.add_argument("--distributed", action="store_true")
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.sizes, a.batch, a.steps, a.warmup, a.data_dir, a.distributed, a.worker)
    R = a.ranks
    contenders = {f"1 process x {R} threads": (1, R, False),
                  f"1 rank x {R} threads (data-parallel path)": (1, R, True),
                  f"{R} ranks x 1 thread": (R, 1, True)}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; median of {a.rounds} "
          f"interleaved rounds, {a.steps} steps each")
    print("| network, batch | contender | ms / step | Allreduce ms / step | Allreduce share |")
    print("| --- | --- | --- | --- | --- |")
    measured = {}
    for sizes, batch in CONFIGS:
        got = {k: [] for k in contenders}
        for _ in range(a.rounds):
            for name, (ranks, threads, dist) in contenders.items():
                got[name].append(launch(ranks, threads, dist, sizes, batch, a.steps, a.warmup, a.data_dir))
        for name, runs in got.items():
            step = statistics.median(r["seconds"] for r in runs) * 1e3
            red = statistics.median(r["reduce"] for r in runs) * 1e3
            print(f"| {'-'.join(map(str, sizes))}, {batch} | {name} | {step:.3f} | {red:.3f} | {red / step:.0%} |",
                  flush=True)
        measured[(sizes, batch)] = statistics.median(r["seconds"] for r in got[f"1 process x {R} threads"])
    model_table(measured)


if __name__ == "__main__":
    main()
