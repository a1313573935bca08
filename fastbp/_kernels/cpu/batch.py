"""Mini-batch gathers: copy the rows a permutation picks into the workspace, for the compiled loops.

Element loops on purpose: a row slice assignment (dst[i, :] = src[r]) or a fancy index (src[index])
compiled to a copy several times slower per batch (bench/bench_penalty_gather.py measures both).
"""

from fastbp._kernels.jit import njit


@njit
def gather_rows(src, index, lo, hi, dst):
    """dst[i, :] = src[index[lo + i], :] for i < hi - lo. src (n, cols), dst (>= hi - lo, cols), same
    dtype; writes dst only."""
    cols = src.shape[1]
    for i in range(hi - lo):
        source = index[lo + i]
        for j in range(cols):
            dst[i, j] = src[source, j]


@njit
def gather_values(src, index, lo, hi, dst):
    """dst[i] = src[index[lo + i]] for i < hi - lo: the 1-D gather, for per-row sample weights."""
    for i in range(hi - lo):
        dst[i] = src[index[lo + i]]
