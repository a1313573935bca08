"""The kernels' GEMMs, through NumPy's own BLAS rather than the one Numba's np.dot calls.

Numba's np.dot inside @njit calls scipy's bundled OpenBLAS. On the 2-core AMD EPYC (Zen 3, AVX2) of
this project, scipy 1.17.1's OpenBLAS 0.3.30 took about twice as long as NumPy 2.4's OpenBLAS 0.3.31
for the thin products of small batches (16 x 784 x 256: 215 vs 113 us, one thread) and the same
time for large ones. So the kernels call NumPy's library directly: its CBLAS ?gemm is registered
with LLVM under a fixed name (FLOAT32_SYMBOL / FLOAT64_SYMBOL) when this module is imported, and
compiled code calls that name. The cached machine code refers to the name, not to an address, so
the compile cache stays valid across processes.

Where NumPy's BLAS is not the OpenBLAS of NumPy's PyPI wheels (another build, or a library
without those symbols), the names are bound to small compiled functions that call np.dot instead:
the kernels work everywhere and take the fast path where it exists. FASTBP_BLAS=numba forces that
path. `backend()` says which is in use.
Everything is called with row-major, C-contiguous operands; alpha 1 and beta 0, except
gemm_tn_update (C += alpha A.T @ B), which plain SGD uses to fold its step into the weight-gradient
product. The np.dot fallback would need a temporary for that, so train_steps asks `accumulates()`
and takes the unfused path where it is False.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import threading

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from fastbp._kernels.cpu import indirect
from fastbp._kernels.cpu.indirect import array_at
from fastbp._kernels.jit import FALSE, TRUE, njit

FLOAT32_SYMBOL = "fastbp_cblas_sgemm"
FLOAT64_SYMBOL = "fastbp_cblas_dgemm"

# CBLAS constants (cblas.h).
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# NumPy >= 2 wheels bundle OpenBLAS built with 64-bit integers and these prefixed names.
_NUMPY_SYMBOLS = {"s": "scipy_cblas_sgemm64_", "d": "scipy_cblas_dgemm64_"}

_backend = None


def _numpy_openblas():
    """ctypes handle of NumPy's bundled OpenBLAS with both ?gemm symbols, or None."""
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(lib, name) for name in _NUMPY_SYMBOLS.values()):
            return lib, path
    return None


def _fallback(dtype):
    """A C-callable ?gemm with the CBLAS signature that calls np.dot: for BLAS builds without
    NumPy's symbols. Handles what the kernels pass: row-major, contiguous, alpha 1, beta 0."""
    scalar = numba.from_dtype(np.dtype(dtype))
    sig = types.void(
        types.int32,
        types.int32,
        types.int32,
        types.int64,
        types.int64,
        types.int64,
        scalar,
        types.CPointer(scalar),
        types.int64,
        types.CPointer(scalar),
        types.int64,
        scalar,
        types.CPointer(scalar),
        types.int64,
    )

    @numba.cfunc(sig, cache=True)
    def gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        A = numba.carray(a, (k, m)).T if trans_a == TRANS else numba.carray(a, (m, k))
        B = numba.carray(b, (n, k)).T if trans_b == TRANS else numba.carray(b, (k, n))
        C = numba.carray(c, (m, n))
        if alpha == 1 and beta == 0:
            np.dot(A, B, C)
        else:  # a temporary: the kernels never ask for this when accumulates() is False
            C[:, :] = alpha * np.dot(A, B) + beta * C

    return gemm


# The flag behind accumulates() (a ctypes int, so a benchmark or a test can switch the fold off).
_accumulates_flag = ctypes.c_int32(0)


_thread_count = None  # (get, set) of NumPy's OpenBLAS thread count, where the kernels call it


