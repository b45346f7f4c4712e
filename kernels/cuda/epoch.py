"""Training steps with the host out of the loop: a chunk of steps (in fit, a whole epoch) as ONE launch.

Sizes as in mlp.py: L layers, sizes (D0, ..., DL), B batch, P parameters. A cooperative
kernel (all its blocks resident at once, so cuda.cg.this_grid().sync() is a barrier across
the whole grid) runs the steps of DeviceMLP's launch list, with a grid-wide barrier where a
launch boundary was:

    forward  l = 0 .. L-1  acts[l] = act(in_l·W_l + b_l), the logits (no act) at l = L-1; in_0
                           is x's rows order[base + r] (the gather, fused)
    loss                   per row r: softmax + cross-entropy, dz and the row's loss
                           (float64); block 0 then writes the step's mean loss
    backward l = L-1 .. 0  dW_l, db_l; dz_{l-1} = (dz_l·W_lᵀ)·act'(in_l) for l >= 1; the update
                           of layer l+1, whose W no phase reads any more this step; at l = 0
                           layer 0's update straight from its gradient, never stored

That is 2L + 2 barriers a step (784-50-10: 6) where DeviceMLP launches 3L + 2 kernels. In
every phase a thread owns one output and sums the whole reduction axis itself: at MNIST
sizes a step is latency, not arithmetic (100 x 784 x 50 is 4 MFLOP), and a single pass with
no shared-memory staging and no second reduction is the shortest path. Consecutive threads
take consecutive output columns, so W's rows and the deltas are read coalesced and a row of
the input is a broadcast. Where a forward phase leaves most of the grid idle (layer 0 at
784-50-10: 5,000 sums of 784 terms on 33,792 threads), its sums can be split over a few
neighbouring lanes instead (config.EPOCH_SPLIT).

Softmax with cross-entropy on up to config.ROW_THREAD_MAX_CLASSES classes (a thread per row);
other losses and wider heads take DeviceMLP's launches. The math and rounding of each phase
are the launches' (optimizers.make_apply is the same device function; sums run in another
order, so results agree to rounding, not bit for bit).

Flat buffers: params, grads, s0, s1 (P,) in fastbp.kernels.layout's order (W_l at woff[l],
then b_l at boff[l]); acts and deltas (B · sum D_{l+1},), layer l's (B, D_{l+1}) block at
aoff[l]; row_loss (B,) float64. losses[k] gets step k's mean loss, summed in the order
softmax_loss.mean_loss sums it. stop[0] = k + 1 when step k's loss is not finite: that
step's updates and every later step are skipped, the parameters keep the last good state.
lr_ts[k]: step k's rate for Adam (its bias correction), the same value the host computes.
"""
import functools
import math

import numpy as np
from numba import cuda, types

from ..codes import IDENTITY
from . import build, config
from .activations import make_activations
from .optimizers import make_apply
from .softmax_loss import _rows_sum


CHAINS = (4, 8, 16)  # the sums' independent chains a thread runs (source: chains)
SPLITS = (1, 2, 4, 8, 16, 32)  # the most lanes a forward sum is split over (source: split)


