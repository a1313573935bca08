"""Input scans that allocate nothing (np.isfinite(X).all() would build a temporary of X's size)."""

import math

from fastbp._kernels.jit import njit


@njit
def first_nonfinite(X):
    """Flat index of the first NaN or infinity in the C-contiguous array X, or -1."""
    flat = X.reshape(X.size)
    for k in range(flat.size):
        v = flat[k]
        if math.isnan(v) or math.isinf(v):
            return k
    return -1