def _register() -> str:
    # FASTBP_BLAS=numba forces the np.dot path (for comparisons, or a BLAS that misbehaves).
    global _thread_count
    found = None if os.environ.get("FASTBP_BLAS", "numpy") == "numba" else _numpy_openblas()
    if found is not None:
        lib, path = found
        get, set_ = (getattr(lib, f"scipy_openblas_{verb}_num_threads64_", None) for verb in ("get", "set"))
        if get is not None and set_ is not None:
            get.restype, get.argtypes, set_.restype, set_.argtypes = ctypes.c_int, (), None, (ctypes.c_int,)
            _thread_count = (get, set_)
        for kind, symbol in (("s", FLOAT32_SYMBOL), ("d", FLOAT64_SYMBOL)):
            address = ctypes.cast(getattr(lib, _NUMPY_SYMBOLS[kind]), ctypes.c_void_p).value
            llvm.add_symbol(symbol, address)
        _accumulates_flag.value = 1
        return f"numpy's OpenBLAS ({os.path.basename(path)})"
    # Kept referenced (module global) so the compiled functions outlive this call.
    global _fallbacks
    _fallbacks = (_fallback(np.float32), _fallback(np.float64))
    llvm.add_symbol(FLOAT32_SYMBOL, _fallbacks[0].address)
    llvm.add_symbol(FLOAT64_SYMBOL, _fallbacks[1].address)
    return "np.dot (Numba's BLAS, scipy's OpenBLAS)"


def backend() -> str:
    """Which library the kernels' GEMMs call."""
    return _backend


_one_thread_lock = threading.Lock()
_one_thread_users = 0
_threads_before = 1


@contextlib.contextmanager
def one_thread():
    """NumPy's OpenBLAS on one thread within, so that its calls wake none of its workers: a woken
    worker spins for a while after the call (~0.1 s), on the core that batch 1's partner thread
    (online_pair.py) then needs. OpenBLAS's count is process-wide: while any thread is inside, every
    call in the process runs on one thread; the count is put back when the last one leaves."""
    global _one_thread_users, _threads_before
    if _thread_count is None:
        yield
        return
    get, set_ = _thread_count
    with _one_thread_lock:
        if _one_thread_users == 0:
            _threads_before = get()
            set_(1)
        _one_thread_users += 1
    try:
        yield
    finally:
        with _one_thread_lock:
            _one_thread_users -= 1
            if _one_thread_users == 0:
                set_(_threads_before)


_backend = "np.dot (NUMBA_DISABLE_JIT)" if numba.config.DISABLE_JIT else _register()


@intrinsic
def _cblas_gemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """C (m, n) = alpha op(A) @ op(B) + beta C through the registered symbol (row-major)."""
    dtype = c.dtype
    sig = types.void(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc = args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        real = ir.FloatType() if dtype == types.float32 else ir.DoubleType()
        pointer = real.as_pointer()
        fnty = ir.FunctionType(
            ir.VoidType(),
            [i32, i32, i32, i64, i64, i64, real, pointer, i64, pointer, i64, real, pointer, i64],
        )
        name = FLOAT32_SYMBOL if dtype == types.float32 else FLOAT64_SYMBOL
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        tys = signature.args

        def data(ty, value):
            return context.make_array(ty)(context, builder, value).data

        def int64(ty, value):
            return context.cast(builder, value, ty, types.int64)

        def scalar(ty, value):
            return context.cast(builder, value, ty, dtype)

        builder.call(
            fn,
            [
                ir.Constant(i32, ROW_MAJOR),
                builder.trunc(int64(tys[0], trans_a), i32),
                builder.trunc(int64(tys[1], trans_b), i32),
                int64(tys[2], m),
                int64(tys[3], n),
                int64(tys[4], k),
                scalar(tys[5], alpha),
                data(tys[6], a),
                int64(tys[7], lda),
                data(tys[8], b),
                int64(tys[9], ldb),
                scalar(tys[10], beta),
                data(tys[11], c),
                int64(tys[12], ldc),
            ],
        )
        return context.get_dummy_value()

    return sig, codegen


def _row_major(A):
    """Whether A's rows are contiguous and back to back: always so for C-layout arrays (a
    constant, so the branch that checks it folds away); an "A"-layout view may not be."""
    return A.strides[1] == A.itemsize and A.strides[0] == A.shape[1] * A.itemsize


@overload(_row_major)
def _row_major_compiled(A):
    if A.layout == "C":
        return lambda A: True
    return _row_major


# Products with a dimension of 1 (a single output unit: regression, one-logit classification) run
# as plain loops: OpenBLAS took 4.8-6.8 us for each of the three at 200 rows x 100 inputs, the loops
# 2.0-3.0 us (Zen 3, float32, one thread). Up to THIN outputs (a few classes), the forward product
# and the weight gradient run as loops over a transposed copy in a stack buffer (_thin_nn, _thin_tn):
# the two at 200 x 100 x 5 took 16.0 us against the BLAS's 19.4 in float32 and 22.4 against 41.0 in
# float64 (bench/bench_step_parts.py "thin", bench/runs/2026-11-30c; widths 3-7 gained 1.2-2.9x over
# runs). At width 8 OpenBLAS's kernel won or tied (0.71-1.0x), and delta @ W.T (the inner dimension
# thin) lost to the BLAS at every width tried, so those stay in the BLAS.
THIN = 7
# Elements of the stack buffer the thin loops use (16 KB in float64); wider layers take the BLAS.
SCRATCH = 2048


def _column(M):
    """The single column of an (r, 1) array as a 1-D view."""
    return M[:, 0]


@overload(_column, inline="always")
def _column_compiled(M):
    # A reshape gives a contiguous vector (so the loops below vectorize), but Numba types reshape
    # only for C-layout arrays; an "A"-layout one (a strided view) gets the strided column.
    if M.layout == "C":
        return lambda M: M.reshape(M.shape[0])
    return lambda M: M[:, 0]


@njit(inline="always")
def _dots(A, b, c):
    """c[i] = A[i, :] . b, A (m, k), b and c contiguous vectors."""
    zero = c.dtype.type(0)
    for i in range(A.shape[0]):
        a = A[i]
        s = zero
        for j in range(a.size):
            s += a[j] * b[j]
        c[i] = s


@njit(inline="always")
def _row_sum(A, b, c):
    """c = sum over i of b[i] * A[i, :], A (k, m), b (k,) and c (m,) contiguous vectors."""
    c[:] = 0
    for i in range(A.shape[0]):
        a = A[i]
        bi = b[i]
        for j in range(c.size):
            c[j] += bi * a[j]


@njit(inline="always")
def _outer(a, b, C):
    """C = a b^T, a (m,), b (n,) contiguous vectors."""
    for i in range(C.shape[0]):
        row = C[i]
        ai = a[i]
        for j in range(row.size):
            row[j] = ai * b[j]


@intrinsic
def _stack_buffer(typingctx, like):
    """A pointer to SCRATCH elements of like's dtype on the calling function's stack (uninitialised;
    valid until that function returns): scratch space without an allocation."""
    sig = types.CPointer(like.dtype)(like)

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(like.dtype), size=SCRATCH)

    return sig, codegen


