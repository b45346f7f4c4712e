"""Property tests: random shapes, dtypes, strides and values thrown at the public API.
Every call either agrees with the NumPy reference or raises ValueError/TypeError."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastbp
from fastbp.kernels import reference
from fastbp.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_,
                          np.complex64])
VALUES = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def arrays(draw, shape=None, min_dims=1, max_dims=3):
    dtype = draw(DTYPES)
    any_shape = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=5)
    # half the time the shape the caller asks for (so valid calls are common), else anything
    shape = draw(any_shape if shape is None else st.one_of(st.just(shape), any_shape))
    if np.dtype(dtype).kind in "fc":
        elements = st.one_of(st.floats(-10, 10, width=16), VALUES) if dtype == np.float16 else \
            st.one_of(st.floats(-10, 10), VALUES)
        with np.errstate(all="ignore"):
            a = draw(hnp.arrays(dtype, shape, elements=elements.map(lambda v: np.dtype(dtype).type(v))))
    else:
        a = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["C", "F", "reversed"]))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "reversed" and a.ndim and a.shape[0] > 1:
        a = np.ascontiguousarray(a[::-1])[::-1]
    return a


def valid_numeric(a):
    if a.dtype.kind not in "iuf":
        return False
    with np.errstate(all="ignore"):
        return bool(np.isfinite(a.astype(np.float64)).all())


@SETTINGS
@given(arrays())
def test_relu_and_sigmoid(a):
    for layer, ref in ((Relu(), reference.relu_forward), (Sigmoid(), reference.sigmoid_forward)):
        if not valid_numeric(a):
            with pytest.raises((ValueError, TypeError)):
                layer.forward(a)
            continue
        out = layer.forward(a)
        x = a.astype(a.dtype if a.dtype in (np.float32, np.float64) else np.float64)
        np.testing.assert_allclose(out, ref(x), rtol=1e-6, atol=1e-7)
        assert out.shape == a.shape


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.data())
def test_affine(D, M, data):
    x = data.draw(arrays(shape=(3, D), min_dims=1, max_dims=4))
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((D, M)), rng.standard_normal(M)
    ok = valid_numeric(x) and x.ndim >= 2 and x.shape[0] > 0 and int(np.prod(x.shape[1:])) == D
    layer = Affine(W, b)
    if not ok:
        with pytest.raises((ValueError, TypeError)):
            layer.forward(x)
        return
    x2 = x.reshape(x.shape[0], -1).astype(np.float64)
    np.testing.assert_allclose(layer.forward(x), x2 @ W + b, rtol=1e-10, atol=1e-10)
    dx = layer.backward(np.ones((x.shape[0], M)))
    assert dx.shape == x.shape


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.data())
def test_softmax_with_loss(N, C, data):
    x = data.draw(arrays(shape=(N, C)))
    t = data.draw(st.one_of(hnp.arrays(np.int64, N, elements=st.integers(-1, C)), arrays(shape=(N, C))))
    ok_x = valid_numeric(x) and x.ndim == 2 and 0 not in x.shape
    ok_t = ok_x and t.ndim == 1 and t.dtype.kind in "iu" and len(t) == x.shape[0] and \
        (t.size == 0 or (t.min() >= 0 and t.max() < x.shape[1]))
    layer = SoftmaxWithLoss()
    if not ok_t:
        onehot = ok_x and t.ndim == 2 and t.shape == x.shape and t.dtype.kind in "biuf" and \
            ((t == 0) | (t == 1)).all() and (np.sum(t == 1, axis=1) == 1).all()
        if not onehot:
            with pytest.raises((ValueError, TypeError)):
                layer.forward(x, t)
            return
        t = np.argmax(t == 1, axis=1)
    loss = layer.forward(x, t)
    assert loss == pytest.approx(reference.cross_entropy(x.astype(np.float64), t), rel=1e-5, abs=1e-6)


@SETTINGS
@given(st.integers(1, 5), st.data(), st.sampled_from(["float32", "float64"]))
def test_network_loss_and_gradient(N, data, dtype):
    x = data.draw(arrays(shape=(N, 3)))
    labels = data.draw(st.one_of(st.lists(st.integers(0, 2), min_size=N, max_size=N),
                                 st.lists(st.integers(-1, 3), min_size=0, max_size=6)))
    net = fastbp.Network([3, 4, 3], dtype=dtype, seed=0)
    t = np.array(labels, dtype=np.int64)
    with np.errstate(all="ignore"):
        cast_ok = valid_numeric(x) and np.isfinite(x.astype(dtype)).all()
    ok = cast_ok and x.ndim == 2 and x.shape[1] == 3 and x.shape[0] > 0 and len(t) == x.shape[0] \
        and (t >= 0).all() and (t < 3).all()
    if not ok:
        for call in (net.loss, net.gradient):
            with pytest.raises((ValueError, TypeError)):
                call(x, t)
        return
    p = {k: v.astype(np.float64) for k, v in net.params.items()}
    xf = x.astype(dtype).astype(np.float64)
    with np.errstate(all="ignore"):  # a bound on every |pre-activation|, in float64
        h = np.abs(xf) @ np.abs(p["W1"]) + np.abs(p["b1"])
        bound = max(h.max(), (h @ np.abs(p["W2"]) + np.abs(p["b2"])).max())
    if not bound < np.finfo(dtype).max / 1e3:
        # products that overflow the network's dtype: the float64 referee computes another
        # function there; the network must still answer with a float, not crash
        assert isinstance(net.loss(x, t), float)
        return
    loss, dWs, dbs = reference.mlp_loss_grad([p["W1"], p["W2"]], [p["b1"], p["b2"]], xf, t)
    tol = 1e-4 if dtype == "float32" else 1e-10
    assert net.loss(x, t) == pytest.approx(loss, rel=tol, abs=tol)
    g = net.gradient(x, t)
    for got, want in ((g["W1"], dWs[0]), (g["b1"], dbs[0]), (g["W2"], dWs[1]), (g["b2"], dbs[1])):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(xf).max()))
