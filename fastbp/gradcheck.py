"""Gradient check: backprop against central differences, parameter by parameter."""
import numpy as np


def gradient_check(net, x, t, h=1e-4):
    """{name: {"max_abs_error": ..., "rel_error": ...}} comparing net.gradient with net.numerical_gradient.

    max_abs_error is max |backprop - numerical| over the entries; rel_error is
    ||backprop - numerical|| / (||backprop|| + ||numerical||) (2-norms; 0 when
    both are 0), which stays meaningful where single entries are near zero.
    """
    numerical = net.numerical_gradient(x, t, h=h)
    backprop = net.gradient(x, t)
    report = {}
    for name, num in numerical.items():
        bp = backprop[name].astype(np.float64)
        diff = np.linalg.norm(bp - num)
        denom = np.linalg.norm(bp) + np.linalg.norm(num)
        report[name] = {
            "max_abs_error": float(np.max(np.abs(bp - num))),
            "mean_abs_error": float(np.mean(np.abs(bp - num))),
            "rel_error": float(diff / denom) if denom > 0 else 0.0,
        }
    return report
