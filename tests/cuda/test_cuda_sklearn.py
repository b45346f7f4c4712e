"""fastbp's scikit-learn estimators with device="cuda" against the same estimators on the CPU
(which tests/test_sklearn.py holds to scikit-learn itself): loss curves, weights and
predictions for every output (softmax, logistic, identity) and solver, and once
against scikit-learn directly."""
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from cudatest import needs_device

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression  # noqa: E402

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = [needs_device, pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


def _data(kind):
    # small: under the simulator every GPU thread is a Python thread
    if kind == "multiclass":
        return make_classification(20, 6, n_informative=4, n_classes=3, random_state=0)
    if kind == "binary":
        X, y = make_classification(20, 5, random_state=1)
        return X, np.array(["no", "yes"])[y]
    if kind == "multilabel":
        return make_multilabel_classification(20, 6, n_classes=3, random_state=2)
    X, y = make_regression(20, 5, n_targets=3 if kind == "regression3" else 1, random_state=3)
    return X, y / 100


def _pair(kind, **kw):
    cls = MLPRegressor if kind.startswith("regression") else MLPClassifier
    X, y = _data(kind)
    kw = {**dict(hidden_layer_sizes=(4,), random_state=1, max_iter=2, batch_size=8), **kw}
    return cls(**kw).fit(X, y), cls(device="cuda", **kw).fit(X, y), X


def _same(cpu, gpu, X, rtol):
    if hasattr(cpu, "loss_curve_"):
        np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=rtol)
    np.testing.assert_allclose(gpu.loss_, cpu.loss_, rtol=rtol)
    assert gpu.n_iter_ == cpu.n_iter_ and gpu.t_ == cpu.t_
    for p, q in zip(gpu.coefs_ + gpu.intercepts_, cpu.coefs_ + cpu.intercepts_):
        assert p.dtype == q.dtype
        np.testing.assert_allclose(p, q, rtol=rtol, atol=rtol / 10)
    if isinstance(cpu, MLPClassifier):
        np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=rtol, atol=rtol / 10)
        np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))
    else:
        np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), rtol=rtol, atol=rtol / 10)


SGD, ADAM, LBFGS = dict(solver="sgd"), dict(solver="adam", activation="tanh", alpha=0.01), \
    dict(solver="lbfgs", activation="logistic")
CASES = [("multiclass", SGD), ("multiclass", dict(LBFGS, hidden_layer_sizes=(4, 3))),
         ("binary", dict(solver="sgd", nesterovs_momentum=False, learning_rate="invscaling")),
         ("multilabel", ADAM), ("regression1", dict(SGD, hidden_layer_sizes=(3, 4))), ("regression3", LBFGS)]


@pytest.mark.parametrize("kind,settings", CASES, ids=lambda c: c if isinstance(c, str) else
                         "-".join(f"{k}={v}" for k, v in c.items()))
def test_cuda_estimators_step_as_the_cpu_ones(kind, settings):
    # every output loss (softmax, logistic, identity) with each solver; the last minibatch
    # of each epoch is shorter (20 rows in batches of 8)
    cpu, gpu, X = _pair(kind, **settings)
    _same(cpu, gpu, X, 1e-12)


def test_float32_early_stopping_and_sparse_input():
    X, y = _data("multiclass")
    kw = dict(hidden_layer_sizes=(4,), solver="adam", random_state=0, max_iter=2, early_stopping=True,
              validation_fraction=0.25, batch_size=8, dtype="float32")
    cpu, gpu = MLPClassifier(**kw).fit(X, y), MLPClassifier(device="cuda", **kw).fit(sp.csr_matrix(X), y)
    assert gpu.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(gpu.validation_scores_, cpu.validation_scores_)
    _same(cpu, gpu, X, 1e-5)


def test_the_same_loss_curve_as_scikit_learn():
    X, y = _data("multilabel")
    kw = dict(hidden_layer_sizes=(4,), solver="sgd", random_state=3, max_iter=2, batch_size=8)
    a, b = sk.MLPClassifier(**kw).fit(X, y), MLPClassifier(device="cuda", **kw).fit(X, y)
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), rtol=1e-6, atol=1e-12)


def test_partial_fit_and_pickle_carry_the_solver_state():
    X, y = _data("multiclass")
    kw = dict(hidden_layer_sizes=(4,), solver="adam", random_state=0, batch_size=8)
    cpu, gpu = MLPClassifier(**kw), MLPClassifier(device="cuda", **kw)
    for start in (0, 10):
        cpu.partial_fit(X[start:start + 10], y[start:start + 10], classes=[0, 1, 2])
        gpu.partial_fit(X[start:start + 10], y[start:start + 10], classes=[0, 1, 2])
    gpu = pickle.loads(pickle.dumps(gpu))  # state is arrays: it leaves the device
    cpu.partial_fit(X, y)
    gpu.partial_fit(X, y)
    _same(cpu, gpu, X, 1e-12)
