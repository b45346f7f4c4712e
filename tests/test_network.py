import numpy as np
import pytest

import fastbp
from fastbp import network
from fastbp.kernels import reference


def data(rng, N, D, C, dtype=np.float64):
    return rng.standard_normal((N, D)).astype(dtype), rng.integers(0, C, N)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("sizes,N", [([4, 5, 3], 6), ([3, 1, 2], 1), ([6, 8, 7, 4], 5), ([2, 2], 3)])
def test_float64_backprop_agrees_with_central_differences(rng, activation, sizes, N):
    net = fastbp.Network(sizes, activation=activation, dtype="float64", seed=3)
    x, t = data(rng, N, sizes[0], sizes[-1])
    for name, r in fastbp.gradient_check(net, x, t).items():
        assert r["rel_error"] < 1e-7, (name, r)
        assert r["max_abs_error"] < 1e-8, (name, r)


def test_float32_backprop_agrees_with_float64_central_differences(rng):
    net = fastbp.Network([10, 16, 4], seed=0)
    x, t = data(rng, 8, 10, 4, np.float32)
    for name, r in fastbp.gradient_check(net, x, t).items():
        assert r["rel_error"] < 1e-5, (name, r)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_loss_accuracy_match_reference(rng, dtype):
    net = fastbp.Network([7, 9, 5, 3], dtype=dtype, seed=1)
    x, t = data(rng, 11, 7, 3, dtype)
    p = {k: v.astype(np.float64) for k, v in net.params.items()}
    h1 = np.maximum(x @ p["W1"] + p["b1"], 0)
    h2 = np.maximum(h1 @ p["W2"] + p["b2"], 0)
    logits = h2 @ p["W3"] + p["b3"]
    tol = 1e-5 if dtype == "float32" else 1e-12
    scores = net.predict(x)
    assert scores.dtype == np.dtype(dtype) and scores.shape == (11, 3)
    np.testing.assert_allclose(scores, logits, rtol=tol, atol=tol)
    assert net.loss(x, t) == pytest.approx(reference.cross_entropy(logits, t), rel=tol)
    assert net.accuracy(x, t) == np.mean(logits.argmax(axis=1) == t)


def test_one_hot_and_ids_give_identical_results(rng):
    net = fastbp.Network([5, 4, 3], seed=2)
    x, t = data(rng, 9, 5, 3, np.float32)
    onehot = np.eye(3)[t]
    assert net.loss(x, t) == net.loss(x, onehot)
    assert net.accuracy(x, t) == net.accuracy(x, onehot.astype(np.float32))
    g_ids, g_hot = net.gradient(x, t), net.gradient(x, onehot.astype(bool))
    for k in g_ids:
        np.testing.assert_array_equal(g_ids[k], g_hot[k])


def test_non_contiguous_and_fortran_input_give_same_answer(rng):
    net = fastbp.Network([6, 5, 3], dtype="float64", seed=4)
    x, t = data(rng, 8, 6, 3)
    expected = net.gradient(x, t)
    wide = np.zeros((8, 12))
    wide[:, ::2] = x
    for variant in (np.asfortranarray(x), wide[:, ::2], np.ascontiguousarray(x[::-1])[::-1]):
        got = net.gradient(variant, t)
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k])
    np.testing.assert_array_equal(net.predict(np.asfortranarray(x)), net.predict(x))
    t_strided = np.repeat(t, 2)[::2]
    assert net.loss(x, t_strided) == net.loss(x, t)


@pytest.mark.filterwarnings("ignore:x holds integers")  # accepted, with a warning (test_fit)
def test_integer_input_is_accepted_as_numbers(rng):
    net = fastbp.Network([4, 3, 2], dtype="float64", seed=0)
    xi = rng.integers(0, 255, (5, 4)).astype(np.uint8)
    t = rng.integers(0, 2, 5)
    assert net.loss(xi, t) == net.loss(xi.astype(np.float64), t)


def test_params_are_named_views_into_one_flat_buffer():
    net = fastbp.Network([4, 3, 2], seed=0)
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    flat = net.flat_params
    assert flat.shape == (4 * 3 + 3 + 3 * 2 + 2,) and flat.dtype == np.float32
    for _, v in net.params.items():
        assert np.shares_memory(v, flat)
    net.params["W2"] -= 1.0  # the book's update, in place through the dict
    np.testing.assert_array_equal(flat[15:21].reshape(3, 2), net.params["W2"])
    net.params["b1"] = [1, 2, 3]  # assignment copies into the buffer
    np.testing.assert_array_equal(flat[12:15], [1, 2, 3])
    with pytest.raises(ValueError, match=r"params\['b1'\] must have shape \(3,\)"):
        net.params["b1"] = np.zeros(4)
    with pytest.raises(ValueError, match="finite"):
        net.params["b1"] = [0, np.nan, 0]
    with pytest.raises(KeyError):
        net.params["W9"] = np.zeros(1)
    with pytest.raises(TypeError):
        del net.params["W1"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 7, 100])
