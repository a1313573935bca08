"""The kernels' GEMMs (fastbp._kernels.cpu.blas): NumPy's OpenBLAS called from compiled code, or
np.dot where that library is absent, against NumPy's own products."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastbp._kernels.cpu import blas
from fastbp._kernels.jit import njit

# Widths 1 and 2..THIN (7) take blas.py's loops; 8 and 9 the BLAS, as does the last nn product (n * k
# over the loops' scratch).
SHAPES = [
    (1, 1, 1),
    (1, 3, 2),
    (5, 1, 7),
    (7, 4, 1),
    (16, 33, 9),
    (64, 130, 70),
    (203, 100, 5),
    (9, 37, 6),
    (12, 20, 8),
    (6, 5, 3),
    (11, 300, 7),
]


def operands(m, k, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", SHAPES)
def test_each_product_matches_numpy(dtype, m, k, n):
    A, B = operands(m, k, n, dtype)
    want = A.astype(np.float64) @ B.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for name, args in (
        ("nn", (A, B)),
        ("tn", (np.ascontiguousarray(A.T), B)),
        ("nt", (A, np.ascontiguousarray(B.T))),
    ):
        C = np.full((m, n), np.nan, dtype=dtype)  # every element must be written
        getattr(blas, f"gemm_{name}")(*args, C)
        assert C.dtype == dtype
        np.testing.assert_allclose(C, want, rtol=tol, atol=tol * k, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", SHAPES)
def test_the_update_adds_alpha_times_the_product(dtype, m, k, n):
    """gemm_tn_update: C += alpha * A.T @ B (plain SGD's W -= lr * A_prev.T @ delta)."""
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(m, n)).astype(dtype)
    C0 = rng.normal(size=(k, n)).astype(dtype)
    C = C0.copy()
    blas.gemm_tn_update(A, B, C, -0.25)
    want = C0.astype(np.float64) - 0.25 * (A.astype(np.float64).T @ B.astype(np.float64))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert C.dtype == dtype
    np.testing.assert_allclose(C, want, rtol=tol, atol=tol * m)


def test_accumulates_where_numpys_openblas_is_bound():
    """The fold of SGD into the GEMM is offered exactly where the BLAS can add into C."""
    assert blas.accumulates() == (not blas.backend().startswith("np.dot (Numba"))


@pytest.mark.parametrize("name", ["nn", "tn", "nt"])
def test_an_empty_inner_dimension_gives_zeros(name):
    A, B = np.zeros((3, 0), np.float32), np.zeros((0, 2), np.float32)
    args = {"nn": (A, B), "tn": (np.ascontiguousarray(A.T), B), "nt": (A, np.ascontiguousarray(B.T))}
    C = np.full((3, 2), np.nan, np.float32)
    getattr(blas, f"gemm_{name}")(*args[name], C)
    np.testing.assert_array_equal(C, 0)


@njit
def _through_strided_views(A, B, C, C_update):
    # Every other column or row: "A"-layout views whose rows are not back to back.
    blas.gemm_nn(A[:, ::2], B[::2, :], C[0])
    blas.gemm_tn(A.T[::2, :], B[::2, :], C[1])
    blas.gemm_nt(A[:, ::2], B.T[:, ::2], C[2])
    blas.gemm_tn_update(A.T[::2, :], B[::2, :], C_update[:, ::2], -0.5)


