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
    """(name, dtype, factory, its arguments, signature, float64 loss?) of every kernel: the
    triples build.compile(signature, factory, *arguments) gets."""
    from fastbp.kernels.cuda import config, entry_losses, epoch, gather, gemm, optimizers, sk_solvers, softmax_loss
    for NP in (np.float32, np.float64):
        for version in ("naive", "tiled", "regblock"):  # what networks launch (pipelined: below)
            for ta, tb, epi in ((False, False, gemm.EPI_BIAS_ACT), (False, True, gemm.EPI_ACT_GRAD),
                                (True, False, gemm.EPI_COLSUM), (True, True, gemm.EPI_NONE)):
                yield (f"gemm-{version}-{int(ta)}{int(tb)}-epi{epi}", NP,
                       gemm.source, (version, ta, tb, epi, NP), gemm.signature(NP), False)
        if NP is np.float32:  # the register-blocked shapes bench/cuda_report.py times (config.py),
            # pipelined only there: no network launches it (gemm.pick)
            for version in ("regblock", "pipelined"):
                for shape in config.REG_CANDIDATES:
                    yield (f"gemm-{version}-{'x'.join(map(str, shape))}", NP, gemm.source,
                           (version, False, False, gemm.EPI_NONE, NP, shape), gemm.signature(NP), False)
        yield "optimizer", NP, optimizers.source, (NP,), optimizers.signature(NP), False
        # its losses are float64 by design, as softmax's (epoch.py)
        # every chain count bench/cuda_report.py times in float32; float64 in the default one
        for chains in epoch.CHAINS if NP is np.float32 else (config.EPOCH_CHAINS,):
            yield f"epoch-{chains}-chains", NP, epoch.source, (NP, 256, chains), epoch.signature(NP), True
        if NP is np.float32:  # its forward sums split over lanes (the split only bounds a loop)
            yield "epoch-split", NP, epoch.source, (NP, 256, 4, 8), epoch.signature(NP), True
        for adam, nesterov in ((False, False), (False, True), (True, False)):
            # Σ W² (for the reported loss) is float64 by design (sk_solvers.py)
            yield (f"sk-update-{adam}-{nesterov}", NP, sk_solvers.sk_update_source, (NP, adam, nesterov),
                   sk_solvers.sk_update_signature(NP), True)
        yield "gather", NP, gather.source, (NP,), gather.signature(NP), False
        yield "gather-float-targets", NP, gather.source, (NP, True), gather.signature(NP, True), False
        yield "argmax", NP, softmax_loss.argmax_source, (NP,), softmax_loss.argmax_signature(NP), False
        # the loss is float64 by design in these (softmax_loss.py)
        for grad in (True, False):
            yield (f"softmax-{grad}", NP, softmax_loss.softmax_ce_source, (NP, grad),
                   softmax_loss.softmax_ce_signature(NP), True)
            yield (f"softmax-rows-{grad}", NP, softmax_loss.softmax_ce_rows_source, (NP, grad),
                   softmax_loss.softmax_ce_rows_signature(NP), True)
            for kind in entry_losses.KINDS:
                yield (f"{kind}-{grad}", NP, entry_losses.entry_loss_source, (NP, kind, grad),
                       entry_losses.entry_loss_signature(NP), True)
    yield "mean-loss", np.float64, softmax_loss.mean_loss_source, (), softmax_loss.mean_loss_signature(), True
    yield "sk-finish", np.float64, sk_solvers.sk_finish_source, (), sk_solvers.sk_finish_signature(), True


def test_every_kernel_compiles_and_float32_stays_float32(compile_ptx):
    from fastbp.kernels.cuda import config, epoch
    assert config.TILE == 16 and config.REG == (16, 4, 8)  # the GPU's sizes, not the simulator's
    names = []
    for name, NP, factory, args, sig, float64_loss in _kernels():
        ptx = compile_ptx(factory(*args), sig)
        assert ".entry" in ptx, name
        if NP is np.float32 and not float64_loss:
            assert _f64_ops(ptx) == [], f"{name} float32 does float64 math: {_f64_ops(ptx)[:3]}"
        if name.startswith(("epoch", "gemm-regblock", "gemm-pipelined")):
            # the epoch kernel's chains, the gemms' accumulators: local arrays, in registers
            assert ".local" not in ptx, name
        names.append(name)
    assert len(names) == 2 * (3 * 4 + 5 + 3 + 2 * (2 + 3)) + 2 + 2 * len(config.REG_CANDIDATES) + len(epoch.CHAINS)


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


