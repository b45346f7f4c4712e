"""The GPU benchmark, one script, one run: fastbp's CUDA kernels against cuBLAS (CuPy) and
PyTorch CUDA on the same GPU. Writes bench/results/gpu-<device>-<date>.json and prints tables.

    python -m bench.cuda_report [--rounds 20] [--sizes 1024 2048 4096 8192] [--out bench/results]
    NUMBA_ENABLE_CUDASIM=1 python -m bench.cuda_report --smoke   # tiny sizes: checks the script runs

1. SGEMM, float32, C = A·B at n x n x n: fastbp's naive, tiled and register-blocked kernels
   vs cuBLAS through CuPy with TF32 off (CUPY_TF32=0: full float32 multiplies, as ours).
   GFLOP/s = 2n³ / time; each result checked against cuBLAS's.
2. MNIST 784-50-10, batch 100, SGD lr 0.1: one epoch of training steps (data resident on the
   device, one permutation gather per step) vs PyTorch CUDA eager (autograd, the same steps);
   plus fastbp.fit's epoch with its two accuracy passes.
3. 784-1024-1024-10 batch 256: one SGD step vs PyTorch CUDA eager.
Also: seconds from Network(device="cuda") to its first gradient (kernel compilation).
Timing: torch.cuda / numba synchronize around blocks of work, median of --rounds.
Targets: tiled SGEMM >= 30% of cuBLAS at 4096; the MNIST epoch faster than
PyTorch eager; the large step within 2x of PyTorch.
"""
import argparse
import datetime
import json
import os
import re

import time

os.environ.setdefault("CUPY_TF32", "0")  # before CuPy loads: cuBLAS in true float32

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from numba import cuda  # noqa: E402

import fastbp  # noqa: E402
from fastbp.backend import CHUNK_STEPS  # noqa: E402
from fastbp.kernels.codes import SGD  # noqa: E402
from fastbp.kernels.cuda import config, gemm  # noqa: E402
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
        versions = ["tiled", "regblock"] + (["naive"] if n <= 4096 else [])
        for v in versions:
            dC = cuda.device_array((n, n), np.float32)
            row[f"{v}_s"] = median_time(lambda: gemm.gemm(dC, dA, dB, version=v), cuda.synchronize,
                                        max(3, rounds // (4 if v == "naive" else 1)))
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
    """PyTorch CUDA eager, the same net and SGD steps; returns step(k) running batch k."""
    torch = optional("torch")
    if torch is None or not torch.cuda.is_available():
        return None, None
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    net = fastbp.Network(sizes, seed=seed)  # same initial weights
    params = [torch.tensor(net.params[k], device=dev, requires_grad=True) for k in net.params]
    X, T = torch.tensor(x, device=dev), torch.tensor(t.astype(np.int64), device=dev)
    order = torch.tensor(np.random.default_rng(seed).permutation(len(x)), device=dev)

    def step(k):
        idx = order[k * batch:(k + 1) * batch]
        h = X[idx]
        for l in range(0, len(params), 2):
            h = h @ params[l] + params[l + 1]
            if l + 2 < len(params):
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, T[idx])
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad = None

    return step, torch.cuda.synchronize


def fastbp_steps(sizes, x, t, batch, lr, seed):
    """fastbp on the device as fit runs it (its backend's trainer: data uploaded once, the
    losses of each chunk of CHUNK_STEPS read back): run(k0, n) takes n SGD steps from batch
    k0 of one permutation."""
    net = fastbp.Network(sizes, seed=seed, device="cuda")
    trainer = net.backend.trainer(x, t.astype(np.int64), {}, batch, np.zeros((2, net.n_params), x.dtype))
    trainer.new_epoch(np.random.default_rng(seed).permutation(len(x)).astype(np.int64))
    optim = Optim(SGD, lr, 0.0, 0.0, 0.0)

    def run(k0, n):
        for first in range(k0, k0 + n, CHUNK_STEPS):
            trainer.run(first, min(CHUNK_STEPS, k0 + n - first), optim, 0)

    return net, run


def bench_mnist(x, t, xt, tt, rounds, smoke):
    sizes, batch, lr = [x.shape[1], 50 if not smoke else 6, 10], 100 if not smoke else 8, 0.1
    per_epoch = len(x) // batch
    out = {"train_images": len(x), "steps_per_epoch": per_epoch, "launches_per_step": 3 * 2 + 2}
    net, run = fastbp_steps(sizes, x, t, batch, lr, 0)
    out["fastbp_epoch_s"] = median_time(lambda: run(0, per_epoch), cuda.synchronize, rounds)
    # the whole fit() epoch: steps, loss read-back per 50 steps, train + test accuracy passes
    fit_net = fastbp.Network(sizes, seed=0, device="cuda")
    h = fastbp.fit(fit_net, x, t, epochs=2 if not smoke else 1, batch_size=batch, lr=lr, seed=0,
                   eval_data=(xt, tt), progress=False)
    out["fastbp_fit_epoch_s"] = float(np.median(h["epoch_seconds"]))
    out["fastbp_fit_test_acc"] = h["eval_acc"][-1]
    step, sync = torch_mlp(sizes, x, t, batch, lr, 0)
    if step is not None:
        out["torch_epoch_s"] = median_time(lambda: [step(k) for k in range(per_epoch)], sync, rounds)
        out["torch_over_fastbp"] = out["torch_epoch_s"] / out["fastbp_epoch_s"]
    return out


def bench_large(rounds, smoke):
    sizes, batch = ([784, 1024, 1024, 10], 256) if not smoke else ([20, 9, 7, 3], 5)
    rng = np.random.default_rng(1)
    n = batch * 8
    x = rng.random((n, sizes[0]), dtype=np.float32)
    t = rng.integers(0, sizes[-1], n)
    out = {"sizes": sizes, "batch": batch}
    _, run = fastbp_steps(sizes, x, t, batch, 0.01, 0)
    out["fastbp_step_s"] = median_time(lambda: run(0, 8), cuda.synchronize, rounds) / 8
    step, sync = torch_mlp(sizes, x, t, batch, 0.01, 0)
    if step is not None:
        out["torch_step_s"] = median_time(lambda: [step(k) for k in range(8)], sync, rounds) / 8
        out["fastbp_over_torch"] = out["fastbp_step_s"] / out["torch_step_s"]
    return out


def load_data(smoke):
    if smoke:
        rng = np.random.default_rng(0)
        return (rng.random((40, 12), dtype=np.float32), rng.integers(0, 10, 40),
                rng.random((10, 12), dtype=np.float32), rng.integers(0, 10, 10), "random (smoke)")
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
    args = ap.parse_args(argv)
    if args.smoke:
        args.rounds, args.sizes = 1, [8]
    name = device_name()
    print(f"device: {name}; tiles: tiled {config.TILE}, regblock {config.REG}", flush=True)
    x, t, xt, tt, data = load_data(args.smoke)
    # compile cost: the kernels are compiled per process (explicit signatures, no disk cache)
    t0 = time.perf_counter()
    first = fastbp.Network([x.shape[1], 50 if not args.smoke else 6, 10], seed=0, device="cuda")
    first.gradient(x[:100], t[:100])
    startup = time.perf_counter() - t0
    print(f"Network(device='cuda') + first gradient (compiles): {startup:.2f} s", flush=True)
    print("SGEMM float32 (n x n x n)", flush=True)
    result = {"device": name, "date": datetime.date.today().isoformat(), "data": data,
              "first_gradient_s": startup,
              "sgemm": bench_sgemm(args.sizes, args.rounds, args.smoke)}
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
