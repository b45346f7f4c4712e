"""Full-batch L-BFGS over the one flat parameter buffer: scipy.optimize.minimize (L-BFGS-B)
on a compiled loss and gradient over the whole data set. The flat buffer is exactly the
vector L-BFGS wants; one forward and backward pass per evaluation.

    fastbp.fit_lbfgs(net, x, t, alpha=1e-4, max_iter=200)   # a Network, CPU

The estimators' solver="lbfgs" (fastbp/sklearn.py) runs through minimize_flat too.
"""
import numbers

import numpy as np

from fastbp.cpu import whole
from fastbp.kernels import layout as lay
from fastbp.kernels.sk_solvers import sk_loss_grad
from fastbp.network import Network


def minimize_flat(flat, loss_grad, max_iter, max_fun, tol, callback=None):
    """L-BFGS-B from flat (P,), which ends holding the result; loss_grad(flat) -> (loss,
    gradient) works on flat in place. scikit-learn's options: maxiter, maxfun, gtol=tol.
    callback(r) after each iteration gets scipy's OptimizeResult of it (r.x, r.fun); raising
    StopIteration there ends the run at that iteration. Returns scipy's OptimizeResult."""
    import scipy.optimize  # here: `import fastbp` stays quick

    def f(p):
        flat[:] = p
        loss, grad = loss_grad(flat)
        return loss, grad.astype(np.float64)

    each = None
    if callback is not None:
        def each(intermediate_result):  # by this name scipy passes the OptimizeResult, not just x
            callback(intermediate_result)

    res = scipy.optimize.minimize(f, flat.astype(np.float64), method="L-BFGS-B", jac=True, callback=each,
                                  options={"maxfun": max_fun, "maxiter": max_iter, "gtol": tol})
    flat[:] = res.x
    return res


def fit_lbfgs(net, x, t, *, alpha=0.0, max_iter=200, max_fun=15000, tol=1e-4, verbose=False, callback=None):
    """Train `net` (CPU) in place by L-BFGS on all of x, t (as fit takes them) at once:
    the network's mean loss plus scikit-learn's L2 term alpha/2 · ΣW² / N. Stops after
    max_iter iterations or max_fun evaluations, or when the largest gradient entry is
    below tol. verbose prints the loss after each iteration; callback(r) is called after
    each with scipy's OptimizeResult (r.fun the loss, r.x the parameters, which the network
    then holds), and may raise StopIteration to end the run there. Returns scipy's
    OptimizeResult (fun: the final loss, nit, status, message)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastbp.Network, got {type(net).__name__}")
    if net.device != "cpu":
        raise ValueError("fit_lbfgs runs on the CPU; build the network with device='cpu'")
    for name, v, low in (("alpha", alpha, 0), ("tol", tol, 0), ("max_iter", max_iter, 1), ("max_fun", max_fun, 1)):
        ok = isinstance(v, numbers.Integral) if name.startswith("max") else isinstance(v, numbers.Real)
        if not (ok and not isinstance(v, bool) and np.isfinite(v) and v >= low):
            raise ValueError(f"{name} must be a{' whole' if name.startswith('max') else ''} number >= {low}, "
                             f"got {v!r}")
    xs = net.as_input(x, "x")
    n = xs.shape[0]
    targets = net.backend.wrap(net.targets(t, n))
    xs = whole(xs, net.sizes[1])
    be = net.backend
    grads = lay.zeros(net.n_params, net.dtype)
    acts, deltas = lay.workspace(net.sizes, n, net.dtype)

    def loss_grad(flat):
        return sk_loss_grad(grads, acts, deltas, flat, be.model, xs, targets, float(alpha)), grads

    def each(r):
        be.params.flat[:] = r.x  # the iterate (scipy may have evaluated elsewhere last)
        if verbose:
            print(f"L-BFGS: loss = {r.fun:.8f}", flush=True)
        if callback is not None:
            callback(r)
    return minimize_flat(be.params.flat, loss_grad, max_iter, max_fun, tol, each)
