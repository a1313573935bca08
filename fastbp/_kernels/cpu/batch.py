"""Mini-batch gathers: copy the rows a permutation picks into the workspace, for the compiled loops.

Element loops on purpose: a row slice assignment (dst[i, :] = src[r]) or a fancy index (src[index])
compiled to a copy several times slower per batch (bench/bench_penalty_gather.py measures both).

The rows are random, so when X is larger than the caches each row is a wait on memory. gather_rows
asks for the row PREFETCH_AHEAD places ahead while it copies the current one, so several rows are
in flight at once. bench/bench_step_parts.py's "gather" part (one thread, Zen 3): batches of 200
rows from a 45,000 x 100 float32 X (the scikit-learn drop-in's) 1.42-1.60x faster, 64 and 256 rows
of 60,000 x 784 0.93-1.17x over runs (noise-level: the hardware streams such long rows itself).
From an X that fits a core's L2 cache (digits: 345 KB) the prefetches cost up to ~15% (0.4 us a
batch) and bought nothing, so below PREFETCH_MIN_BYTES there are none.
"""

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastbp._kernels.jit import njit

PREFETCH_AHEAD = 4
PREFETCH_MIN_BYTES = 1 << 20
_CACHE_LINE = 64


@intrinsic
def prefetch_row(typingctx, src, row):
    """Ask the CPU to bring row `row` of the 2-D array src into its caches: one prefetch per cache
    line of the row's bytes from its first element. A hint only: nothing is read or written, and
    for rows that are not contiguous it covers other bytes, which costs a little and breaks nothing."""
    sig = types.void(src, row)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        first = cgutils.get_item_pointer(
            context, builder, array_type, array, [args[1], context.get_constant(types.intp, 0)]
        )
        byte = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        base = builder.bitcast(first, byte)
        cols = cgutils.unpack_tuple(builder, array.shape, 2)[1]
        row_bytes = builder.mul(cols, context.get_constant(types.intp, array_type.dtype.bitwidth // 8))
        start, line = context.get_constant(types.intp, 0), context.get_constant(types.intp, _CACHE_LINE)
        read, all_levels, data = ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)
        with cgutils.for_range_slice(builder, start, row_bytes, line) as (offset, _):
            builder.call(prefetch, [builder.gep(base, [offset]), read, all_levels, data])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def gather_rows(src, index, lo, hi, dst):
    """dst[i, :] = src[index[lo + i], :] for i < hi - lo. src (n, cols), dst (>= hi - lo, cols), same
    dtype; writes dst only."""
    cols = src.shape[1]
    n = hi - lo
    ahead = PREFETCH_AHEAD if src.size * src.itemsize >= PREFETCH_MIN_BYTES else 0
    for i in range(min(ahead, n)):
        prefetch_row(src, index[lo + i])
    for i in range(n):
        if i + ahead < n and ahead > 0:
            prefetch_row(src, index[lo + i + ahead])
        source = index[lo + i]
        for j in range(cols):
            dst[i, j] = src[source, j]


@njit
def copy_rows(src, lo, dst):
    """dst[i, :] = src[lo + i, :] for every row of dst. A loop rather than dst[:, :] = src[...]:
    Numba compiles an array-to-array slice assignment with its shape-mismatch error, whose message
    formatting (str/repr of shapes, string joins) cost ~4.5 s of a cold first fit's compile."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = src[lo + i, j]


@njit(inline="always")
def gather_values(src, index, lo, hi, dst):
    """dst[i] = src[index[lo + i]] for i < hi - lo: the 1-D gather, for per-row sample weights."""
    for i in range(hi - lo):
        dst[i] = src[index[lo + i]]


if numba.config.DISABLE_JIT:  # plain Python: the intrinsic cannot run, and a hint changes nothing

    def prefetch_row(src, row):  # noqa: F811
        pass
