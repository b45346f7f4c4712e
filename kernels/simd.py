"""Explicit SIMD: 64-byte vectors kept in registers, for the sparse kernels (sparse.py), the
float32 softmax (softmax_loss.py), scikit-learn's L2 term (sk_solvers.py) and dense -> CSR.

A numba loop that adds v * W[j, :] into an output row keeps the row in memory:
every nonzero waits on the previous one's stores, and runtime alias checks sit in
the loop. Here a Vec value is an LLVM vector (<16 x float>, <8 x double>) that numba
keeps in a register, and the loads, stores and fused multiply-adds are LLVM's own
instructions (llvm.masked.load/store, llvm.fma), emitted through
numba.extending.intrinsic. LLVM splits the 64-byte vectors on machines without
AVX-512 (two AVX2 registers, four SSE ones): the code stays portable.

Every load and store is masked with a lane count n (lanes >= n are neither read
nor written, so a row's tail needs no padding and nothing past an array is
touched). Indices are flat element indices into a C-contiguous array; like every
kernel here nothing is bounds-checked: callers keep start + n within the array.

    lanes(a)                     lanes per vector of a's dtype: 16 for float32, 8 for float64
    block_lanes(n, c0, L)        the lanes in use of the 4 vectors of L lanes that start at
                                 c0 of a row of n entries (each 0..L)
    vload(a, start, n)           a.flat[start:start + n] as a vector, zeros in the other lanes
    vstore(a, start, v, n)       the first n lanes of v into a.flat[start:start + n]
    vzero(a)                     a vector of zeros of a's dtype
    vfma(s, v, acc)              acc + s * v, one rounding (llvm.fma); s a scalar (broadcast) or a vector
    vadd(u, v)                   u + v
    vmul(s, v)                   s * v, the scalar broadcast
    vsum(v)                      the sum of v's lanes, added pairwise in a fixed order
    prefetch(a, start)           a hint: bring the line of a.flat[start] into cache
    vload_fill(a, start, n, f)   vload, with f (a scalar) in the lanes past n
    vmax_lanes(v)                the largest lane (with NaN lanes: some lane, NaN or not,
                                 depending on where they lie)
    vsubs(v, s)                  v - s, the scalar broadcast
    vadd_lane(v, k, s)           v with s added to lane k alone (k an integer)
    vexp(v)                      exp of each lane, float32 only: Cephes' expf (range reduction
                                 by ln 2 in two parts, a degree-7 polynomial, 2^n put into the
                                 exponent bits), within 2 ulp of the correctly rounded value;
                                 lanes below -87.34 give 0 (a float32 subnormal or 0), -inf 0,
                                 NaN NaN; lanes above 88 are taken as 88 (meant for x - max <= 0)
    count_nonzero(a, start, n)   how many of a.flat[start:start + n] are not 0 (n <= lanes)
    store_nonzero(vals, cols, q, a, start, n, j0)
                                 those entries packed into vals[q:q + k] and their numbers
                                 j0 + lane into cols[q:q + k] (int32), in lane order; returns k
                                 (packed in a register by llvm.experimental.vector.compress,
                                 then a masked store: nothing past q + k is written)
"""
import numba
import numpy as np
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model, overload

VECTOR_BYTES = 64


def check_llvm(version, numba_version):
    """ImportError unless numba's LLVM has what these intrinsics are written for: opaque
    pointers (the ".p0" in their names) and llvm.experimental.vector.compress, LLVM 20 and
    later (numba 0.62 and later). With numba 0.61 (LLVM 15) LLVM rejected the first kernel
    that used a vector: "masked_load: return must match pointer type"."""
    if tuple(version) < (20,):
        raise ImportError(f"fastbp needs numba >= 0.62 (LLVM 20 or later); this numba {numba_version} is "
                          f"built on LLVM {'.'.join(map(str, version))}: pip install --upgrade numba")


check_llvm(llvm_version_info, numba.__version__)


class Vec(types.Type):
    """A register-sized vector of `lanes` floats of `dtype` (a numba float type)."""

    def __init__(self, dtype, lanes):
        self.dtype, self.lanes = dtype, lanes
        super().__init__(name=f"Vec({dtype} x {lanes})")