def test_buffers_start_on_cache_lines(dtype, n):
    # the sparse first layer's 64-byte vectors straddle no cache line only if W1, the layer
    # outputs and both halves of the backward's ping-pong buffer start on one
    net = fastbp.Network([13, 48, 5, 3], dtype=dtype, seed=0)
    trainer = net.backend.trainer(np.zeros((n, 13), dtype), np.zeros(n, np.int64), {}, n,
                                  np.zeros((2, net.n_params), dtype))
    acts, deltas = trainer.work.acts, trainer.work.deltas
    half = deltas.shape[0] // 2
    assert half >= n * 48
    for a in (net.flat_params, net.params["W1"], trainer.work.grads, acts, deltas, deltas[half:]):
        assert a.ctypes.data % 64 == 0
    np.testing.assert_array_equal(net.flat_params[:13 * 48].reshape(13, 48), net.params["W1"])


def test_gradient_returns_fresh_buffer_each_call(rng):
    net = fastbp.Network([4, 3, 2], dtype="float64", seed=0)
    x, t = data(rng, 5, 4, 2)
    g1 = net.gradient(x, t)
    snapshot = {k: v.copy() for k, v in g1.items()}
    assert len({id(v.base) for v in g1.values()}) == 1  # views into one flat buffer
    net.gradient(2 * x, t)
    for k in g1:
        np.testing.assert_array_equal(g1[k], snapshot[k])


def test_numerical_gradient_leaves_network_untouched(rng):
    net = fastbp.Network([3, 4, 2], seed=5)
    before = net.flat_params.copy()
    x, t = data(rng, 2, 3, 2, np.float32)
    g = net.numerical_gradient(x, t)
    assert g["W1"].dtype == np.float64
    np.testing.assert_array_equal(net.flat_params, before)


def test_chunked_predict_and_loss_match_one_pass(rng, monkeypatch):
    net = fastbp.Network([5, 6, 4], dtype="float64", seed=6)
    x, t = data(rng, 10, 5, 4)
    whole, loss = net.predict(x), net.loss(x, t)
    monkeypatch.setattr(network, "PREDICT_CHUNK", 3)
    np.testing.assert_allclose(net.predict(x), whole, rtol=1e-14, atol=1e-15)  # BLAS: gemv vs gemm
    assert net.loss(x, t) == pytest.approx(loss, rel=1e-14)


def test_seed_reproducible_and_init_scales():
    a, b = fastbp.Network([784, 100, 10], seed=7), fastbp.Network([784, 100, 10], seed=7)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    c = fastbp.Network([784, 100, 10], seed=8)
    assert not np.array_equal(a.flat_params, c.flat_params)
    assert a.params["W1"].std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)  # He
    assert (a.params["b1"] == 0).all()
    s = fastbp.Network([784, 100, 10], activation="sigmoid", seed=7)
    assert s.params["W1"].std() == pytest.approx(np.sqrt(1 / 784), rel=0.02)  # Xavier
    two = fastbp.TwoLayerNet(784, 100, 10, seed=7)
    assert two.sizes == (784, 100, 10) and two.activation == "relu"
    assert two.params["W1"].std() == pytest.approx(0.01, rel=0.02)
    f64 = fastbp.Network([784, 100, 10], dtype="float64", seed=7)
    np.testing.assert_allclose(f64.flat_params, a.flat_params, rtol=1e-7)  # same draw, rounded


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=[784]), "at least an input and an output"),
    (dict(sizes=[784, 0, 10]), "positive integers"),
    (dict(sizes=[784, 5.5, 10]), "positive integers"),
    (dict(sizes="784,10"), "sequence of layer widths"),
    (dict(sizes=[4, 2], activation="softplus"), "activation must be one of"),
    (dict(sizes=[4, 2], dtype="float16"), "dtype must be 'float32' or 'float64'"),
    (dict(sizes=[4, 2], dtype="int32"), "dtype must be"),
    (dict(sizes=[4, 2], weight_init="lecun"), "weight_init must be"),
    (dict(sizes=[4, 2], weight_init=-0.1), "weight_init must be"),
    (dict(sizes=[4, 2], device="gpu"), "device must be one of"),
])
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fastbp.Network(**kwargs)


X_OK = np.zeros((3, 4))
T_OK = np.array([0, 1, 2])


