import warnings

import numpy as np
import pytest

import fastbp
from fastbp.datasets import spiral
from fastbp.kernels import optimizers
from fastbp.checkpoints import load_checkpoint, save_checkpoint
from fastbp.kernels.codes import DEFAULT_LR
from fastbp.training import TrainState, total_steps


@pytest.fixture(scope="module")
def data():
    return spiral(200, 3, seed=0), spiral(100, 3, seed=1)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1.0), ("momentum", 0.1), ("adagrad", 0.5),
                                          ("adam", 0.01), ("nesterov", 0.1)])
def test_every_optimizer_learns_the_spiral(data, optimizer, lr):
    (x, t), (xe, te) = data
    net = fastbp.Network([2, 64, 3], seed=0)
    h = fastbp.fit(net, x, t, epochs=60, batch_size=30, lr=lr, optimizer=optimizer, seed=0,
                   eval_data=(xe, te))
    assert len(h["loss"]) == 60 * 20 and len(h["train_acc"]) == 60 == len(h["eval_acc"])
    assert h["epoch_step"][:2] == [20, 40]
    assert np.mean(h["loss"][:20]) > 2 * np.mean(h["loss"][-20:])
    assert h["eval_acc"][-1] > 0.9, h["eval_acc"][-5:]


def test_loop_matches_python_steps_exactly(data):
    # the compiled loop = gradient on the permuted minibatch + the SGD rule, step for step
    (x, t), _ = data
    a = fastbp.Network([2, 8, 3], dtype="float64", seed=3)
    b = fastbp.Network([2, 8, 3], dtype="float64", seed=3)
    h = fastbp.fit(a, x, t, iters=7, batch_size=50, lr=0.3, seed=11)
    order = np.random.default_rng(11).permutation(len(x))
    for k in range(7):
        rows = order[k * 50:(k + 1) * 50]
        assert b.loss(x[rows], t[rows]) == pytest.approx(h["loss"][k], rel=1e-12)
        g = b.gradient(x[rows], t[rows])
        for key in b.params:
            b.params[key] -= 0.3 * g[key]
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_momentum_is_settable_and_each_step_is_the_reference_rule(data, optimizer):
    # the compiled loop = backprop on the permuted minibatch + the NumPy referee's update
    from fastbp.kernels import reference
    (x, t), _ = data
    a = fastbp.Network([2, 8, 3], dtype="float64", seed=3)
    b = fastbp.Network([2, 8, 3], dtype="float64", seed=3)
    fastbp.fit(a, x, t, epochs=1, batch_size=50, lr=0.3, optimizer=optimizer, momentum=0.5, weight_decay=0.01,
               seed=11)
    order = np.random.default_rng(11).permutation(len(x))
    velocity = {k: np.zeros((2,) + v.shape) for k, v in b.params.items()}
    for k in range(len(x) // 50):
        rows = order[k * 50:(k + 1) * 50]
        g = b.gradient(x[rows], t[rows])
        for key in b.params:
            wd = 0.01 if key.startswith("W") else 0.0
            b.params[key], velocity[key] = reference.optimizer_update(b.params[key], g[key], velocity[key],
                                                                      optimizer, 0.3, 0.5, 0.0, wd)
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-12, atol=1e-14)
    c = fastbp.Network([2, 8, 3], dtype="float64", seed=3)  # the default momentum, 0.9, is another run
    fastbp.fit(c, x, t, epochs=1, batch_size=50, lr=0.3, optimizer=optimizer, weight_decay=0.01, seed=11)
    assert not np.allclose(c.flat_params, a.flat_params)


def test_nesterov_is_scikit_learns(rng):
    # the peer: scikit-learn's SGDOptimizer(nesterov=True) on the same gradients
    pytest.importorskip("sklearn")
    from sklearn.neural_network._stochastic_optimizers import SGDOptimizer
    p_sk = rng.standard_normal(7)
    sk = SGDOptimizer([p_sk], learning_rate_init=0.05, momentum=0.8, nesterov=True)
    p, v = p_sk.copy(), np.zeros(7)
    for _ in range(5):
        g = rng.standard_normal(7)
        p_sk += sk._get_updates([g])[0]
        optimizers.nesterov_update(p, v, g, 0.05, 0.8, 0.0)
        np.testing.assert_allclose(p, p_sk, rtol=1e-14, atol=1e-15)


