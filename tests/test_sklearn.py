"""fastbp.MLPClassifier / MLPRegressor against scikit-learn: its estimator checks, and its own
MLP estimators as the numerical referee (same random_state, same data: the same loss curve)."""
import contextlib
import os
import pickle
import subprocess
import sys
import warnings

import numba
import numpy as np
import pytest
import scipy.sparse as sp

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastbp  # noqa: E402
from conftest import hiding  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([MLPClassifier(max_iter=50), MLPRegressor(max_iter=50)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _data(kind):
    if kind == "multiclass":
        return make_classification(150, 12, n_informative=6, n_classes=3, random_state=0)
    if kind == "binary":
        X, y = make_classification(120, 8, random_state=1)
        return X, np.array(["no", "yes"])[y]  # string labels
    if kind == "multilabel":
        return make_multilabel_classification(110, 10, n_classes=4, random_state=2)
    X, y = make_regression(130, 9, n_targets=3 if kind == "regression3" else 1, random_state=3)
    return X, y / 100


SETTINGS = [dict(solver="sgd"), dict(solver="sgd", nesterovs_momentum=False), dict(solver="sgd", momentum=0.0),
            dict(solver="sgd", learning_rate="invscaling", activation="tanh"),
            dict(solver="sgd", learning_rate="adaptive", tol=0.5, n_iter_no_change=1),
            dict(solver="adam", activation="logistic", batch_size="auto"),
            dict(solver="adam", early_stopping=True, activation="tanh"),
            dict(solver="sgd", batch_size=64, activation="identity", alpha=0.1, shuffle=False),
            dict(solver="lbfgs", activation="logistic")]


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression1", "regression3"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_same_loss_curve_weights_and_predictions_as_scikit_learn(kind, settings):
    X, y = _data(kind)
    ours, theirs = (MLPRegressor, sk.MLPRegressor) if kind.startswith("regression") else \
        (MLPClassifier, sk.MLPClassifier)
    # minibatches of 32 (the last one shorter) in scikit-learn's shuffled order, unless the
    # setting says otherwise ("auto": all of these sets' 110-150 rows in one batch)
    kw = {**dict(hidden_layer_sizes=(7, 5), random_state=1, max_iter=6, batch_size=32), **settings}
    a, b = theirs(**kw).fit(X, y), ours(**kw).fit(X, y)
    if settings["solver"] == "lbfgs":
        assert not hasattr(b, "loss_curve_")
        np.testing.assert_allclose(b.loss_, a.loss_, rtol=1e-6)
    else:
        assert len(b.loss_curve_) == len(a.loss_curve_) == b.n_iter_ == a.n_iter_
        np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-6)
        assert b.best_loss_ == a.best_loss_ or np.isclose(b.best_loss_, a.best_loss_, rtol=1e-6)
        assert b.validation_scores_ == a.validation_scores_ or \
            np.allclose(b.validation_scores_, a.validation_scores_, rtol=1e-6)
    assert b.n_iter_ == a.n_iter_ and b.t_ == a.t_ and b.out_activation_ == a.out_activation_
    assert (b.n_layers_, b.n_outputs_, b.n_features_in_) == (a.n_layers_, a.n_outputs_, a.n_features_in_)
    for p, q in zip(b.coefs_ + b.intercepts_, a.coefs_ + a.intercepts_):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-9)
    if ours is MLPRegressor:
        np.testing.assert_allclose(b.predict(X), a.predict(X), rtol=1e-6, atol=1e-9)
    else:
        np.testing.assert_array_equal(b.predict(X), a.predict(X))
        np.testing.assert_array_equal(b.classes_, a.classes_)
        np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), rtol=1e-6, atol=1e-12)
        assert b.score(X, y) == a.score(X, y)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_float32_steps_as_scikit_learns_float32_steps(solver):
    # scikit-learn keeps float32 data in float32 and scales by its Python-float rates, each
    # rounded to float32 once ((1 - beta_1)·grad); the same rounding here keeps the two within
    # float32 rounding of each other after several epochs (Adam's (1 - b1) taken in float64 per
    # entry drifted to 1e-5)
    X, y = _data("multiclass")
    X = X.astype(np.float32)
    kw = dict(hidden_layer_sizes=(7, 5), random_state=1, max_iter=6, batch_size=32, solver=solver)
    a, b = sk.MLPClassifier(**kw).fit(X, y), MLPClassifier(**kw).fit(X, y)
    for p, q in zip(b.coefs_ + b.intercepts_, a.coefs_ + a.intercepts_):
        assert p.dtype == q.dtype == np.float32
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-6)


def test_warm_start_from_given_weights_matches_scikit_learn():
    # the hook for any initial weights: set coefs_/intercepts_ on a fitted estimator, warm_start=True
    X, y = _data("multiclass")
    rng = np.random.default_rng(5)
    coefs = [rng.standard_normal((12, 6)) * 0.3, rng.standard_normal((6, 3)) * 0.3]
    intercepts = [rng.standard_normal(6) * 0.1, rng.standard_normal(3) * 0.1]
    curves = []
    for cls in (sk.MLPClassifier, MLPClassifier):
        est = cls(hidden_layer_sizes=(6,), solver="sgd", max_iter=1, random_state=0, shuffle=False).fit(X, y)
        est.set_params(warm_start=True, max_iter=4)
        est.coefs_, est.intercepts_ = [c.copy() for c in coefs], [b.copy() for b in intercepts]
        est.loss_curve_ = []
        curves.append(est.fit(X, y).loss_curve_)
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-6)