@register_model(Vec)
class VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _vec_of(dtype):
    return Vec(dtype, VECTOR_BYTES // (dtype.bitwidth // 8))


def _llvm_name(vec):
    return f"v{vec.lanes}f{vec.dtype.bitwidth}"


def _splat(builder, value, lanes):
    vty = ir.VectorType(value.type, lanes)
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _mask(builder, lanes, n):
    # <lanes x i1>: lane k is on when k < n (n an i64), built as the integer 2^min(n, lanes) - 1
    # and bitcast: one scalar shift that LLVM moves into a mask register (a vector compare of
    # lane numbers instead cost two compares and a merge per vector per nonzero)
    i64 = ir.IntType(64)
    full = ir.Constant(i64, lanes)
    k = builder.select(builder.icmp_signed("<", n, full), n, full)
    k = builder.select(builder.icmp_signed("<", k, ir.Constant(i64, 0)), ir.Constant(i64, 0), k)
    bits = builder.sub(builder.shl(ir.Constant(i64, 1), k), ir.Constant(i64, 1))
    return builder.bitcast(builder.trunc(bits, ir.IntType(lanes)), ir.VectorType(ir.IntType(1), lanes))


def _halving(builder, x, lanes, combine):
    # lanes -> 1: the low half combined with the high half, lane by lane, until one is left
    n = lanes
    while n > 1:
        n //= 2
        lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n))))
        hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n, 2 * n))))
        x = combine(lo, hi)
    return builder.extract_element(x, ir.Constant(ir.IntType(32), 0))


