"""The one place CUDA kernels get their options, launch shape and small shared helpers.

Every kernel runs blocks of TILE x TILE threads: the GEMM tiles need that shape, and the other
phases use the same threads as a flat range, so one launch shape serves a whole training step.
Under the simulator (one Python thread per GPU thread) the tile is 4, which keeps the test shapes
tiny and still crosses tile edges with 3- and 5-wide layers.

fastmath stays off on the GPU: the step is memory-bound, and exact division and square roots keep
the optimizers on torch's numbers.
"""

import functools

from numba import cuda

SIMULATOR = cuda.jit.__module__.startswith("numba.cuda.simulator")

TILE = 4 if SIMULATOR else 16
THREADS = TILE * TILE
BLOCK = (TILE, TILE)

kernel = functools.partial(cuda.jit, fastmath=False)

# Shared memory: every kernel declares the block's scratch once, on three lines,
#     tile_a = cuda.shared.array(BLOCK, dtype=params.dtype)
#     tile_b = cuda.shared.array(BLOCK, dtype=params.dtype)
#     sums = cuda.shared.array(THREADS, dtype=float64)
# and passes sh = (tile_a, tile_b, sums) down: GEMM panels in tile_a / tile_b, the bias-gradient
# column sums in tile_a, block_sum's tree in sums. A shared array declared inside a device function
# reached from two others is defined twice at link time ("Linking globals named '_cudapy_smem_1':
# symbol multiply defined", NVVM with numba-cuda 0.30.4).
device = functools.partial(cuda.jit, device=True, fastmath=False)


def like(x, v):
    """v converted to x's type: a float32 value keeps float32 arithmetic (a Python float literal
    would promote it to float64, twice the work and a different rounding from the CPU kernels)."""
    return type(x)(v)


def _lock_simulator_shared_arrays() -> None:
    """The simulator gives a block's threads one shared array per source line through an unlocked
    get-or-create, so threads that reach the line together can each get their own array (seen: one
    GEMM row in 15-40 launches came out wrong). Do the same lookup under a lock."""
    import sys
    import threading
    import traceback

    import numpy as np
    from numba.cuda.simulator import kernelapi

    shared = kernelapi.FakeCUDAShared
    if getattr(shared, "_fastbp_locked", False):
        return
    original = shared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    shared.array = array
    shared._fastbp_locked = True


if SIMULATOR:
    _lock_simulator_shared_arrays()
else:
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
def block_sum(value, sh):
    """Sum of a float64 over the block's threads, returned to every thread (a tree in shared memory,
    sh[2]: no atomics, so the result is the same on every run). Every thread of the block must call
    it."""
    buf = sh[2]
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
