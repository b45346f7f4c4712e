"""The CUDA backend (see backend.py): the CPU backend's twin on the GPU (fastbp.kernels.cuda).

Host arrays in, host arrays out: the device holds the parameters (one flat
buffer), gradients, workspaces, and during fit the whole data set. Nothing here
runs unless a network asks for the GPU, so fastbp imports without numba-cuda.
"""
import numpy as np

from fastbp.backend import CHUNK_STEPS, NamedParams, Trainer
from fastbp.checks import check_params, class_ids


class DeviceUnavailable(RuntimeError):
    """device="cuda" was asked for and there is no usable GPU (nor numba's simulator)."""


def require_cuda():
    """numba.cuda, or DeviceUnavailable saying what is missing and how to get it."""
    try:
        from numba import cuda
    except ImportError as e:  # pragma: no cover - numba always ships some numba.cuda
        raise DeviceUnavailable(f"device='cuda' needs numba-cuda: pip install 'fastbp[cuda]' ({e})") from None
    try:
        ok = cuda.is_available()
    except Exception as e:  # a broken driver install raises instead of answering
        raise DeviceUnavailable(f"device='cuda': the CUDA driver failed to load ({e})") from None
    if not ok:
        raise DeviceUnavailable(
            "device='cuda' but no CUDA GPU is usable here (no driver or no device); use "
            "device='cpu', or NUMBA_ENABLE_CUDASIM=1 for numba's (slow) simulator")
    return cuda


class DeviceParams(NamedParams):
    """params["W1"] of a GPU network: reading copies the current values to the host
    (read-only: writing into a copy would be lost silently); assigning uploads.
    So `params["W1"] = params["W1"] - lr * g` works; `params["W1"] -= ...` raises."""

    def __init__(self, dev, layout):
        self._dev = dev
        self._shapes = self._index = {p.name: p.shape for p in layout}

    @property
    def flat(self):
        """A read-only host copy of the whole flat buffer."""
        a = self._dev.params.copy_to_host()
        a.flags.writeable = False
        return a

    def __getitem__(self, name):
        if name not in self._shapes:
            raise KeyError(name)
        a = self._dev.view(name).copy_to_host()
        a.flags.writeable = False
        return a

    def __setitem__(self, name, value):
        if name not in self._shapes:
            raise KeyError(f"no parameter {name!r}; parameters are {list(self._shapes)}")
        arr = check_params(name, value, self._shapes[name])
        self._dev.view(name).copy_to_device(np.ascontiguousarray(arr, self._dev.NP))

    def __repr__(self):
        dt = np.dtype(self._dev.NP).name
        return "{" + ", ".join(f"{k!r}: {dt}{list(s)} (cuda)" for k, s in self._shapes.items()) + "}"


class CudaBackend:
    """CpuBackend's arguments; the parameters are uploaded once and live on the device.
    loss: "softmax_ce" on class ids, or "mse", "logistic", "half_squared" on float
    targets (N, C) (kernels/cuda/entry_losses.py)."""

    def __init__(self, sizes, act, layout, flat, chunk, loss="softmax_ce"):
        self.cuda = require_cuda()
        from fastbp.kernels.cuda.mlp import DeviceMLP
        self.dev = DeviceMLP(sizes, act, layout, flat, loss)
        self.params = DeviceParams(self.dev, layout)
        self.chunk = chunk
        self.C = sizes[-1]

    @staticmethod
    def wrap(t):
        return t  # the device kernels know their loss (CpuBackend wraps targets to pick it)

    @property
    def flat_params(self):
        return self.params.flat

    def set_flat(self, values):
        self.dev.params.copy_to_device(np.ascontiguousarray(values, self.dev.NP))

    def logits(self, x):
        out = np.empty((x.shape[0], self.C), self.dev.NP)
        for s in range(0, x.shape[0], self.chunk):
            xc = self.cuda.to_device(np.ascontiguousarray(x[s:s + self.chunk]))
            out[s:s + xc.shape[0]] = self.dev.forward(self.dev.workspace(xc.shape[0]), xc).copy_to_host()
        return out

    def _to_device(self, a):
        return self.cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a

    def classes(self, x):
        """Predicted class ids (N,) for host or device rows x."""
        return self.dev.predict_classes(self._to_device(x), self.chunk)

    def loss(self, x, t):
        # x on the host, or already on the device (fit's data sets)
        n = x.shape[0]
        starts = range(0, n, self.chunk)
        losses = self.cuda.device_array(len(starts), np.float64)
        for k, s in enumerate(starts):
            xc = self._to_device(x[s:s + self.chunk])
            tc = self._to_device(t[s:s + self.chunk])
            self.dev.loss(self.dev.workspace(xc.shape[0]), xc, tc, losses, k)
        means = losses.copy_to_host()
        return float(sum(means[k] * min(self.chunk, n - s) for k, s in enumerate(starts)) / n)

    def loss_grad(self, grads, x, t):
        # one pass over the whole batch (a gradient is one step's worth of rows)
        losses = self.cuda.device_array(1, np.float64)
        xd, td = self._to_device(x), self._to_device(t)
        self.dev.loss_grad(self.dev.workspace(x.shape[0]), xd, td, losses, 0)
        self.dev.grads.copy_to_host(grads)
        return float(losses.copy_to_host()[0])

    def trainer(self, x, t, sets, batch_size, opt_state):
        return CudaTrainer(self, x, t, sets, batch_size, opt_state)


