"""The CPU backend (see backend.py): a network's flat buffers on the host, the njit kernels
(fastbp.kernels) run on them, and the named views the book's code reads and writes."""
import contextlib
import functools
import math
import os
import threading

import numba
import numpy as np

from fastbp.backend import CHUNK_STEPS, NamedParams, Trainer
from fastbp.checks import check_params, class_ids
from fastbp.kernels import layout as lay
from fastbp.kernels import mlp
from fastbp.kernels.config import BLAS_ONE_THREAD
from fastbp.kernels.optimizers import optimizer_step
from fastbp.kernels.sparse import Csr, on_threads
from fastbp.kernels.train import Model, Work, train_steps, weighted_gradient
from fastbp.sparse import SparseRows


def _rows(x, start, stop):
    """Rows start..stop-1 of dense x, or of SparseRows x as the kernels' Csr batch."""
    return x.batch(start, stop) if isinstance(x, SparseRows) else x[start:stop]


def part(x, start, stop):
    """Rows start..stop-1 of dense x or of SparseRows x, in the same form (no copy)."""
    return x.part(start, stop) if isinstance(x, SparseRows) else x[start:stop]


def whole(x, width=0):
    """All of dense x, or SparseRows x as the kernels' Csr; width > 0: with the scratch of a
    weight gradient for a first layer of that many outputs."""
    return x.batch(width=width) if isinstance(x, SparseRows) else x


def named_views(flat, layout):
    """{"W1": view, ...}: each parameter as a shaped view into the flat buffer."""
    return {p.name: flat[p.offset:p.offset + math.prod(p.shape)].reshape(p.shape) for p in layout}


class ParamDict(NamedParams):
    """Named views into a flat buffer. Assigning copies into the view (shape checked), so
    `params["W1"] = new` and `params["W1"] -= lr * g` both update the buffer the kernels read."""

    def __init__(self, flat, layout):
        self.flat = flat
        self._views = self._index = named_views(flat, layout)

    def __getitem__(self, name):
        return self._views[name]

    def __setitem__(self, name, value):
        if name not in self._views:
            raise KeyError(f"no parameter {name!r}; parameters are {list(self._views)}")
        view = self._views[name]
        if value is view:  # `params[k] -= ...` already updated the view in place
            return
        view[...] = check_params(name, value, view.shape)

    def __repr__(self):
        return "{" + ", ".join(f"{k!r}: {v.dtype}{list(v.shape)}" for k, v in self._views.items()) + "}"


# Whole-set passes over sparse input split rows between numba's threads in blocks small
# enough that every product stays under BLAS_ONE_THREAD (kernels/config.py).
MAX_BLOCK = 256  # rows per block; smaller ones only where a layer is wide
MIN_BLOCK = 32   # below this the later layers' BLAS calls are too small to pay: one thread


# numba's parallel code is entered one Python thread at a time (its workqueue threading
# layer, the one it falls back to without TBB or OpenMP, terminates the process on
# concurrent use), and never in a child forked from this process (GNU OpenMP, the layer
# picked where it is installed, cannot run a parallel region there; numba terminates it)
_PARALLEL = threading.Lock()
_FORKED = []
os.register_at_fork(after_in_child=lambda: _FORKED.append(True))


@contextlib.contextmanager
def threads(x, sizes, n):
    """x as given, or for a Csr in parts (kernels/sparse.py) with them on numba's threads
    when this thread may enter parallel code now (_PARALLEL free, not forked, more than one
    thread). Then the later layers' products over n rows of a network of these widths run
    on numba's threads too, in blocks of rows (kernels/mlp.py: split_products), each block's
    BLAS call on its thread: where one is large enough to wake BLAS's own threads
    (BLAS_ONE_THREAD), only inside blas_on_one_thread(). BLAS's threads spinning after a
    product and numba's after each part take each other's cores: at 784-256-128-10 and 200
    rows a step ran 10x slower with both. Where BLAS cannot be limited, the parts run in
    turn and BLAS keeps its threads. The same numbers either way, to rounding."""
    if not isinstance(x, Csr) or x.work.splits.shape[0] <= 2 or _FORKED or numba.get_num_threads() < 2 \
            or not _PARALLEL.acquire(blocking=False):
        yield x
        return
    try:
        if n * _widest_later(sizes) <= BLAS_ONE_THREAD:
            yield on_threads(x, True)
        else:
            with blas_on_one_thread() as limited:
                yield on_threads(x, limited)
    finally:
        _PARALLEL.release()


