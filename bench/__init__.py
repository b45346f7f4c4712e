"""Every benchmark of fastbp, one package, run from the repository's root:

    python -m pytest bench --benchmark-only   the pytest-benchmark suites (make bench):
                                              test_bench_kernels.py, test_bench_step.py,
                                              test_bench_cuda.py (on a GPU)
    python -m bench.report                    fastbp, NumPy, PyTorch and the BLAS floor side by
                                              side per SGD step (make bench-report)
    python -m bench.cuda_report               on a GPU: SGEMM vs cuBLAS, MNIST epoch and large
                                              step vs PyTorch CUDA (make bench-gpu)
    python -m bench.train_vs_numpy            the seed recipe against the book's NumPy network
    python -m bench.matmul                    BLAS against the hand-written product loops
    python -m bench.compile_time              cold and warm start to the first gradient

steps.py builds each contender's training step; numpy_baseline.py is the book's
NumPy TwoLayerNet. Results (JSON, PNG) go to bench/results/.
"""
