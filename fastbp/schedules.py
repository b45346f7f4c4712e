"""Learning-rate schedules and early stopping, decided once per epoch by scikit-learn's MLP
rules: the one home of those rules for fit and for the estimators (fastbp/sklearn.py).

    constant    the learning rate throughout
    invscaling  after each epoch lr / (samples seen + 1) ** power_t
    adaptive    the learning rate, divided by 5 at each plateau; a plateau that finds it
                at or below 1e-6 ends training

A plateau: more than `patience` epochs in a row whose score (higher is better) failed to
beat the best score so far by `tol`. The score is the validation accuracy when training
stops early on a validation set, else minus the epoch's mean training loss. With early
stopping a plateau ends training (unless adaptive lowers the rate first).
"""
import math
import numbers
from collections import namedtuple

SCHEDULES = ("constant", "invscaling", "adaptive")
MIN_ADAPTIVE_LR = 1e-6

# fit's per-epoch settings, as one value
Schedule = namedtuple("Schedule", "name power_t early_stopping patience tol")


def schedule(lr_schedule, power_t, early_stopping, patience, tol, has_validation):
    """fit's arguments checked, as a Schedule."""
    if lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(SCHEDULES)}, got {lr_schedule!r}")
    if not (isinstance(power_t, numbers.Real) and math.isfinite(power_t) and power_t >= 0):
        raise ValueError(f"power_t must be a finite number >= 0, got {power_t!r}")
    if not isinstance(early_stopping, bool):
        raise TypeError(f"early_stopping must be True or False, got {early_stopping!r}")
    if early_stopping and not has_validation:
        raise ValueError("early_stopping needs validation_data: rows held out from training to score each epoch")
    if not (isinstance(patience, numbers.Integral) and not isinstance(patience, bool) and patience >= 1):
        raise ValueError(f"patience must be a positive integer, got {patience!r}")
    if not (isinstance(tol, numbers.Real) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return Schedule(lr_schedule, float(power_t), early_stopping, int(patience), float(tol))


def plateau_step(score, best, count, tol):
    """(best, count) after an epoch that scored `score`: count grows while the score stays
    below best + tol and restarts at 0 when it does not."""
    count = count + 1 if score < best + tol else 0
    return (score if score > best else best), count


def on_plateau(schedule, lr):
    """The learning rate to go on with after a plateau, or None to stop."""
    if schedule != "adaptive" or lr <= MIN_ADAPTIVE_LR:
        return None
    return lr / 5.0


def invscaling(lr, samples_seen, power_t):
    return lr / (samples_seen + 1) ** power_t


def replay(history, lr, sched, batch_size):
    """(learning rate for the next epoch, or None once training has stopped) from fit's
    history of completed epochs alone: nothing to checkpoint, so a resumed run decides
    exactly as one that never stopped. Without early stopping a plateau matters only to
    "adaptive"."""
    rate, best, count = lr, -math.inf, 0
    for e, end in enumerate(history["epoch_step"]):
        score = history["val_acc"][e] if sched.early_stopping else -history["epoch_loss"][e]
        best, count = plateau_step(score, best, count, sched.tol)
        if sched.name == "invscaling":
            rate = invscaling(lr, end * batch_size, sched.power_t)
        if count > sched.patience and (sched.early_stopping or sched.name == "adaptive"):
            rate = on_plateau(sched.name, rate)
            if rate is None:
                return None
            count = 0
    return rate
