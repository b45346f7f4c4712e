"""Data sets: MNIST and Fashion-MNIST from gzip'd IDX files, and CS231n's spiral.

load_mnist keeps the book's arguments and conventions: normalize gives float32
in [0, 1] (else uint8), flatten gives (N, 784) (else (N, 1, 28, 28)), labels
are uint8 (N,) or one-hot float32 (N, 10). Every file is validated before use
(magic number, dimensions, exact byte length, image and label counts agree).

Where the files are looked for, in order: `root` if given (only there); else
$FASTBP_DATA/<name>/, the per-user cache (~/.cache/fastbp/<name>/, or under
$XDG_CACHE_HOME), and for Fashion-MNIST Debian's /usr/share/datasets/fashion-mnist
(`apt-get install dataset-fashion-mnist`). Each file may be gzip'd (the official
`train-images-idx3-ubyte.gz`) or not (`train-images-idx3-ubyte`, or
`train-images.idx3-ubyte` as some mirrors name it).

Missing files are downloaded into the cache unless download=False, and into an
explicit `root` only with download=True: mirror after mirror, each file checked
against the official md5 sum, written to a temporary file and renamed into place,
so no folder ever holds half a file. Other files are not required to match the
official sums (a 24,000-image prefix of MNIST loads), but a folder holding the
other data set's official test files is refused: MNIST and Fashion-MNIST share
names, shapes and counts, and only their bytes tell them apart.
"""
import gzip
import hashlib
import math
import os
import sys
import urllib.error
import urllib.request
import zlib
from http.client import HTTPException

import numpy as np

