import numpy as np
import pytest

from conftest import DTYPES, NUM_TOL, REF_TOL, assert_near, central_diff
from fastbp.kernels import reference, softmax_loss

# (N, C): batch 1, a single class, and odd sizes
SHAPES = [(1, 1), (1, 10), (7, 1), (5, 3), (100, 10), (9, 16), (33, 17)]


def data(rng, N, C, dtype, scale=3.0):
    return (scale * rng.standard_normal((N, C))).astype(dtype), rng.integers(0, C, N).astype(np.int64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", SHAPES)
def test_forward_backward_match_reference(rng, dtype, N, C):
    logits, t = data(rng, N, C, dtype)
    probs = np.empty_like(logits)
    loss = softmax_loss.softmax_loss_forward(probs, logits, t)
    ref_probs, ref_loss = reference.softmax_loss_forward(logits, t)
    assert_near(probs, ref_probs, dtype)
    assert loss == pytest.approx(ref_loss, rel=REF_TOL[dtype]["rtol"], abs=1e-6)
    assert softmax_loss.cross_entropy(logits, t) == pytest.approx(loss, rel=1e-12, abs=1e-12)

    dx = np.empty_like(logits)
    softmax_loss.softmax_loss_backward(dx, probs, t, 2.5)
    assert_near(dx, reference.softmax_loss_backward(ref_probs, t, 2.5), dtype)

    fused = np.empty_like(logits)
    loss_fused = softmax_loss.softmax_loss_forward_backward(fused, logits, t)
    assert loss_fused == pytest.approx(loss, rel=1e-12, abs=1e-12)
    assert_near(fused, reference.softmax_loss_backward(ref_probs, t, 1.0), dtype)


def test_known_values():
    # uniform scores over C classes: loss = log C exactly, softmax = 1/C
    logits = np.zeros((4, 10))
    t = np.arange(4, dtype=np.int64)
    probs = np.empty_like(logits)
    assert softmax_loss.softmax_loss_forward(probs, logits, t) == pytest.approx(np.log(10), rel=1e-15)
    np.testing.assert_allclose(probs, 0.1, rtol=1e-15)
    # two classes with scores (0, log 3): p = (1/4, 3/4); label 0 costs log 4
    logits = np.array([[0.0, np.log(3.0)]])
    assert softmax_loss.cross_entropy(logits, np.array([0])) == pytest.approx(np.log(4.0), rel=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_finite_logits_give_exact_finite_loss(dtype):
    # as large as the dtype allows while the true loss (2 * big) still fits in a float64
    big = np.finfo(np.float32).max if dtype == np.float32 else 1e300
    logits = np.array([[big, -big, 0], [-big, -big, -big], [1e4, 0, -1e4]], dtype)
    t = np.array([1, 2, 0], np.int64)
    probs = np.empty_like(logits)
    loss = softmax_loss.softmax_loss_forward(probs, logits, t)
    # row 0: lse = big, loss = 2*big (in float64); row 1: log 3; row 2: ~0
    expected = (2 * float(big) + np.log(3) + 0) / 3
    assert np.isfinite(loss) and loss == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(probs).all()
    assert loss == pytest.approx(reference.cross_entropy(logits, t), rel=1e-12)
    dx = np.empty_like(logits)
    assert np.isfinite(softmax_loss.softmax_loss_forward_backward(dx, logits, t))
    assert np.isfinite(dx).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(1, 1), (1, 4), (3, 5), (6, 2)])
def test_backward_matches_central_differences(rng, dtype, N, C):
    logits, t = data(rng, N, C, dtype, scale=1.0)
    dx = np.empty_like(logits)
    softmax_loss.softmax_loss_forward_backward(dx, logits, t)
    l64 = logits.astype(np.float64)
    (num,) = central_diff(lambda: softmax_loss.cross_entropy(l64, t), [l64])
    np.testing.assert_allclose(dx, num, **NUM_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logit_row_does_not_swamp_the_others(dtype):
    # row 1's max and label logit cancel exactly (loss 0); a reassociated float64 sum
    # ((total + m) - x) used to lose row 0's log 2 to rounding at 2.7e11 (hypothesis found it)
    logits = np.array([[0, 0], [2.748779e11, 0]], dtype)
    t = np.array([0, 0], np.int64)
    expected = np.log(2) / 2
    assert softmax_loss.cross_entropy(logits, t) == pytest.approx(expected, rel=1e-14)
    assert softmax_loss.softmax_loss_forward(np.empty_like(logits), logits, t) == pytest.approx(expected, rel=1e-14)
    assert softmax_loss.softmax_loss_forward_backward(np.empty_like(logits), logits, t) == \
        pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [3, 16, 17])
@pytest.mark.parametrize("where", [0, 1, -1])
def test_a_nan_logit_makes_its_row_nan_and_leaves_the_others(rng, dtype, C, where):
    # a float32 row of up to 16 classes is one vector, a longer one goes entry by entry:
    # either way a NaN anywhere in a row gives a NaN loss and a NaN gradient row
    logits, t = data(rng, 4, C, dtype)
    logits[2, where] = np.nan
    dx, probs = np.empty_like(logits), np.empty_like(logits)
    assert np.isnan(softmax_loss.softmax_loss_forward_backward(dx, logits, t))
    assert np.isnan(softmax_loss.softmax_loss_forward(probs, logits, t))
    assert np.isnan(softmax_loss.cross_entropy(logits, t))
    assert np.isnan(dx[2]).all() and np.isnan(probs[2]).all()
    keep = [0, 1, 3]
    ref_probs, _ = reference.softmax_loss_forward(logits[keep], t[keep])
    assert_near(probs[keep], ref_probs, dtype)
    assert_near(dx[keep], reference.softmax_loss_backward(ref_probs, t[keep], 1.0) * 3 / 4, dtype)
