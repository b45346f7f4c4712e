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
    EPOCH_BLOCK = 8    # the epoch kernel (epoch.py): threads per block
else:
    TILE = 16
    REG = (16, 4, 8)   # 16 x 16 threads, 4 x 4 outputs each: a 64 x 64 block tile, 8 deep
    BLOCK = 256
    ROWS_BLOCK = 256
    EPOCH_BLOCK = 256

# Register-blocked shapes (T, R, BK) that bench/cuda_report.py times side by side with REG in
# its SGEMM table: larger tiles and more outputs a thread (8 x 8: 64 multiply-adds per 16
# shared loads, against 16 per 8 at 4 x 4). The fastest at 4096 on the GPU at hand is the one
# to make REG (docs/cuda.md, Measurements). Tested under the simulator and compiled to PTX like REG.
REG_CANDIDATES = ((16, 4, 8), (16, 8, 8), (8, 8, 8), (16, 8, 16), (16, 4, 16))

# The epoch kernel's sums in this many independent chains a thread (one of epoch.CHAINS:
# 4, 8, 16); bench/cuda_report.py times each on the GPU at hand.
EPOCH_CHAINS = 4
# ... and its forward sums split over up to this many neighbouring lanes where the grid has
# threads to spare (one of epoch.SPLITS; 1: a thread per output). At 784-50-10 on 132 x 256
# threads, 4 lanes a layer-0 sum: 196 terms each, not 784. bench/cuda_report.py times each.
EPOCH_SPLIT = 1
# The epoch kernel's grid: this many blocks per multiprocessor (each grid-wide barrier waits
# for all of them; see epoch.blocks).
EPOCH_BLOCKS_PER_SM = 1
# ... and the most multiply-adds of a forward pass (B · Σ D_l·D_{l+1}) it takes on (epoch.pays).
# On an H100: 784-50-10 at batch 100 (4M) 8.4x faster as one launch than as launches;
# 784-1024-1024-10 at batch 256 (480M) 3x slower. The bound between is not measured finer.
EPOCH_MAX_MACS = 16 * 2 ** 20

# Up to this many classes softmax_ce gives each row to one thread of a single block;
# wider heads get a block per row (softmax_loss.py).
ROW_THREAD_MAX_CLASSES = 32

# The register-blocked gemm pays off only with enough 64 x 64 output tiles to fill
# the GPU; smaller products (all of 784-50-10) use the tiled kernel. On an H100 it ran
# 1.2-1.3x the tiled one from 1024 to 8192 (bench/cuda_report.py; docs/cuda.md).
REGBLOCK_MIN_OUTPUTS = 512 * 512
