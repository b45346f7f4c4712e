"""The CUDA kernels through the real compiler (NVVM, from the nvidia-cuda-nvcc wheel) with no
GPU: every kernel, both dtypes, the GPU's own tile sizes (config.py), lowered to PTX for
sm_80 and sm_90. Catches what the simulator forgives (non-constant shared-memory shapes,
untyped literals, unsupported calls). And float32 kernels stay float32: no f64 instruction
in their PTX (the softmax kernel's loss is float64 on purpose; its exp is checked apart).
Plus: without a GPU, device="cuda" fails with a clear message, in Python and in the CLI."""
import re
import subprocess
import sys
import types as pytypes

import numpy as np
import pytest
from numba import config as numba_config

pytestmark = pytest.mark.skipif(numba_config.ENABLE_CUDASIM, reason="the simulator does not compile")


@pytest.fixture(scope="module")
def compile_ptx():
    cuda = pytest.importorskip("numba.cuda")
    import numba.cuda.dispatcher as dispatcher
    # Device functions are compiled for "the current device"; without a GPU, tell them sm_80.
    # Only the question "which compute capability?" is answered here; NVVM does the rest.
    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(8, 0))
    try:
        cuda.compile_ptx(lambda a: None, "void(float32[::1])", cc=(8, 0))
    except Exception as e:
        dispatcher.get_current_device = real
        missing = any(w in str(e).lower() for w in ("libnvvm", "nvrtc", "cannot be found", "not found"))
        if not missing:  # a compiler that is there and fails is a failure, not a skip
            raise
        pytest.skip(f"NVVM not installed (pip install 'fastbp[cuda]'): {e}")
    yield lambda f, sig, cc=(8, 0): cuda.compile_ptx(f, sig, cc=cc)[0]
    dispatcher.get_current_device = real


def _f64_ops(ptx):
    return [l.strip() for l in ptx.splitlines() if re.search(r"\.f64\b", l)]


def _kernels():
    from fastbp.kernels.cuda import config, entry_losses, epoch, gather, gemm, optimizers, sk_solvers, softmax_loss
    for NP in (np.float32, np.float64):
        for version in gemm.VERSIONS:
            for ta, tb, epi in ((False, False, gemm.EPI_BIAS_ACT), (False, True, gemm.EPI_ACT_GRAD),
                                (True, False, gemm.EPI_COLSUM), (True, True, gemm.EPI_NONE)):
                yield (f"gemm-{version}-{int(ta)}{int(tb)}-epi{epi}", NP,
                       gemm.source(version, ta, tb, epi, NP), gemm.signature(NP), False)
        if NP is np.float32:  # the register-blocked shapes bench/cuda_report.py times (config.py)
            for shape in config.REG_CANDIDATES:
                yield (f"gemm-regblock-{'x'.join(map(str, shape))}", NP,
                       gemm.source("regblock", False, False, gemm.EPI_NONE, NP, shape), gemm.signature(NP), False)
        yield "optimizer", NP, optimizers.source(NP), optimizers.signature(NP), False
        # its losses are float64 by design, as softmax's (epoch.py)
        # every chain count bench/cuda_report.py times in float32; float64 in the default one
        for chains in epoch.CHAINS if NP is np.float32 else (config.EPOCH_CHAINS,):
            yield f"epoch-{chains}-chains", NP, epoch.source(NP, 256, chains), epoch.signature(NP), True
        for adam, nesterov in ((False, False), (False, True), (True, False)):
            # Σ W² (for the reported loss) is float64 by design (sk_solvers.py)
            yield (f"sk-update-{adam}-{nesterov}", NP, sk_solvers.sk_update_source(NP, adam, nesterov),
                   sk_solvers.sk_update_signature(NP), True)
        yield "gather", NP, gather.source(NP), gather.signature(NP), False
        yield "gather-float-targets", NP, gather.source(NP, True), gather.signature(NP, True), False
        yield "argmax", NP, softmax_loss.argmax_source(NP), softmax_loss.argmax_signature(NP), False
        # the loss is float64 by design in these (softmax_loss.py)
        for grad in (True, False):
            yield (f"softmax-{grad}", NP, softmax_loss.softmax_ce_source(NP, grad),
                   softmax_loss.softmax_ce_signature(NP), True)
            yield (f"softmax-rows-{grad}", NP, softmax_loss.softmax_ce_rows_source(NP, grad),
                   softmax_loss.softmax_ce_rows_signature(NP), True)
            for kind in entry_losses.KINDS:
                yield (f"{kind}-{grad}", NP, entry_losses.entry_loss_source(NP, kind, grad),
                       entry_losses.entry_loss_signature(NP), True)
    yield "mean-loss", np.float64, softmax_loss.mean_loss_source(), softmax_loss.mean_loss_signature(), True
    yield "sk-finish", np.float64, sk_solvers.sk_finish_source(), sk_solvers.sk_finish_signature(), True


