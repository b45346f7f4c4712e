"""A full SGD step: fastbp vs plain NumPy vs PyTorch CPU vs the BLAS floor (pytest-benchmark).

fastbp runs steps the way fit does, a chunk of CHUNK_STEPS steps per compiled call; so
that the rows compare, every contender's timed call runs that many steps.
"""
import pytest

from bench import steps
from fastbp.backend import CHUNK_STEPS

IDS = ["-".join(map(str, s)) + f"-b{b}" for s, b in steps.CONFIGS]


@pytest.mark.parametrize("sizes,batch", steps.CONFIGS, ids=IDS)
@pytest.mark.parametrize("impl", ["fastbp", "numpy", "torch", "blas_floor"])
def test_sgd_step(benchmark, impl, sizes, batch):
    step = getattr(steps, f"make_{impl}")(sizes, batch)  # compiles and warms up outside the timing
    if step is None:
        pytest.skip("PyTorch is not installed (optional)")
    if getattr(step, "steps_per_call", 1) != CHUNK_STEPS:
        one = step

        def step():
            for _ in range(CHUNK_STEPS):
                one()
    benchmark.group = f"{CHUNK_STEPS} SGD steps {IDS[steps.CONFIGS.index((sizes, batch))]} float32"
    benchmark(step)