@njit(inline="always")
def _thin_nn(A, B, C, T):
    """C = A @ B for a thin B (k, n): T (n, k) takes B.T, so each output is a dot product of two
    contiguous rows (a vectorized loop), and four rows of A share each load of T."""
    m, k = A.shape
    n = B.shape[1]
    for p in range(k):
        for j in range(n):
            T[j, p] = B[p, j]
    zero = C.dtype.type(0)
    i = 0
    while i + 4 <= m:
        a0, a1, a2, a3 = A[i], A[i + 1], A[i + 2], A[i + 3]
        for j in range(n):
            t = T[j]
            s0 = s1 = s2 = s3 = zero
            for p in range(k):
                s0 += a0[p] * t[p]
                s1 += a1[p] * t[p]
                s2 += a2[p] * t[p]
                s3 += a3[p] * t[p]
            C[i, j], C[i + 1, j], C[i + 2, j], C[i + 3, j] = s0, s1, s2, s3
        i += 4
    for r in range(i, m):
        a = A[r]
        for j in range(n):
            t = T[j]
            s = zero
            for p in range(k):
                s += a[p] * t[p]
            C[r, j] = s


@njit(inline="always")
def _thin_tn(A, B, C, T):
    """C = A.T @ B for a thin B (k, n), A (k, m): row j of T (n, m) sums B[i, j] * A[i, :] over the
    rows i of A, four at a time (contiguous, vectorized, one store per four terms); C takes T.T."""
    k, m = A.shape
    n = B.shape[1]
    T[:, :] = 0
    i = 0
    while i + 4 <= k:
        a0, a1, a2, a3 = A[i], A[i + 1], A[i + 2], A[i + 3]
        for j in range(n):
            t = T[j]
            b0, b1, b2, b3 = B[i, j], B[i + 1, j], B[i + 2, j], B[i + 3, j]
            for p in range(m):
                t[p] += b0 * a0[p] + b1 * a1[p] + b2 * a2[p] + b3 * a3[p]
        i += 4
    for r in range(i, k):
        a = A[r]
        for j in range(n):
            t = T[j]
            b = B[r, j]
            for p in range(m):
                t[p] += b * a[p]
    for p in range(m):
        for j in range(n):
            C[p, j] = T[j, p]