def test_eight_by_eight_accumulators_stay_in_registers_under_an_activation(compile_ptx):
    # 64 outputs a thread with an activation's branches in the epilogue: NVVM leaves that loop
    # rolled, and the accumulators in local memory, unless the epilogue is a second pass (gemm.py)
    from fastbp.kernels.cuda import gemm
    NP = np.float32
    for version, epi in (("regblock", gemm.EPI_ACT_GRAD), ("pipelined", gemm.EPI_BIAS_ACT)):
        ptx = compile_ptx(gemm.source(version, False, False, epi, NP, (16, 8, 8)), gemm.signature(NP), (9, 0))
        assert ".local" not in ptx, (version, epi)


# The disk cache (kernels/cuda/disk_cache.py): what can be checked without a GPU. Loading a real
# kernel needs one (tests/cuda/test_cuda_disk_cache.py).

_KEYS = """
import json, sys, types
sys.path.insert(0, sys.argv[1])
from test_cuda_compile import _kernels
from fastbp.kernels.cuda import disk_cache
codegen = types.SimpleNamespace(magic_tuple=lambda: ((12, 9), (9, 0)))  # a runtime and an sm_90
files = {}
for name, NP, factory, args, sig, _ in _kernels():
    cache = disk_cache.KernelCache(factory(*args), disk_cache.kernel_key(factory, args))
    files[f"{name}-{NP.__name__}"] = cache._file(cache._full_key(sig, codegen))
print(json.dumps(files))
"""


def test_disk_cache_names_each_kernel_one_file_the_same_in_every_process():
    pytest.importorskip("numba.cuda")
    import json
    import os
    runs = [json.loads(subprocess.run([sys.executable, "-c", _KEYS, os.path.dirname(__file__)], check=True,
                                      capture_output=True, text=True).stdout) for _ in range(2)]
    assert runs[0] == runs[1]  # a process finds what an earlier one saved
    assert len(set(runs[0].values())) == len(runs[0]) == len(list(_kernels()))  # no two kernels share a file


