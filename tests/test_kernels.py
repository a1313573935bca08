"""Kernel-level properties that the network tests would not single out."""

import numpy as np
import pytest

from fastbp._kernels.cpu.online import (
    accumulate_rows,
    delta_and_gradient_rows,
    delta_and_update_rows,
    update_and_accumulate_rows,
)
from fastbp._kernels.cpu.views import INDEX_SCRATCH, index_scratch, raw_view
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


# --- online.py: the batch-1 sweeps over W -----------------------------------------------------------

# Widths around the four-row blocks (0-3 rows left over) and across the index buffer's chunks.
ONLINE_WIDTHS = [1, 3, 4, 5, 11, INDEX_SCRATCH + 6]


def _sparse(rng, n, density):
    values = rng.normal(size=n)
    values[rng.uniform(size=n) >= density] = 0.0
    return values


@njit
def _index_scratch_size_and_writes():
    rows = index_scratch()
    for i in range(rows.shape[0]):
        rows[i] = 3 * i
    return rows.shape[0], rows[rows.shape[0] - 1]


def test_index_scratch_is_a_writable_buffer_of_its_size():
    assert _index_scratch_size_and_writes() == (INDEX_SCRATCH, 3 * (INDEX_SCRATCH - 1))


@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("n_in", ONLINE_WIDTHS)
def test_accumulate_rows_is_a_at_w(n_in, density):
    rng = np.random.default_rng(n_in)
    a, W, z0 = _sparse(rng, n_in, density), rng.normal(size=(n_in, 7)), rng.normal(size=7)
    z = z0.copy()
    accumulate_rows(a, W, z)
    np.testing.assert_allclose(z, z0 + a @ W, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("n_in", ONLINE_WIDTHS)
def test_update_and_accumulate_rows_updates_w_then_accumulates(n_in, density):
    """u and a have different zero patterns: a row is visited when either is nonzero."""
    rng = np.random.default_rng(100 + n_in)
    u, a = _sparse(rng, n_in, density), _sparse(rng, n_in, density)
    W0, d, z0 = rng.normal(size=(n_in, 9)), rng.normal(size=9), rng.normal(size=9)
    W, z = W0.copy(), z0.copy()
    update_and_accumulate_rows(W, d, -0.1, u, a, z)
    want_W = W0 - 0.1 * np.outer(u, d)
    np.testing.assert_allclose(W, want_W, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(z, z0 + a @ want_W, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_backward_sweeps_pass_back_the_delta_of_w_before_its_update(density):
    rng = np.random.default_rng(7)
    a = np.abs(_sparse(rng, 13, density))  # a ReLU output: zeros among the rows
    W0, d = rng.normal(size=(13, 6)), rng.normal(size=6)
    W, g_prev = W0.copy(), np.full(13, np.nan)
    delta_and_update_rows(W, d, -0.1, a, g_prev)
    np.testing.assert_allclose(g_prev, W0 @ d, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(W, W0 - 0.1 * np.outer(a, d), rtol=1e-12, atol=1e-12)
    dW, g_prev = np.full_like(W0, np.nan), np.full(13, np.nan)
    delta_and_gradient_rows(W0, d, a, g_prev, dW)
    np.testing.assert_allclose(g_prev, W0 @ d, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(dW, np.outer(a, d))
