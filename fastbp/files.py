"""Files written safely, .npz read without pickles.

atomic_file: write to a temporary file beside the target, fsync, rename: a crash
at any moment leaves either the old file or the new one, never half of one. The
file gets the permissions open() would give it (0666 less the umask), not the
private 0600 of a temporary file.
"""
import contextlib
import os
import tempfile
import zipfile

import numpy as np


def _umask():
    """The process's umask, read without changing it where Linux tells it (/proc), else
    by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path):
    """A binary file object that becomes `path` only if the with-block ends without an error."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastbp-", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())
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


def atomic_write_text(path, text):
    """Write text (UTF-8) to exactly `path`, atomically."""
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


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