@functools.lru_cache(maxsize=None)
def source(NP, block, chains=4, split=1):
    if chains not in CHAINS:
        raise ValueError(f"chains must be one of {CHAINS}, not {chains!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    act_apply, act_grad = make_activations(NP)
    apply = make_apply(NP)
    zero, one = NP(0), NP(1)

    # dot: sum over q < n of a[ia + q sa] b[ib + q sb]; gathered_dot: sum over r < n of
    # x[order[base + r] D + q] b[ib + r sb], dot() through the row order. Each in `chains`
    # independent chains: a chain's next multiply-add waits on the last, and a thread's
    # loads of one round are all the memory requests its warp has in flight (a phase here
    # is a few thousand such sums, hundreds long, on a GPU that holds hundreds of thousands
    # of threads: about one busy warp a multiprocessor at 784-50-10, so nothing else hides
    # the latency); 8 chains halve the rounds of 4 (bench/cuda_report.py times each). The
    # chains are a local array indexed by constants once NVVM unrolls the loops over them:
    # registers, no local memory (tests/test_cuda_compile.py checks the PTX).
    @cuda.jit(device=True)
    def chains_sum(s):
        # the chains added pairwise: (s0 + s1) + (s2 + s3) for 4, ((s0 + s1) + (s2 + s3)) +
        # ((s4 + s5) + (s6 + s7)) for 8, ...
        w = chains // 2
        while w >= 1:
            for u in range(w):
                s[u] = s[2 * u] + s[2 * u + 1]
            w //= 2
        return s[0]

    @cuda.jit(device=True)
    def dot(a, ia, sa, b, ib, sb, n):
        s = cuda.local.array(chains, NP)
        for u in range(chains):
            s[u] = zero
        q = 0
        while q + chains <= n:
            for u in range(chains):
                s[u] += a[ia + (q + u) * sa] * b[ib + (q + u) * sb]
            q += chains
        while q < n:
            s[0] += a[ia + q * sa] * b[ib + q * sb]
            q += 1
        return chains_sum(s)

    @cuda.jit(device=True)
    def gathered_dot(x, D, order, base, q, b, ib, sb, n):
        s = cuda.local.array(chains, NP)
        for u in range(chains):
            s[u] = zero
        r = 0
        while r + chains <= n:
            for u in range(chains):
                s[u] += x[order[base + r + u] * D + q] * b[ib + (r + u) * sb]
            r += chains
        while r < n:
            s[0] += x[order[base + r] * D + q] * b[ib + r * sb]
            r += 1
        return chains_sum(s)

    def epoch(params, grads, s0, s1, decay, acts, deltas, row_loss, losses, stop, x, t, order,
              sizes, woff, boff, aoff, lr_ts, first, steps, B, act, opt, lr, mu, c1, c2, wd):
        # x: the data set's rows (N, D0) flattened (N · D0,)
        partial = cuda.shared.array(block, np.float64)
        parts = cuda.shared.array(block, NP)  # the parts of split sums (forward)
        grid = cuda.cg.this_grid()
        tid, nblocks = cuda.threadIdx.x, cuda.gridDim.x
        # work item g of a phase goes to warp g // 32 of the grid, counted across blocks first:
        # a phase of a few thousand items then keeps every multiprocessor busy, not the first few
        g = ((tid // 32) * nblocks + cuda.blockIdx.x) * 32 + tid % 32
        G = nblocks * block
        L = sizes.shape[0] - 1
        D0 = sizes[0]
        inv_n = one / NP(B)
        for k in range(steps):
            base = (first + k) * B
            lr_t = lr_ts[k]
            # forward: every layer, the last one's logits without an activation. An output's
            # sum in S parts on S neighbouring lanes where the grid has threads to spare
            # (S: a power of two up to `split`, each part at least 2 terms): part p takes
            # terms p, p + S, ...; the parts meet in shared memory, summed in order (not warp
            # shuffles: numba's simulator, where the tests run, has none).
            for l in range(L):
                D, M, wo, bo, ao = sizes[l], sizes[l + 1], woff[l], boff[l], aoff[l]
                a = act if l < L - 1 else IDENTITY
                n = B * M
                S = 1
                while 2 * S <= split and 2 * S * n <= G and 4 * S <= D:
                    S *= 2
                # rounds the same for every thread of a block (its barriers)
                for e0 in range(0, S * n, G):
                    e = e0 + g
                    i = e // S
                    p = e - i * S
                    r = i // M
                    j = i - r * M
                    s = zero
                    if i < n:
                        terms = (D - p + S - 1) // S
                        if l == 0:
                            s = dot(x, order[base + r] * D0 + p, S, params, wo + p * M + j, S * M, terms)
                        else:
                            s = dot(acts, aoff[l - 1] + r * D + p, S, params, wo + p * M + j, S * M, terms)
                    if S > 1:
                        parts[tid] = s
                        cuda.syncthreads()
                        if p == 0:
                            for u in range(1, S):
                                s += parts[tid + u]
                        cuda.syncthreads()
                    if i < n and p == 0:
                        acts[ao + i] = act_apply(s + params[bo + j], a)
                grid.sync()
            # the loss: a thread per row
            C, lo = sizes[L], aoff[L - 1]
            for r in range(g, B, G):
                row = order[base + r]
                z = lo + r * C
                m = acts[z]
                for c in range(1, C):
                    if acts[z + c] > m:
                        m = acts[z + c]
                ssum = zero
                for c in range(C):
                    e = math.exp(acts[z + c] - m)
                    deltas[z + c] = e
                    ssum += e
                label = t[row]
                loss = (np.float64(m) - np.float64(acts[z + label])) + math.log(np.float64(ssum))
                row_loss[r] = loss
                scale = inv_n / ssum
                for c in range(C):
                    deltas[z + c] *= scale
                deltas[z + label] -= inv_n
                if not math.isfinite(loss):
                    stop[0] = k + 1  # every writer writes the same value
            grid.sync()
            if cuda.blockIdx.x == 0:  # the mean loss, in mean_loss's order
                _rows_sum(partial, row_loss, B, tid, block)
                if tid == 0:
                    losses[k] = partial[0] / B
            if stop[0] != 0:  # set before the barrier: every thread leaves at the same step
                return
            # backward
            for l in range(L - 1, -1, -1):
                D, M, wo, bo, do = sizes[l], sizes[l + 1], woff[l], boff[l], aoff[l]
                nW = D * M
                nb = nW + M
                nx = nb + (B * D if l > 0 else 0)
                n_up = nx + (sizes[l + 1] * sizes[l + 2] + sizes[l + 2] if l < L - 1 else 0)
                for i in range(g, n_up, G):
                    if i < nW:  # dW[q, j] = sum_r in[r, q] dz[r, j]
                        q = i // M
                        j = i - q * M
                        if l == 0:
                            s = gathered_dot(x, D0, order, base, q, deltas, do + j, M, B)
                            apply(params, s0, s1, decay, wo + i, s, opt, lr, lr_t, mu, c1, c2, wd)
                        else:
                            grads[wo + i] = dot(acts, aoff[l - 1] + q, D, deltas, do + j, M, B)
                    elif i < nb:  # db[j] = sum_r dz[r, j]
                        j = i - nW
                        s = zero
                        for r in range(B):
                            s += deltas[do + r * M + j]
                        if l == 0:
                            apply(params, s0, s1, decay, bo + j, s, opt, lr, lr_t, mu, c1, c2, wd)
                        else:
                            grads[bo + j] = s
                    elif i < nx:  # dz_{l-1}[r, q] = (sum_j dz[r, j] W[q, j]) act'(in[r, q])
                        r = (i - nb) // D
                        q = (i - nb) - r * D
                        s = dot(deltas, do + r * M, 1, params, wo + q * M, 1, M)
                        h = aoff[l - 1] + r * D + q
                        deltas[h] = s * act_grad(acts[h], act)
                    else:  # layer l + 1's update (W then b: one contiguous block)
                        p = woff[l + 1] + (i - nx)
                        apply(params, s0, s1, decay, p, grads[p], opt, lr, lr_t, mu, c1, c2, wd)
                grid.sync()

    return epoch


def signature(NP):
    ty, a = build.scalar(NP), build.array(NP, 1)
    u8 = types.Array(types.uint8, 1, "C")
    i64 = types.int64
    return types.void(a, a, a, a, u8, a, a, build.F64, build.F64, build.I64, a,
                      build.I64, build.I64, build.I64, build.I64, build.I64, build.I64, a,
                      i64, i64, i64, i64, i64, ty, ty, ty, ty, ty)


@functools.lru_cache(maxsize=None)
def epoch(NP, block=None, chains=None, split=None):
    """Compiled; launch as [blocks(kernel, block), block], block a power of two."""
    return build.compile(signature(NP), source, NP, block or config.EPOCH_BLOCK, chains or config.EPOCH_CHAINS,
                         split or config.EPOCH_SPLIT)


def blocks(kernel, block, per_sm=None):
    """The grid: one block per multiprocessor, fewer if fewer can be co-resident (a
    cooperative launch must fit at once); a grid-wide barrier costs more the more blocks
    wait at it. One block under the simulator (its cooperative grids are one block)."""
    if config.SIMULATOR:
        return 1
    compiled = next(iter(kernel.overloads.values()))
    sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    per_sm = per_sm or config.EPOCH_BLOCKS_PER_SM
    fits = compiled.max_cooperative_grid_blocks(block)
    if fits < 1:
        raise ValueError(f"the epoch kernel cannot run {block} threads a block on this GPU (its "
                         f"registers); config.EPOCH_BLOCK = 256 can")
    return min(sms * per_sm, fits)


def applies(sizes, loss):
    """Whether the epoch kernel can run this network's steps (else DeviceMLP's launches)."""
    return loss == "softmax_ce" and sizes[-1] <= config.ROW_THREAD_MAX_CLASSES


def pays(sizes, B):
    """Whether it is also the faster: its thread-per-output sums reuse nothing through shared
    memory, so past config.EPOCH_MAX_MACS multiply-adds a step the tiled gemm launches win."""
    return B * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) <= config.EPOCH_MAX_MACS
