"""The CPU backend (see backend.py): a network's flat buffers on the host, the njit kernels
(fastbp.kernels) run on them, and the named views the book's code reads and writes."""
import math

import numpy as np

from fastbp.backend import CHUNK_STEPS, NamedParams
from fastbp.checks import check_params
from fastbp.kernels import layout as lay
from fastbp.kernels import mlp
from fastbp.kernels.train import Model, Work, train_steps


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


class CpuBackend:
    """sizes, act (a kernels.codes code), layout (kernels.layout.param_layout), flat (the
    initial parameters, kept as the buffer), chunk (rows per forward pass: bounds memory)."""

    def __init__(self, sizes, act, layout, flat, chunk):
        self.sizes, self.chunk, self.dtype = tuple(sizes), chunk, flat.dtype
        self.params = ParamDict(flat, layout)
        self.model = Model(lay.offsets(layout), np.array(sizes, np.int64), act)
        self._workspaces = {}

    @property
    def flat_params(self):
        return self.params.flat

    def workspace(self, n):
        """(acts, deltas) for a batch of n rows (kernels allocate nothing; a few sizes are kept)."""
        ws = self._workspaces.get(n)
        if ws is None:
            if len(self._workspaces) >= 4:
                self._workspaces.clear()
            ws = self._workspaces[n] = (np.empty(lay.acts_length(self.sizes, n), self.dtype),
                                        np.empty(lay.deltas_length(self.sizes, n), self.dtype))
        return ws

    def _chunks(self, n):
        return range(0, n, self.chunk)

    def logits(self, x):
        out = np.empty((x.shape[0], self.sizes[-1]), self.dtype)
        m = self.model
        for s in self._chunks(x.shape[0]):
            xc = x[s:s + self.chunk]
            acts, _ = self.workspace(xc.shape[0])
            mlp.mlp_forward(acts, self.params.flat, m.offsets, m.sizes, xc, m.act)
            out[s:s + xc.shape[0]] = lay.logits_of(acts, self.sizes, xc.shape[0])
        return out

    def classes(self, x):
        return self.logits(x).argmax(axis=1)

    def loss(self, x, t):
        # the kernel picks the loss from the targets' form: ids (N,) or MSE targets (N, C)
        total, m = 0.0, self.model
        for s in self._chunks(x.shape[0]):
            xc, tc = x[s:s + self.chunk], t[s:s + self.chunk]
            acts, _ = self.workspace(xc.shape[0])
            total += xc.shape[0] * mlp.mlp_loss(acts, self.params.flat, m.offsets, m.sizes, xc, tc, m.act)
        return total / x.shape[0]

    def loss_grad(self, grads, x, t):
        acts, deltas = self.workspace(x.shape[0])
        m = self.model
        return mlp.mlp_loss_grad(grads, acts, deltas, self.params.flat, m.offsets, m.sizes, x, t, m.act)

    def trainer(self, x, t, evals, batch_size, opt_state):
        return CpuTrainer(self, x, t, evals, batch_size, opt_state)


class CpuTrainer:
    """The compiled loop (kernels/train.py) over host buffers; opt_state is updated in place."""

    def __init__(self, backend, x, t, evals, batch_size, opt_state):
        self.backend, self.x, self.t, self.opt_state = backend, x, t, opt_state
        self.data = {"train": (x, t), "eval": evals}
        acts, deltas = backend.workspace(batch_size)
        self.work = Work(np.empty_like(backend.flat_params), acts, deltas,
                         np.empty((batch_size, x.shape[1]), backend.dtype), np.empty(batch_size, np.int64))
        self.losses = np.empty(CHUNK_STEPS, np.float64)

    def new_epoch(self, order):
        self.order = order

    def run(self, first, steps, optim, t0):
        ran = train_steps(self.backend.flat_params, self.opt_state, self.work, self.x, self.t, self.order,
                          first, steps, self.backend.model, optim, t0, self.losses)
        return ran, self.losses

    def accuracy(self, which):
        x, t = self.data[which]
        return float(np.mean(self.backend.classes(x) == t))

    def loss(self, which):
        return self.backend.loss(*self.data[which])

    def sync_state(self):
        pass  # the optimizer state is opt_state itself