@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views_with_gaps_take_the_loop_path(dtype):
    A, B = operands(6, 10, 4, dtype)
    want = A[:, ::2].astype(np.float64) @ B[::2, :].astype(np.float64)
    C = np.full((3, 6, 4), np.nan, dtype=dtype)  # beta 0: C's old values must not be read
    rng = np.random.default_rng(2)
    C_update = rng.normal(size=(6, 8)).astype(dtype)
    before = C_update.copy()
    _through_strided_views(A, B, C, C_update)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for product in C:
        np.testing.assert_allclose(product, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(C_update[:, ::2], before[:, ::2] - 0.5 * want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(C_update[:, 1::2], before[:, 1::2])


def test_numpys_openblas_is_used_where_numpy_bundles_it():
    """With NumPy's PyPI wheel (it bundles OpenBLAS with the scipy_cblas_?gemm64_ symbols) the
    kernels must take the fast path, unless FASTBP_BLAS=numba asks otherwise."""
    bundled = blas._numpy_openblas() is not None
    forced = os.environ.get("FASTBP_BLAS") == "numba"
    if bundled and not forced:
        assert blas.backend().startswith("numpy's OpenBLAS (libscipy_openblas64_")
    else:
        assert blas.backend().startswith("np.dot")


def test_forcing_numbas_blas_gives_the_same_training():
    """FASTBP_BLAS=numba binds the GEMMs to np.dot: the same fit to rounding, and the backend says
    so. (Numba's cache is keyed on the source, not on this choice: the compiled code calls the
    registered symbol either way, so both runs share it safely.)"""
    code = (
        "import numpy as np, fastbp as fb\n"
        "from fastbp._kernels.cpu import blas\n"
        "rng = np.random.default_rng(0)\n"
        "X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)\n"
        "net = fb.Sequential(fb.Dense(5, 8), fb.Tanh(), fb.Dense(8, 3), loss='cross_entropy',"
        " dtype=np.float64, seed=0)\n"
        "net.fit(X, y, epochs=3, batch_size=8, verbose=0, seed=0)\n"
        "print(blas.backend()); print(' '.join(repr(float(v)) for v in net.params))\n"
    )
    runs = {}
    for choice in ("numpy", "numba"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "FASTBP_BLAS": choice},
        )
        assert result.returncode == 0, result.stderr[-2000:]
        backend, values = result.stdout.strip().split("\n")
        runs[choice] = (backend, np.array([float(v) for v in values.split()]))
    assert runs["numba"][0].startswith("np.dot")
    np.testing.assert_allclose(runs["numba"][1], runs["numpy"][1], rtol=1e-10, atol=1e-12)


@njit
def _products_through(fns, A, B, At, Bt, products):
    """The three products as the layer passes call them: through the entries' addresses."""
    blas.gemm_nn_at(fns[0], A, B, products[0])
    blas.gemm_tn_at(fns[1], At, B, products[1])
    blas.gemm_nt_at(fns[2], A, Bt, products[2])


def _entries_for(m, k, n, dtype):
    """The entries of the paths an (m, k) x (k, n) product takes as nn, tn and nt (blas.*_path)."""
    entries = (
        blas.NN_ENTRIES[blas.nn_path(n, k)],
        blas.TN_ENTRIES[blas.tn_path(m, n)],
        blas.NT_ENTRIES[blas.nt_path(k)],
    )
    return np.array([blas.entry_address(entry, dtype) for entry in entries], dtype=np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", SHAPES + [(0, 3, 2), (4, 0, 3), (4, 3, 0)])
def test_products_through_their_entries_equal_the_direct_calls(dtype, m, k, n):
    """steps.py calls each product through the entry of its path, whose address the plan holds
    (blas.layer_addresses): the direct call's result, on every path (the BLAS, the thin loops, a
    width of 1; an empty dimension: C = 0), up to the order in which fast-math sums a dot product
    (LLVM vectorizes the width-1 loop differently in the two compilations: 1 ulp apart)."""
    eps = float(np.finfo(dtype).eps)
    A, B = operands(m, k, n, dtype)
    At, Bt = np.ascontiguousarray(A.T), np.ascontiguousarray(B.T)
    fns = _entries_for(m, k, n, dtype)
    products = np.full((3, m, n), np.nan, dtype=dtype)
    _products_through(fns, A, B, At, Bt, products)
    directs = (blas.gemm_nn, blas.gemm_tn, blas.gemm_nt)
    for C, direct, args in zip(products, directs, ((A, B), (At, B), (A, Bt))):
        want = np.full((m, n), np.nan, dtype=dtype)
        direct(*args, want)
        np.testing.assert_allclose(C, want, rtol=4 * eps, atol=4 * eps * k)


def test_a_strided_operand_takes_the_direct_product():
    """An operand typed other than C-ordered cannot go over as a bare pointer: the call compiles
    the product itself into the caller, with the same result."""
    A, B = operands(6, 10, 4, np.float64)
    wide = np.zeros((6, 20))
    wide[:, ::2] = A
    fns = _entries_for(6, 10, 4, np.float64)
    products = np.full((3, 6, 4), np.nan)
    At, Bt = np.ascontiguousarray(A.T), np.ascontiguousarray(B.T)
    _products_through(fns, wide[:, ::2], B, At, Bt, products)
    for C in products:
        np.testing.assert_allclose(C, A @ B, rtol=1e-12)