@pytest.mark.parametrize("x,t,exc,match", [
    (np.zeros((3, 5)), T_OK, ValueError, r"x must have shape \(N, 4\), got shape \(3, 5\)"),
    (np.zeros(4), T_OK, ValueError, r"x must have shape \(N, 4\)"),
    (np.zeros((3, 2, 2)), T_OK, ValueError, r"x must have shape \(N, 4\)"),
    (np.zeros((0, 4)), np.array([], int), ValueError, "at least one sample"),
    (np.array([[0, 0, 0, np.nan]] * 3), T_OK, ValueError, "x must be finite"),
    (np.array([[0, 0, 0, np.inf]] * 3), T_OK, ValueError, "x must be finite"),
    (np.full((3, 4), 1e39), T_OK, ValueError, "too large for float32"),
    (np.array([["a"] * 4] * 3), T_OK, TypeError, "x must hold integers or floats"),
    (np.zeros((3, 4), complex), T_OK, TypeError, "x must hold integers or floats"),
    (np.zeros((3, 4), bool), T_OK, TypeError, "x must hold integers or floats"),
    ([[0, 0], [0]], T_OK, TypeError, "x must be a numeric array"),
    (X_OK, np.array([0, 1, 3]), ValueError, r"class ids in \[0, 3\)"),
    (X_OK, np.array([0, -1, 2]), ValueError, r"class ids in \[0, 3\)"),
    (X_OK, np.array([0.0, 1.0, 2.0]), TypeError, "integer class ids"),
    (X_OK, np.array([0, 1]), ValueError, "t must have 3 labels"),
    (X_OK, np.eye(4)[:3], ValueError, r"one-hot must have shape \(3, 3\)"),
    (X_OK, np.full((3, 3), 1 / 3), ValueError, "one 1 and otherwise 0"),
    (X_OK, np.zeros((3, 3)), ValueError, "one 1 and otherwise 0"),
    (X_OK, np.zeros((3, 3, 1)), ValueError, "class ids"),
    (X_OK, 1, ValueError, "got a scalar"),
    (X_OK, np.array(["a", "b", "c"]), TypeError, "integer class ids"),
])
@pytest.mark.parametrize("method", ["gradient", "loss", "accuracy", "numerical_gradient"])
def test_bad_input_is_refused_before_any_kernel(x, t, exc, match, method):
    net = fastbp.Network([4, 2, 3], seed=0)
    before = net.flat_params.copy()
    with pytest.raises(exc, match=match):
        getattr(net, method)(x, t)
    np.testing.assert_array_equal(net.flat_params, before)


def test_predict_refuses_bad_x():
    net = fastbp.Network([4, 2, 3], seed=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        net.predict(np.zeros((2, 1, 2, 2)))


def test_save_load_round_trip(tmp_path, rng):
    for dtype, act in (("float32", "relu"), ("float64", "sigmoid")):
        net = fastbp.Network([6, 5, 4, 3], activation=act, dtype=dtype, seed=9)
        net.params["b2"] = rng.standard_normal(4)
        path = tmp_path / f"model-{dtype}"  # no .npz suffix: saved to exactly this name
        net.save(path)
        assert path.exists() and not (tmp_path / f"model-{dtype}.npz").exists()
        back = fastbp.Network.load(path)
        assert (back.sizes, back.activation, back.dtype) == (net.sizes, act, np.dtype(dtype))
        np.testing.assert_array_equal(back.flat_params, net.flat_params)
        x = rng.standard_normal((4, 6))
        np.testing.assert_array_equal(back.predict(x), net.predict(x))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def _saved(tmp_path, **overrides):
    net = fastbp.Network([3, 2], seed=0)
    arrays = dict(net.params.items())
    arrays.update(fastbp_sizes=np.array([3, 2]), fastbp_activation=np.array("relu"))
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("overrides,match", [
    (dict(W1=np.zeros((3, 3), np.float32)), r"W1 must be float32\(3, 2\)"),
    (dict(b1=np.zeros(2)), r"b1 must be float32\(2,\), got float64"),
    (dict(W1=np.array([[object()] * 2] * 3, dtype=object)), "not a readable fastbp params file"),
    (dict(W1=np.full((3, 2), np.nan, np.float32)), "NaN or Inf"),
    (dict(b1=None), r"missing \['b1'\]"),
    (dict(W2=np.zeros(1, np.float32)), r"unexpected \['W2'\]"),
    (dict(fastbp_sizes=None), "not a fastbp params file"),
    (dict(fastbp_activation=np.array("softplus")), "activation must be one of"),
    (dict(fastbp_sizes=np.array([3, 0])), "positive integers"),
])
def test_load_refuses_bad_files(tmp_path, overrides, match):
    path = _saved(tmp_path, **overrides)
    with pytest.raises(ValueError, match=match):
        fastbp.Network.load(path)


def test_load_refuses_truncated_and_foreign_files(tmp_path):
    good = _saved(tmp_path)
    blob = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "text.npz").write_text("hello")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    import pickle
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"W1": np.zeros((3, 2))}))
    for name in ("trunc.npz", "text.npz", "plain.npy", "pickle.npz"):
        with pytest.raises(ValueError, match="not a readable fastbp params file"):
            fastbp.Network.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        fastbp.Network.load(tmp_path / "absent.npz")
