"""The one place kernels get their Numba options, so fastmath and caching follow fastbp.config."""

import functools
import math

import numba
import numpy as np

from fastbp import config
from fastbp._kernels import cache

cache.install()  # before any kernel is decorated: see cache.py

# error_model="numpy" drops the divide-by-zero branch so divisions vectorize (NUMBA_NOTES.md).
njit = functools.partial(
    numba.njit, cache=config.CACHE, fastmath=config.FASTMATH, error_model="numpy", nogil=True
)


def inlined_copy(kernel):
    """A copy of the compiled `kernel` that Numba inlines into each caller instead of calling it:
    for an entry point (indirect.py) around a kernel that other kernels call too. Called, the
    kernel is compiled on its own, with every branch of a code it switches on (the elementwise
    losses), then linked into the entry and optimised again there; inlined, its code is compiled
    once, inside the entry, where the code is a constant. Without the JIT, the plain function."""
    return njit(inline="always")(getattr(kernel, "py_func", kernel))


# Flags and counts that kernels pass to other kernels as constants. Numba compiles a callee once per
# constant argument it is given (`f(x, True)` types the flag as Literal[bool](True), a type of its
# own), so a literal True compiled the whole forward pass again beside the copy that Python's calls
# (a plain bool) use. NumPy scalars held in globals type as plain bool / int64.
TRUE, FALSE, ZERO = np.bool_(True), np.bool_(False), np.int64(0)


@njit(inline="always")
def is_finite(x):
    """Whether the scalar x is finite. Not np.isfinite: with the full fast-math flag set above,
    LLVM folded np.isfinite(s) to True for an accumulated float64 s (measured with numba 0.68.1),
    while math.isnan / math.isinf kept their meaning. tests/test_kernels.py guards this."""
    return not (math.isnan(x) or math.isinf(x))
