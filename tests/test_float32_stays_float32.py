"""float32 kernels must compute in float32: a stray float64 literal or an int/float
promotion silently doubles memory traffic and halves SIMD width. This compiles each
kernel's float32 specialisation afresh (cached code cannot be inspected) and reads
its LLVM IR for double-precision arithmetic."""
import re

import numba
import numpy as np
import pytest

from fastbp.kernels import affine, matmul, relu, sigmoid, softmax_loss

f32 = np.float32
v, m23, m32, m22 = np.ones(4, f32), np.ones((2, 3), f32), np.ones((3, 2), f32), np.ones((2, 2), f32)
b2, t2 = np.ones(2, f32), np.zeros(2, np.int64)

DOUBLE_MATH = re.compile(r"= .*\b(fadd|fsub|fmul|fdiv|frem|fpext|sitofp|uitofp|call)\b.*\bdouble\b")

CASES = [
    (relu.relu_forward, (v, v)),
    (relu.relu_backward, (v, v, v)),
    (sigmoid.sigmoid_forward, (v, v)),
    (sigmoid.sigmoid_backward, (v, v, v)),
    *[(affine.affine_forward, (m22, m23, m32, b2, act)) for act in range(3)],
    *[(affine.bias_act_backward, (m22, b2, m22, m22, act)) for act in range(3)],
    (matmul.matmul_nn_loop, (m22, m23, m32)),
    (matmul.matmul_nt_loop, (m22, m23, m23)),
    (matmul.matmul_tn_loop, (m22, m32, m32)),
]


def float32_ir(kernel, args):
    opts = {k: v for k, v in kernel.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**opts)(kernel.py_func)
    fresh(*args)
    (ir,) = fresh.inspect_llvm().values()
    return ir


@pytest.mark.parametrize("kernel,args", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_no_double_math_in_float32_kernel(kernel, args):
    bad = [line.strip() for line in float32_ir(kernel, args).splitlines() if DOUBLE_MATH.search(line)]
    assert bad == [], f"{kernel.__name__} float32 does float64 math:\n" + "\n".join(bad[:10])


def test_softmax_loss_is_float32_but_for_its_float64_loss_sum():
    # by design the per-row loss is summed in float64 (a handful of scalar ops per row, in
    # each of the two routes a row takes: one vector, or entry by entry); nothing that
    # touches the (N, C) arrays may be float64, so no double vectors
    ir = float32_ir(softmax_loss.softmax_loss_forward_backward, (m22, m22, t2))
    assert not re.search(r"<\d+ x double>", ir)
    assert len([line for line in ir.splitlines() if DOUBLE_MATH.search(line)]) < 24


@pytest.mark.parametrize("adam", [True, False], ids=["adam", "sgd"])
def test_scikit_learn_solver_steps_stay_float32(adam):
    # per-step scalars (Adam's bias-corrected rate) are float64 by design, computed once; a
    # per-entry float64 (1 - b1 with b1 float32 is int - float32: float64 in numba) shows as
    # double vectors in the vectorised loop: twice the converts, half the lanes
    from fastbp.kernels import sk_solvers
    p, g, state = np.ones(40, f32), np.ones(40, f32), np.zeros((2, 40), f32)
    solver = sk_solvers.Solver(adam, 1e-3, 0.9, True, 0.9, 0.999, 1e-8)
    ir = float32_ir(sk_solvers.solver_update, (p, g, state, solver, 1))
    assert not re.search(r"<\d+ x double>", ir)
    assert re.search(r"<\d+ x float>", ir)  # the loop is vectorised at all


@pytest.mark.parametrize("name,args", [
    ("sgd_update", (v, v, 0.1, 0.01)), ("momentum_update", (v, v, v, 0.1, 0.9, 0.01)),
    ("nesterov_update", (v, v, v, 0.1, 0.9, 0.01)), ("adagrad_update", (v, v, v, 0.1, 0.01)),
    ("adam_update", (v, v, v, v, 0.1, 0.9, 0.999, 0.01))])
def test_optimizer_steps_stay_float32(name, args):
    # the rates come in as Python floats and are taken in the parameters' dtype once
    from fastbp.kernels import optimizers
    ir = float32_ir(getattr(optimizers, name), tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args))
    assert not re.search(r"<\d+ x double>", ir)
    assert re.search(r"<\d+ x float>", ir)


def test_scikit_learn_l2_term_stays_float32():
    from fastbp.kernels import sk_solvers
    sizes, offsets = np.array([3, 2], np.int64), np.array([0, 6], np.int64)
    ir = float32_ir(sk_solvers.l2_penalty, (np.ones(8, f32), np.ones(8, f32), offsets, sizes, 0.5))
    assert not re.search(r"<\d+ x double>", ir)
