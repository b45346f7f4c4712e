"""The codes the kernels switch on, and the optimizers' defaults: defined here only.

Kernels take small integers (numba compiles the branches; no strings in the hot
path); the Python layer speaks names. The CPU and CUDA kernels, the NumPy reference,
Network, fit and the command line all import them from here.
"""
ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")  # a code is the index
IDENTITY, RELU, SIGMOID, TANH = 0, 1, 2, 3
HIDDEN_ACTIVATIONS = ("relu", "sigmoid", "tanh")  # what a Network's hidden layers offer

OPTIMIZERS = ("sgd", "momentum", "adagrad", "adam", "nesterov")  # a code is the index
SGD, MOMENTUM, ADAGRAD, ADAM, NESTEROV = 0, 1, 2, 3, 4
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")  # hyper1 is their momentum (fit's `momentum`)
# (hyper1, hyper2), the book's (ch. 6): momentum 0.9; Adam beta1 0.9, beta2 0.999
OPTIMIZER_HYPER = {"sgd": (0.0, 0.0), "momentum": (0.9, 0.0), "adagrad": (0.0, 0.0), "adam": (0.9, 0.999),
                   "nesterov": (0.9, 0.0)}
# learning rate when none is given: SGD the ch05 recipe's 0.1; the others as the book's
# optimizer comparison (ch06) runs them. Adam at 0.1 reaches ~85% on MNIST instead of ~97%.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adagrad": 0.01, "adam": 0.001, "nesterov": 0.01}
