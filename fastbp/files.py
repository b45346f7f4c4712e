"""Files written safely, .npz read without pickles.

atomic_file: write to a temporary file beside the target, fsync, rename: a crash
at any moment leaves either the old file or the new one, never half of one.
"""
import contextlib
import os
import tempfile
import zipfile

import numpy as np


@contextlib.contextmanager
def atomic_file(path):
    """A binary file object that becomes `path` only if the with-block ends without an error."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastbp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_savez(path, **arrays):
    """np.savez to exactly `path` (no .npz appended), atomically."""
    with atomic_file(path) as f:
        np.savez(f, **arrays)


def load_npz(path, what):
    """{name: array} from an .npz, never unpickling; ValueError naming `what` if unreadable."""
    path = os.fspath(path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise ValueError(f"{path}: not a readable fastbp {what} file ({e})") from None
