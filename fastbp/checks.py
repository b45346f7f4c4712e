"""Argument checks at the Python boundary: nothing malformed reaches a kernel.

numba does not bounds-check, so every public entry point runs its arrays
through these first. Each error names the argument and what was expected.
What passes comes back C-contiguous in the dtype the kernel is compiled for.
"""
import numbers
import sys
import warnings

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype, name="dtype"):
    """np.dtype for "float32"/"float64" (or those dtypes); anything else is a ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _numeric(x, name):
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:  # ragged lists and the like
            raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}: {e}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold integers or floats, got dtype {arr.dtype}")
    return arr


def as_float_array(x, name, dtype=None):
    """x as a finite, C-contiguous float array; dtype None keeps float32/float64 and makes the rest float64."""
    arr = _numeric(x, name)
    if dtype is None:
        dtype = arr.dtype if arr.dtype in FLOAT_DTYPES else np.dtype(np.float64)
    with np.errstate(over="ignore"):  # overflow on the cast is caught just below
        out = np.asarray(arr, dtype=dtype, order="C")  # keeps 0-d scalars 0-d
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite in {np.dtype(dtype).name}: it holds NaN or Inf"
                         + (" (or values too large for float32)" if dtype == np.float32 else ""))
    return out


_warned_unscaled = False


def _warn_unscaled(arr, name):
    # uint8 pixels 0-255 where floats in [0, 1] are meant: saturated units, ~11% on MNIST
    global _warned_unscaled
    if _warned_unscaled or arr.dtype.kind not in "iu" or not arr.size:
        return
    top = arr.max()
    if top > 1:
        _warned_unscaled = True
        frame, level = sys._getframe(0), 1  # point the warning at the caller's line, not fastbp's
        while frame is not None and frame.f_globals.get("__name__", "").startswith("fastbp"):
            frame, level = frame.f_back, level + 1
        warnings.warn(f"{name} holds integers up to {top} (dtype {arr.dtype}); fastbp expects floats "
                      f"scaled to [0, 1], as load_mnist(normalize=True) gives them (x / 255 for 8-bit "
                      f"pixels); this warning is shown once", UserWarning, stacklevel=level)


def as_batch(x, n_features, dtype, name="x"):
    """x as a (N, n_features) batch with N >= 1, C-contiguous in dtype, finite. Integer input
    above 1 (uint8 pixels, say) is warned about once: the model wants scaled floats."""
    arr = _numeric(x, name)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (N, {n_features}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample, got shape {arr.shape}")
    _warn_unscaled(arr, name)
    return as_float_array(arr, name, dtype)


def class_ids(t):
    """The classes of checked targets: class ids (N,) as they are; float targets (N, C) (mse,
    logistic) the column of each row's largest value."""
    return t if t.ndim == 1 else t.argmax(axis=1)


def as_labels(t, n, n_classes, name="t"):
    """Class ids (N,) int64 from ids (N,) or one-hot rows (N, n_classes); both give the same ids."""
    if isinstance(t, numbers.Integral) or (isinstance(t, np.ndarray) and t.ndim == 0):
        raise ValueError(f"{name} must be an array of {n} labels, got a scalar")
    arr = np.asarray(t) if not isinstance(t, np.ndarray) else t
    if arr.ndim == 1:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class ids (or one-hot rows), got dtype {arr.dtype}")
        if arr.shape[0] != n:
            raise ValueError(f"{name} must have {n} labels, one per sample, got {arr.shape[0]}")
        if n and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} must hold class ids in [0, {n_classes}), "
                             f"got values from {arr.min()} to {arr.max()}")
        return np.ascontiguousarray(arr, dtype=np.int64)
    if arr.ndim == 2:
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} one-hot rows must be numeric, got dtype {arr.dtype}")
        if arr.shape != (n, n_classes):
            raise ValueError(f"{name} as one-hot must have shape ({n}, {n_classes}), got {arr.shape}")
        hot = arr == 1
        if not ((hot | (arr == 0)).all() and (hot.sum(axis=1) == 1).all()):
            raise ValueError(f"{name} as one-hot must hold one 1 and otherwise 0 in every row")
        return np.ascontiguousarray(hot.argmax(axis=1), dtype=np.int64)
    raise ValueError(f"{name} must be class ids (N,) or one-hot (N, {n_classes}), got shape {arr.shape}")


def check_params(name, value, shape):
    """The array to store as parameter `name` of `shape`, or a ValueError/TypeError."""
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"params[{name!r}] must have shape {shape}, got {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"params[{name!r}] must be numeric, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"params[{name!r}] must be finite: it holds NaN or Inf")
    return arr


def check_seed(seed, name="seed"):
    """None or an integer >= 0, as np.random.default_rng takes it."""
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"{name} must be None or an integer >= 0, got {seed!r}")