def test_partial_fit_matches_scikit_learn_and_needs_classes_first():
    X, y = _data("multiclass")
    a = sk.MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", random_state=0)
    b = MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        b.partial_fit(X, y)
    for start in (0, 50, 100):
        a.partial_fit(X[start:start + 50], y[start:start + 50], classes=[0, 1, 2])
        b.partial_fit(X[start:start + 50], y[start:start + 50], classes=[0, 1, 2])
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-6)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_input_gives_the_dense_result(fmt):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 40)) * (rng.random((90, 40)) < 0.1)
    y = rng.integers(0, 3, 90)
    kw = dict(hidden_layer_sizes=(8,), solver="adam", max_iter=5, random_state=0)
    dense = MLPClassifier(**kw, sparse=False).fit(X, y)
    sparse = MLPClassifier(**kw).fit(sp.csr_matrix(X).asformat(fmt), y)
    forced = MLPClassifier(**kw, sparse=True).fit(X, y)  # dense X through the sparse kernels
    np.testing.assert_allclose(forced.loss_curve_, dense.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(sparse.predict_proba(sp.csr_matrix(X)), dense.predict_proba(X), rtol=1e-10)
    ref = sk.MLPClassifier(**kw).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.loss_curve_, ref.loss_curve_, rtol=1e-6)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_wide_network_on_sparse_input_steps_as_scikit_learn_on_threads_and_in_turn(solver, monkeypatch):
    # products past BLAS_ONE_THREAD and a solver step past STEP_SPLIT_MIN parameters: both
    # in blocks on numba's threads (BLAS held to one thread), against the parts in turn with
    # BLAS on its own threads, and against scikit-learn
    from fastbp import cpu
    from fastbp.kernels.config import BLAS_ONE_THREAD, STEP_SPLIT_MIN
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.standard_normal((300, 200)) * (rng.random((300, 200)) < 0.1))
    y = rng.integers(0, 3, 300)
    kw = dict(hidden_layer_sizes=(256, 256), solver=solver, max_iter=3, random_state=0)
    assert 200 * 256 * 256 > BLAS_ONE_THREAD and 200 * 256 + 256 * 256 > STEP_SPLIT_MIN
    seen, real = [], fastbp.sklearn.threads

    @contextlib.contextmanager
    def spy(x, sizes, n):  # what each epoch ran on
        with real(x, sizes, n) as xk:
            seen.append(bool(xk.work.threaded))
            yield xk
    monkeypatch.setattr(fastbp.sklearn, "threads", spy)
    threaded = MLPClassifier(**kw).fit(X, y)
    assert seen and all(seen) == (numba.get_num_threads() > 1)
    seen.clear()
    with monkeypatch.context() as m:
        m.setattr(cpu, "_FORKED", [True])  # as in a forked child: the parts in turn
        in_turn = MLPClassifier(**kw).fit(X, y)
    assert seen and not any(seen)
    np.testing.assert_allclose(threaded.loss_curve_, in_turn.loss_curve_, rtol=1e-12)
    for a, b in zip(threaded.coefs_, in_turn.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    ref = sk.MLPClassifier(**kw).fit(X, y)
    np.testing.assert_allclose(threaded.loss_curve_, ref.loss_curve_, rtol=1e-6)


@pytest.mark.parametrize("adam,nesterov", [(True, False), (False, True), (False, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P,blocks", [(1, 2), (1001, 2), (1001, 3), (77777, 2)])
def test_solver_step_on_threads_is_the_step_on_one(adam, nesterov, dtype, P, blocks):
    from fastbp.kernels.sk_solvers import Solver, solver_update, solver_update_threads
    rng = np.random.default_rng(P)
    solver = Solver(adam, 1e-3, 0.9, nesterov, 0.9, 0.999, 1e-8)
    p, g = rng.standard_normal(P).astype(dtype), rng.standard_normal(P).astype(dtype)
    state = rng.random((2, P)).astype(dtype)
    p2, state2 = p.copy(), state.copy()
    for t in (1, 2, 3):
        solver_update(p, g, state, solver, t)
        solver_update_threads(p2, g, state2, solver, t, blocks)
    np.testing.assert_array_equal(p2, p)
    np.testing.assert_array_equal(state2, state)


def test_float32_data_is_worked_in_float32_and_dtype_can_ask_for_it():
    X, y = _data("multiclass")
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X.astype(np.float32), y)
    assert est.coefs_[0].dtype == np.float32 and est.predict_proba(X).dtype == np.float32
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0, dtype="float32").fit(X, y)
    assert est.coefs_[0].dtype == np.float32
    ref = sk.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X.astype(np.float32), y)
    np.testing.assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=1e-4)


