"""What a Network asks of the device it runs on: one small interface, two implementations
side by side (fastbp/cpu.py: CpuBackend, fastbp/cuda.py: CudaBackend).

Network checks every argument and delegates; fit and the benchmarks use only this.
Arrays in and out are host NumPy arrays, already checked: x (N, D0) C-contiguous in
the network's dtype, t class ids (N,) int64 (CPU: or MSE targets (N, C)).

    params            named parameters {"W1": ..., "b1": ...}; assigning uploads
    flat_params       the whole flat buffer (the CPU's own; a read-only copy from a GPU)
    logits(x)         (N, C) scores before softmax
    classes(x)        (N,) predicted class ids
    loss(x, t)        the mean loss, a float
    loss_grad(g, x, t)  gradients into the flat host buffer g; returns the loss
    trainer(x, t, sets, batch_size, opt_state) -> Trainer: fit's loop over one data set;
                      sets: the held-out sets by name, {"eval": (x, t), "val": (x, t)} or fewer

A Trainer runs chunks of compiled training steps:
    new_epoch(order)  the epoch's row order (N,) int64
    run(first, steps, optim, t0) -> (completed, losses)  steps first .. first + steps - 1
                      of the epoch with optim (fastbp.kernels.train.Optim); t0 steps came
                      before; stops before a step whose loss is not finite
    tally(which, start, stop, with_loss) -> (hits, loss_sum)  over rows start..stop-1 of
                      "train" or a set named in sets, in one forward pass: how many rows'
                      largest score is at their class, and the summed loss (0.0 without
                      with_loss)
    evaluate(which, with_loss=True) -> (accuracy, mean loss or None)  on a whole set
                      (class Trainer below: from tally and rows(which), the set's size)
    sync_state()      the optimizer state back into opt_state (a no-op on the CPU)
    load_state()      opt_state, changed on the host, to where the steps read it (likewise)
For fit(comm=...) (distributed.py) a Trainer also gives one rank's part of a step and of
the accuracy and loss passes:
    gradient_share(red, start, n, weight)  red (P + 1,) = weight * (gradient, loss) of the
                      mean loss over rows order[start:start + n] of this epoch
    apply(grads, optim, step)  one optimizer update from grads (P,); step counts from 1
A backend also has set_flat(values): the whole flat parameter buffer, assigned.
"""
from collections.abc import MutableMapping

# steps per compiled call: enough to amortise the call, small enough for a live bar; a Trainer
# with a chunk_steps attribute asks for its own (the GPU's epoch kernel: a whole epoch)
CHUNK_STEPS = 50


def rates(hits, loss, n, with_loss):
    """(accuracy, mean loss or None) from a tally over n rows."""
    return hits / n, (loss / n if with_loss else None)


class Trainer:
    """What every Trainer builds from its own tally and rows (see above)."""

    def evaluate(self, which, with_loss=True):
        n = self.rows(which)
        return rates(*self.tally(which, 0, n, with_loss), n, with_loss)


class NamedParams(MutableMapping):
    """The `params` mapping of both backends: names in layout order (self._index, a dict keyed
    by name); subclasses say what reading and assigning one does."""

    def __delitem__(self, name):
        raise TypeError("parameters cannot be deleted: they live in the network's flat buffer")

    def __iter__(self):
        return iter(self._index)

    def __len__(self):
        return len(self._index)
