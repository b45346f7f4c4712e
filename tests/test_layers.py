"""The seed layers: the book's worked examples, kernels against references, bad input."""
import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, assert_near, away_from_zero, central_diff
from fastbp.kernels import reference
from fastbp.layers import Affine, AddLayer, MulLayer, Relu, Sigmoid, SoftmaxWithLoss


def buy_apple(apple, apple_num, tax):
    mul_apple_layer, mul_tax_layer = MulLayer(), MulLayer()
    apple_price = mul_apple_layer.forward(apple, apple_num)
    price = mul_tax_layer.forward(apple_price, tax)
    dapple_price, dtax = mul_tax_layer.backward(1)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)
    return price, dapple, dapple_num, dtax


def test_buy_apple_prints_the_books_numbers():
    # the book's example prints: 220.00000000000003, then price: 220, dApple: 2.2, dApple_num: 110, dTax: 200
    price, dapple, dapple_num, dtax = buy_apple(100, 2, 1.1)
    assert repr(price) == "220.00000000000003"
    assert (int(price), dapple, int(dapple_num), dtax) == (220, 2.2, 110, 200)


def test_buy_five_apples_at_200_won():
    # 200 won x 5, tax 1.1 -> 1100; d price = 5.5, d count = 220, d tax = 1000
    price, dapple, dapple_num, dtax = buy_apple(200, 5, 1.1)
    assert price == pytest.approx(1100)
    assert (dapple, dapple_num, dtax) == (5.5, pytest.approx(220), 1000)


def test_buy_apple_orange_prints_the_books_numbers():
    apple, apple_num, orange, orange_num, tax = 100, 2, 150, 3, 1.1
    mul_apple, mul_orange, add, mul_tax = MulLayer(), MulLayer(), AddLayer(), MulLayer()
    apple_price = mul_apple.forward(apple, apple_num)
    orange_price = mul_orange.forward(orange, orange_num)
    all_price = add.forward(apple_price, orange_price)
    price = mul_tax.forward(all_price, tax)
    dall_price, dtax = mul_tax.backward(1)
    dapple_price, dorange_price = add.backward(dall_price)
    dorange, dorange_num = mul_orange.backward(dorange_price)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    # the book's example prints 715.0000000000001, dApple 2.2, 110, dOrange 3.3000000000000003, 165, dTax 650
    assert repr(price) == "715.0000000000001"
    assert (dapple, int(dapple_num), repr(dorange), int(dorange_num), dtax) == \
        (2.2, 110, "3.3000000000000003", 165, 650)


def test_mul_add_work_on_arrays():
    m = MulLayer()
    x, y = np.array([1.0, -2.0]), np.array([3.0, 4.0])
    np.testing.assert_array_equal(m.forward(x, y), [3.0, -8.0])
    dx, dy = m.backward(np.array([1.0, 0.5]))
    np.testing.assert_array_equal(dx, [3.0, 2.0])
    np.testing.assert_array_equal(dy, [1.0, -1.0])


def test_activations_on_python_scalars():
    r = Relu()
    assert r.forward(-2.0) == 0.0 and r.backward(5.0) == 0.0
    assert r.forward(3) == 3.0 and r.backward(5.0) == 5.0
    s = Sigmoid()
    assert s.forward(0.0) == 0.5 and s.backward(1.0) == 0.25
    assert isinstance(s.forward(1.0), float)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (1, 1), (3, 4), (2, 1, 5, 3)])
def test_relu_sigmoid_layers_any_shape(rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    keep = dout.copy()
    r = Relu()
    out = r.forward(x)
    assert out.shape == shape and out.dtype == dtype
    np.testing.assert_array_equal(out, reference.relu_forward(x))
    np.testing.assert_array_equal(r.mask, x <= 0)
    np.testing.assert_array_equal(r.backward(dout), reference.relu_backward(dout, out))
    np.testing.assert_array_equal(dout, keep)  # the book's Relu zeroes dout in place; ours does not
    s = Sigmoid()
    y = s.forward(x)
    assert_near(y, reference.sigmoid_forward(x), dtype)
    assert_near(s.backward(dout), reference.sigmoid_backward(dout, y), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,D,M", [((1, 1), 1, 1), ((5, 7), 7, 3), ((2, 1, 4, 4), 16, 5),
                                         ((3, 2, 3), 6, 1)])
