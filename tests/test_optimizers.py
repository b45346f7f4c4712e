import numpy as np
import pytest

from conftest import DTYPES, assert_near
from fastbp.kernels import optimizers, reference
from fastbp.kernels.layout import param_layout


def setup(rng, sizes, dtype):
    layout = [(p.name, p.offset, p.shape) for p in param_layout(sizes)]
    n = layout[-1][1] + int(np.prod(layout[-1][2]))
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    state = np.abs(rng.standard_normal((2, n))).astype(dtype)  # adagrad's h and adam's v are >= 0
    offsets = np.array([off for _, off, _ in layout], np.int64)
    return layout, p, g, state, offsets, np.array(sizes, np.int64)


@pytest.mark.parametrize("opt", optimizers.OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(1, 1), (3, 1, 2), (5, 4, 3)])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_step_matches_reference_blockwise(rng, opt, dtype, sizes, wd):
    layout, p, g, state, offsets, sz = setup(rng, sizes, dtype)
    lr, h1, h2, t = 0.05, 0.9, 0.999, 3
    expected_p, expected_s = p.copy(), state.copy()
    for name, off, shape in layout:
        sl = slice(off, off + int(np.prod(shape)))
        decay = wd if name.startswith("W") else 0.0  # L2 on weights only
        expected_p[sl], expected_s[:, sl] = reference.optimizer_update(
            p[sl], g[sl], state[:, sl], opt, lr, h1, h2, decay, t)
    optimizers.optimizer_step(p, g, state, offsets, sz, optimizers.OPTIMIZERS.index(opt), lr, h1, h2,
                              wd, t)
    assert_near(p, expected_p.astype(dtype), dtype)
    if opt in ("momentum", "adagrad", "nesterov"):
        assert_near(state[0], expected_s[0].astype(dtype), dtype)
    if opt == "adam":
        assert_near(state, expected_s.astype(dtype), dtype)


@pytest.mark.parametrize("opt", optimizers.OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,parts", [((1, 1), 2), ((5, 4, 3), 2), ((5, 4, 3), 3), ((37, 29, 7), 2)])
def test_step_on_threads_is_the_step_on_one(rng, opt, dtype, sizes, parts):
    # each block in `parts` ranges on numba's threads, blocks of one entry included
    _, p, g, state, offsets, sz = setup(rng, sizes, dtype)
    p2, state2 = p.copy(), state.copy()
    code = optimizers.OPTIMIZERS.index(opt)
    for t in (1, 2):
        optimizers.optimizer_step(p, g, state, offsets, sz, code, 0.05, 0.9, 0.999, 0.01, t)
        optimizers.optimizer_step_threads(p2, g, state2, offsets, sz, code, 0.05, 0.9, 0.999, 0.01, t, parts)
    np.testing.assert_array_equal(p2, p)
    np.testing.assert_array_equal(state2, state)


def test_sgd_is_the_books_update():
    p, g = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    optimizers.sgd_update(p, g, 0.1, 0.0)
    np.testing.assert_allclose(p, [0.95, 2.1], rtol=1e-15)


def test_adam_first_step_moves_each_weight_by_about_lr():
    # with bias correction, Adam's first step is lr * g / (|g| + eps) ~ lr * sign(g)
    p, g = np.zeros(3), np.array([0.1, -5.0, 20.0])
    m, v = np.zeros(3), np.zeros(3)
    lr_t = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9)
    optimizers.adam_update(p, m, v, g, lr_t, 0.9, 0.999, 0.0)
    np.testing.assert_allclose(p, [-0.01, 0.01, -0.01], rtol=1e-3)


@pytest.mark.parametrize("name", ["adam_update", "adagrad_update", "sk_solver_update"])
def test_dividing_updates_are_vectorised(name):
    # a float division that may raise ZeroDivisionError (numba's default error model) keeps
    # LLVM from vectorising a loop: Adam's step was 8x slower so (kernels/config.py, DIVIDING).
    # Compiled afresh with the kernel's own options (cached code cannot be inspected).
    from numba import njit
    from fastbp.kernels import sk_solvers
    f = sk_solvers.solver_update if name == "sk_solver_update" else getattr(optimizers, name)
    options = {k: v for k, v in f.targetoptions.items() if k not in ("nopython", "cache")}
    fresh = njit(cache=False, **options)(f.py_func)
    p = np.zeros(64, np.float32)
    if name == "adam_update":
        fresh(p, p.copy(), p.copy(), p.copy(), 0.001, 0.9, 0.999, 0.0)
    elif name == "adagrad_update":
        fresh(p, p.copy(), p.copy(), 0.01, 0.0)
    else:
        fresh(p, p.copy(), np.zeros((2, 64), np.float32), sk_solvers.Solver(True, 0.001, 0.9, True, 0.9, 0.999, 1e-8), 1)
    ir = "".join(fresh.inspect_llvm().values())
    assert "llvm.sqrt.v" in ir, f"{name}: the square root is not vectorised"
