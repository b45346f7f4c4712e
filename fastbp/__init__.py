"""fastbp: backpropagation with hand-written numba kernels.

    import fastbp
    net = fastbp.Network([784, 50, 10])          # or fastbp.TwoLayerNet(784, 50, 10)
    grads = net.gradient(x_batch, t_batch)        # {"W1": ..., "b1": ..., ...}
    fastbp.gradient_check(net, x_batch[:3], t_batch[:3])
    history = fastbp.fit(net, x_train, t_train, epochs=10, lr=0.1, eval_data=(x_test, t_test))

fastbp.MLPClassifier and fastbp.MLPRegressor are scikit-learn estimators (fastbp.sklearn).
fastbp.layers has the book's MulLayer, AddLayer, Relu, Sigmoid, Affine,
SoftmaxWithLoss; fastbp.kernels the numba kernels they run on.
"""
from fastbp import datasets, graph, layers  # noqa: F401  (fastbp.datasets etc. after `import fastbp`)
from fastbp.gradcheck import gradient_check
from fastbp.lbfgs import fit_lbfgs
from fastbp.network import Network, TwoLayerNet
from fastbp.training import TrainingDiverged, fit

__version__ = "0.1.0"
__all__ = ["MLPClassifier", "MLPRegressor", "Network", "TwoLayerNet", "TrainingDiverged", "datasets", "fit",
           "fit_lbfgs", "gradient_check", "graph", "layers"]


def __getattr__(name):
    # the scikit-learn estimators load scikit-learn: only when asked for, not on `import fastbp`
    if name in ("MLPClassifier", "MLPRegressor"):
        from fastbp import sklearn
        return getattr(sklearn, name)
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")
