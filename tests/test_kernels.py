"""Kernel-level properties that the network tests would not single out."""

import numpy as np
import pytest

from fastbp._kernels.jit import is_finite, njit


@njit
def _accumulate_then_check(x):
    s = 0.0
    for v in x:
        s += float(v) * float(v)
    s = s / 10
    return is_finite(s)


@pytest.mark.parametrize("bad", [np.inf, np.nan, 3e38])
def test_non_finite_detection_survives_fastmath(bad):
    """The training loop stops on a non-finite loss; fast-math must not fold the check away."""
    assert not _accumulate_then_check(np.array([1.0, bad, bad], dtype=np.float32))
    assert _accumulate_then_check(np.array([1.0, 2.0], dtype=np.float32))