@njit
def _loop_gemm(trans_a, trans_b, A, B, C, alpha, beta):
    """C = alpha op(A) @ op(B) + beta C as plain loops (op transposes where trans_*), for operands of
    any strides and for empty ones: the views the BLAS call does not take (the kernels pass
    contiguous buffers, so training never comes here). Loops rather than np.dot, and flags rather
    than transposed views, so that this compiles once for the callers' array types: np.dot's four
    layouts cost ~1.5 s of every cold first fit, for this branch. With beta 0, C is not read."""
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    t = C.dtype.type
    a, b = t(alpha), t(beta)
    for i in range(m):
        for j in range(n):
            s = t(0)
            for p in range(k):
                s += (A[p, i] if trans_a else A[i, p]) * (B[j, p] if trans_b else B[p, j])
            C[i, j] = a * s + b * C[i, j] if beta != 0.0 else a * s


def _off_the_fast_path(trans_a, trans_b, A, B, C, alpha, beta):
    """C = alpha op(A) @ op(B) + beta C where the fast paths do not apply: an empty dimension, or
    rows that are not back to back (only in arrays typed other than C-ordered)."""
    _loop_gemm(trans_a, trans_b, A, B, C, alpha, beta)


@overload(_off_the_fast_path)
def _off_the_fast_path_compiled(trans_a, trans_b, A, B, C, alpha, beta):
    if not all(a.layout == "C" for a in (A, B, C)):
        return _off_the_fast_path
    # C-ordered operands come here only with an empty dimension: the product is empty, C = beta C.
    # Not _loop_gemm itself, which then compiled into every product's entry for nothing but this.

    def scale(trans_a, trans_b, A, B, C, alpha, beta):
        b = C.dtype.type(beta)
        for i in range(C.shape[0]):
            row = C[i]
            for j in range(row.size):
                row[j] = b * row[j] if beta != 0.0 else b

    return scale


# How a product is computed follows from its shape alone, known per layer when the plan is built:
# so each layer's row of the plan holds the entries of its own paths (layer_addresses), and a fit
# compiles only the paths its layers take (the 784-256-128-10 MLP: the BLAS call alone).
BLAS_PATH, THIN_PATH, WIDTH1_PATH = 0, 1, 2


def nn_path(n, k):
    """The path of A @ B, B (k, n)."""
    if n == 1:
        return WIDTH1_PATH
    return THIN_PATH if n <= THIN and n * k <= SCRATCH else BLAS_PATH


def tn_path(m, n):
    """The path of A.T @ B, A (k, m), B (k, n)."""
    if n == 1:
        return WIDTH1_PATH
    return THIN_PATH if n <= THIN and n * m <= SCRATCH else BLAS_PATH


def nt_path(k):
    """The path of A @ B.T, A (m, k)."""
    return WIDTH1_PATH if k == 1 else BLAS_PATH


_nn_path, _tn_path, _nt_path = (njit(inline="always")(path) for path in (nn_path, tn_path, nt_path))


@njit(inline="always")
def _nn(path, A, B, C):
    """C = A @ B by `path`; an empty product or a strided operand goes off the fast path."""
    m, k = A.shape
    n = B.shape[1]
    if m == 0 or n == 0 or k == 0 or not (_row_major(A) and _row_major(B) and _row_major(C)):
        _off_the_fast_path(FALSE, FALSE, A, B, C, 1.0, 0.0)
    elif path == WIDTH1_PATH:
        _dots(A, _column(B), _column(C))
    elif path == THIN_PATH:
        _thin_nn(A, B, C, numba.carray(_stack_buffer(C), (n, k)))
    else:
        _cblas_gemm(NO_TRANS, NO_TRANS, m, n, k, 1.0, A, k, B, n, 0.0, C, n)


@njit(inline="always")
def _tn(path, A, B, C):
    """C = A.T @ B by `path`, as _nn."""
    k, m = A.shape
    n = B.shape[1]
    if m == 0 or n == 0 or k == 0 or not (_row_major(A) and _row_major(B) and _row_major(C)):
        _off_the_fast_path(TRUE, FALSE, A, B, C, 1.0, 0.0)
    elif path == WIDTH1_PATH:
        _row_sum(A, _column(B), _column(C))
    elif path == THIN_PATH:
        _thin_tn(A, B, C, numba.carray(_stack_buffer(C), (n, m)))
    else:
        _cblas_gemm(TRANS, NO_TRANS, m, n, k, 1.0, A, m, B, n, 0.0, C, n)


