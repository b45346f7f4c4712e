"""The kernels' disk cache: a process loads each kernel this machine has built before (its
cubin, PTX and LLVM IR, as numba-cuda's own cache stores them) instead of compiling it again.

numba-cuda's `cache=True` is not used because of two things it does. It keys a kernel on its
own file's timestamp, its bytecode and its closure, not on device functions it takes from
other modules' globals (the epoch kernel inlines softmax_loss._rows_sum) or on config.py's
settings: an edit there would leave the old kernel in use. And its index, one per function,
names the data files by counting: two processes saving different kernels of one factory at
once (MPI ranks, test workers) can each point a key at the other's file, a kernel with
another's code (numba/numba#4807 is about such parallel writes). So here every kernel has its
own file, named by a hash of everything that makes its code:

    the factory (module and name) and its arguments (dtype, transposes, tile shape, ...)
    the source of every module of the kernels package (an edited device function that a
        kernel inlines from another file changes every key: no stale kernel)
    the launch settings of config.py as they are at build time (a benchmark may set them)
    the signature, the CUDA runtime's version and the device's compute capability,
        numba-cuda's and numba's versions, Python's

The file holds that key in full and the kernel; its name is the function's, a hash of the
sources and a hash of the whole key. Saving a kernel removes the function's files made from
other sources, so an edited tree does not leave them piling up. A load whose key differs (a
hash collision), or a file that cannot be read, unpickled or rebuilt, compiles instead; a
kernel that cannot be pickled stays uncached, with a warning. The cache never fails a build.
Files are written whole to a temporary name and renamed, so readers never see half of one.
Where they go is numba's rule for its own caches: NUMBA_CACHE_DIR if set, else __pycache__
beside the source if writable, else the user's cache folder; where none can be written, the
kernel stays uncached. `make clean-cache` removes the files.
"""
import functools
import hashlib
import os
import pickle
import secrets
import sys
import warnings

import numba
import numba_cuda
from numba.cuda import serialize, utils
from numba.cuda.dispatcher import CUDACacheImpl

from . import config

SUFFIX = ".fbk"  # (not numba's .nbi/.nbc: numba's cache tools do not know this layout)
KERNELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the kernels package


@functools.lru_cache(maxsize=None)
def sources_digest(root=KERNELS):
    """sha256 of every .py file under root (names and bytes, in sorted order)."""
    h = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read() + b"\0")
    return h.hexdigest()


def kernel_key(factory, args):
    """What a kernel is keyed on besides its signature and the device: the factory, its
    arguments, the kernels' sources and config.py's settings as they are now."""
    settings = tuple((k, repr(v)) for k, v in sorted(vars(config).items()) if k.isupper())
    return f"{factory.__module__}.{factory.__qualname__}", repr(args), sources_digest(), settings


def for_kernel(py_func, key):
    """py_func's KernelCache, or None where no folder can hold one (numba finds none writable:
    then the kernel is compiled in every process, as without a cache)."""
    try:
        return KernelCache(py_func, key)
    except (RuntimeError, OSError):
        return None


class KernelCache:
    """numba-cuda's cache interface for one kernel (what CUDADispatcher.compile calls:
    load_overload before compiling, save_overload after), one file per kernel."""

    def __init__(self, py_func, key):
        self._impl = CUDACacheImpl(py_func)  # numba's locator and its reduce/rebuild of a kernel
        self._name = self._impl.filename_base
        self._key = key
        self._load = True
        # the sources' generation, in the file name too: a save removes this kernel's files
        # of other generations (an edited or upgraded tree), so they do not pile up
        self._generation = sources_digest()[:12]

    def flush(self):
        """Compile from here on (what numba's recompile() asks); saves replace the files."""
        self._load = False

    @property
    def cache_path(self):
        return self._impl.locator.get_cache_path()

    def _full_key(self, sig, codegen):
        return repr((str(sig), codegen.magic_tuple(), numba_cuda.__version__, numba.__version__,
                     sys.version_info[:3], self._key))

    def _file(self, full_key):
        digest = hashlib.sha256(full_key.encode()).hexdigest()[:32]
        return os.path.join(self.cache_path, f"{self._name}.{self._generation}.{digest}{SUFFIX}")

    def _prune(self):
        """Remove this function's kernel files of other source generations."""
        prefix = self._name + "."
        for f in os.listdir(self.cache_path):
            parts = f[len(prefix):].split(".")
            if f.startswith(prefix) and f.endswith(SUFFIX) and len(parts) == 3 and parts[0] != self._generation:
                try:
                    os.unlink(os.path.join(self.cache_path, f))
                except OSError:
                    pass

    def load_overload(self, sig, target_context):
        if not self._load:
            return None
        with utils.numba_target_override():
            target_context.refresh()
            full = self._full_key(sig, target_context.codegen())
            try:
                with open(self._file(full), "rb") as f:
                    stored, payload = pickle.loads(f.read())
            except Exception:  # none yet, or unreadable: compile, and the save replaces it
                return None
            if stored != full:
                return None
            try:
                return self._impl.rebuild(target_context, payload)
            except Exception as e:  # a file this numba-cuda cannot take back: compile instead
                warnings.warn(f"fastbp: a cached CUDA kernel did not load, compiling it ({e!r})")
                return None

    def save_overload(self, sig, kernel):
        if getattr(kernel, "launch_config_sensitive", False):
            return  # compiled for one launch shape (never so here: every kernel is built eagerly)
        full = self._full_key(sig, kernel.codegen)
        try:
            data = serialize.dumps((full, self._impl.reduce(kernel)))
        except Exception as e:  # the kernel works; only the next process compiles it again
            warnings.warn(f"fastbp: a CUDA kernel could not be cached ({e!r})")
            return
        tmp = None
        try:
            self._impl.locator.ensure_cache_path()
            # a name no other writer has; open() gives the file the umask's mode, as numba's own
            tmp = os.path.join(self.cache_path, f"{self._name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
            with open(tmp, "xb") as f:
                f.write(data)
            os.replace(tmp, self._file(full))
            tmp = None
            self._prune()
        except OSError:
            pass  # a read-only or full disk: this kernel stays uncached
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