def test_disk_cache_key_follows_the_sources_the_settings_and_the_arguments(tmp_path, monkeypatch):
    pytest.importorskip("numba.cuda")
    import shutil
    from fastbp.kernels.cuda import config, disk_cache, gemm
    root = tmp_path / "kernels"
    shutil.copytree(disk_cache.KERNELS, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = disk_cache.sources_digest(str(root))
    assert before == disk_cache.sources_digest(disk_cache.KERNELS)
    # an edit in a file other than the kernel's own (a device function it inlines)
    path = root / "cuda" / "softmax_loss.py"
    path.write_text(path.read_text().replace("def _rows_sum(", "def _rows_sum( "))
    assert disk_cache.sources_digest.__wrapped__(str(root)) != before
    key = disk_cache.kernel_key(gemm.source, ("tiled", False, False, 1, np.float32, None))
    assert key != disk_cache.kernel_key(gemm.source, ("tiled", False, False, 1, np.float64, None))
    assert key != disk_cache.kernel_key(gemm.source, ("tiled", True, False, 1, np.float32, None))
    monkeypatch.setattr(config, "TILE", 32)  # a setting the factory reads when its shape is None
    assert key != disk_cache.kernel_key(gemm.source, ("tiled", False, False, 1, np.float32, None))


_BUILD = """
import hashlib, json, types
import numba.cuda.dispatcher as dispatcher, numba.cuda.codegen as codegen
# no GPU: the device is said to be an sm_80, and loading a kernel into a GPU context (bind) is
# the one step skipped; numba-cuda compiles, saves and loads as on a GPU
device = types.SimpleNamespace(compute_capability=(8, 0))
dispatcher.get_current_device = lambda: device
codegen.devices.get_context = lambda *a: types.SimpleNamespace(device=device)
dispatcher._Kernel.bind = lambda self: None
import numpy as np
from fastbp.kernels.cuda import gather
k = gather.gather(np.float32)
ptx = next(iter(k.overloads.values()))._codelibrary.get_asm_str(cc=(8, 0))
print(json.dumps({"hits": sum(k._cache_hits.values()), "misses": sum(k._cache_misses.values()),
                  "specialized": k._specialized, "ptx": hashlib.sha256(ptx.encode()).hexdigest()}))
"""


def test_build_compiles_a_kernel_once_and_the_next_process_loads_it(tmp_path):
    # build.compile through numba-cuda's own dispatcher, with the disk cache in numba's place
    pytest.importorskip("numba.cuda")
    import json
    import os
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    first, second = [json.loads(subprocess.run([sys.executable, "-c", _BUILD], env=env, check=True,
                                               capture_output=True, text=True).stdout) for _ in range(2)]
    assert (first["misses"], first["hits"], second["misses"], second["hits"]) == (1, 0, 0, 1)
    assert first["ptx"] == second["ptx"] and first["specialized"] and second["specialized"]


class _Stored:
    """A stand-in for a compiled kernel and numba's reduce/rebuild of one: the file handling
    is what is tested here."""

    def __init__(self, folder):
        self.filename_base = "k"
        self.locator = pytypes.SimpleNamespace(get_cache_path=lambda: str(folder),
                                               ensure_cache_path=lambda: folder.mkdir(exist_ok=True))
        self.codegen = pytypes.SimpleNamespace(magic_tuple=lambda: ((12, 9), (9, 0)))
        self.context = pytypes.SimpleNamespace(refresh=lambda: None, codegen=lambda: self.codegen)
        self.payload = {"ptx": "the kernel"}

    def reduce(self, kernel):
        return kernel.payload

    def rebuild(self, context, payload):
        return payload


def test_disk_cache_files(tmp_path, monkeypatch):
    pytest.importorskip("numba.cuda")
    import os
    from fastbp.kernels.cuda import disk_cache, gather
    folder = tmp_path / "cache"

    def cache(key="K"):
        c = disk_cache.KernelCache(gather.source(np.float32), key)
        c._impl = stored
        return c

    stored = _Stored(folder)
    sig = gather.signature(np.float32)
    assert cache().load_overload(sig, stored.context) is None  # nothing saved yet
    cache().save_overload(sig, stored)
    assert os.listdir(folder) and all(f.endswith(disk_cache.SUFFIX) for f in os.listdir(folder))  # no .tmp left
    assert cache().load_overload(sig, stored.context) == stored.payload
    assert cache("another kernel").load_overload(sig, stored.context) is None
    assert cache().load_overload(gather.signature(np.float64), stored.context) is None
    (path,) = [folder / f for f in os.listdir(folder)]
    # a half-written or foreign file compiles instead, and the next save replaces it
    path.write_bytes(path.read_bytes()[:20])
    assert cache().load_overload(sig, stored.context) is None
    cache().save_overload(sig, stored)
    assert cache().load_overload(sig, stored.context) == stored.payload
    # a file whose full key is not this kernel's (a hash collision) is not this kernel
    import pickle
    full, payload = pickle.loads(path.read_bytes())
    path.write_bytes(pickle.dumps((full.replace("K", "J"), payload)))
    assert cache().load_overload(sig, stored.context) is None
    # recompile() flushes: the next load compiles
    c = cache()
    c.save_overload(sig, stored)
    c.flush()
    assert c.load_overload(sig, stored.context) is None
    # a save removes the function's files from other sources, not another function's
    old = folder / f"{c._name}.{'0' * 12}.{'1' * 32}{disk_cache.SUFFIX}"
    other = folder / f"{c._name}2.{'0' * 12}.{'1' * 32}{disk_cache.SUFFIX}"
    old.write_bytes(b"x")
    other.write_bytes(b"x")
    c.save_overload(sig, stored)
    assert not old.exists() and other.exists() and path.exists()
    # no folder numba can write: no cache, and the kernel is compiled as without one
    assert isinstance(disk_cache.for_kernel(gather.source(np.float32), "K"), disk_cache.KernelCache)
    with monkeypatch.context() as m:
        m.setattr(disk_cache, "CUDACacheImpl", lambda py_func: (_ for _ in ()).throw(
            RuntimeError("cannot cache function: no locator available")))  # numba's words
        assert disk_cache.for_kernel(gather.source(np.float32), "K") is None
    # a kernel numba cannot pickle stays uncached, one numba cannot rebuild is compiled: warnings
    with monkeypatch.context() as m:
        m.setattr(stored, "reduce", lambda kernel: (_ for _ in ()).throw(TypeError("cannot pickle")))
        with pytest.warns(UserWarning, match="could not be cached"):
            cache("K3").save_overload(sig, stored)
    assert cache("K3").load_overload(sig, stored.context) is None
    with monkeypatch.context() as m:
        m.setattr(stored, "rebuild", lambda context, payload: (_ for _ in ()).throw(KeyError("codelibrary")))
        with pytest.warns(UserWarning, match="did not load"):
            assert cache().load_overload(sig, stored.context) is None
    # a folder that cannot be written leaves the kernel uncached, it does not fail
    stored.locator.ensure_cache_path = lambda: (_ for _ in ()).throw(PermissionError("read-only"))
    cache("K2").save_overload(sig, stored)
    assert cache("K2").load_overload(sig, stored.context) is None


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
