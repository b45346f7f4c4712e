import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import fake_mnist, write_idx
from fastbp.datasets import (FILES, SAMPLE_DIR, load_fashion_mnist, load_mnist, load_mnist_sample, read_idx,
                             spiral)

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")


@needs_mnist
def test_load_mnist_conventions():
    (x, t), (xt, tt) = load_mnist(root=MNIST)
    assert x.shape == (24000, 784) and x.dtype == np.float32 and xt.shape == (10000, 784)
    assert 0 <= x.min() and x.max() == 1.0
    assert t.dtype == np.uint8 and t.shape == (24000,)
    # label counts stated in shared/data/mnist/README.md
    assert np.bincount(t).tolist() == [2381, 2732, 2347, 2487, 2347, 2144, 2370, 2489, 2292, 2411]
    assert t[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first digits of MNIST's training set
    (xr, th), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True, root=MNIST)
    assert xr.shape == (24000, 1, 28, 28) and xr.dtype == np.uint8
    np.testing.assert_array_equal(xr.reshape(24000, 784) / np.float32(255), x)
    assert th.shape == (24000, 10) and (th.argmax(axis=1) == t).all() and (th.sum(axis=1) == 1).all()


def test_small_well_formed_set_loads(tmp_path):
    fake_mnist(tmp_path)
    (x, t), (xt, tt) = load_mnist(root=tmp_path)
    assert x.shape == (5, 784) and xt.shape == (3, 784) and t.shape == (5,)


def test_search_order_env_then_cache(tmp_path, monkeypatch):
    env, cache = tmp_path / "data", tmp_path / "cache"
    (env / "mnist").mkdir(parents=True)
    fake_mnist(env / "mnist", n_train=5)
    (cache / "fastbp" / "mnist").mkdir(parents=True)
    fake_mnist(cache / "fastbp" / "mnist", n_train=7)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("FASTBP_DATA", str(env))
    assert load_mnist(download=False)[0][0].shape == (5, 784)
    monkeypatch.delenv("FASTBP_DATA")
    assert load_mnist(download=False)[0][0].shape == (7, 784)
    shutil.rmtree(cache / "fastbp" / "mnist")
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_mnist(download=False)


def test_sample_inside_the_package_is_real_mnist():
    (x, t), (xt, tt) = load_mnist_sample()
    assert x.shape[1] == 784 and len(x) >= 10000 and len(xt) >= 2000
    assert t[:5].tolist() == [5, 0, 4, 1, 9]
    files = [os.path.join(SAMPLE_DIR, n) for pair in FILES.values() for n in pair]
    assert sum(os.path.getsize(f) for f in files) <= 3_000_000


@pytest.mark.parametrize("kwargs,match", [
    (dict(cut=10), "truncated"),
    (dict(extra=b"\0\0"), "trailing bytes"),
    (dict(magic=bytes([0, 0, 8, 2])), "bad IDX magic"),
    (dict(magic=bytes([0, 0, 0x0D, 3])), "bad IDX magic"),
])
def test_malformed_idx_named_in_error(tmp_path, kwargs, match):
    fake_mnist(tmp_path)
    bad = tmp_path / FILES["train"][0]
    write_idx(bad, np.zeros((5, 28, 28), np.uint8), **kwargs)
    with pytest.raises(ValueError, match=match) as e:
        load_mnist(root=tmp_path)
    assert str(bad) in str(e.value)


def test_not_gzip_and_short_header(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"plain text, not gzip")
    with pytest.raises(ValueError, match="not a readable gzip file"):
        read_idx(p, 3)
    with gzip.open(p, "wb") as f:
        f.write(b"\0\0\x08")
    with pytest.raises(ValueError, match="shorter than an IDX header"):
        read_idx(p, 1)


def test_count_mismatch_and_missing_files(tmp_path):
    fake_mnist(tmp_path, n_labels=4)
    with pytest.raises(ValueError, match="has 5 images but .* has 4 labels"):
        load_mnist(root=tmp_path)
    (tmp_path / FILES["test"][1]).unlink()
    with pytest.raises(FileNotFoundError, match="missing mnist files"):
        load_mnist(root=tmp_path, download=False)


def test_spiral_is_deterministic_and_balanced():
    x, t = spiral(50, 3, seed=1)
    x2, t2 = spiral(50, 3, seed=1)
    assert x.shape == (150, 2) and x.dtype == np.float32 and np.bincount(t).tolist() == [50] * 3
    np.testing.assert_array_equal(x, x2)
    assert np.abs(x).max() <= 1.0
    with pytest.raises(ValueError):
        spiral(0, 3)


def test_uncompressed_and_dotted_file_names_load_alike(tmp_path):
    gz = tmp_path / "gz"
    gz.mkdir()
    fake_mnist(gz, n_train=7, n_test=4)
    plain = tmp_path / "plain"
    plain.mkdir()
    for k, name in enumerate(n for pair in FILES.values() for n in pair):
        stem = name[:-3]
        target = stem if k % 2 else stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, ...
        (plain / target).write_bytes(gzip.decompress((gz / name).read_bytes()))
    a, b = load_mnist(root=gz), load_mnist(root=plain)
    for (xa, ta), (xb, tb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta, tb)


@needs_mnist
def test_another_data_sets_files_are_refused(tmp_path):
    # MNIST's official test files (gzip'd as published, or not) are not Fashion-MNIST
    with pytest.raises(ValueError, match="is mnist's official test file .* not fashion-mnist's"):
        load_fashion_mnist(root=MNIST)
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in MNIST.glob("*.gz"):
        (plain / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    with pytest.raises(ValueError, match="this folder holds mnist"):
        load_fashion_mnist(root=plain)
    assert load_mnist(root=plain)[1][0].shape == (10000, 784)
    debian = Path("/usr/share/datasets/fashion-mnist")
    if debian.is_dir():  # and the other way round where Debian's copy is installed
        with pytest.raises(ValueError, match="is fashion-mnist's official test file"):
            load_mnist(root=debian)
