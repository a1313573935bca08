"""One knob for every thread pool fastbp uses: Numba's and the BLAS libraries'.

The kernels' GEMMs call numpy's OpenBLAS (fastbp._kernels.cpu.blas); Numba's np.dot, their
fallback, calls scipy's, a second copy with its own pool: both are limited (through
threadpoolctl). fastbp's kernels run no prange region inside a training step (the GEMMs are where
the parallel work is), which keeps clear of the OpenMP-after-BLAS contention measured in
shared/NUMBA_NOTES.md and keeps fork() safe. The one exception to "the BLAS does the parallel work"
is batch 1, which calls no BLAS: with two threads or more its larger networks train on two workers,
the calling thread and a plain Python thread that lives for one run of steps
(fastbp/_kernels/cpu/online_pair.py), so fork() stays safe there too. That partner needs the
second core from its first sample, so a fit on two workers evaluates its validation data on one
OpenBLAS thread (fastbp._kernels.cpu.blas.one_thread: a woken OpenBLAS worker spins on a core for
a while after each call); set_num_threads called during that evaluation is undone when it ends.
"""

from __future__ import annotations

import numba

from fastbp import config

_blas_limiter = None


def _load_blas() -> None:
    # Numba loads scipy's BLAS when a kernel using np.dot first compiles or loads from the cache;
    # importing it here lets threadpoolctl see (and limit) it from the start.
    import scipy.linalg.cython_blas  # noqa: F401


def set_num_threads(n: int) -> None:
    """Use n threads for fastbp's kernels and for BLAS (both OpenBLAS copies)."""
    global _blas_limiter
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be a positive int, got {n!r}")
    ceiling = numba.config.NUMBA_NUM_THREADS
    if n > ceiling:
        raise ValueError(
            f"{n} threads asked for, but Numba was started with at most {ceiling} "
            f"(set NUMBA_NUM_THREADS or FASTBP_NUM_THREADS before importing fastbp)"
        )
    _load_blas()
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(n)
    _blas_limiter = threadpool_limits(limits=n, user_api="blas")


def get_num_threads() -> int:
    """Threads fastbp's kernels use (BLAS is kept to the same number by set_num_threads)."""
    return numba.get_num_threads()


def blas_threads() -> list[dict]:
    """What threadpoolctl sees of the BLAS libraries in this process (for checks and reports)."""
    _load_blas()
    from threadpoolctl import threadpool_info

    return [info for info in threadpool_info() if info.get("user_api") == "blas"]


def apply_environment() -> None:
    """Honour FASTBP_NUM_THREADS at import."""
    if config.NUM_THREADS is not None:
        set_num_threads(min(config.NUM_THREADS, numba.config.NUMBA_NUM_THREADS))