def test_pipeline_grid_search_and_parallel_cross_validation():
    X, y = make_classification(240, 10, n_informative=5, n_classes=3, random_state=3)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=60, random_state=0))
    assert pipe.fit(X, y).score(X, y) > 0.8
    grids = [GridSearchCV(make_pipeline(StandardScaler(), cls(max_iter=100, learning_rate_init=0.01,
                                                            random_state=0)),
                          {"mlpclassifier__hidden_layer_sizes": [(8,), (16, 8)],
                           "mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3).fit(X, y)
             for cls in (MLPClassifier, sk.MLPClassifier)]
    assert len(grids[0].cv_results_["params"]) == 4 and grids[0].best_score_ > 0.7
    np.testing.assert_allclose(grids[0].cv_results_["mean_test_score"], grids[1].cv_results_["mean_test_score"])
    scores = [cross_val_score(cls(max_iter=100, learning_rate_init=0.01, random_state=0), X, y, cv=3, n_jobs=2)
              for cls in (MLPClassifier, sk.MLPClassifier)]
    assert scores[0].shape == (3,) and scores[0].min() > 0.5
    np.testing.assert_allclose(scores[0], scores[1])


def test_fitted_estimators_pickle_and_clone():
    X, y = _data("binary")
    est = MLPClassifier(hidden_layer_sizes=(6,), solver="sgd", max_iter=4, random_state=0).fit(X, y)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    back.partial_fit(X, y)  # the solver's state came along
    assert back.n_iter_ == 5
    fresh = clone(est)
    assert not hasattr(fresh, "coefs_") and fresh.get_params() == est.get_params()


@pytest.mark.parametrize("params,error,match", [
    (dict(hidden_layer_sizes=(5, 0)), ValueError, "hidden_layer_sizes must be > 0"),
    (dict(hidden_layer_sizes=(5, 2.5)), TypeError, "hidden_layer_sizes must be integers"),
    (dict(activation="softplus"), ValueError, "activation must be one of"),
    (dict(solver="newton"), ValueError, "solver must be one of"),
    (dict(alpha=-1.0), ValueError, "alpha must be >= 0"),
    (dict(learning_rate_init=0.0), ValueError, "learning_rate_init must be > 0"),
    (dict(momentum=1.5), ValueError, "momentum must be >= 0 and <= 1"),
    (dict(beta_2=1.0), ValueError, "beta_2 must be >= 0 and < 1"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(max_iter="10"), TypeError, "max_iter must be an integer"),
    (dict(shuffle="yes"), TypeError, "shuffle must be True or False"),
    (dict(dtype="float16"), ValueError, "dtype must be None"),
    (dict(sparse="yes"), ValueError, "sparse must be 'auto', True or False"),
    (dict(device="gpu"), ValueError, "device must be one of"),
])
def test_bad_parameters_are_named_before_any_work(params, error, match):
    X, y = _data("multiclass")
    with pytest.raises(error, match=match):
        MLPClassifier(**params).fit(X, y)


def test_import_fastbp_does_not_import_scikit_learn():
    code = ("import sys, fastbp; assert 'sklearn' not in sys.modules; "
            "from fastbp import MLPClassifier; assert 'sklearn' in sys.modules; print(MLPClassifier())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "MLPClassifier()"


def test_without_scikit_learn_the_estimators_say_how_to_get_it(tmp_path):
    # scikit-learn is the optional sklearn extra
    env = dict(os.environ, **hiding(tmp_path, "sklearn"))
    for code in ("import fastbp; fastbp.MLPClassifier", "from fastbp.sklearn import MLPRegressor"):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert res.returncode == 1
        assert res.stderr.strip().splitlines()[-1] == ("ModuleNotFoundError: fastbp's scikit-learn estimators "
                                                       "need scikit-learn: pip install 'fastbp[sklearn]'")
    assert subprocess.run([sys.executable, "-c", "import fastbp"], env=env).returncode == 0


def test_real_digits_learn_with_the_defaults():
    # the shipped MNIST sample (mostly zeros: the sparse first layer): the defaults (adam, relu,
    # 100 hidden) reach the accuracy they should, as scikit-learn's do on the same data
    (x, t), (xt, tt) = fastbp.datasets.load_mnist_sample()
    x, t, xt = x[:3000].astype(np.float64), t[:3000], xt.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = fastbp.MLPClassifier(max_iter=8, random_state=0).fit(x, t)
    assert est.score(xt, tt) > 0.85
    ref = sk.MLPClassifier(max_iter=8, random_state=0).fit(x, t)
    assert est.score(xt, tt) == ref.score(xt, tt)
    np.testing.assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=1e-6)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_verbose_prints_the_loss_of_each_iteration(solver, capsys):
    X, y = _data("binary")
    est = MLPClassifier(hidden_layer_sizes=(4,), solver=solver, max_iter=3, random_state=0, verbose=True).fit(X, y)
    lines = [l for l in capsys.readouterr().out.splitlines() if "loss = " in l]
    assert len(lines) == est.n_iter_ == 3
    assert lines[-1].endswith(f"loss = {est.loss_:.8f}")
