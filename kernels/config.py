"""Compile settings every kernel shares, in one place.

fastmath: `reassoc` lets LLVM vectorise reductions (row sums, dot products) and
`contract` allows FMA; `nnan`/`ninf` are left out on purpose because softmax and
the loss rely on IEEE infinities (exp(-inf) == 0, max over -inf) and `afn` is
left out so exp/log keep full accuracy (gradient checks go down to 1e-7).

Numba's on-disk cache keys on each kernel's own source file only: after editing
a module that other kernels call into (matmul.py, relu.py, ...), run
`make clean-cache` or those callers keep their old machine code.
"""

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
CACHE = True
