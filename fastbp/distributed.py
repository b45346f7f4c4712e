"""Data-parallel training over MPI: fit(..., comm=MPI.COMM_WORLD) run under `mpiexec -n R`.

Synchronous, as Horovod and PyTorch DDP do it. Every rank holds the whole data set and
the same TrainState; the epoch's row order comes from the same Generator on every rank,
so every rank knows every global batch of B rows. Rank r of R takes rows
[B·r // R, B·(r+1) // R) of each (shares differ by at most one row; with B < R some ranks
have none), computes the gradient of its rows' mean loss weighted by its share n_r / B,
and ONE in-place Allreduce over the flat gradient buffer, the weighted loss in one extra
slot, sums them into the whole batch's mean gradient and loss. Every rank then applies the
same update to the same parameters, so they stay identical without being sent again. The
accuracy and loss passes split the rows the same way and sum counts.

Before the first step rank 0's parameters and TrainState are broadcast (Horovod's
broadcast_parameters), after checking that every rank was given the same network, data
and settings; a bad argument on any rank is raised on every rank. Once training runs, an
exception on one rank would leave the others waiting in the next Allreduce forever, so it
aborts the MPI job (MPI_Abort) instead, as `python -m mpi4py` does.

Only this module imports mpi4py, and only when a communicator is given.
"""
import contextlib
import sys
import time
import traceback
import warnings
import zlib

import numpy as np

from fastbp.backend import CHUNK_STEPS, rates


def share(n, size, rank):
    """(start, stop): rank's part of n rows split over size ranks, in rank order."""
    return n * rank // size, n * (rank + 1) // size


def check_comm(comm):
    try:
        from mpi4py import MPI
    except ImportError:
        raise TypeError("comm needs mpi4py: pip install 'fastbp[mpi]'") from None
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator (MPI.COMM_WORLD), got {type(comm).__name__}")


def together(comm, fn):
    """fn() on every rank. If it raised ValueError or TypeError on any rank, every rank
    raises: its own error, or the first failing rank's (named), so no rank is left waiting."""
    try:
        result, err = fn(), None
    except (ValueError, TypeError) as e:
        result, err = None, e
    errors = comm.allgather(None if err is None else (type(err) is TypeError, str(err)))
    if err is not None:
        raise err
    for rank, e in enumerate(errors):
        if e is not None:
            raise (TypeError if e[0] else ValueError)(f"on rank {rank}: {e[1]}")
    return result


def fingerprint(*arrays):
    """A CRC-32 over arrays' bytes (dense arrays or fastbp.sparse.SparseRows)."""
    crc = 0
    for a in arrays:
        parts = (a.indptr - a.indptr[0], a.indices, a.data) if hasattr(a, "indptr") else (a,)
        for p in parts:
            crc = zlib.crc32(np.ascontiguousarray(p).view(np.uint8).ravel(), crc)
    return crc


def check_same(comm, facts):
    """ValueError on every rank if any rank's facts (a dict) differ from rank 0's."""
    every = comm.allgather(facts)
    differ = [k for k in facts if any(f.get(k) != every[0].get(k) for f in every)]
    if differ:
        what = "; ".join(f"{k}: " + ", ".join(f"rank {r} {f.get(k)!r}" for r, f in enumerate(every))
                         for k in differ)
        raise ValueError(f"the {len(every)} ranks were given different networks, data or settings "
                         f"({what}); every rank must call fit with the same ones")


def broadcast_start(comm, net, state):
    """Rank 0's parameters and TrainState onto every rank."""
    flat = np.array(net.flat_params)  # a copy: a GPU network's is read-only
    comm.Bcast(flat, root=0)
    net.backend.set_flat(flat)
    comm.Bcast(state.opt_state, root=0)
    rest = (state.rng.bit_generator.state, state.epoch_rng, state.step, state.epoch, state.history)
    (rng, state.epoch_rng, state.step, state.epoch, state.history) = comm.bcast(rest, root=0)
    state.rng.bit_generator.state = rng


