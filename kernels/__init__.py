"""fastbp.kernels: numba kernels on flat, C-contiguous float32/float64 arrays.

One module per operation, forward and backward together; outputs come first in
every signature and are written in place, nothing is allocated in the hot path.

    codes         activation and optimizer codes, the optimizers' defaults
    layout        where parameters and layer outputs sit in the flat buffers
    matmul        x·W products: BLAS (np.dot in @njit), gemm with alpha/beta, hand-written loops
    affine        out = act(x·W + b) forward; dx, dW, db backward
    relu          max(x, 0) forward; mask backward
    sigmoid       1/(1+exp(-x)) forward; y(1-y) backward
    softmax_loss  softmax + cross-entropy (log-sum-exp) forward and backward
    mse_loss      mean squared error forward and backward
    sparse        the first layer on sparse (CSR) input: forward, and xᵀ·dz with SGD fused
    simd          explicit SIMD vectors (LLVM intrinsics) for the sparse kernels
    mlp           a whole multi-layer perceptron over one flat parameter buffer
    optimizers    SGD, Momentum, AdaGrad, Adam over the flat buffer
    train         the compiled minibatch loop: gather, forward, backward, update
    reference     the slow, obvious NumPy version of every kernel (the referee)
    config        fastmath flags and caching
    cuda/         the @cuda.jit twins (numba-cuda)

Kernels do not check their arguments (numba does not bounds-check): the
Python layer in fastbp validates everything before a kernel runs.
"""
