"""Shared test helpers: tolerances per dtype, random data, central differences."""
import gzip
import struct

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]

# kernel vs NumPy reference (same dtype, different summation order)
REF_TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}


def assert_near(got, want, dtype):
    """Kernel vs reference, elementwise, with the absolute slack scaled to the result's size:
    a long float32 sum that cancels to ~0 carries rounding of its terms' size, not its own."""
    tol = REF_TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(want)))) if np.size(want) else 1.0
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["rtol"] * scale)
    assert np.asarray(got).dtype == dtype
# backprop vs central differences of the float64 function (h = 1e-6 relative scale):
# float64 is limited by the difference quotient, float32 by float32 rounding
NUM_TOL = {np.float32: dict(rtol=2e-3, atol=2e-4), np.float64: dict(rtol=1e-6, atol=1e-8)}


@pytest.fixture(autouse=True)
def offline_and_private_cache(tmp_path_factory, monkeypatch):
    """No test reaches the internet or the user's cache: mirrors point at a closed local
    port (tests that download start their own local server), the cache is a temp folder."""
    from fastbp import datasets
    for spec in datasets.DATASETS.values():
        monkeypatch.setitem(spec, "mirrors", ["http://127.0.0.1:9/"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("FASTBP_DATA", raising=False)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def away_from_zero(rng, shape, dtype, gap=0.05):
    """Random values with |v| >= gap: central differences never straddle ReLU's kink."""
    v = rng.standard_normal(shape)
    v = np.where(np.abs(v) < gap, np.sign(v + 1e-12) * gap, v)
    return v.astype(dtype)


def central_diff(f, arrays, h=1e-6):
    """d f / d a for each float64 array a in `arrays` (perturbed in place, restored), f() -> float."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a, dtype=np.float64)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            fp = f()
            flat[i] = keep - h
            fm = f()
            flat[i] = keep
            gflat[i] = (fp - fm) / (2 * h)
        grads.append(g)
    return grads


def write_idx(path, array, magic=None, extra=b"", cut=0):
    """A gzip'd IDX file; magic, extra trailing bytes and cut let a test break it."""
    header = magic if magic is not None else bytes([0, 0, 8, array.ndim])
    raw = header + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes() + extra
    with gzip.open(path, "wb") as f:
        f.write(raw[:len(raw) - cut] if cut else raw)


def fake_mnist(root, n_train=5, n_test=3, n_labels=None):
    """Four small well-formed IDX files (random pixels and labels) in root."""
    from fastbp.datasets import FILES
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = FILES[split]
        write_idx(root / images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / labels, rng.integers(0, 10, n_labels or n, dtype=np.uint8))


def hiding(folder, *modules):
    """Environment variables under which a subprocess cannot import `modules`: each shadowed,
    through PYTHONPATH, by a package in folder that fails to import as a missing one does
    (optional extras such as mpi4py and scikit-learn, installed for the tests)."""
    for module in modules:
        (folder / module).mkdir(parents=True)
        (folder / module / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\", "
                                                     f"name='{module}')\n")
    return {"PYTHONPATH": str(folder)}


def cuda_tests_runnable():
    """tests/cuda runs under the simulator (make test's own pass) or on a real GPU."""
    from numba import config
    if config.ENABLE_CUDASIM:
        return True
    try:
        from numba import cuda
        return cuda.is_available()
    except Exception:
        return False


collect_ignore = [] if cuda_tests_runnable() else ["cuda"]