def test_same_seed_is_bit_identical(data):
    (x, t), _ = data
    runs = []
    for _ in range(2):
        net = fastbp.Network([2, 16, 3], seed=1)
        fastbp.fit(net, x, t, epochs=3, batch_size=32, lr=0.2, optimizer="adam", seed=5)
        runs.append(net.flat_params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    net = fastbp.Network([2, 16, 3], seed=1)
    fastbp.fit(net, x, t, epochs=3, batch_size=32, lr=0.2, optimizer="adam", seed=6)
    assert not np.array_equal(net.flat_params, runs[0])


def test_checkpoint_resume_is_bit_identical(data, tmp_path):
    (x, t), (xe, te) = data
    kw = dict(batch_size=40, lr=0.05, optimizer="momentum", weight_decay=1e-3, eval_data=(xe, te))
    whole = fastbp.Network([2, 12, 3], seed=2)
    h_whole = fastbp.fit(whole, x, t, epochs=5, seed=9, **kw)

    config = {"any": "settings"}
    path = tmp_path / "ckpt.npz"
    part = fastbp.Network([2, 12, 3], seed=2)
    fastbp.fit(part, x, t, epochs=2, seed=9,
               on_epoch=lambda st: save_checkpoint(path, part, st, config), **kw)
    net, state = load_checkpoint(path, config)
    assert state.step == 2 * 15 and state.epoch == 2
    h = fastbp.fit(net, x, t, epochs=5, state=state, **kw)
    np.testing.assert_array_equal(net.flat_params, whole.flat_params)
    assert h["loss"] == h_whole["loss"] and h["eval_acc"] == h_whole["eval_acc"]
    with pytest.raises(ValueError, match="other settings"):
        load_checkpoint(path, {"any": "other"})
    assert fastbp.Network.load(path).sizes == (2, 12, 3)  # a checkpoint is also a params file


def test_non_finite_loss_stops_with_the_step(data):
    (x, t), _ = data
    net = fastbp.Network([2, 4, 3], seed=0)
    huge = np.full((60, 2), 3e38, np.float32)  # finite, but x·W overflows float32
    before = net.flat_params.copy()
    with pytest.raises(fastbp.TrainingDiverged, match=r"loss became (nan|inf) at step 1 "):
        fastbp.fit(net, huge, t[:60], iters=3, batch_size=20, seed=0)
    np.testing.assert_array_equal(net.flat_params, before)  # the bad step was not applied


def test_total_steps():
    assert total_steps(24000, 100) == (240, 240)
    assert total_steps(24000, 100, iters=10000) == (10000, 240)
    assert total_steps(50, 100 // 2, epochs=3) == (3, 1)
    with pytest.raises(ValueError, match="not both"):
        total_steps(10, 1, iters=1, epochs=1)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(lr=0), ValueError, "lr must be"),
    (dict(lr=float("nan")), ValueError, "lr must be"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of"),
    (dict(optimizer="momentum", momentum=1.0), ValueError, "momentum must be a number in"),
    (dict(optimizer="nesterov", momentum=-0.1), ValueError, "momentum must be a number in"),
    (dict(optimizer="adam", momentum=0.5), ValueError, "momentum is for optimizer 'momentum' or 'nesterov'"),
    (dict(weight_decay=-1), ValueError, "weight_decay"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
    (dict(batch_size=1000), ValueError, "larger than the 600 training samples"),
    (dict(iters=2.5), ValueError, "iters must be a positive integer"),
    (dict(iters=1, epochs=1), ValueError, "not both"),
    (dict(eval_data=np.zeros((3, 2))), TypeError, "eval_data must be a pair"),
    (dict(eval_data=(np.zeros((3, 5)), np.zeros(3, int))), ValueError, r"eval_data\[0\] must have shape"),
])
def test_fit_refuses_bad_arguments(data, kwargs, exc, match):
    (x, t), _ = data
    net = fastbp.Network([2, 4, 3], seed=0)
    before = net.flat_params.copy()
    with pytest.raises(exc, match=match):
        fastbp.fit(net, x, t, **kwargs)
    np.testing.assert_array_equal(net.flat_params, before)


def test_fit_refuses_bad_data(data):
    net = fastbp.Network([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match="x must have shape"):
        fastbp.fit(net, np.zeros((10, 3)), np.zeros(10, int))
    with pytest.raises(ValueError, match="class ids"):
        fastbp.fit(net, np.zeros((10, 2)), np.full(10, 3))
    with pytest.raises(TypeError, match="fastbp.Network"):
        fastbp.fit("net", np.zeros((10, 2)), np.zeros(10, int))
    assert isinstance(TrainState(net).opt_state, np.ndarray) and optimizers.OPTIMIZERS[0] == "sgd"


def test_bad_checkpoints_are_refused_before_anything_is_assigned(data, tmp_path):
    (x, t), _ = data
    config = {"k": 1}
    path = tmp_path / "ckpt.npz"
    net = fastbp.Network([2, 5, 3], seed=0)
    fastbp.fit(net, x, t, epochs=1, batch_size=50, optimizer="adam", seed=0,
               on_epoch=lambda st: save_checkpoint(path, net, st, config))
    good = dict(np.load(path, allow_pickle=False))
    blob = path.read_bytes()

    def refused(match, **changes):
        arrays = {**good, **changes}
        bad = tmp_path / "bad.npz"
        np.savez(bad, **{k: v for k, v in arrays.items() if v is not None})
        with pytest.raises(ValueError, match=match):
            load_checkpoint(bad, config)

    refused("optimizer state does not fit", ckpt_opt_state=np.zeros((2, 3), np.float32))
    refused("optimizer state does not fit", ckpt_opt_state=np.full_like(good["ckpt_opt_state"], np.nan))
    refused("bad RNG state", ckpt_rng=np.array('{"bit_generator": "nope"}'))
    refused("history does not match", ckpt_loss=np.zeros(3))
    refused("not a fastbp checkpoint", ckpt_step=None)
    refused(r"b1 must be float64\(5,\), got float32", W1=np.zeros((2, 5)))  # W1 sets the dtype
    refused("not a readable fastbp checkpoint file", W1=np.array([None], dtype=object))
    (tmp_path / "trunc.npz").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ValueError, match="not a readable fastbp checkpoint file"):
        load_checkpoint(tmp_path / "trunc.npz", config)


class StopAfter:
    """should_stop that says yes at its n-th call (fit asks before every chunk of steps)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self):
        self.calls += 1
        return self.calls >= self.n


@pytest.mark.parametrize("stop_at,step", [(2, 50), (3, 100), (4, 120)])  # 120 steps/epoch: chunks 50 50 20
def test_stopping_midway_then_resuming_from_a_checkpoint_is_bit_identical(data, tmp_path, stop_at, step):
    (x, t), (xe, te) = data
    kw = dict(batch_size=5, lr=0.01, optimizer="adam", eval_data=(xe, te))
    whole = fastbp.Network([2, 12, 3], seed=2)
    h_whole = fastbp.fit(whole, x, t, epochs=2, seed=9, **kw)
    part = fastbp.Network([2, 12, 3], seed=2)
    state = TrainState(part, 9)
    h = fastbp.fit(part, x, t, epochs=2, state=state, should_stop=StopAfter(stop_at), **kw)
    assert state.step == step and len(h["loss"]) == step  # the 4th check is the 2nd epoch's start
    assert h["loss"] == h_whole["loss"][:step] and len(h["train_acc"]) == step // 120
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, part, state, {"run": 1})
    net, state = load_checkpoint(path, {"run": 1})
    h = fastbp.fit(net, x, t, epochs=2, state=state, **kw)
    np.testing.assert_array_equal(net.flat_params, whole.flat_params)
    assert h["loss"] == h_whole["loss"] and h["epoch_loss"] == h_whole["epoch_loss"]


@pytest.mark.parametrize("cuts", [[20], [20, 70], [120, 130], [50, 170, 200]])  # 120 steps per epoch
def test_extending_a_run_that_ended_inside_an_epoch_is_bit_identical(data, tmp_path, cuts):
    # the run's end closes its last epoch early (its accuracies are reported); a longer run
    # reopens that epoch and continues it in the same row order, through a checkpoint too
    (x, t), (xe, te) = data
    kw = dict(batch_size=5, lr=0.01, optimizer="adam", eval_data=(xe, te), seed=9)
    whole = fastbp.Network([2, 12, 3], seed=2)
    h_whole = fastbp.fit(whole, x, t, iters=250, **kw)
    part = fastbp.Network([2, 12, 3], seed=2)
    state = TrainState(part, 9)
    for k, cut in enumerate(cuts):
        h = fastbp.fit(part, x, t, iters=cut, state=state, **kw)
        assert h["epoch_step"][-1] == cut and len(h["train_acc"]) == state.epoch == cut // 120 + (cut % 120 > 0)
        assert h["train_acc"][-1] == pytest.approx(part.accuracy(x, t))
        path = tmp_path / f"ckpt{k}.npz"
        save_checkpoint(path, part, state, {"run": 1})
        part, state = load_checkpoint(path, {"run": 1})
    h = fastbp.fit(part, x, t, iters=250, state=state, **kw)
    np.testing.assert_array_equal(part.flat_params, whole.flat_params)
    for key in ("loss", "epoch_step", "epoch_loss", "train_acc", "eval_acc", "eval_loss"):
        assert h[key] == h_whole[key], key
    h = fastbp.fit(part, x, t, iters=250, state=state, **kw)  # nothing left to do: nothing reopened
    assert h["epoch_step"] == h_whole["epoch_step"]


def test_history_per_epoch_and_verbose_lines(data, capsys):
    (x, t), (xe, te) = data
    net = fastbp.Network([2, 16, 3], seed=0)
    h = fastbp.fit(net, x, t, epochs=3, batch_size=40, lr=0.5, seed=0, eval_data=(xe, te), verbose=True,
                   progress=False)
    assert h["epoch_loss"] == [pytest.approx(np.mean(h["loss"][k * 15:(k + 1) * 15]), rel=1e-12)
                               for k in range(3)]
    assert h["eval_loss"][-1] == pytest.approx(net.loss(xe, te), rel=1e-12)
    assert len(h["eval_loss"]) == 3 and h["eval_loss"][0] > h["eval_loss"][-1]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for k, line in enumerate(lines):
        assert line.startswith(f"epoch {k + 1:3d}  step {15 * (k + 1):6d}  loss {h['epoch_loss'][k]:.4f}  "
                               f"train acc {h['train_acc'][k]:.4f}  eval acc {h['eval_acc'][k]:.4f}  "
                               f"eval loss {h['eval_loss'][k]:.4f}  (")
    fastbp.fit(net, x, t, epochs=1, batch_size=40, lr=0.5, seed=0, progress=False)
    assert capsys.readouterr().out == ""  # quiet unless asked
    h = fastbp.fit(net, x, t, epochs=1, batch_size=40, lr=0.5, seed=0, progress=False)
    assert h["eval_acc"] == [None] and h["eval_loss"] == [None]


def test_without_the_train_accuracy_pass_training_is_the_same(data, capsys):
    (x, t), (xe, te) = data
    a, b = fastbp.Network([2, 16, 3], seed=0), fastbp.Network([2, 16, 3], seed=0)
    ha = fastbp.fit(a, x, t, epochs=2, batch_size=40, lr=0.5, seed=0, eval_data=(xe, te), progress=False)
    hb = fastbp.fit(b, x, t, epochs=2, batch_size=40, lr=0.5, seed=0, eval_data=(xe, te), progress=False,
                    verbose=True, train_accuracy=False)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert hb["train_acc"] == [None, None] and None not in ha["train_acc"]
    assert hb["eval_acc"] == ha["eval_acc"] and hb["loss"] == ha["loss"]
    line = capsys.readouterr().out.splitlines()[0]
    assert "train acc" not in line and f"loss {hb['epoch_loss'][0]:.4f}  eval acc" in line


def test_default_lr_is_the_optimizers_own(data):
    (x, t), _ = data
    for optimizer, lr in (("sgd", 0.1), ("momentum", 0.01), ("adagrad", 0.01), ("adam", 0.001)):
        a, b = fastbp.Network([2, 8, 3], seed=1), fastbp.Network([2, 8, 3], seed=1)
        fastbp.fit(a, x, t, epochs=1, batch_size=50, optimizer=optimizer, seed=0)
        fastbp.fit(b, x, t, epochs=1, batch_size=50, optimizer=optimizer, lr=lr, seed=0)
        np.testing.assert_array_equal(a.flat_params, b.flat_params)
        assert DEFAULT_LR[optimizer] == lr


def test_bad_seed_and_a_backwards_length_are_refused(data):
    (x, t), _ = data
    with pytest.raises(ValueError, match="seed must be None or an integer >= 0, got -1"):
        fastbp.Network([2, 4, 3], seed=-1)
    net = fastbp.Network([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match="seed must be None or an integer >= 0, got -1"):
        fastbp.fit(net, x, t, seed=-1)
    state = TrainState(net, 0)
    fastbp.fit(net, x, t, epochs=2, batch_size=100, state=state)
    before = net.flat_params.copy()
    with pytest.raises(ValueError, match="already at step 12; a length of 6 steps would move it backwards"):
        fastbp.fit(net, x, t, epochs=1, batch_size=100, state=state)
    np.testing.assert_array_equal(net.flat_params, before)


def test_unscaled_integer_pixels_warn_once(monkeypatch):
    from fastbp import checks
    monkeypatch.setattr(checks, "_warned_unscaled", False)
    net = fastbp.Network([4, 3, 2], seed=0)
    pixels = np.array([[0, 255, 12, 3]], np.uint8)
    with pytest.warns(UserWarning, match=r"x holds integers up to 255 \(dtype uint8\); fastbp expects floats") \
            as caught:
        net.predict(pixels)
    assert caught[0].filename == __file__  # the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.predict(pixels)  # once only
    monkeypatch.setattr(checks, "_warned_unscaled", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.predict(np.array([[0, 1, 1, 0]], np.uint8))  # binary input is fine
        net.predict(np.array([[0.0, 255.0, 3.0, 1.0]]))  # floats are the user's choice


# -- learning-rate schedules and early stopping (fastbp/schedules.py: scikit-learn's rules)

def _epochs_one_by_one(data, rates, **kw):
    """The same run as fit with a schedule, one fit call per epoch at a constant rate each."""
    (x, t), _ = data
    net = fastbp.Network([2, 12, 3], seed=2, dtype="float64")
    state = TrainState(net, 9)
    for e, lr in enumerate(rates, 1):
        fastbp.fit(net, x, t, epochs=e, batch_size=40, lr=lr, seed=9, state=state, **kw)
    return net, state


def test_invscaling_and_adaptive_rates_are_the_epochs_rates(data):
    (x, t), _ = data
    lr, B, per_epoch = 0.2, 40, 15
    net = fastbp.Network([2, 12, 3], seed=2, dtype="float64")
    fastbp.fit(net, x, t, epochs=4, batch_size=B, lr=lr, seed=9, lr_schedule="invscaling", power_t=0.25)
    rates = [lr] + [lr / (e * per_epoch * B + 1) ** 0.25 for e in (1, 2, 3)]
    ref, _ = _epochs_one_by_one(data, rates)
    np.testing.assert_array_equal(net.flat_params, ref.flat_params)
    # tol 10: no epoch improves on the best by 10, so every epoch but the first counts; with
    # patience 1 the third epoch ends a plateau: lr / 5 from the 4th, lr / 25 from the 6th
    net = fastbp.Network([2, 12, 3], seed=2, dtype="float64")
    fastbp.fit(net, x, t, epochs=7, batch_size=B, lr=lr, seed=9, lr_schedule="adaptive", patience=1, tol=10.0)
    ref, _ = _epochs_one_by_one(data, [lr] * 3 + [lr / 5] * 2 + [lr / 25] * 2)
    np.testing.assert_array_equal(net.flat_params, ref.flat_params)


def test_early_stopping_ends_at_a_plateau_of_validation_accuracy_and_stays_ended(data, tmp_path):
    (x, t), (xe, te) = data
    kw = dict(batch_size=40, lr=0.2, seed=9, validation_data=(xe[:50], te[:50]), early_stopping=True,
              patience=1, tol=10.0)
    net = fastbp.Network([2, 12, 3], seed=2, dtype="float64")
    state = TrainState(net, 9)
    h = fastbp.fit(net, x, t, epochs=20, state=state, **kw)
    assert state.stopped_early == 3 and state.step == 45 and len(h["val_acc"]) == 3
    assert h["val_acc"][-1] == net.accuracy(xe[:50], te[:50])
    ref, _ = _epochs_one_by_one(data, [0.2] * 3)
    np.testing.assert_array_equal(net.flat_params, ref.flat_params)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, net, state, {})
    net, state = load_checkpoint(path)  # a resume decides the same from the history alone
    h = fastbp.fit(net, x, t, epochs=20, state=state, **kw)
    assert state.stopped_early == 3 and state.step == 45
    # the adaptive schedule lowers the rate at a plateau instead, while it is above 1e-6
    net = fastbp.Network([2, 12, 3], seed=2, dtype="float64")
    state = TrainState(net, 9)
    h = fastbp.fit(net, x, t, epochs=20, state=state, lr_schedule="adaptive", **{**kw, "lr": 1e-5})
    # 1e-5 in epochs 1-3, 2e-6 in 4-5, 4e-7 in 6-7: that plateau finds it below 1e-6
    assert state.stopped_early == 7 and len(h["epoch_step"]) == 7


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr_schedule="cosine"), ValueError, "lr_schedule must be one of"),
    (dict(power_t=-1), ValueError, "power_t must be"),
    (dict(patience=0), ValueError, "patience must be a positive integer"),
    (dict(tol=float("nan")), ValueError, "tol must be"),
    (dict(early_stopping=1), TypeError, "early_stopping must be True or False"),
    (dict(early_stopping=True), ValueError, "early_stopping needs validation_data"),
    (dict(validation_data=np.zeros(3)), TypeError, "validation_data must be a pair"),
    (dict(validation_data=(np.zeros((3, 5)), [0, 1, 2])), ValueError, "validation_data[0]"),
])
def test_schedule_arguments_are_checked(data, kwargs, error, match):
    (x, t), _ = data
    net = fastbp.Network([2, 4, 3], seed=0)
    with pytest.raises(error, match=match.replace("[", r"\[")):
        fastbp.fit(net, x, t, epochs=1, **kwargs)


# -- networks with other losses: fit trains them on float targets

@pytest.mark.parametrize("loss", ["mse", "logistic"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_trains_mse_and_logistic_networks_step_by_step(data, loss, optimizer):
    # the compiled loop = the network's own gradient on each minibatch + the reference update
    from fastbp.kernels import reference
    (x, t), _ = data
    rng = np.random.default_rng(5)
    targets = rng.random((len(x), 3)) if loss == "mse" else (rng.random((len(x), 3)) < 0.4).astype(float)
    a = fastbp.Network([2, 8, 3], dtype="float64", seed=3, loss=loss)
    b = fastbp.Network([2, 8, 3], dtype="float64", seed=3, loss=loss)
    h = fastbp.fit(a, x, targets, iters=6, batch_size=50, lr=0.05, optimizer=optimizer, seed=11)
    order = np.random.default_rng(11).permutation(len(x))
    state = {k: np.zeros((2,) + v.shape) for k, v in b.params.items()}
    for k in range(6):
        rows = order[k * 50:(k + 1) * 50]
        assert b.loss(x[rows], targets[rows]) == pytest.approx(h["loss"][k], rel=1e-12)
        g = b.gradient(x[rows], targets[rows])
        for key in b.params:
            b.params[key], state[key] = reference.optimizer_update(b.params[key], g[key], state[key], optimizer,
                                                                   0.05, 0.9, 0.999, 0.0, k + 1)
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-11, atol=1e-13)
    assert h["train_acc"] == [a.accuracy(x, targets)]


def test_logistic_network_gradient_loss_and_targets(data, tmp_path):
    from fastbp.kernels import reference
    (x, t), _ = data
    net = fastbp.Network([2, 6, 3], dtype="float64", seed=1, loss="logistic", activation="tanh")
    y = (np.random.default_rng(2).random((10, 3)) < 0.5).astype(float)
    logits = net.predict(x[:10])
    assert net.loss(x[:10], y) == pytest.approx(reference.logistic_loss(logits, y), rel=1e-12)
    g, num = net.gradient(x[:10], y), net.numerical_gradient(x[:10], y)
    for k in g:
        np.testing.assert_allclose(g[k], num[k], rtol=1e-6, atol=1e-8)
    # class ids are one-hot targets; accuracy takes the largest output as the class
    assert net.loss(x[:10], t[:10]) == pytest.approx(net.loss(x[:10], np.eye(3)[t[:10]]), rel=1e-15)
    assert net.accuracy(x[:10], t[:10]) == np.mean(logits.argmax(1) == t[:10])
    with pytest.raises(ValueError, match=r"t for loss='logistic' must lie in \[0, 1\]"):
        net.loss(x[:10], y * 2)
    with pytest.raises(ValueError, match="must be one of"):
        fastbp.Network([2, 3], loss="hinge")
    net.save(tmp_path / "p.npz")
    assert fastbp.Network.load(tmp_path / "p.npz").loss(x[:10], y) == net.loss(x[:10], y)


# -- full-batch L-BFGS on a Network (fastbp/lbfgs.py)

@pytest.mark.filterwarnings("ignore:lbfgs failed to converge")
@pytest.mark.parametrize("loss, sparse", [("softmax_ce", False), ("softmax_ce", True), ("logistic", False)])
def test_fit_lbfgs_matches_scikit_learns_lbfgs_from_the_same_weights(loss, sparse):
    # the peer: scikit-learn's MLPClassifier(solver="lbfgs"), warm-started from the network's weights;
    # 3 classes: softmax; multi-label indicator targets: logistic outputs
    pytest.importorskip("sklearn")
    import scipy.sparse as sp
    from sklearn import neural_network as sk
    from sklearn.datasets import make_classification, make_multilabel_classification
    if loss == "logistic":
        X, y = make_multilabel_classification(90, 8, n_classes=3, random_state=2)
    else:
        X, y = make_classification(90, 8, n_informative=5, n_classes=3, random_state=1)
    net = fastbp.Network([8, 6, 3], dtype="float64", seed=4, loss=loss)
    est = sk.MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=1, alpha=1e-3, random_state=0).fit(X, y)
    est.set_params(warm_start=True, max_iter=15)
    est.coefs_ = [net.params["W1"].copy(), net.params["W2"].copy()]
    est.intercepts_ = [net.params["b1"].copy(), net.params["b2"].copy()]
    est.fit(X, y)
    res = fastbp.fit_lbfgs(net, sp.csr_matrix(X) if sparse else X, y, alpha=1e-3, max_iter=15)
    assert res.nit == est.n_iter_ and res.fun == pytest.approx(est.loss_, rel=1e-6)
    for mine, theirs in zip(("W1", "W2", "b1", "b2"), est.coefs_ + est.intercepts_):
        np.testing.assert_allclose(net.params[mine], theirs, rtol=1e-6, atol=1e-9)


def test_fit_lbfgs_checks_its_arguments(data):
    (x, t), _ = data
    net = fastbp.Network([2, 4, 3], seed=0)
    for kw, match in [(dict(alpha=-1), "alpha must be"), (dict(max_iter=0), "max_iter must be"),
                      (dict(tol=float("nan")), "tol must be"), (dict(max_fun=2.5), "max_fun must be")]:
        with pytest.raises(ValueError, match=match):
            fastbp.fit_lbfgs(net, x, t, **kw)
    with pytest.raises(ValueError, match="t must hold class ids"):
        fastbp.fit_lbfgs(net, x, t + 3)
    before = net.flat_params.copy()
    res = fastbp.fit_lbfgs(net, x, t, max_iter=5)
    assert res.nit <= 5 and net.loss(x, t) < fastbp.Network([2, 4, 3], seed=0).loss(x, t)
    assert not np.array_equal(before, net.flat_params)


def test_fit_lbfgs_reports_each_iteration_and_can_be_stopped(data, capsys):
    (x, t), _ = data
    net = fastbp.Network([2, 4, 3], seed=0)
    seen = []

    def callback(r):
        np.testing.assert_array_equal(net.flat_params, r.x.astype(net.dtype))  # the net holds the iterate
        seen.append(r.fun)
        if len(seen) == 3:
            raise StopIteration
    res = fastbp.fit_lbfgs(net, x, t, max_iter=50, verbose=True, callback=callback)
    lines = capsys.readouterr().out.splitlines()
    assert res.nit == 3 and len(seen) == 3 and seen == sorted(seen, reverse=True)
    assert lines == [f"L-BFGS: loss = {v:.8f}" for v in seen]
    np.testing.assert_allclose(net.loss(x, t), seen[-1], rtol=1e-6)  # no L2 term: the net's own loss