def _masked_load(context, builder, arrty, arr, start, startty, n, nty, fill=None):
    # a.flat[start:start + n] as a vector, the other lanes fill (a vector; zeros if None)
    vec = _vec_of(arrty.dtype)
    vty = context.get_value_type(vec)
    ptr = _element_pointer(context, builder, arrty, arr, start, startty)
    mask = _mask(builder, vec.lanes, context.cast(builder, n, nty, types.int64))
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [ptr.type, ir.IntType(32), mask.type, vty]),
                                        f"llvm.masked.load.{_llvm_name(vec)}.p0")
    align = ir.Constant(ir.IntType(32), vec.dtype.bitwidth // 8)
    return builder.call(fn, [ptr, align, mask, ir.Constant(vty, None) if fill is None else fill])


def _element_pointer(context, builder, arrty, arr, start, startty):
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.gep(ary.data, [context.cast(builder, start, startty, types.int64)])


def _check_array(a):
    if not (isinstance(a, types.Array) and a.layout == "C" and isinstance(a.dtype, types.Float)):
        raise TypeError(f"simd: a C-contiguous float array is needed, got {a}")


def lanes(a):
    """Lanes per vector (elements in 64 bytes, a cache line) of an array's (or a dtype's) type."""
    return VECTOR_BYTES // (a.dtype if isinstance(a, np.ndarray) else np.dtype(a)).itemsize


@overload(lanes)
def _lanes_for(a):
    n = VECTOR_BYTES // (a.dtype.bitwidth // 8)  # a compile-time constant inside a kernel
    return lambda a: n


@njit(inline="always")
def block_lanes(n, c0, L):
    k = n - c0
    return min(k, L), max(min(k - L, L), 0), max(min(k - 2 * L, L), 0), max(min(k - 3 * L, L), 0)


@intrinsic
def vload(typingctx, a, start, n):
    _check_array(a)
    vec = _vec_of(a.dtype)

    def codegen(context, builder, sig, args):
        return _masked_load(context, builder, sig.args[0], args[0], args[1], sig.args[1], args[2], sig.args[2])

    return vec(a, start, n), codegen


@intrinsic
def vstore(typingctx, a, start, v, n):
    _check_array(a)
    if not (isinstance(v, Vec) and v.dtype == a.dtype):
        raise TypeError(f"vstore: a vector of {a.dtype} is needed, got {v}")

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        vty = context.get_value_type(v)
        mask = _mask(builder, v.lanes, context.cast(builder, args[3], sig.args[3], types.int64))
        fnty = ir.FunctionType(ir.VoidType(), [vty, ptr.type, ir.IntType(32), mask.type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.store.{_llvm_name(v)}.p0")
        builder.call(fn, [args[2], ptr, ir.Constant(ir.IntType(32), v.dtype.bitwidth // 8), mask])
        return context.get_dummy_value()

    return types.none(a, start, v, n), codegen


@intrinsic
def vzero(typingctx, a):
    _check_array(a)
    vec = _vec_of(a.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vec), None)

    return vec(a), codegen


def _scalar_as(context, builder, value, fromty, vec):
    return _splat(builder, context.cast(builder, value, fromty, vec.dtype), vec.lanes)


@intrinsic
def vfma(typingctx, s, v, acc):
    if not (isinstance(v, Vec) and acc == v and (s == v or isinstance(s, (types.Float, types.Integer)))):
        raise TypeError(f"vfma: (scalar or vector, vector, vector of the same type) needed, got ({s}, {v}, {acc})")

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(v)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                            f"llvm.fma.{_llvm_name(v)}")
        first = args[0] if s == v else _scalar_as(context, builder, args[0], sig.args[0], v)
        return builder.call(fn, [first, args[1], args[2]])

    return v(s, v, acc), codegen


@intrinsic
def vadd(typingctx, u, v):
    if not (isinstance(u, Vec) and u == v):
        raise TypeError(f"vadd: two vectors of one type needed, got ({u}, {v})")

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return v(u, v), codegen


@intrinsic
def vmul(typingctx, s, v):
    if not (isinstance(v, Vec) and isinstance(s, (types.Float, types.Integer))):
        raise TypeError(f"vmul: (scalar, vector) needed, got ({s}, {v})")

    def codegen(context, builder, sig, args):
        return builder.fmul(_scalar_as(context, builder, args[0], sig.args[0], v), args[1])

    return v(s, v), codegen


@intrinsic
def vsum(typingctx, v):
    if not isinstance(v, Vec):
        raise TypeError(f"vsum: a vector is needed, got {v}")

    def codegen(context, builder, sig, args):
        # the same order on every machine (llvm.vector.reduce.fadd without reassoc adds the
        # lanes one after another instead)
        return _halving(builder, args[0], v.lanes, builder.fadd)

    return v.dtype(v), codegen


@intrinsic
def prefetch(typingctx, a, start):
    """Asks for the cache line holding a.flat[start] ahead of its use (llvm.prefetch: read,
    keep in all levels); a hint, never a fault, so start may run past the array."""
    if not (isinstance(a, types.Array) and a.layout == "C"):
        raise TypeError(f"prefetch: a C-contiguous array is needed, got {a}")

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(a, start), codegen


def _nonzero_lanes(context, builder, arrty, arr, start, startty, n, nty):
    # (the vector a.flat[start:start + n], zeros past n; <lanes x i1>: which of them are not 0)
    v = _masked_load(context, builder, arrty, arr, start, startty, n, nty)
    return v, builder.fcmp_unordered("!=", v, ir.Constant(v.type, None))  # NaN counts as not 0


def _popcount(builder, bits, lanes):
    word = builder.bitcast(bits, ir.IntType(lanes))
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(word.type, [word.type]), f"llvm.ctpop.i{lanes}")
    return builder.zext(builder.call(fn, [word]), ir.IntType(64))


@intrinsic
def count_nonzero(typingctx, a, start, n):
    _check_array(a)

    def codegen(context, builder, sig, args):
        _, nonzero = _nonzero_lanes(context, builder, sig.args[0], args[0], args[1], sig.args[1], args[2], sig.args[2])
        return _popcount(builder, nonzero, _vec_of(a.dtype).lanes)

    return types.int64(a, start, n), codegen


@intrinsic
def store_nonzero(typingctx, vals, cols, q, a, start, n, j0):
    _check_array(a)
    if not (isinstance(vals, types.Array) and vals.layout == "C" and vals.dtype == a.dtype):
        raise TypeError(f"store_nonzero: vals must be a C-contiguous array of {a.dtype}, got {vals}")
    if not (isinstance(cols, types.Array) and cols.layout == "C" and cols.dtype == types.int32):
        raise TypeError(f"store_nonzero: cols must be a C-contiguous int32 array, got {cols}")
    lanes = _vec_of(a.dtype).lanes

    def codegen(context, builder, sig, args):
        v, nonzero = _nonzero_lanes(context, builder, sig.args[3], args[3], args[4], sig.args[4], args[5], sig.args[5])
        i32 = ir.IntType(32)
        first = builder.trunc(context.cast(builder, args[6], sig.args[6], types.int64), i32)
        numbers = builder.add(_splat(builder, first, lanes), ir.Constant(ir.VectorType(i32, lanes), list(range(lanes))))
        k = _popcount(builder, nonzero, lanes)
        first_k = _mask(builder, lanes, k)
        stores = ((sig.args[0], args[0], v, _llvm_name(_vec_of(a.dtype)), a.dtype.bitwidth // 8),
                  (sig.args[1], args[1], numbers, f"v{lanes}i32", 4))
        for arrty, arr, value, suffix, align in stores:
            # packed in a register, then stored: llvm.masked.compressstore is one instruction
            # on AVX-512 that AMD Zen 4 runs in microcode (the 24,000 MNIST images took 48 ms
            # that way there, 4 ms this way)
            compress = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(value.type, [value.type, nonzero.type, value.type]),
                f"llvm.experimental.vector.compress.{suffix}")
            packed = builder.call(compress, [value, nonzero, ir.Constant(value.type, ir.Undefined)])
            ptr = _element_pointer(context, builder, arrty, arr, args[2], sig.args[2])
            store = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [value.type, ptr.type, ir.IntType(32), first_k.type]),
                f"llvm.masked.store.{suffix}.p0")
            builder.call(store, [packed, ptr, ir.Constant(ir.IntType(32), align), first_k])
        return k

    return types.int64(vals, cols, q, a, start, n, j0), codegen


@intrinsic
def vload_fill(typingctx, a, start, n, fill):
    _check_array(a)
    vec = _vec_of(a.dtype)

    def codegen(context, builder, sig, args):
        return _masked_load(context, builder, sig.args[0], args[0], args[1], sig.args[1], args[2], sig.args[2],
                            _scalar_as(context, builder, args[3], sig.args[3], vec))

    return vec(a, start, n, fill), codegen


@intrinsic
def vmax_lanes(typingctx, v):
    if not isinstance(v, Vec):
        raise TypeError(f"vmax_lanes: a vector is needed, got {v}")

    def codegen(context, builder, sig, args):
        # a > b ? a : b (one vmaxps each on x86; llvm's NaN-aware maxnum reduction cost
        # several times more)
        return _halving(builder, args[0], v.lanes, lambda a, b: builder.select(builder.fcmp_ordered(">", a, b), a, b))

    return v.dtype(v), codegen


@intrinsic
def vsubs(typingctx, v, s):
    if not (isinstance(v, Vec) and isinstance(s, (types.Float, types.Integer))):
        raise TypeError(f"vsubs: (vector, scalar) needed, got ({v}, {s})")

    def codegen(context, builder, sig, args):
        return builder.fsub(args[0], _scalar_as(context, builder, args[1], sig.args[1], v))

    return v(v, s), codegen


# Cephes expf: ln 2 = C1 + C2 with C1 exact in few bits, so n·C1 is exact; exp(r) for
# |r| <= ln2/2 as 1 + r + r²·P(r)
_EXP_LOG2E, _EXP_C1, _EXP_C2 = 1.44269504088896341, 0.693359375, -2.12194440e-4
_EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
_EXP_LOW, _EXP_HIGH = -87.33654, 88.0  # 2^n stays a normal float32 in between


@intrinsic
def vexp(typingctx, v):
    if not (isinstance(v, Vec) and v.dtype == types.float32):
        raise TypeError(f"vexp: a vector of float32 is needed, got {v}")

    def codegen(context, builder, sig, args):
        x = args[0]
        vty = x.type
        lanes = v.lanes

        def const(c):
            return ir.Constant(vty, [ir.Constant(ir.FloatType(), c)] * lanes)

        def call(name, *xs):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * len(xs)),
                                                f"llvm.{name}.v{lanes}f32")
            return builder.call(fn, list(xs))

        xc = builder.select(builder.fcmp_ordered(">", x, const(_EXP_LOW)), x, const(_EXP_LOW))  # NaN -> LOW
        xc = builder.select(builder.fcmp_ordered("<", xc, const(_EXP_HIGH)), xc, const(_EXP_HIGH))
        n = call("roundeven", builder.fmul(xc, const(_EXP_LOG2E)))
        r = call("fma", builder.fneg(n), const(_EXP_C1), xc)
        r = call("fma", builder.fneg(n), const(_EXP_C2), r)
        y = const(_EXP_P[0])
        for c in _EXP_P[1:]:
            y = call("fma", y, r, const(c))
        y = call("fma", y, builder.fmul(r, r), builder.fadd(r, const(1.0)))
        i32 = ir.VectorType(ir.IntType(32), lanes)
        bits = builder.shl(builder.add(builder.fptosi(n, i32), ir.Constant(i32, [ir.Constant(ir.IntType(32), 127)] * lanes)),
                           ir.Constant(i32, [ir.Constant(ir.IntType(32), 23)] * lanes))
        e = builder.fmul(y, builder.bitcast(bits, vty))
        e = builder.select(builder.fcmp_ordered("<", x, const(_EXP_LOW)), const(0.0), e)
        return builder.select(builder.fcmp_unordered("uno", x, x), x, e)

    return v(v), codegen


@intrinsic
def vadd_lane(typingctx, v, k, s):
    if not (isinstance(v, Vec) and isinstance(k, types.Integer) and isinstance(s, (types.Float, types.Integer))):
        raise TypeError(f"vadd_lane: (vector, integer, scalar) needed, got ({v}, {k}, {s})")

    def codegen(context, builder, sig, args):
        # a compare of the lane numbers with k picks the lane: no store and reload of v
        i32 = ir.IntType(32)
        lane = builder.trunc(context.cast(builder, args[1], sig.args[1], types.int64), i32)
        iota = ir.Constant(ir.VectorType(i32, v.lanes), list(range(v.lanes)))
        hit = builder.icmp_signed("==", iota, _splat(builder, lane, v.lanes))
        add = _scalar_as(context, builder, args[2], sig.args[2], v)
        return builder.fadd(args[0], builder.select(hit, add, ir.Constant(args[0].type, None)))

    return v(v, k, s), codegen