def test_every_kernel_compiles_and_float32_stays_float32(compile_ptx):
    from fastbp.kernels.cuda import config, epoch
    assert config.TILE == 16 and config.REG == (16, 4, 8)  # the GPU's sizes, not the simulator's
    names = []
    for name, NP, f, sig, float64_loss in _kernels():
        ptx = compile_ptx(f, sig)
        assert ".entry" in ptx, name
        if NP is np.float32 and not float64_loss:
            assert _f64_ops(ptx) == [], f"{name} float32 does float64 math: {_f64_ops(ptx)[:3]}"
        if name.startswith("epoch"):  # its sums' chains are a local array: in registers
            assert ".local" not in ptx, name
        names.append(name)
    assert len(names) == 2 * (3 * 4 + 5 + 3 + 2 * (2 + 3)) + 2 + len(config.REG_CANDIDATES) + len(epoch.CHAINS) - 1


def test_float32_output_gradients_stay_float32(compile_ptx):
    # the entry losses sum in float64 by design (entry_losses.py); the gradient they write
    # must be float32 math: a float32 store, and the logistic sigmoid's exp in float32
    from fastbp.kernels.cuda import entry_losses
    for kind in entry_losses.KINDS:
        ptx = compile_ptx(entry_losses.entry_loss_source(np.float32, kind, True),
                          entry_losses.entry_loss_signature(np.float32))
        assert re.search(r"st\.global\.f32", ptx), kind
        if kind == "logistic":
            assert re.search(r"ex2\.approx(\.ftz)?\.f32", ptx), "the sigmoid of a float32 output is not float32"


def test_float32_sk_update_steps_in_float32(compile_ptx):
    # only Σ W² is float64 (a conversion and a multiply-add per entry); the step itself,
    # Adam's square root included, is float32
    from fastbp.kernels.cuda import sk_solvers
    ptx = compile_ptx(sk_solvers.sk_update_source(np.float32, True, False), sk_solvers.sk_update_signature(np.float32))
    assert re.search(r"sqrt\.rn\.f32", ptx) and not re.search(r"sqrt\.rn\.f64", ptx)
    assert re.search(r"st\.global\.f32", ptx)


def test_softmax_kernel_exponentiates_in_float32(compile_ptx):
    # its loss sum is float64 by design (softmax_loss.py); the per-logit exp must not be
    from fastbp.kernels.cuda import softmax_loss
    for grad in (True, False):
        for f, sig in ((softmax_loss.softmax_ce_source(np.float32, grad), softmax_loss.softmax_ce_signature),
                       (softmax_loss.softmax_ce_rows_source(np.float32, grad),
                        softmax_loss.softmax_ce_rows_signature)):
            ptx = compile_ptx(f, sig(np.float32))
            assert re.search(r"ex2\.approx(\.ftz)?\.f32", ptx), "exp of a float32 logit is not float32"


def test_gpu_targets(compile_ptx):
    from fastbp.kernels.cuda import gemm
    NP = np.float32
    for cc in ((8, 0), (9, 0)):
        ptx = compile_ptx(gemm.source("regblock", False, False, gemm.EPI_BIAS_ACT, NP), gemm.signature(NP), cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx
        assert ".local" not in ptx  # the 4 x 4 accumulators live in registers, not local memory


def test_cuda_without_a_gpu_is_a_clear_error():
    import fastbp
    from fastbp.cuda import DeviceUnavailable
    try:
        from numba import cuda
        if cuda.is_available():
            pytest.skip("a GPU is here")
    except Exception:
        pass
    with pytest.raises(DeviceUnavailable, match="device='cuda'"):
        fastbp.Network([3, 2], device="cuda")
    pytest.importorskip("sklearn")
    for solver in ("adam", "lbfgs"):
        with pytest.raises(DeviceUnavailable, match="device='cuda'"):
            fastbp.MLPClassifier(solver=solver, device="cuda").fit(np.eye(3), [0, 1, 1])


def test_cli_device_cuda_without_a_gpu(tmp_path):
    from numba import cuda
    if cuda.is_available():
        pytest.skip("a GPU is here")
    r = subprocess.run([sys.executable, "-m", "fastbp", "train", "--device", "cuda", "--no-download",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "device='cuda'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
