"""The one place CUDA kernels get their options, launch shape and small shared helpers.

Every kernel runs blocks of TILE x TILE threads: the GEMM tiles need that shape, and the other
phases use the same threads as a flat range, so one launch shape serves a whole training step.
Under the simulator (one Python thread per GPU thread) the tile is 4, which keeps the test shapes
tiny and still crosses tile edges with 3- and 5-wide layers.

fastmath stays off on the GPU: the step is memory-bound, and exact division and square roots keep
the optimizers on torch's numbers.
"""

import functools

from numba import cuda, float64

SIMULATOR = cuda.jit.__module__.startswith("numba.cuda.simulator")

TILE = 4 if SIMULATOR else 16
THREADS = TILE * TILE
BLOCK = (TILE, TILE)

kernel = functools.partial(cuda.jit, fastmath=False)
device = functools.partial(cuda.jit, device=True, fastmath=False)


def like(x, v):
    """v converted to x's type: a float32 value keeps float32 arithmetic (a Python float literal
    would promote it to float64, twice the work and a different rounding from the CPU kernels)."""
    return type(x)(v)


if not SIMULATOR:
    from numba.cuda.extending import overload

    @overload(like)
    def _like_typed(x, v):
        numba_type = x

        def impl(x, v):
            return numba_type(v)

        return impl


@device
def thread_rank():
    """This thread's index within its block, 0 .. THREADS - 1."""
    return cuda.threadIdx.y * TILE + cuda.threadIdx.x


@device
def grid_rank():
    """This thread's index within the grid."""
    return cuda.blockIdx.x * THREADS + cuda.threadIdx.y * TILE + cuda.threadIdx.x


@device
def grid_size():
    return cuda.gridDim.x * THREADS


@device
def grid_sync():
    """Barrier over the whole (cooperative) grid: every phase of a step waits for the one before."""
    cuda.cg.this_grid().sync()


@device
def block_sum(value):
    """Sum of a float64 over the block's threads, returned to every thread (a tree in shared memory:
    no atomics, so the result is the same on every run). Every thread of the block must call it."""
    buf = cuda.shared.array(THREADS, float64)
    tid = thread_rank()
    buf[tid] = value
    cuda.syncthreads()
    half = THREADS // 2
    while half > 0:
        if tid < half:
            buf[tid] += buf[tid + half]
        cuda.syncthreads()
        half //= 2
    total = buf[0]
    cuda.syncthreads()
    return total


@device
def partial_sum(red, off):
    """The sum of the per-block partials red[off : off + gridDim.x], in block order (every thread
    gets the same float64: the same additions in the same order)."""
    total = 0.0
    for b in range(cuda.gridDim.x):
        total += red[off + b]
    return total


def cooperative_blocks(dispatcher, args, wanted: int) -> int:
    """How many blocks a cooperative launch of `dispatcher` on `args` may use: at most `wanted`,
    and no more than can be resident at once (grid.sync() needs every block running). The simulator
    runs one block at a time, so a grid.sync() there is only correct with one block."""
    if SIMULATOR:
        return 1
    compiled = dispatcher.compile(tuple(dispatcher.typeof_pyval(a) for a in args))
    return max(1, min(int(wanted), int(compiled.max_cooperative_grid_blocks(BLOCK))))
