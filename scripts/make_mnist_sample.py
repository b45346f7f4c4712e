"""Build the real-MNIST sample shipped in fastbp/data/mnist-sample/ (at most 3 MB).

The first 14,000 training and first 2,000 test images of MNIST, as gzip'd IDX
files with the counts in their headers set to match. Reads the full (or
24,000-image) files from --src, ../shared/data/mnist by default.

    python scripts/make_mnist_sample.py [--src DIR] [--train 10000] [--test 2000]
"""
import argparse
import gzip
import os
import struct

from fastbp.datasets import FILES, SAMPLE_DIR, read_idx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(header + array.tobytes())  # mtime=0: the same input gives the same bytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=os.path.join(REPO, "..", "shared", "data", "mnist"))
    ap.add_argument("--train", type=int, default=14000)
    ap.add_argument("--test", type=int, default=2000)
    args = ap.parse_args()
    os.makedirs(SAMPLE_DIR, exist_ok=True)
    for split, n in (("train", args.train), ("test", args.test)):
        for name, ndim in zip(FILES[split], (3, 1)):
            write_idx(os.path.join(SAMPLE_DIR, name), read_idx(os.path.join(args.src, name), ndim)[:n])
    total = sum(os.path.getsize(os.path.join(SAMPLE_DIR, n)) for p in FILES.values() for n in p)
    print(f"{SAMPLE_DIR}: {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