from fastbp.files import atomic_file

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# One entry per data set: where to download from, the official sums, where a system may have it.
DATASETS = {
    "mnist": {
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "system": [],
        # md5 of the uncompressed official test files: the same whatever the compression
        "test_raw_md5": {"2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"},
    },
    "fashion-mnist": {
        "mirrors": [
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "system": ["/usr/share/datasets/fashion-mnist"],
        "test_raw_md5": {"8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"},
    },
}
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist-sample")
_UBYTE = 0x08  # IDX type code for unsigned bytes, the only type MNIST uses
_CHUNK = 1 << 16


class DownloadError(OSError):
    """Every mirror failed for a file; the message lists what each one did."""


def idx_names(name):
    """The names an IDX file goes by: the official .gz, uncompressed, and the dotted variant."""
    stem = name[:-3] if name.endswith(".gz") else name
    dotted = stem.replace("-idx", ".idx", 1)
    return [stem + ".gz", stem, dotted, dotted + ".gz"]


def find_idx(folder, name):
    """The path of IDX file `name` in folder under any of its names, or None."""
    for n in idx_names(name):
        path = os.path.join(folder, n)
        if os.path.isfile(path):
            return path
    return None


def _raw_bytes(path):
    """The IDX bytes of a file, gunzipped if it is gzip (its first two bytes, or a .gz name)."""
    gzipped = False
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b" or path.endswith(".gz")
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # truncated stream, bad CRC, unreadable
        raise ValueError(f"{path}: not a readable {'gzip' if gzipped else 'IDX'} file ({e})") from None


def read_idx(path, ndim):
    """The uint8 array in an IDX file (gzip'd or not) with `ndim` dimensions, checked byte for byte."""
    path = os.fspath(path)
    return _parse_idx(_raw_bytes(path), path, ndim)


def _parse_idx(raw, path, ndim):
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


def cache_dir():
    """The per-user cache folder fastbp downloads into."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastbp")


def _all_files():
    return [n for pair in FILES.values() for n in pair]


def _missing(folder):
    return [n for n in _all_files() if find_idx(folder, n) is None]


def _complete(folder):
    return not _missing(folder)


def candidate_dirs(name):
    """Folders searched for data set `name` when no root is given, in order."""
    dirs = []
    if os.environ.get("FASTBP_DATA"):
        dirs.append(os.path.join(os.environ["FASTBP_DATA"], name))
    dirs.append(os.path.join(cache_dir(), name))
    return dirs + DATASETS[name]["system"]


def _fetch(url, path, md5, timeout):
    """Download url to path atomically; the md5 is checked before the file takes its name."""
    digest, size = hashlib.md5(), 0
    with atomic_file(path) as f, urllib.request.urlopen(url, timeout=timeout) as r:
        expected = r.headers.get("Content-Length")
        while True:
            block = r.read(_CHUNK)
            if not block:
                break
            f.write(block)
            digest.update(block)
            size += len(block)
        if expected is not None and size != int(expected):
            raise OSError(f"truncated: got {size} of {expected} bytes")
        if digest.hexdigest() != md5:
            raise OSError(f"md5 {digest.hexdigest()} is not the official {md5}")


def download(name, folder, mirrors=None, timeout=30, log=None):
    """Fetch the files of data set `name` missing from folder; each from the first mirror that works."""
    spec = DATASETS[name]
    mirrors = spec["mirrors"] if mirrors is None else mirrors
    log = log or (lambda msg: print(msg, file=sys.stderr))
    os.makedirs(folder, exist_ok=True)
    for fname in _all_files():
        path = os.path.join(folder, fname)
        if find_idx(folder, fname) is not None:
            continue
        failures = []
        for mirror in mirrors:
            url = mirror + fname
            log(f"fastbp: downloading {url}")
            try:
                _fetch(url, path, spec["md5"][fname], timeout)
                break
            except (OSError, HTTPException, ValueError) as e:  # URLError, timeouts, resets, bad sums
                failures.append(f"{url}: {e}")
        else:
            raise DownloadError(f"could not download {fname} for {name}: " + "; ".join(failures))


def _read_checked(path, ndim, name):
    """read_idx, refusing the official test file of a data set other than `name`."""
    raw = _raw_bytes(path)
    if name is not None:
        digest = hashlib.md5(raw).hexdigest()
        for other, spec in DATASETS.items():
            if other != name and digest in spec["test_raw_md5"]:
                raise ValueError(f"{path} is {other}'s official test file (md5 of its contents "
                                 f"{digest}), not {name}'s: this folder holds {other}")
    return _parse_idx(raw, path, ndim)


def _read_pair(root, images_name, labels_name, name):
    images_path = find_idx(root, images_name)
    labels_path = find_idx(root, labels_name)
    images = _read_checked(images_path, 3, name)
    labels = _read_checked(labels_path, 1, name)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} has {images.shape[0]} images but {labels_path} has "
                         f"{labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: label {labels.max()} is not a class 0-9")
    return images, labels


def load_idx_folder(folder, normalize=True, flatten=True, one_hot_label=False, name=None):
    """(x_train, t_train), (x_test, t_test) from the four IDX files in folder, in the book's
    conventions; with `name` ("mnist", "fashion-mnist"), another data set's files are refused."""
    folder = os.fspath(folder)
    missing = _missing(folder)
    if missing:
        raise FileNotFoundError(f"{folder}: missing {missing}")
    out = []
    for split in ("train", "test"):
        images, labels = _read_pair(folder, *FILES[split], name)
        x = images.astype(np.float32) / np.float32(255) if normalize else images.copy()
        x = x.reshape(len(x), 784) if flatten else x.reshape(len(x), 1, 28, 28)
        t = np.eye(10, dtype=np.float32)[labels] if one_hot_label else labels.copy()
        out.append((x, t))
    return tuple(out)


def _offline_hint(name):
    hint = (f"put the four IDX files in {candidate_dirs(name)[0]} (or pass root=, or set $FASTBP_DATA)")
    if name == "mnist":
        hint += ("; fastbp.datasets.load_mnist_sample() loads the real-MNIST sample shipped with "
                 "fastbp (14,000 train / 2,000 test images)")
    return hint


def locate(name, root=None, download_missing=None, log=None):
    """The folder holding data set `name`. Missing files are downloaded into the cache unless
    download_missing is False, into an explicit root only if it is True."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
    if root is not None:
        root = os.fspath(root)
        missing = _missing(root)
        if missing:
            if download_missing is not True:
                raise FileNotFoundError(f"{root}: missing {name} files {missing}; download=True "
                                        f"(fastbp train: --download) fetches them into it")
            download(name, root, log=log)
        return root
    for folder in candidate_dirs(name):
        if _complete(folder):
            return folder
    target = candidate_dirs(name)[0]
    if download_missing is False:
        raise FileNotFoundError(f"no {name} files in {candidate_dirs(name)} (and download=False); "
                                + _offline_hint(name))
    try:
        download(name, target, log=log)
    except DownloadError as e:
        raise DownloadError(f"{e}. Offline? {_offline_hint(name)}") from None
    return target


def load_mnist(normalize=True, flatten=True, one_hot_label=False, root=None, download=None):
    """MNIST as (x_train, t_train), (x_test, t_test); see the module docstring for where it looks.
    download: None fetches missing files into the cache (never into an explicit root), True
    also into root, False never."""
    return load_idx_folder(locate("mnist", root, download), normalize, flatten, one_hot_label, "mnist")


def load_fashion_mnist(normalize=True, flatten=True, one_hot_label=False, root=None, download=None):
    """Fashion-MNIST, the same way as load_mnist (also found in Debian's dataset-fashion-mnist)."""
    return load_idx_folder(locate("fashion-mnist", root, download), normalize, flatten, one_hot_label,
                           "fashion-mnist")


def load_mnist_sample(normalize=True, flatten=True, one_hot_label=False):
    """Real MNIST, small, shipped inside the package: the first 14,000 training and 2,000 test
    images (scripts/make_mnist_sample.py), for offline use; the same conventions as load_mnist."""
    return load_idx_folder(SAMPLE_DIR, normalize, flatten, one_hot_label)


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