_BLAS_CONTROLLER = []  # threadpoolctl's view of the loaded BLAS libraries, made at first use


@contextlib.contextmanager
def blas_on_one_thread():
    """Every BLAS library loaded in this process limited to one thread inside (threadpoolctl,
    as scikit-learn limits BLAS around its own OpenMP loops); yields whether that took: False,
    with nothing changed, where threadpoolctl finds no BLAS or cannot set every one."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (numba's BLAS: loaded before the scan)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        yield False
        return
    if not _BLAS_CONTROLLER:
        _BLAS_CONTROLLER.append(ThreadpoolController().select(user_api="blas"))
    blas = _BLAS_CONTROLLER[0]
    with blas.limit(limits=1):
        if blas.lib_controllers and all(c.num_threads == 1 for c in blas.lib_controllers):
            yield True
            return
    yield False  # nothing left changed


def _widest_later(sizes):
    # the largest sizes[l] * sizes[l + 1] past the first layer: its products' BLAS size per row
    return max((sizes[l] * sizes[l + 1] for l in range(1, len(sizes) - 1)), default=1)


def parallel_block(sizes):
    """Rows per block of a threaded whole-set pass over sparse input to a network of these
    widths, or 0 where its later layers are too wide for one (cpu.py, BLAS_ONE_THREAD)."""
    block = min(MAX_BLOCK, BLAS_ONE_THREAD // _widest_later(sizes))
    return block if block >= MIN_BLOCK else 0


class CpuBackend:
    """sizes, act (a kernels.codes code), layout (kernels.layout.param_layout), flat (the
    initial parameters, kept as the buffer), chunk (rows per forward pass: bounds memory),
    loss (Network's: which loss the targets are for)."""

    def __init__(self, sizes, act, layout, flat, chunk, loss="softmax_ce"):
        self.sizes, self.chunk, self.dtype = tuple(sizes), chunk, flat.dtype
        # the kernels pick the loss from the targets' type (kernels/mlp.py)
        self.wrap = functools.partial(mlp.targets_for, loss)
        self.params = ParamDict(flat, layout)
        self.model = Model(lay.offsets(layout), np.array(sizes, np.int64), act)
        self._workspaces = {}
        self.block = parallel_block(self.sizes)

    @property
    def flat_params(self):
        return self.params.flat

    def set_flat(self, values):
        self.params.flat[...] = values

    def workspace(self, n):
        """(acts, deltas) for a batch of n rows (kernels allocate nothing; a few sizes are kept)."""
        ws = self._workspaces.get(n)
        if ws is None:
            if len(self._workspaces) >= 4:
                self._workspaces.clear()
            ws = self._workspaces[n] = lay.workspace(self.sizes, n, self.dtype)
        return ws

    @contextlib.contextmanager
    def _blocks(self, x):
        # rows per block of a pass over sparse x spread over numba's threads, or 0: dense x, a
        # forked child, or a network too wide for parallel_block's blocks where BLAS cannot be
        # held to one thread (then one thread, in chunks). Those wider networks get blocks of
        # MAX_BLOCK rows inside blas_on_one_thread(): every block's products on its own thread.
        if not isinstance(x, SparseRows) or _FORKED:
            yield 0
            return
        with _PARALLEL:
            if self.block:
                yield self.block
                return
            with blas_on_one_thread() as limited:
                if limited:
                    yield MAX_BLOCK
                    return
        yield 0

    def _chunk(self, x):
        # rows per call of a one-thread pass; for sparse input small enough that BLAS keeps
        # to the calling thread (see parallel_block)
        return (self.block if isinstance(x, SparseRows) else 0) or self.chunk

    def logits(self, x):
        out = np.empty((x.shape[0], self.sizes[-1]), self.dtype)
        m = self.model
        with self._blocks(x) as block:
            if block:
                mlp.mlp_logits_blocks(out, self.params.flat, m.offsets, m.sizes, x.batch(), m.act, block)
                return out
        chunk = self._chunk(x)
        for s in range(0, x.shape[0], chunk):
            n = min(chunk, x.shape[0] - s)
            acts, _ = self.workspace(n)
            mlp.mlp_forward(acts, self.params.flat, m.offsets, m.sizes, _rows(x, s, s + n), m.act)
            out[s:s + n] = lay.logits_of(acts, self.sizes, n)
        return out

    def classes(self, x):
        return self.logits(x).argmax(axis=1)

    def scores(self, x, t, ids, with_loss=True):
        """One forward pass over x: (how many rows' largest logit is at ids (N,) int64; the
        summed loss, 0.0 without with_loss). The kernel picks the loss from t's form."""
        m, N = self.model, x.shape[0]
        with self._blocks(x) as block:
            if block:
                hits, losses = np.empty(-(-N // block), np.int64), np.empty(-(-N // block))
                mlp.mlp_scores_blocks(hits, losses, self.params.flat, m.offsets, m.sizes, x.batch(), self.wrap(t),
                                      ids, m.act, with_loss, block)
                return int(hits.sum()), sum(losses.tolist(), 0.0)  # summed in order, as one thread sums
        hits, loss = 0, 0.0
        chunk = self._chunk(x)
        for s in range(0, N, chunk):
            n = min(chunk, N - s)
            acts, _ = self.workspace(n)
            hc, lc = mlp.mlp_scores(acts, self.params.flat, m.offsets, m.sizes, _rows(x, s, s + n),
                                    self.wrap(t[s:s + n]), ids[s:s + n], m.act, with_loss)
            hits, loss = hits + hc, loss + lc
        return hits, loss

    def loss(self, x, t):
        return self.scores(x, t, class_ids(t))[1] / x.shape[0]

    def loss_grad(self, grads, x, t):
        acts, deltas = self.workspace(x.shape[0])
        m = self.model
        with threads(whole(x, self.sizes[1]), self.sizes, x.shape[0]) as xk:
            return mlp.mlp_loss_grad(grads, acts, deltas, self.params.flat, m.offsets, m.sizes, xk, self.wrap(t), m.act)

    def trainer(self, x, t, sets, batch_size, opt_state):
        return CpuTrainer(self, x, t, sets, batch_size, opt_state)


class CpuTrainer(Trainer):
    """The compiled loop (kernels/train.py) over host buffers; opt_state is updated in place.
    x dense (N, D0), or SparseRows: then a minibatch is a list of its rows, never a copy."""

    def __init__(self, backend, x, t, sets, batch_size, opt_state):
        self.backend, self.t, self.opt_state = backend, backend.wrap(t), opt_state
        self.batch_size = batch_size
        if isinstance(x, SparseRows):  # the loop swaps each batch's rows into this Csr
            self.x, xb_rows = x.take(np.zeros(0, np.int64), x.max_batch_nnz(batch_size),
                                     (batch_size, backend.sizes[1])), 1
        else:  # dense batches are gathered into a (batch_size, D0) buffer
            self.x, xb_rows = x, batch_size
        self.data = {"train": (x, t), **sets}
        self.ids = {name: class_ids(ts) for name, (_, ts) in self.data.items()}  # what accuracy compares with
        acts, deltas = backend.workspace(batch_size)
        self.work = Work(lay.zeros(backend.flat_params.size, backend.dtype), acts, deltas,
                         np.empty((xb_rows, x.shape[1]), backend.dtype), np.empty((batch_size,) + t.shape[1:], t.dtype))
        self.losses = np.empty(CHUNK_STEPS, np.float64)

    def new_epoch(self, order):
        self.order = order

    def run(self, first, steps, optim, t0):
        with threads(self.x, self.backend.sizes, self.batch_size) as x:
            ran = train_steps(self.backend.flat_params, self.opt_state, self.work, x, self.t, self.order,
                              first, steps, self.backend.model, optim, t0, self.losses)
        return ran, self.losses

    def gradient_share(self, red, start, n, weight):
        # rows order[start:start + n] of this epoch; kernels/train.py: weighted_gradient
        weighted_gradient(red, self.backend.flat_params, self.work, self.x, self.t, self.order[start:start + n],
                          self.backend.model, weight)

    def apply(self, grads, optim, step):
        m = self.backend.model
        optimizer_step(self.backend.flat_params, grads, self.opt_state, m.offsets, m.sizes, *optim, step)

    def rows(self, which):
        return len(self.data[which][1])

    def tally(self, which, start=0, stop=None, with_loss=True):
        x, t = self.data[which]
        stop = len(t) if stop is None else stop
        if stop <= start:
            return 0, 0.0
        return self.backend.scores(part(x, start, stop), t[start:stop], self.ids[which][start:stop], with_loss)

    def sync_state(self):
        pass  # the optimizer state is opt_state itself

    def load_state(self):
        pass  # the same: opt_state is what the kernels read
