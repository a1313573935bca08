"""Two compiled workers meeting at numbered points, for the two-worker batch-1 loop (online_pair.py).

Each worker publishes how many meetings it has reached in its own counter (a 64-bit word of `flags`,
128 bytes from the other's, so the two never share a cache line or an adjacent-line prefetch) and
waits until the other's counter reaches the same number. The stores release and the loads acquire:
what a worker wrote before arriving is visible to the other once it sees the count. Counters only
grow, so nothing is reset between meetings. Measured on the project's 2-core VM: ~20 ns a meeting
when both workers are running.

A waiting worker spins with the CPU's pause hint, then, after SPINS_BEFORE_YIELD rounds, gives its
core away (sched_yield) each round: with more runnable threads than cores (two fits at once on two
cores) a pure spin would hold the core its peer needs for a whole scheduler slice.

flags[ABORT] != 0 makes every wait return False: the Python side sets it when the other worker
failed, so that no worker waits forever for a peer that will not come.
"""

import platform

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastbp._kernels.jit import njit

STRIDE = 16  # int64 words between the two counters: 128 bytes
ABORT = 2 * STRIDE
FLAG_WORDS = 3 * STRIDE
SPINS_BEFORE_YIELD = 4096
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _word_pointer(context, builder, array_type, array_value, index):
    array = context.make_array(array_type)(context, builder, array_value)
    return cgutils.get_item_pointer(context, builder, array_type, array, [index], wraparound=False)


def _is_int64_vector(flags):
    return isinstance(flags, types.Array) and flags.ndim == 1 and flags.dtype == types.int64


@intrinsic
def load_acquire(typingctx, flags, index):
    """flags[index] (an int64 array), read with acquire ordering."""
    if not _is_int64_vector(flags):
        return None

    def codegen(context, builder, signature, args):
        pointer = _word_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "acquire", 8)

    return types.int64(flags, index), codegen


@intrinsic
def store_release(typingctx, flags, index, value):
    """flags[index] = value (an int64 array), written with release ordering."""
    if not _is_int64_vector(flags):
        return None

    def codegen(context, builder, signature, args):
        pointer = _word_pointer(context, builder, signature.args[0], args[0], args[1])
        word = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(word, pointer, "release", 8)
        return context.get_dummy_value()

    return types.void(flags, index, value), codegen


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 pause; nothing elsewhere): eases the loop's pressure on the core."""

    def codegen(context, builder, signature, args):
        if not _X86:
            return context.get_dummy_value()
        kind = ir.FunctionType(ir.VoidType(), [])
        pause = cgutils.get_or_insert_function(builder.module, kind, "llvm.x86.sse2.pause")
        builder.call(pause, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def yield_core(typingctx):
    """sched_yield(): let another runnable thread have this core."""

    def codegen(context, builder, signature, args):
        kind = ir.FunctionType(ir.IntType(32), [])
        sched_yield = cgutils.get_or_insert_function(builder.module, kind, "sched_yield")
        builder.call(sched_yield, [])
        return context.get_dummy_value()

    return types.void(), codegen


@njit
def meet(flags, worker, count):
    """Worker `worker` (0 or 1) arrives at meeting `count` (1, 2, ...) and waits for the other.
    Returns False, without waiting, once flags[ABORT] is set."""
    store_release(flags, worker * STRIDE, count)
    peer = (1 - worker) * STRIDE
    spins = 0
    while load_acquire(flags, peer) < count:
        if load_acquire(flags, ABORT) != 0:
            return False
        if spins < SPINS_BEFORE_YIELD:
            spins += 1
            spin_pause()
        else:
            yield_core()
    return True


if numba.config.DISABLE_JIT:  # plain Python: the intrinsics cannot run (online_pair is not used then)

    def load_acquire(flags, index):  # noqa: F811
        return int(flags[index])

    def store_release(flags, index, value):  # noqa: F811
        flags[index] = value

    def spin_pause():  # noqa: F811
        pass

    def yield_core():  # noqa: F811
        import os

        os.sched_yield()