@njit(inline="always")
def _nt(path, A, B, C):
    """C = A @ B.T by `path`, as _nn."""
    m, k = A.shape
    n = B.shape[0]
    if m == 0 or n == 0 or k == 0 or not (_row_major(A) and _row_major(B) and _row_major(C)):
        _off_the_fast_path(FALSE, TRUE, A, B, C, 1.0, 0.0)
    elif path == WIDTH1_PATH:
        _outer(_column(A), _column(B), C)
    else:
        _cblas_gemm(NO_TRANS, TRANS, m, n, k, 1.0, A, k, B, k, 0.0, C, n)


@njit(inline="always")
def gemm_nn(A, B, C):
    """C = A @ B; A (m, k), B (k, n), C (m, n)."""
    _nn(_nn_path(B.shape[1], A.shape[1]), A, B, C)


@njit(inline="always")
def gemm_tn(A, B, C):
    """C = A.T @ B; A (k, m), B (k, n), C (m, n) (dW = A_prev.T @ delta)."""
    _tn(_tn_path(A.shape[1], B.shape[1]), A, B, C)


@njit(inline="always")
def gemm_nt(A, B, C):
    """C = A @ B.T; A (m, k), B (n, k), C (m, n) (delta @ W.T)."""
    _nt(_nt_path(A.shape[1]), A, B, C)


@njit(inline="always")
def gemm_tn_update(A, B, C, alpha):
    """C += alpha * A.T @ B; A (k, m), B (k, n), C (m, n) (W -= lr * A_prev.T @ delta). Only where
    accumulates() is True: elsewhere it would allocate a temporary."""
    k, m = A.shape
    n = B.shape[1]
    if m == 0 or n == 0 or k == 0:
        return
    if not (_row_major(A) and _row_major(B) and _row_major(C)):
        _off_the_fast_path(TRUE, FALSE, A, B, C, alpha, 1.0)
        return
    _cblas_gemm(TRANS, NO_TRANS, m, n, k, alpha, A, m, B, n, 1.0, C, n)


def accumulates() -> bool:
    """Whether gemm_tn_update runs in the BLAS without a temporary (NumPy's OpenBLAS is bound, or
    np.dot does it without the JIT)."""
    return _accumulates_flag.value != 0


# --- entry points, called through the addresses the plan holds (indirect.py) --------------------
# The layer passes (steps.py) call their GEMMs through addresses: each product above (with its thin
# and width-1 paths) is compiled once, into its entry, instead of into every kernel that calls it,
# each of which Numba optimised and compiled again with all the code it links in. For the same
# reason the functions above are inlined into their callers at Numba's level (inline="always"): a
# separately compiled gemm_nn was compiled again inside the entry, and _thin_nn inside both. And
# since the entries' arrays are C-ordered, an empty product there compiles no strided loops
# (_off_the_fast_path). Shapes go over beside the data pointers; op(A) is (m, k), op(B) (k, n), as
# in CBLAS.


def gemm_nn_blas_entry(a, b, c, m, n, k):
    _nn(BLAS_PATH, array_at(a, (m, k)), array_at(b, (k, n)), array_at(c, (m, n)))


def gemm_nn_thin_entry(a, b, c, m, n, k):
    _nn(THIN_PATH, array_at(a, (m, k)), array_at(b, (k, n)), array_at(c, (m, n)))


def gemm_nn_width1_entry(a, b, c, m, n, k):
    _nn(WIDTH1_PATH, array_at(a, (m, k)), array_at(b, (k, n)), array_at(c, (m, n)))


def gemm_tn_blas_entry(a, b, c, m, n, k):
    _tn(BLAS_PATH, array_at(a, (k, m)), array_at(b, (k, n)), array_at(c, (m, n)))


def gemm_tn_thin_entry(a, b, c, m, n, k):
    _tn(THIN_PATH, array_at(a, (k, m)), array_at(b, (k, n)), array_at(c, (m, n)))


def gemm_tn_width1_entry(a, b, c, m, n, k):
    _tn(WIDTH1_PATH, array_at(a, (k, m)), array_at(b, (k, n)), array_at(c, (m, n)))


