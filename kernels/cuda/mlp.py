"""DeviceMLP: a whole network's buffers on the GPU and its step as a fixed list of launches.

Sizes: L layers, widths sizes = (D0, ..., DL), B batch. params and grads are ONE
flat device buffer each, in the layout of fastbp.kernels.layout; W_l / b_l are
device views made once. Per batch size B a workspace holds every layer's output
acts[l] (B, D_{l+1}) and gradient deltas[l] (B, D_{l+1}).

A training step as launches is 3L + 2 of them and no host transfer:
    gather 1 | forward L | output loss forward+backward 1 | backward 2L - 1 | optimizer 1
(784-50-10: 8 launches; one more for softmax with over config.ROW_THREAD_MAX_CLASSES
classes). Where the epoch kernel applies and pays (epoch.py: softmax on up to that many
classes, small layers), train_steps runs a whole chunk of steps as one launch instead; the
launches stay as its referee (train_steps(..., one_launch=False)); capture_steps records
those launches as a CUDA graph to replay (the other way to take the host out of the
loop, timed beside the epoch kernel by bench/cuda_report.py). The loss of each step
goes to a device array the host reads once per chunk of steps. Hidden layers use `act` (a
code from fastbp.kernels.codes); the last layer gives the logits. `loss` picks the output loss: "softmax_ce" on (B,) int64 class ids
(softmax_loss.py), or "mse", "half_squared", "logistic" on (B, C) float targets
(entry_losses.py).
"""
import math

import numpy as np
from numba import cuda

from ..codes import ADAM, IDENTITY
from ..layout import offsets
from ..optimizers import adam_lr
from . import affine, config
from . import epoch as epoch_kernel
from .entry_losses import entry_loss
from .gather import gather
from .optimizers import update
from .softmax_loss import argmax_rows, mean_loss, softmax_ce, softmax_ce_rows


def _step_lr(optim, step):
    # the rate of step `step` (from 1): Adam's bias-corrected one, the host's float64 value
    opt, lr, hyper1, hyper2, _ = optim
    return adam_lr(lr, hyper1, hyper2, step) if opt == ADAM else lr


def core_device():
    """cuda.core's Device for numba's current GPU, made current (its streams and graph
    builders ask for that; it is the primary context, the one numba uses)."""
    from cuda.core import Device
    device = Device(cuda.get_current_device().id)
    device.set_current()
    return device


