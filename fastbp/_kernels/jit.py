"""The one place kernels get their Numba options, so fastmath and caching follow fastbp.config."""

import functools
import math

import numba

from fastbp import config
from fastbp._kernels import cache

cache.install()  # before any kernel is decorated: see cache.py

# error_model="numpy" drops the divide-by-zero branch so divisions vectorize (NUMBA_NOTES.md).
njit = functools.partial(
    numba.njit, cache=config.CACHE, fastmath=config.FASTMATH, error_model="numpy", nogil=True
)


@njit
def is_finite(x):
    """Whether the scalar x is finite. Not np.isfinite: with the full fast-math flag set above,
    LLVM folded np.isfinite(s) to True for an accumulated float64 s (measured with numba 0.68.1),
    while math.isnan / math.isinf kept their meaning. tests/test_kernels.py guards this."""
    return not (math.isnan(x) or math.isinf(x))