class CudaTrainer(Trainer):
    """The same loop on the GPU (kernels/cuda/mlp.py): the data sets are uploaded once, each
    epoch's row order once; the host reads back a chunk's losses and the stop flag. Where the
    epoch kernel applies (kernels/cuda/epoch.py) a chunk is a whole epoch and one launch."""

    def __init__(self, backend, x, t, sets, batch_size, opt_state):
        cuda = self.cuda = backend.cuda
        self.backend, self.dev, self.opt_state = backend, backend.dev, opt_state
        self.x, self.t = cuda.to_device(x), cuda.to_device(t)
        # device rows and targets, and the classes the accuracy passes compare with on the host
        self.data = {"train": (self.x, self.t, class_ids(t))}
        for name, (xs, ts) in sets.items():
            self.data[name] = (cuda.to_device(xs), cuda.to_device(ts), class_ids(ts))
        self.state = cuda.to_device(opt_state)
        self.ws = self.dev.workspace(batch_size)
        self.losses = cuda.device_array(CHUNK_STEPS, np.float64)
        if self.ws.one_launch:
            self.chunk_steps = len(x) // batch_size  # fit's chunks: a whole epoch a launch
        from fastbp.kernels.cuda import config
        self.block = config.BLOCK

    def new_epoch(self, order):
        self.order = self.cuda.to_device(order)

    def run(self, first, steps, optim, t0):
        if steps > self.losses.shape[0]:
            self.losses = self.cuda.device_array(steps, np.float64)
        self.dev.train_steps(self.ws, self.x, self.t, self.order, first, steps, optim, t0, self.state,
                             self.losses)
        losses = self.losses.copy_to_host()
        stop = int(self.dev.stop.copy_to_host()[0])
        return (stop - 1 if stop else steps), losses

    def gradient_share(self, red, start, n, weight):
        # as CpuTrainer's: rows order[start:start + n] gathered and differentiated on the
        # device (self.ws is sized for n rows), the gradient and loss read back into red
        ws, P = self.ws, red.shape[0] - 1
        ws.gather[ws.gather_blocks, self.block](ws.xb, ws.tb, self.x, self.t, self.order, start)
        self.dev.loss_grad(ws, ws.xb, ws.tb, self.losses, 0)
        self.dev.grads.copy_to_host(red[:P])
        red[:P] *= red.dtype.type(weight)
        red[P] = self.losses[:1].copy_to_host()[0] * weight

    def apply(self, grads, optim, step):
        self.dev.stop.copy_to_device(np.zeros(1, np.int64))  # only finite losses get here
        self.dev.grads.copy_to_device(grads)
        self.dev.update(optim, step, self.state)

    def rows(self, which):
        return len(self.data[which][2])

    def tally(self, which, start=0, stop=None, with_loss=True):
        x, t, ids = self.data[which]
        stop = len(ids) if stop is None else stop
        if stop <= start:
            return 0, 0.0
        hits = int(np.count_nonzero(self.backend.classes(x[start:stop]) == ids[start:stop]))
        return hits, (self.backend.loss(x[start:stop], t[start:stop]) * (stop - start) if with_loss else 0.0)

    def sync_state(self):
        self.state.copy_to_host(self.opt_state)

    def load_state(self):
        self.state.copy_to_device(self.opt_state)