def _blocks(n, block):
    return int((n + block - 1) // block)  # a launch takes Python ints only (not np.int64)


class DeviceMLP:
    def __init__(self, sizes, act, layout, flat, loss="softmax_ce"):
        # layout: fastbp.kernels.layout.param_layout(sizes); flat: the host parameter buffer
        # to upload (its dtype is the network's)
        self.sizes = tuple(int(d) for d in sizes)  # Python ints: launch shapes are made from them
        self.act, self.layout, self.loss_kind = int(act), layout, loss
        self.NP = flat.dtype.type
        self.L = len(sizes) - 1
        self.params = cuda.to_device(flat)
        self.grads = cuda.device_array_like(self.params)
        self.W, self.b = self._views(self.params)
        self.dW, self.db = self._views(self.grads)
        decay = np.zeros(flat.size, np.uint8)  # weight decay applies to W entries only
        for p in layout:
            if p.kind == "W":
                decay[p.offset:p.offset + math.prod(p.shape)] = 1
        self.decay = cuda.to_device(decay)
        self.stop = cuda.to_device(np.zeros(1, np.int64))
        self._ws = {}
        self._update = update(self.NP)
        self._update_blocks = _blocks(flat.size, config.BLOCK)
        self.epoch_ok = epoch_kernel.applies(self.sizes, loss)
        if self.epoch_ok:
            starts = offsets(layout)
            self.woff, self.boff = cuda.to_device(starts[0::2].copy()), cuda.to_device(starts[1::2].copy())
            self.sizes_dev = cuda.to_device(np.array(self.sizes, np.int64))

    def _views(self, buf):
        W, b = [], []
        for p in self.layout:
            v = buf[p.offset:p.offset + math.prod(p.shape)]
            (W if p.kind == "W" else b).append(v.reshape(p.shape) if p.kind == "W" else v)
        return W, b

    def view(self, name):
        """The device view of parameter `name` ("W1", "b2", ...)."""
        p = next(p for p in self.layout if p.name == name)
        return (self.W if p.kind == "W" else self.b)[p.layer]

    # -- per batch size: buffers and the replayable launch lists
    def workspace(self, B):
        B = int(B)
        ws = self._ws.get(B)
        if ws is None:
            if len(self._ws) >= 4:
                self._ws.clear()
            ws = self._ws[B] = _Workspace(self, B)
        return ws

    def forward(self, ws, x):
        affine.run(ws.forward_plan(x))
        return ws.acts[-1]

    def loss_grad(self, ws, x, t, losses, slot, stream=0):
        # forward + the output loss + backward into self.grads; the loss into losses[slot]
        affine.run(ws.forward_plan(x), stream)
        ws.output_loss(True, losses, t, slot, stream)
        affine.run(ws.backward_plan(x), stream)

    def loss(self, ws, x, t, losses, slot):
        # forward + the mean loss into losses[slot]; no gradients
        affine.run(ws.forward_plan(x))
        ws.output_loss(False, losses, t, slot)

    def train_steps(self, ws, x, t, order, first, steps, optim, t0, state, losses, one_launch=None):
        """`steps` training steps (the optimizer `opt`, a code from fastbp.kernels.codes) on
        rows order[(first + k) * B ...] of the device data set x, t, with optim (the CPU
        loop's kernels.train.Optim: code, lr, hyper1, hyper2, wd); the loss of step k into
        losses[k]. state (2, P): the optimizer's s0, s1. t0: steps taken before (Adam's bias
        correction). One launch where the epoch kernel applies (one_launch=None or True),
        else 3L + 2 a step (one_launch=False). Returns nothing: the host reads losses and
        self.stop afterwards (stop[0] = k + 1 if step k's loss was not finite; the updates
        from that step on were skipped)."""
        self.stop.copy_to_device(np.zeros(1, np.int64))
        if ws.one_launch if one_launch is None else one_launch:
            self._one_launch(ws, x, t, order, first, steps, optim, t0, state, losses)
            return
        self._launch_steps(ws, x, t, order, first, steps, optim, t0, state, losses, 0)

    def _launch_steps(self, ws, x, t, order, first, steps, optim, t0, state, losses, stream):
        # the steps as 3L + 2 launches each, on `stream` (nothing else: capturable)
        for k in range(steps):
            ws.gather[ws.gather_blocks, config.BLOCK, stream](ws.xb, ws.tb, x, t, order, (first + k) * ws.B)
            self.loss_grad(ws, ws.xb, ws.tb, losses, k, stream)
            self.update(optim, t0 + k + 1, state, stream)

    def capture_steps(self, ws, x, t, order, first, steps, optim, t0, state, losses):
        """The launches of train_steps(..., one_launch=False) captured once as a CUDA graph
        (cuda.core's GraphBuilder; every argument is baked in, the arrays by address): its
        launch(stream) replays those steps, e.g. each epoch once new_epoch has written the
        next row order into the same `order` array. A replay does not clear self.stop."""
        ws.forward_plan(ws.xb)  # compiled and planned now: nothing may load or allocate
        ws.backward_plan(ws.xb)  # while the stream is captured
        builder = core_device().create_graph_builder()
        builder.begin_building()
        try:
            self._launch_steps(ws, x, t, order, first, steps, optim, t0, state, losses, builder)
        finally:
            graph = builder.end_building()
        return graph.complete()

    def _one_launch(self, ws, x, t, order, first, steps, optim, t0, state, losses):
        if not self.epoch_ok:
            raise ValueError(f"the epoch kernel does not run {self.loss_kind!r} on {self.sizes[-1]} "
                             f"classes (epoch.applies)")
        NP = self.NP
        opt, lr, hyper1, hyper2, wd = optim
        lr_ts = np.array([_step_lr(optim, t0 + k + 1) for k in range(steps)], NP)
        kernel, block = ws.epoch()
        kernel[ws.epoch_blocks, block](
            self.params, self.grads, state[0], state[1], self.decay, ws.acts_flat, ws.deltas_flat,
            ws.row_loss, losses, self.stop, x.reshape(x.size), t, order, self.sizes_dev, self.woff, self.boff,
            ws.aoff, cuda.to_device(lr_ts), first, steps, ws.B, self.act, opt, NP(lr), NP(hyper1),
            NP(1 - hyper1), NP(1 - hyper2), NP(wd))

    def update(self, optim, step, state, stream=0):
        """One optimizer update from self.grads (optim as in train_steps; step counts from 1;
        state (2, P) the optimizer's s0, s1); skipped once self.stop is set."""
        NP = self.NP
        opt, lr, hyper1, hyper2, wd = optim
        lr_t = _step_lr(optim, step)
        self._update[self._update_blocks, config.BLOCK, stream](
            self.params, self.grads, state[0], state[1], self.decay, self.stop, opt, NP(lr), NP(lr_t),
            NP(hyper1), NP(1 - hyper1), NP(1 - hyper2), NP(wd))

    def predict_classes(self, x_dev, chunk):
        """Class ids (N,) int64 on the host for device rows x_dev (N, D0), `chunk` rows a pass."""
        N = x_dev.shape[0]
        pred = cuda.device_array(N, np.int64)
        for s in range(0, N, chunk):
            xc = x_dev[s:s + chunk]
            logits = self.forward(self.workspace(xc.shape[0]), xc)
            argmax_rows(self.NP)[_blocks(xc.shape[0], config.BLOCK), config.BLOCK](pred[s:s + chunk], logits)
        return pred.copy_to_host()


class _Workspace:
    def __init__(self, net, B):
        self.net, self.B = net, B
        NP = net.NP
        # every layer's outputs and gradients in one flat buffer each (the epoch kernel's view),
        # layer l's (B, D_{l+1}) block at aoff[l] (the launches' views)
        widths = net.sizes[1:]
        starts = np.concatenate([[0], np.cumsum([B * d for d in widths])]).astype(np.int64)
        self.acts_flat = cuda.device_array(int(starts[-1]), NP)
        self.deltas_flat = cuda.device_array(int(starts[-1]), NP)
        self.acts = [self.acts_flat[starts[l]:starts[l + 1]].reshape(B, d) for l, d in enumerate(widths)]
        self.deltas = [self.deltas_flat[starts[l]:starts[l + 1]].reshape(B, d) for l, d in enumerate(widths)]
        self.aoff = cuda.to_device(starts[:-1].copy())
        self._epoch = None
        self.one_launch = net.epoch_ok and epoch_kernel.pays(net.sizes, B)
        D, C = net.sizes[0], net.sizes[-1]
        self.xb = cuda.device_array((B, D), NP)
        # kernels; configured at each launch (see affine.py)
        self.softmax = net.loss_kind == "softmax_ce"
        self.row_per_thread = self.softmax and C <= config.ROW_THREAD_MAX_CLASSES
        if not self.softmax:
            self.tb = cuda.device_array((B, C), NP)
            self.entry = {g: entry_loss(NP, net.loss_kind, g) for g in (True, False)}
            self.gather, self.gather_blocks = gather(NP, True), (_blocks(max(D, C), config.BLOCK), B)
        else:
            self.tb = cuda.device_array(B, np.int64)
            self.gather, self.gather_blocks = gather(NP), (_blocks(D, config.BLOCK), B)
        if self.row_per_thread:
            self.softmax_kernels = {g: softmax_ce(NP, g) for g in (True, False)}
        elif self.softmax:
            self.softmax_kernels = {g: softmax_ce_rows(NP, g) for g in (True, False)}
            self.mean_loss = mean_loss()
        self.row_loss = cuda.device_array(B, np.float64)
        self._forward = self._backward = None

    def epoch(self, block=None, chains=None, split=None):
        """The epoch kernel for this network's dtype, and its threads per block; compiled and
        its grid sized at first use (epoch_blocks). chains: its sums' chains a thread, split:
        the most lanes a forward sum is split over (config.EPOCH_CHAINS, EPOCH_SPLIT when None)."""
        if block is None and chains is None and split is None and self._epoch is not None:
            return self._epoch[:2]  # the one in use (bench/cuda_report.py tries others)
        block, chains = block or config.EPOCH_BLOCK, chains or config.EPOCH_CHAINS
        split = split or config.EPOCH_SPLIT
        if self._epoch is None or self._epoch[1:] != (block, chains, split):
            kernel = epoch_kernel.epoch(self.net.NP, block, chains, split)
            self._epoch = kernel, block, chains, split
            self.epoch_blocks = epoch_kernel.blocks(kernel, block)
        return self._epoch[:2]

    def output_loss(self, grad, losses, t, slot, stream=0):
        # on the last layer's output: its gradient into deltas[-1] (if grad), the loss into
        # losses[slot]; 1 launch, 2 for softmax over wide heads (softmax_loss.py)
        logits, d = self.acts[-1], self.deltas[-1]
        if not self.softmax:
            self.entry[grad][1, config.ROWS_BLOCK, stream](d, losses, logits, t, slot, self.net.stop)
        elif self.row_per_thread:
            self.softmax_kernels[grad][1, config.ROWS_BLOCK, stream](d, losses, logits, t, slot, self.net.stop)
        else:
            self.softmax_kernels[grad][logits.shape[0], config.ROWS_BLOCK, stream](d, self.row_loss, logits, t)
            self.mean_loss[1, config.ROWS_BLOCK, stream](losses, self.row_loss, slot, self.net.stop)

    def _act(self, l):
        return self.net.act if l < self.net.L - 1 else IDENTITY

    def forward_plan(self, x):
        # the plan over the batch buffer xb is built once and replayed; others are built per call
        if x is self.xb and self._forward is not None:
            return self._forward
        net, steps = self.net, []
        for l in range(net.L):
            inp = x if l == 0 else self.acts[l - 1]
            steps += affine.forward(self.acts[l], inp, net.W[l], net.b[l], self._act(l))
        if x is self.xb:
            self._forward = steps
        return steps

    def backward_plan(self, x):
        if x is self.xb and self._backward is not None:
            return self._backward
        net, steps = self.net, []
        for l in range(net.L - 1, -1, -1):
            if l == 0:
                steps += affine.backward(net.dW[0], net.db[0], self.deltas[0], x)
            else:
                steps += affine.backward(net.dW[l], net.db[l], self.deltas[l], self.acts[l - 1],
                                         dx=self.deltas[l - 1], W=net.W[l], act_prev=net.act)
        if x is self.xb:
            self._backward = steps
        return steps