def test_affine_layer_nd_input(rng, dtype, x_shape, D, M):
    x = rng.standard_normal(x_shape).astype(dtype)
    W = rng.standard_normal((D, M)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    layer = Affine(W, b)
    out = layer.forward(x)
    x2 = x.reshape(x_shape[0], -1)
    assert_near(out, reference.affine_forward(x2, W, b), dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    keep = dout.copy()
    dx = layer.backward(dout)
    rdx, rdW, rdb = reference.affine_backward(dout, out, x2, W)
    assert dx.shape == x_shape
    assert_near(dx.reshape(x2.shape), rdx, dtype)
    assert_near(layer.dW, rdW, dtype)
    assert_near(layer.db, rdb, dtype)
    np.testing.assert_array_equal(dout, keep)


def test_affine_sees_in_place_updates_of_W():
    W, b = np.ones((2, 2)), np.zeros(2)
    layer = Affine(W, b)
    np.testing.assert_array_equal(layer.forward(np.ones((1, 2))), [[2, 2]])
    W *= 3
    np.testing.assert_array_equal(layer.forward(np.ones((1, 2))), [[6, 6]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_stack_matches_central_differences(rng, dtype):
    # Affine -> Relu -> Affine -> SoftmaxWithLoss, the book's TwoLayerNet built from layers
    N, D, H, C = 3, 4, 5, 3
    x = rng.standard_normal((N, D)).astype(dtype)
    W1, b1 = away_from_zero(rng, (D, H), dtype), away_from_zero(rng, H, dtype)
    W2, b2 = rng.standard_normal((H, C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    t = rng.integers(0, C, N)
    a1, r, a2, last = Affine(W1, b1), Relu(), Affine(W2, b2), SoftmaxWithLoss()
    last.forward(a2.forward(r.forward(a1.forward(x))), t)
    a1.backward(r.backward(a2.backward(last.backward())))

    p64 = [a.astype(np.float64) for a in (W1, b1, W2, b2)]
    L1, R, L2, S = Affine(p64[0], p64[1]), Relu(), Affine(p64[2], p64[3]), SoftmaxWithLoss()
    x64 = x.astype(np.float64)
    num = central_diff(lambda: S.forward(L2.forward(R.forward(L1.forward(x64))), t), p64)
    for got, want in zip((a1.dW, a1.db, a2.dW, a2.db), num):
        np.testing.assert_allclose(got, want, **NUM_TOL[dtype])


def test_softmax_with_loss_ids_and_one_hot(rng):
    x = rng.standard_normal((4, 3))
    t = np.array([2, 0, 1, 1])
    a, b = SoftmaxWithLoss(), SoftmaxWithLoss()
    assert a.forward(x, t) == b.forward(x, np.eye(3)[t])
    np.testing.assert_array_equal(a.backward(), b.backward())
    np.testing.assert_allclose(a.y, reference.softmax(x), rtol=1e-14)
    assert a.forward(x, t) == pytest.approx(reference.cross_entropy(x, t), rel=1e-14)
    np.testing.assert_allclose(a.backward(3.0), 3 * b.backward(1.0), rtol=1e-15)


def test_softmax_with_loss_is_exact_where_the_book_clips():
    # the book's log(y + 1e-7) caps the loss near 16.1; the true loss here is 100
    s = SoftmaxWithLoss()
    assert s.forward(np.array([[100.0, 0.0]]), np.array([1])) == pytest.approx(100.0, rel=1e-12)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: Relu().forward(np.array([1.0, np.nan])), ValueError, "x must be finite"),
    (lambda: Relu().forward(np.array(["a"])), TypeError, "x must hold integers or floats"),
    (lambda: Relu().backward(np.ones(2)), RuntimeError, "before forward"),
    (lambda: _fwd(Relu(), np.ones(3)).backward(np.ones(4)), ValueError, "dout must have"),
    (lambda: Affine(np.ones((3, 2)), np.ones(2)).forward(np.ones((4, 4))), ValueError, "3 features"),
    (lambda: Affine(np.ones((3, 2)), np.ones(2)).forward(np.ones(3)), ValueError, "features per sample"),
    (lambda: Affine(np.ones((3, 2)), np.ones(2)).forward(np.ones((0, 3))), ValueError, "at least one"),
    (lambda: Affine(np.ones((3, 2)), np.ones(3)).forward(np.ones((1, 3))), ValueError, r"b must have shape \(2,\)"),
    (lambda: Affine(np.ones(3), np.ones(3)).forward(np.ones((1, 3))), ValueError, "W must be 2-D"),
    (lambda: _fwd(Affine(np.ones((3, 2)), np.ones(2)), np.ones((1, 3))).backward(np.ones((2, 2))),
     ValueError, r"dout must have shape \(1, 2\)"),
    (lambda: SoftmaxWithLoss().forward(np.ones(3), np.array([0])), ValueError, "2-D scores"),
    (lambda: SoftmaxWithLoss().forward(np.ones((2, 3)), np.array([0, 3])), ValueError, "class ids"),
    (lambda: SoftmaxWithLoss().forward(np.ones((2, 3)), np.array([0])), ValueError, "2 labels"),
    (lambda: SoftmaxWithLoss().forward(np.ones((2, 3)), np.array([0.5, 1])), TypeError, "integer"),
    (lambda: _fwd2(SoftmaxWithLoss()).backward(np.nan), ValueError, "dout must be a finite number"),
])
def test_layers_refuse_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def _fwd(layer, x):
    layer.forward(x)
    return layer


def _fwd2(layer):
    layer.forward(np.ones((2, 3)), np.array([0, 1]))
    return layer


def test_layers_give_same_answer_for_fortran_and_strided_input(rng):
    x = rng.standard_normal((4, 6))
    W, b = rng.standard_normal((6, 3)), rng.standard_normal(3)
    for variant in (np.asfortranarray(x), np.ascontiguousarray(x[::-1])[::-1]):
        a, ref = Affine(W, b), Affine(W, b)
        np.testing.assert_array_equal(a.forward(variant), ref.forward(x))
        np.testing.assert_array_equal(a.backward(np.ones((4, 3))), ref.backward(np.ones((4, 3))))
        np.testing.assert_array_equal(Relu().forward(variant), Relu().forward(x))
    s = SoftmaxWithLoss()
    assert s.forward(np.asfortranarray(x), np.arange(4)) == SoftmaxWithLoss().forward(x, np.arange(4))