@contextlib.contextmanager
def abort_on_error(comm, keep=()):
    """Exceptions other than `keep` (raised alike on every rank) abort every rank's process."""
    try:
        yield
    except keep:
        raise
    except BaseException as e:
        status = 130 if isinstance(e, KeyboardInterrupt) else 1
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        print(f"fastbp: rank {comm.Get_rank()} of {comm.Get_size()}: {detail}; aborting every rank",
              file=sys.stderr, flush=True)
        comm.Abort(status)


def use_local_gpu(comm):
    """Select GPU (local rank) mod (GPUs on this machine) for this process; returns its id.
    Call before building a device="cuda" Network."""
    from mpi4py import MPI
    from numba import cuda
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        gpu = local.Get_rank() % max(len(cuda.gpus), 1)
    finally:
        local.Free()
    cuda.select_device(gpu)
    return gpu


class DataParallel:
    """fit's Trainer (backend.py) with each step split over comm's ranks. reduce_seconds:
    the time spent in the step's Allreduce, waiting for the slowest rank included."""

    def __init__(self, comm, backend, x, t, sets, batch_size, opt_state, dtype, n_params):
        from mpi4py import MPI
        self.comm, self.SUM = comm, MPI.SUM
        self.IN_PLACE = MPI.IN_PLACE
        rank, size = comm.Get_rank(), comm.Get_size()
        self.B = batch_size
        self.lo, hi = share(batch_size, size, rank)
        self.n = hi - self.lo
        self.weight = self.n / batch_size
        # the backend's own loop over this rank's rows: its data, buffers and kernels
        self.inner = backend.trainer(x, t, sets, max(self.n, 1), opt_state)
        self.backend, self.opt_state = backend, opt_state
        self.rows = {"train": len(t), **{name: len(ts) for name, (_, ts) in sets.items()}}
        self.red = np.zeros(n_params + 1, dtype)  # the weighted gradient, then the weighted loss
        self.losses = np.empty(CHUNK_STEPS, np.float64)
        self.reduce_seconds = 0.0

    def new_epoch(self, order):
        self.inner.new_epoch(order)

    def run(self, first, steps, optim, t0):
        red, P = self.red, self.red.shape[0] - 1
        for k in range(steps):
            if self.n:
                self.inner.gradient_share(red, (first + k) * self.B + self.lo, self.n, self.weight)
            else:
                red[:] = 0
            started = time.perf_counter()
            self.comm.Allreduce(self.IN_PLACE, red, op=self.SUM)
            self.reduce_seconds += time.perf_counter() - started
            self.losses[k] = red[P]
            if not np.isfinite(red[P]):
                return k, self.losses
            self.inner.apply(red[:P], optim, t0 + k + 1)
        return steps, self.losses

    def _part(self, which):
        return share(self.rows[which], self.comm.Get_size(), self.comm.Get_rank())

    def evaluate(self, which, with_loss=True):
        # each rank's part of the set in one pass, then one allreduce of (hits, loss)
        hits, loss = self.inner.tally(which, *self._part(which), with_loss)
        hits, loss = self.comm.allreduce(np.array([hits, loss]), op=self.SUM)
        return rates(hits, loss, self.rows[which], with_loss)

    def sync_state(self):
        self.inner.sync_state()

    def realign(self):
        """At an epoch's end, after sync_state: the ranks compared (a CRC of parameters and
        optimizer state). MPICH gives every rank the same Allreduce bits, so they agree;
        where a library does not, rank 0's are broadcast again, with a warning. (Not in
        sync_state: that also runs while an exception unwinds, where a collective would hang.)"""
        flat = np.array(self.backend.flat_params)
        crcs = self.comm.allgather(fingerprint(flat, self.opt_state))
        if len(set(crcs)) > 1:
            if self.comm.Get_rank() == 0:
                warnings.warn(f"the ranks' parameters differ (ranks {[r for r, c in enumerate(crcs) if c != crcs[0]]} "
                              f"from rank 0's): this MPI library's Allreduce does not give every rank the same "
                              f"bits; rank 0's parameters and optimizer state were broadcast again", RuntimeWarning)
            self.comm.Bcast(flat, root=0)
            self.comm.Bcast(self.opt_state, root=0)
            self.backend.set_flat(flat)
            self.inner.load_state()
