"""The GPU benchmark, one script, one run: fastbp's CUDA kernels against cuBLAS (CuPy) and
PyTorch CUDA on the same GPU. Writes bench/results/gpu-<device>-<date>.json and prints tables.

    python -m bench.cuda_report [--rounds 20] [--sizes 1024 2048 4096 8192] [--out bench/results]
    NUMBA_ENABLE_CUDASIM=1 python -m bench.cuda_report --smoke   # tiny sizes: checks the script runs

1. SGEMM, float32, C = A·B at n x n x n: fastbp's naive, tiled, register-blocked and pipelined
   kernels (the last two at every shape of config.REG_CANDIDATES)
   vs cuBLAS through CuPy with TF32 off (CUPY_TF32=0: full float32 multiplies, as ours).
   GFLOP/s = 2n³ / time; each result checked against cuBLAS's.
2. MNIST 784-50-10, batch 100, SGD lr 0.1: one epoch of 600 training steps on Fashion-MNIST's
   60,000 training images (else the shared MNIST rows), data resident on the device, no
   accuracy pass: fastbp as fit runs it (the epoch kernel: one launch), fastbp's 3L + 2 launches
   a step, those launches captured once as a CUDA graph and replayed (DeviceMLP.capture_steps),
   PyTorch CUDA eager (nn.Linear, nn.ReLU, CrossEntropyLoss, optim.SGD), and PyTorch
   with the step captured once in a torch.cuda.CUDAGraph and replayed; the epoch kernel with its
   sums in 4, 8 and 16 chains a thread, each with its forward sums split over up to 1, 4, 8 and
   32 lanes, and the fastest of those on other grid shapes; fastbp.fit's epoch_seconds.
3. 784-1024-1024-10 batch 256: one SGD step, fastbp (its launches; the epoch kernel forced, to
   show why fit does not pick it there) vs PyTorch CUDA eager.
4. Start-up: seconds from `import fastbp` to the first GPU gradient of 784-50-10 in a fresh
   process, with an empty kernel cache (every kernel compiled) and then with the cache that
   run left (kernels/cuda/disk_cache.py: every kernel loaded).
Timing: torch.cuda / numba synchronize around blocks of work; contenders interleaved round by
round, medians of --rounds. Targets (docs/cuda.md, "Measurements"): the epoch 5x PyTorch eager and
faster than its CUDA graph; the large step within 1.3x of PyTorch; SGEMM 50% of cuBLAS at 4096.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("CUPY_TF32", "0")  # before CuPy loads: cuBLAS in true float32

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from numba import cuda  # noqa: E402

import fastbp  # noqa: E402
from fastbp.backend import CHUNK_STEPS  # noqa: E402
from fastbp.kernels.codes import SGD  # noqa: E402
from fastbp.kernels.cuda import config, epoch, gemm  # noqa: E402
from fastbp.kernels.train import Optim  # noqa: E402


def median_time(fn, sync, rounds, inner=1):
    """Median seconds per call of fn over `rounds` blocks of `inner` calls (after one warm-up)."""
    fn()
    sync()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return float(np.median(times))


def interleaved(contenders, rounds):
    """{name: median seconds per call} for contenders {name: (fn, sync)}, timed in turn within
    each round (one warm-up call each first), so drifts of the machine hit all alike."""
    times = {name: [] for name in contenders}
    for fn, sync in contenders.values():
        fn()
        sync()
    for _ in range(rounds):
        for name, (fn, sync) in contenders.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v)) for name, v in times.items()}


def optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def bench_sgemm(sizes, rounds, smoke):
    cp = optional("cupy")
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        A = rng.standard_normal((n, n)).astype(np.float32)
        B = rng.standard_normal((n, n)).astype(np.float32)
        dA, dB = cuda.to_device(A), cuda.to_device(B)
        flops = 2.0 * n ** 3
        row = {"n": n}
        ref = None
        if cp is not None:
            cA, cB = cp.asarray(A), cp.asarray(B)
            row["cublas_s"] = median_time(lambda: cA @ cB, cp.cuda.Device().synchronize, rounds)
            ref = cp.asnumpy(cA @ cB)
        elif smoke:
            ref = A @ B
        # "regblock" and "pipelined" at config.REG's shape; regblock_TxRxBK and pipelined_TxRxBK
        # at the other candidates (config.REG_CANDIDATES), timed the same way
        versions = {"tiled": ("tiled", None)}
        for version in ("regblock", "pipelined"):
            versions[version] = (version, None)
            versions.update({f"{version}_" + "x".join(map(str, shape)): (version, shape)
                             for shape in config.REG_CANDIDATES if shape != config.REG})
        if n <= 4096:
            versions["naive"] = ("naive", None)
        for v, (version, shape) in versions.items():
            dC = cuda.device_array((n, n), np.float32)
            row[f"{v}_s"] = median_time(lambda: gemm.gemm(dC, dA, dB, version=version, shape=shape),
                                        cuda.synchronize, max(3, rounds // (4 if v == "naive" else 1)))
            if ref is not None:
                got = dC.copy_to_host()
                row[f"{v}_max_rel_err"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        for k in list(row):
            if k.endswith("_s"):
                row[k.replace("_s", "_gflops")] = flops / row[k] / 1e9
        if "cublas_s" in row:
            for v in versions:
                row[f"{v}_pct_of_cublas"] = 100.0 * row["cublas_s"] / row[f"{v}_s"]
        rows.append(row)
        print("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
              flush=True)
    return rows


def torch_mlp(sizes, x, t, batch, lr, seed):
    """PyTorch CUDA, the same net (nn.Linear, nn.ReLU, nn.CrossEntropyLoss, optim.SGD), the same
    initial weights and the same batches of one permutation. Returns (eager, graphed, sync):
    eager(k0, n) runs steps k0..k0+n-1 as PyTorch eager does; graphed(k0, n) replays one step
    captured in a torch.cuda.CUDAGraph, its batch picked on the device by a step counter the
    graph itself advances, so a replay takes no new arguments (the best a PyTorch expert would
    do without writing kernels). (None, None, None) without a CUDA PyTorch."""
    torch = optional("torch")
    if torch is None or not torch.cuda.is_available():
        return None, None, None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    net = fastbp.Network(sizes, seed=seed)  # same initial weights

    def model():
        layers = []
        for l in range(len(sizes) - 1):
            lin = torch.nn.Linear(sizes[l], sizes[l + 1], device=dev)
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(net.params[f"W{l + 1}"].T))
                lin.bias.copy_(torch.tensor(net.params[f"b{l + 1}"]))
            layers += [lin] + ([torch.nn.ReLU()] if l + 2 < len(sizes) else [])
        m = torch.nn.Sequential(*layers)
        return m, torch.optim.SGD(m.parameters(), lr=lr)

    lossf = torch.nn.CrossEntropyLoss()
    X, T = torch.tensor(x, device=dev), torch.tensor(t.astype(np.int64), device=dev)
    n_steps = len(x) // batch
    order = torch.tensor(np.random.default_rng(seed).permutation(len(x))[:n_steps * batch], device=dev)
    order = order.view(n_steps, batch)

    m_eager, opt_eager = model()

    def eager(k0, n):
        for k in range(k0, k0 + n):
            idx = order[k % n_steps]
            opt_eager.zero_grad(set_to_none=True)
            lossf(m_eager(X[idx]), T[idx]).backward()
            opt_eager.step()

    m_graph, opt_graph = model()
    step = torch.zeros(1, dtype=torch.int64, device=dev)

    def one_step():
        idx = order.index_select(0, step).view(-1)
        opt_graph.zero_grad(set_to_none=False)
        lossf(m_graph(X[idx]), T[idx]).backward()
        opt_graph.step()
        step.add_(1).remainder_(n_steps)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as torch.cuda.graphs asks
        for _ in range(3):
            one_step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        one_step()

    def graphed(k0, n):
        step.fill_(k0 % n_steps)
        for _ in range(n):
            graph.replay()

    return eager, graphed, torch.cuda.synchronize


def fastbp_steps(sizes, x, t, batch, lr, seed, one_launch=None):
    """fastbp on the device as fit runs it (its backend's trainer: data uploaded once, the
    losses of each chunk read back): run(k0, n) takes n SGD steps from batch k0 of one
    permutation; a chunk of n steps is one launch where the epoch kernel runs (fit's choice,
    one_launch=None; True forces it), else 3L + 2 launches a step in chunks of CHUNK_STEPS."""
    net = fastbp.Network(sizes, seed=seed, device="cuda")
    trainer = net.backend.trainer(x, t.astype(np.int64), {}, batch, np.zeros((2, net.n_params), x.dtype))
    if one_launch is not None:
        trainer.ws.one_launch = one_launch
    trainer.new_epoch(np.random.default_rng(seed).permutation(len(x)).astype(np.int64))
    optim = Optim(SGD, lr, 0.0, 0.0, 0.0)
    chunk = len(x) // batch if trainer.ws.one_launch else CHUNK_STEPS

    def run(k0, n):
        for first in range(k0, k0 + n, chunk):
            trainer.run(first, min(chunk, k0 + n - first), optim, 0)

    return net, trainer, run


def fastbp_graph(trainer, steps, lr):
    """`steps` SGD steps of the launches (trainer: one_launch=False) captured once as a CUDA
    graph (DeviceMLP.capture_steps): (replay, sync), a replay being all those steps."""
    from fastbp.kernels.cuda.mlp import core_device
    losses = cuda.device_array(steps, np.float64)
    graph = trainer.dev.capture_steps(trainer.ws, trainer.x, trainer.t, trainer.order, 0, steps,
                                      Optim(SGD, lr, 0.0, 0.0, 0.0), 0, trainer.state, losses)
    stream = core_device().create_stream()
    return (lambda: graph.launch(stream)), stream.sync


def bench_mnist(x, t, xt, tt, rounds, smoke):
    sizes, batch, lr = [x.shape[1], 50 if not smoke else 6, 10], 100 if not smoke else 8, 0.1
    per_epoch = len(x) // batch
    out = {"train_images": len(x), "steps_per_epoch": per_epoch, "launches_per_epoch": 1,
           "launches_per_step_referee": 3 * 2 + 2}
    net, trainer, run = fastbp_steps(sizes, x, t, batch, lr, 0)
    _, launches, run_launches = fastbp_steps(sizes, x, t, batch, lr, 0, one_launch=False)
    eager, graphed, sync = torch_mlp(sizes, x, t, batch, lr, 0)
    contenders = {"fastbp": (lambda: run(0, per_epoch), cuda.synchronize),
                  "fastbp_launches": (lambda: run_launches(0, per_epoch), cuda.synchronize)}
    try:  # the other way to take the host out: the launches of an epoch as one CUDA graph
        contenders["fastbp_graph"] = fastbp_graph(launches, per_epoch, lr)
    except Exception as e:  # a numba-cuda or cuda.core without graph capture: say so, go on
        out["fastbp_graph_error"] = repr(e)
    if eager is not None:
        contenders["torch"] = (lambda: eager(0, per_epoch), sync)
        contenders["torch_graph"] = (lambda: graphed(0, per_epoch), sync)
    for name, s in interleaved(contenders, rounds).items():
        out[f"{name}_epoch_s"] = s
    for name in ("fastbp_launches", "fastbp_graph", "torch", "torch_graph"):
        if f"{name}_epoch_s" in out:
            out[f"{name}_over_fastbp"] = out[f"{name}_epoch_s"] / out["fastbp_epoch_s"]
    # the epoch kernel's settings: its sums' chains and split (config.EPOCH_CHAINS, EPOCH_SPLIT)
    # on the default grid, then the grid (threads per block x blocks per multiprocessor) with
    # the fastest of those
    ws, grid = trainer.ws, {}
    if not config.SIMULATOR:

        def time_epoch(block, chains, split, per_sm):
            kernel, _ = ws.epoch(block, chains, split)
            ws.epoch_blocks = epoch.blocks(kernel, block, per_sm)
            key = f"{block}x{ws.epoch_blocks}, {chains} chains, split {split}"
            if key not in grid:
                grid[key] = median_time(lambda: run(0, per_epoch), cuda.synchronize, rounds)
            return grid[key]

        sums = {(chains, split): time_epoch(config.EPOCH_BLOCK, chains, split, config.EPOCH_BLOCKS_PER_SM)
                for chains in epoch.CHAINS for split in (1, 4, 8, 32)}
        chains, split = min(sums, key=sums.get)
        for block in (128, 256):  # 512 threads: not co-resident (the kernel's registers)
            for per_sm in (1, 2):
                time_epoch(block, chains, split, per_sm)
        ws._epoch = None
        ws.epoch()  # back to the default
        out["epoch_grid_s"] = grid
    # fit()'s epoch as its history times it: the steps and the losses read back (the
    # accuracy passes that follow are not in epoch_seconds)
    fit_net = fastbp.Network(sizes, seed=0, device="cuda")
    h = fastbp.fit(fit_net, x, t, epochs=2 if not smoke else 1, batch_size=batch, lr=lr, seed=0,
                   eval_data=(xt, tt), progress=False)
    out["fastbp_fit_epoch_s"] = float(np.median(h["epoch_seconds"]))
    out["fastbp_fit_test_acc"] = h["eval_acc"][-1]
    return out


def bench_large(rounds, smoke):
    sizes, batch = ([784, 1024, 1024, 10], 256) if not smoke else ([20, 9, 7, 3], 5)
    rng = np.random.default_rng(1)
    n = batch * 8
    x = rng.random((n, sizes[0]), dtype=np.float32)
    t = rng.integers(0, sizes[-1], n)
    out = {"sizes": sizes, "batch": batch}
    _, _, run = fastbp_steps(sizes, x, t, batch, 0.01, 0)
    _, _, run_one = fastbp_steps(sizes, x, t, batch, 0.01, 0, one_launch=True)
    eager, _, sync = torch_mlp(sizes, x, t, batch, 0.01, 0)
    contenders = {"fastbp": (lambda: run(0, 8), cuda.synchronize),
                  "fastbp_one_launch": (lambda: run_one(0, 8), cuda.synchronize)}
    if eager is not None:
        contenders["torch"] = (lambda: eager(0, 8), sync)
    for name, s in interleaved(contenders, rounds).items():
        out[f"{name}_step_s"] = s / 8
    if "torch_step_s" in out:
        out["fastbp_over_torch"] = out["fastbp_step_s"] / out["torch_step_s"]
    return out


_START = """
import time
t0 = time.perf_counter()
import numpy as np
import fastbp
net = fastbp.Network([784, 50, 10], seed=0, device="cuda")
x = np.random.default_rng(0).random((100, 784), dtype=np.float32)
net.gradient(x, np.arange(100) % 10)
print(time.perf_counter() - t0)
"""


def bench_start(runs=2):
    """Seconds from `import fastbp` to the first gradient in fresh processes sharing one new
    kernel cache folder (NUMBA_CACHE_DIR): the first compiles every kernel, the later ones load."""
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, NUMBA_CACHE_DIR=folder)
        times = [float(subprocess.run([sys.executable, "-c", _START], env=env, check=True, capture_output=True,
                                      text=True).stdout.split()[-1]) for _ in range(1 + runs)]
    return {"cold_s": times[0], "warm_s": times[1:]}


def load_data(smoke, fashion_root=None):
    """Fashion-MNIST's 60,000 training images (600 steps of 100), found at fashion_root or
    where fastbp.datasets looks; else the shared MNIST rows, else the embedded sample."""
    if smoke:
        rng = np.random.default_rng(0)
        return (rng.random((40, 12), dtype=np.float32), rng.integers(0, 10, 40),
                rng.random((10, 12), dtype=np.float32), rng.integers(0, 10, 10), "random (smoke)")
    try:
        (x, t), (xt, tt) = fastbp.datasets.load_fashion_mnist(root=fashion_root, download=False)
        return x, t, xt, tt, "Fashion-MNIST"
    except (FileNotFoundError, ValueError):
        pass
    try:
        (x, t), (xt, tt) = fastbp.datasets.load_mnist(
            root=os.path.join(REPO, "..", "shared", "data", "mnist"), download=False)
        return x, t, xt, tt, "shared MNIST"
    except (FileNotFoundError, ValueError):
        (x, t), (xt, tt) = fastbp.datasets.load_mnist_sample()
        return x, t, xt, tt, "embedded MNIST sample"


def device_name():
    if config.SIMULATOR:
        return "simulator"
    return cuda.get_current_device().name.decode() if isinstance(cuda.get_current_device().name, bytes) \
        else str(cuda.get_current_device().name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 1 round: does the script run?")
    ap.add_argument("--skip-sgemm", action="store_true", help="leave out the SGEMM table")
    ap.add_argument("--fashion", help="folder of Fashion-MNIST's IDX files (default: where fastbp looks)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.rounds, args.sizes = 1, [8]
    name = device_name()
    print(f"device: {name}; tiles: tiled {config.TILE}, regblock {config.REG}", flush=True)
    x, t, xt, tt, data = load_data(args.smoke, args.fashion)
    t0 = time.perf_counter()
    first = fastbp.Network([x.shape[1], 50 if not args.smoke else 6, 10], seed=0, device="cuda")
    first.gradient(x[:100], t[:100])
    startup = time.perf_counter() - t0
    print(f"Network(device='cuda') + first gradient, in this process: {startup:.2f} s", flush=True)
    start = None if config.SIMULATOR else bench_start()
    print(f"import fastbp to first gradient, fresh processes: {start}", flush=True)
    print("SGEMM float32 (n x n x n)", flush=True)
    result = {"device": name, "date": datetime.date.today().isoformat(), "data": data,
              "first_gradient_s": startup, "import_to_first_gradient": start,
              "sgemm": [] if args.skip_sgemm else bench_sgemm(args.sizes, args.rounds, args.smoke)}
    print("MNIST 784-50-10 batch 100, one epoch", flush=True)
    result["mnist_epoch"] = bench_mnist(x, t, xt, tt, args.rounds, args.smoke)
    print("  " + json.dumps(result["mnist_epoch"]), flush=True)
    print("784-1024-1024-10 batch 256, one step", flush=True)
    result["large_step"] = bench_large(args.rounds, args.smoke)
    print("  " + json.dumps(result["large_step"]), flush=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    path = os.path.join(args.out, f"gpu-{slug}-{result['date']}.json")
    if not args.smoke:
        os.makedirs(args.out, exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
