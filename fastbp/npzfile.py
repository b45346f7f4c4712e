"""Reading and writing .npz safely: atomic writes, no pickles on read."""
import os
import tempfile
import zipfile

import numpy as np


def atomic_savez(path, **arrays):
    """np.savez to exactly `path` via a temporary file, fsync and rename: a crash at any
    moment leaves either the old file or the new one, never half of one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastbp-", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
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


def load_npz(path, what):
    """{name: array} from an .npz written by atomic_savez, never unpickling; ValueError if unreadable."""
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
