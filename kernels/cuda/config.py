"""Launch shapes of the CUDA kernels, in one place.

Under numba's simulator (NUMBA_ENABLE_CUDASIM=1) every GPU thread is a Python
thread, so the same kernels run with tiny tiles and blocks there; the tests
also run the full-size tiles on a few small shapes.
"""
from numba import config as _numba_config

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)

if SIMULATOR:
    TILE = 4           # tiled gemm: TILE x TILE threads and shared tiles
    REG = (2, 2, 2)    # register-blocked gemm: T x T threads, R x R outputs each, BK deep
    BLOCK = 8          # 1-D kernels: threads per block
    ROWS_BLOCK = 8     # softmax/argmax: threads of the single block, one row at a time each
else:
    TILE = 16
    REG = (16, 4, 8)   # 16 x 16 threads, 4 x 4 outputs each: a 64 x 64 block tile, 8 deep
    BLOCK = 256
    ROWS_BLOCK = 256

# Up to this many classes softmax_ce gives each row to one thread of a single block;
# wider heads get a block per row (softmax_loss.py).
ROW_THREAD_MAX_CLASSES = 32

# The register-blocked gemm pays off only with enough 64 x 64 output tiles to fill
# the GPU; smaller products (all of 784-50-10) use the tiled kernel. Not yet measured
# on a GPU: bench/cuda_report.py prints all three versions at these shapes.
REGBLOCK_MIN_OUTPUTS = 512 * 512
