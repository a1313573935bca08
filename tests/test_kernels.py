"""Kernel-level properties that the network tests would not single out."""

import numpy as np
import pytest

from fastbp._kernels.cpu.views import raw_view
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


# --- views.raw_view: the kernels' uncounted views ---------------------------------------------------


@njit
def _raw_views(flat, start, rows, cols):
    matrix = raw_view(flat, start, (rows, cols))
    vector = raw_view(flat, np.int32(start), (rows * cols,))
    return matrix.copy(), vector.copy(), matrix.strides[0], matrix.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_raw_view_is_the_slice_it_stands_for(dtype):
    flat = np.arange(40, dtype=dtype)
    matrix, vector, row_stride, contiguous = _raw_views(flat, 7, 3, 5)
    np.testing.assert_array_equal(matrix, flat[7:22].reshape(3, 5))
    np.testing.assert_array_equal(vector, flat[7:22])
    assert row_stride == 5 * flat.itemsize and contiguous


def test_forward_returns_a_view_that_keeps_the_workspace_alive():
    """The kernels' own views carry no reference count (views.py); the one forward hands to Python
    must, or the output would point into freed memory once the caller drops the workspace."""
    import gc

    import fastbp as fb
    from fastbp._kernels.cpu import steps

    net = fb.Sequential(fb.Dense(3, 4), fb.ReLU(), fb.Dense(4, 2), loss="mse", dtype=np.float64, seed=0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    want = net.predict(X)
    ws = net._workspace_for(5).copy()
    out = steps.forward(net._li, net._lf, net._gu, net.params, ws, X, 5, False, 0, 0)
    del ws
    gc.collect()
    junk = [np.full(ws_size, 7.0) for ws_size in (50, 500, 5000)]  # reuse freed memory if any
    assert out.base is not None
    np.testing.assert_allclose(out, want, rtol=1e-12)
    del junk
