"""Data sets: CS231n's spiral (built in) and MNIST from local IDX files.

load_mnist keeps the book's arguments and conventions: normalize gives float32
in [0, 1] (else uint8), flatten gives (N, 784) (else (N, 1, 28, 28)), labels
are uint8 (N,) or one-hot float32 (N, 10). It reads the four gzip'd IDX files
from `root`, else from $FASTBP_DATA; every file is validated before use.
"""
import gzip
import math
import os
import zlib

import numpy as np

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_UBYTE = 0x08  # IDX type code for unsigned bytes, the only type MNIST uses


def read_idx(path, ndim):
    """The uint8 array in a gzip'd IDX file with `ndim` dimensions, checked byte for byte."""
    path = os.fspath(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # not gzip, truncated stream, bad CRC
        raise ValueError(f"{path}: not a readable gzip file ({e})") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: {len(raw)} bytes is shorter than an IDX header ({header} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or raw[3] != ndim:
        raise ValueError(f"{path}: bad IDX magic {raw[:4].hex()}, expected 0000{_UBYTE:02x}{ndim:02x} "
                         f"(unsigned bytes, {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise ValueError(f"{path}: {len(raw)} bytes, expected {expected} for dimensions {dims} "
                         f"({'truncated' if len(raw) < expected else 'trailing bytes'})")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _read_pair(root, images_name, labels_name):
    images_path = os.path.join(root, images_name)
    labels_path = os.path.join(root, labels_name)
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} has {images.shape[0]} images but {labels_path} has "
                         f"{labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: label {labels.max()} is not a digit 0-9")
    return images, labels


def load_mnist(normalize=True, flatten=True, one_hot_label=False, root=None):
    """(x_train, t_train), (x_test, t_test) from the IDX files in root (or $FASTBP_DATA)."""
    root = root if root is not None else os.environ.get("FASTBP_DATA")
    if root is None:
        raise FileNotFoundError("no MNIST folder given: pass root=... or set FASTBP_DATA")
    root = os.fspath(root)
    missing = [n for pair in MNIST_FILES.values() for n in pair
               if not os.path.isfile(os.path.join(root, n))]
    if missing:
        raise FileNotFoundError(f"{root}: missing MNIST files {missing}")
    out = []
    for split in ("train", "test"):
        images, labels = _read_pair(root, *MNIST_FILES[split])
        x = images.astype(np.float32) / np.float32(255) if normalize else images.copy()
        x = x.reshape(len(x), 784) if flatten else x.reshape(len(x), 1, 28, 28)
        t = np.eye(10, dtype=np.float32)[labels] if one_hot_label else labels.copy()
        out.append((x, t))
    return tuple(out)


def spiral(n_per_class=100, n_classes=3, seed=0, noise=0.2):
    """CS231n's spiral: n_classes interleaved arms in 2-D, not linearly separable.

    Returns x (n_per_class * n_classes, 2) float32 and t (same N,) int64.
    """
    if n_per_class < 1 or n_classes < 2:
        raise ValueError("spiral needs n_per_class >= 1 and n_classes >= 2")
    rng = np.random.default_rng(seed)
    x = np.empty((n_per_class * n_classes, 2), np.float32)
    t = np.repeat(np.arange(n_classes), n_per_class)
    for c in range(n_classes):
        r = np.linspace(0.0, 1, n_per_class)
        theta = np.linspace(c * 4, (c + 1) * 4, n_per_class) + noise * rng.standard_normal(n_per_class)
        x[c * n_per_class:(c + 1) * n_per_class] = np.c_[r * np.sin(theta), r * np.cos(theta)]
    return x, t
