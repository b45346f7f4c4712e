"""The side-by-side speed report: fastbp, plain NumPy, PyTorch CPU and the BLAS floor in ONE
process, per SGD step, float32, as ratios. Also backprop vs numerical gradient and
cold/warm start. Writes bench/results/<machine>-<date>.json and a PNG bar chart.

    python scripts/bench.py [--rounds 15] [--out bench/results]

Each contender's step is built (compiled, warmed up) first, then timed in a block of its
own while the other libraries' thread pools are cut to one thread; medians are reported.
The BLAS floor is NumPy's BLAS doing only the step's matrix products (same shapes, dtype).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import steps  # noqa: E402

TARGETS = {  # config -> (max fastbp / BLAS floor, min PyTorch / fastbp), from the benchmark issue
    "784-50-10 b100": (1.30, 2.5),
    "784-1024-1024-10 b256": (1.10, 1.15),
}


def machine():
    model = "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return model, os.cpu_count()


def time_steps(fns, rounds, min_seconds=0.05, settle=1.0):
    """{name: median seconds per step}: each contender timed in its own block of rounds.

    NumPy's and SciPy's (numba's) OpenBLAS are two thread pools and PyTorch's OpenMP a
    third; one left spinning after its last call slowed the next contender up to 3.5x
    (measured), contention no single-library program has. So each contender is timed
    with the other pools cut to one thread, after `settle` seconds' pause and a 0.3 s
    warm-up, in `rounds` rounds of ~min_seconds each; the median round is reported.
    """
    out = {}
    for name, fn in fns.items():
        with _only_own_pool(name):
            out[name] = _time_one(fn, rounds, min_seconds, settle)
    return out


# which shared library each contender's threads live in (threadpoolctl's filepath)
_OWN_POOL = {"fastbp": "scipy.libs", "numpy": "numpy.libs", "blas_floor": "numpy.libs", "torch": "torch"}


def _only_own_pool(name):
    """While `name` is timed, every other thread pool is cut to 1 thread: a 1-thread pool has
    no workers left to spin on the two cores (threadpoolctl; a no-op without it)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    controller = ThreadpoolController()
    others = controller.select(filepath=[p["filepath"] for p in controller.info()
                                         if _OWN_POOL[name] not in p["filepath"]])
    return others.limit(limits=1)


def _time_one(fn, rounds, min_seconds, settle):
    time.sleep(settle)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        fn()
        calls += 1
    reps = max(1, int(min_seconds * calls / (time.perf_counter() - t0)))
    per_step = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        per_step.append((time.perf_counter() - t0) / reps / getattr(fn, "steps_per_call", 1))
    return float(np.median(per_step))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    args = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(2)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    model, cores = machine()
    report = {"machine": model, "cores": cores, "date": datetime.date.today().isoformat(),
              "numpy": np.__version__, "torch": torch_version, "dtype": "float32", "configs": []}
    print(f"{model}, {cores} cores; NumPy {np.__version__}, PyTorch {torch_version or 'not installed'}; "
          f"float32, median of {args.rounds} rounds per contender")
    print(f"{'config':24} {'fastbp':>9} {'NumPy':>9} {'PyTorch':>9} {'BLAS':>9}  {'fb/BLAS':>7} "
          f"{'torch/fb':>8} {'numpy/fb':>8} {'samples/s':>10} {'GFLOP/s':>8}")
    for sizes, batch in steps.CONFIGS:
        name = "-".join(map(str, sizes)) + f" b{batch}"
        fns = {"fastbp": steps.make_fastbp(sizes, batch), "numpy": steps.make_numpy(sizes, batch),
               "blas_floor": steps.make_blas_floor(sizes, batch)}
        torch_step = steps.make_torch(sizes, batch)
        if torch_step is not None:
            fns["torch"] = torch_step
        t = time_steps(fns, args.rounds)
        flops = steps.matmul_flops(sizes, batch)
        row = {"config": name, "seconds_per_step": t, "matmul_flops": flops,
               "fastbp_over_blas_floor": t["fastbp"] / t["blas_floor"],
               "numpy_over_fastbp": t["numpy"] / t["fastbp"],
               "torch_over_fastbp": t["torch"] / t["fastbp"] if "torch" in t else None,
               "samples_per_second": batch / t["fastbp"], "gflops": flops / t["fastbp"] / 1e9}
        if name in TARGETS:
            floor_max, torch_min = TARGETS[name]
            row["targets"] = {"fastbp_over_blas_floor_max": floor_max, "torch_over_fastbp_min": torch_min,
                              "floor_met": row["fastbp_over_blas_floor"] <= floor_max,
                              "torch_met": None if row["torch_over_fastbp"] is None
                              else row["torch_over_fastbp"] >= torch_min}
        report["configs"].append(row)
        ms = {k: f"{1e3 * v:9.3f}" for k, v in t.items()}
        tor = f"{row['torch_over_fastbp']:8.2f}" if row["torch_over_fastbp"] else f"{'-':>8}"
        print(f"{name:24} {ms['fastbp']} {ms['numpy']} {ms.get('torch', f'{chr(45):>9}')} "
              f"{ms['blas_floor']}  {row['fastbp_over_blas_floor']:7.2f} {tor} "
              f"{row['numpy_over_fastbp']:8.2f} {row['samples_per_second']:10.0f} {row['gflops']:8.1f}")
    print("(times in ms per step)")
    for row in report["configs"]:
        if "targets" in row:
            tg = row["targets"]
            print(f"target {row['config']}: fastbp/BLAS {row['fastbp_over_blas_floor']:.2f} "
                  f"(<= {tg['fastbp_over_blas_floor_max']}: {'met' if tg['floor_met'] else 'MISSED'}), "
                  f"PyTorch/fastbp {row['torch_over_fastbp'] or float('nan'):.2f} "
                  f"(>= {tg['torch_over_fastbp_min']}: "
                  f"{'met' if tg['torch_met'] else 'MISSED' if tg['torch_met'] is False else 'no torch'})")

    import fastbp
    net = fastbp.TwoLayerNet(784, 50, 10, seed=0)
    x, t = steps.data((784, 50, 10), 100)
    net.gradient(x, t)
    net.numerical_gradient(x[:1], t[:1])
    bp = time_steps({"fastbp": lambda: net.gradient(x, t)}, args.rounds)["fastbp"]
    t0 = time.perf_counter()
    net.numerical_gradient(x, t)
    num = time.perf_counter() - t0
    report["gradient"] = {"backprop_seconds": bp, "numerical_seconds": num, "ratio": num / bp}
    print(f"TwoLayerNet(784, 50, 10) batch 100: backprop {1e3 * bp:.3f} ms, numerical gradient "
          f"{num:.2f} s: {num / bp:,.0f}x")

    start = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "compile_time.py"), "--repeat", "1"],
                           capture_output=True, text=True)
    report["start"] = start.stdout.strip().splitlines()
    print("\n".join(report["start"]))

    os.makedirs(args.out, exist_ok=True)
    tag = model.lower().replace("(r)", "").replace(" ", "-")[:32].strip("-") + f"-{cores}c"
    stem = os.path.join(args.out, f"{tag}-{report['date']}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    chart(stem + ".png", report)
    print(f"wrote {stem}.json and .png")


def chart(path, report):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["fastbp", "numpy", "torch", "blas_floor"]
    labels = {"fastbp": "fastbp", "numpy": "NumPy", "torch": "PyTorch CPU", "blas_floor": "BLAS floor"}
    fig, axes = plt.subplots(1, len(report["configs"]), figsize=(4 * len(report["configs"]), 3.6))
    for ax, row in zip(np.atleast_1d(axes), report["configs"]):
        t = row["seconds_per_step"]
        present = [n for n in names if n in t]
        bars = ax.bar([labels[n] for n in present], [1e3 * t[n] for n in present],
                      color=["C0", "C1", "C2", "0.6"][:len(present)])
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
        ax.set_title(row["config"], fontsize=10)
        ax.set_ylabel("ms per SGD step")
        ax.tick_params(axis="x", labelsize=8, rotation=20)
    fig.suptitle(f"{report['machine']}, {report['cores']} cores, float32, {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