def gemm_nt_blas_entry(a, b, c, m, n, k):
    _nt(BLAS_PATH, array_at(a, (m, k)), array_at(b, (n, k)), array_at(c, (m, n)))


def gemm_nt_width1_entry(a, b, c, m, n, k):
    _nt(WIDTH1_PATH, array_at(a, (m, k)), array_at(b, (n, k)), array_at(c, (m, n)))


# By path.
NN_ENTRIES = (gemm_nn_blas_entry, gemm_nn_thin_entry, gemm_nn_width1_entry)
TN_ENTRIES = (gemm_tn_blas_entry, gemm_tn_thin_entry, gemm_tn_width1_entry)
NT_ENTRIES = (gemm_nt_blas_entry, None, gemm_nt_width1_entry)


def _signature(dtype):
    array = types.Array(numba.from_dtype(np.dtype(dtype)), 2, "C")
    return indirect.signature(array, array, array, types.intp, types.intp, types.intp)


@functools.cache  # asked at every train_steps call (building the signature each time: ~60 us)
def entry_address(entry, dtype) -> int:
    """The address of a product entry (one of NN_ENTRIES, TN_ENTRIES, NT_ENTRIES) for `dtype`,
    compiled, or loaded from the cache, on first use."""
    return indirect.address(entry, _signature(dtype))


def layer_addresses(n_in: int, n_out: int, dtype) -> tuple[int, int, int]:
    """The addresses of a Dense layer's three product entries for `dtype`, each for the path its
    shape takes: the forward product (rows, n_in) @ (n_in, n_out), the weight gradient's
    (n_in, rows) @ (rows, n_out) and the input gradient's (rows, n_out) @ (n_out, n_in). What the
    plan holds in P.GEMM_NN_FN, P.GEMM_TN_FN, P.GEMM_NT_FN."""
    entries = (NN_ENTRIES[nn_path(n_out, n_in)], TN_ENTRIES[tn_path(n_in, n_out)], NT_ENTRIES[nt_path(n_out)])
    return tuple(entry_address(entry, dtype) for entry in entries)


def _c_ordered(*arrays):
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)


def gemm_nn_at(fn, A, B, C):
    """gemm_nn through the entry at fn (layer_addresses: the entry of this product's path). Arrays
    typed other than C-ordered (a strided view: steps.py never passes one) take gemm_nn itself,
    compiled into the caller."""
    gemm_nn(A, B, C)


def gemm_tn_at(fn, A, B, C):
    """gemm_tn through the entry at fn, as gemm_nn_at."""
    gemm_tn(A, B, C)


def gemm_nt_at(fn, A, B, C):
    """gemm_nt through the entry at fn, as gemm_nn_at."""
    gemm_nt(A, B, C)


@overload(gemm_nn_at, inline="always")
def _gemm_nn_at(fn, A, B, C):
    if not _c_ordered(A, B, C):
        return lambda fn, A, B, C: gemm_nn(A, B, C)
    return lambda fn, A, B, C: indirect.call(fn, (A, B, C, C.shape[0], C.shape[1], A.shape[1]))


@overload(gemm_tn_at, inline="always")
def _gemm_tn_at(fn, A, B, C):
    if not _c_ordered(A, B, C):
        return lambda fn, A, B, C: gemm_tn(A, B, C)
    return lambda fn, A, B, C: indirect.call(fn, (A, B, C, C.shape[0], C.shape[1], A.shape[0]))


@overload(gemm_nt_at, inline="always")
def _gemm_nt_at(fn, A, B, C):
    if not _c_ordered(A, B, C):
        return lambda fn, A, B, C: gemm_nt(A, B, C)
    return lambda fn, A, B, C: indirect.call(fn, (A, B, C, C.shape[0], C.shape[1], A.shape[1]))


if numba.config.DISABLE_JIT:  # plain Python: the intrinsic cannot run, np.dot does the same

    def gemm_nn(A, B, C):  # noqa: F811
        np.dot(A, B, C)

    def gemm_tn(A, B, C):  # noqa: F811
        np.dot(A.T, B, C)

    def gemm_nt(A, B, C):  # noqa: F811
        np.dot(A, B.T, C)

    def gemm_tn_update(A, B, C, alpha):  # noqa: F811
        C += alpha * np.dot(A.T, B)

    _accumulates_flag.value = 1
