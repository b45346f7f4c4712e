"""The data of an MPI test case, made alike in the test process and in every rank."""
import numpy as np
import scipy.sparse as sp


def fit_keywords(c, xe, te):
    kw = dict(c.get("fit", {}))
    if kw.get("early_stopping"):
        kw["validation_data"] = (xe, te)
    return kw


def case_data(c):
    """(x, t, x_eval, t_eval) for case c: n rows of sizes[0] features, 70% zeros, sizes[-1]
    classes; x is CSR when c["sparse"]."""
    rng = np.random.default_rng(1000 + c["seed"])
    d, classes = c["sizes"][0], c["sizes"][-1]
    n = c["n"]
    x = rng.standard_normal((n + 17, d)) * (rng.random((n + 17, d)) < 0.3)
    t = rng.integers(0, classes, n + 17)
    x = x.astype(c["dtype"])
    xt, tt, xe, te = x[:n], t[:n], x[n:], t[n:]
    if c.get("sparse"):
        xt = sp.csr_matrix(xt)
    return xt, tt, xe, te
