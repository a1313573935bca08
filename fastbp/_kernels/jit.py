"""The one place kernels get their Numba options, so fastmath and caching follow fastbp.config."""

import functools

import numba

from fastbp import config

# error_model="numpy" drops the divide-by-zero branch so divisions vectorize (NUMBA_NOTES.md).
njit = functools.partial(
    numba.njit, cache=config.CACHE, fastmath=config.FASTMATH, error_model="numpy", nogil=True
)
