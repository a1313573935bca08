"""Experiment (issue 5, threads): one thread pool instead of two. BLAS pinned to one thread, each
GEMM of a step split in two slabs run by Numba's prange under the TBB threading layer (each slab one
single-threaded sgemm call), and the Adam step split the same way, against fastbp as it is (NumPy's
OpenBLAS with its own two threads, the Adam pass serial). It swaps blas.entry_address and
optim.step_address for functions that hand out parallel entries; needs `pip install tbb` (loaded
first, as shared/NUMBA_NOTES.md says).

    MODE=base  .venv/bin/python bench/runs/2026-12-01/split_gemm_tbb.py
    MODE=split .venv/bin/python bench/runs/2026-12-01/split_gemm_tbb.py

Prints samples/s (best of 5 epochs of 8192 rows) of the peers.py MLP at BATCHES (default
16,64,256), plain SGD and Adam. In split mode plain SGD's step, folded into the weight-gradient
product (gemm_tn_update), stays one single-threaded call.
"""

import ctypes
import os
import sys
import time

MODE = os.environ.get("MODE", "split")
assert MODE in ("base", "split"), MODE
if MODE == "split":
    ctypes.CDLL(os.path.join(sys.prefix, "lib", "libtbb.so.12"), mode=ctypes.RTLD_GLOBAL)
    import numba

    numba.config.THREADING_LAYER = "tbb"

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import fastbp as fb  # noqa: E402
from fastbp._kernels.cpu import blas, optim  # noqa: E402
from fastbp._kernels.cpu.blas import NO_TRANS, TRANS, _cblas_gemm  # noqa: E402
from fastbp._kernels.cpu.indirect import array_at  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from peers import NETS  # noqa: E402


@numba.njit(inline="always")
def _slab(total, parts, j):
    size = ((total + parts - 1) // parts + 15) // 16 * 16
    lo = min(total, j * size)
    return lo, min(total, lo + size)


def nn_split(a, b, c, m, n, k):  # C = A @ B, by column slabs of B and C
    A, B, C = array_at(a, (m, k)), array_at(b, (k, n)), array_at(c, (m, n))
    parts = numba.get_num_threads()
    for j in numba.prange(parts):
        lo, hi = _slab(n, parts, j)
        if hi > lo:
            _cblas_gemm(NO_TRANS, NO_TRANS, m, hi - lo, k, 1.0, A, k, B[:, lo:], n, 0.0, C[:, lo:], n)


def tn_split(a, b, c, m, n, k):  # C = A.T @ B, by row slabs of C
    A, B, C = array_at(a, (k, m)), array_at(b, (k, n)), array_at(c, (m, n))
    parts = numba.get_num_threads()
    for j in numba.prange(parts):
        lo, hi = _slab(m, parts, j)
        if hi > lo:
            _cblas_gemm(TRANS, NO_TRANS, hi - lo, n, k, 1.0, A[:, lo:], m, B, n, 0.0, C[lo:], n)


def nt_split(a, b, c, m, n, k):  # C = A @ B.T, by column slabs of C
    A, B, C = array_at(a, (m, k)), array_at(b, (n, k)), array_at(c, (m, n))
    parts = numba.get_num_threads()
    for j in numba.prange(parts):
        lo, hi = _slab(n, parts, j)
        if hi > lo:
            _cblas_gemm(NO_TRANS, TRANS, m, hi - lo, k, 1.0, A, k, B[lo:], k, 0.0, C[:, lo:], n)


def adam_split(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = optim._state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    factors = optim._adam_factors(False, H, step, lr, scale)
    parts = numba.get_num_threads()
    for j in numba.prange(parts):
        lo, hi = _slab(n, parts, j)
        optim._adam_range(P, G, S, factors, lo, hi)


def parallel_cfunc(entry, signature):
    options = dict(cache=True, parallel=True, fastmath=fb.config.FASTMATH, error_model="numpy")
    return numba.cfunc(signature, **options)(entry)


if MODE == "split":
    threadpool_limits(1, user_api="blas")
    SPLIT = {
        blas.gemm_nn_blas_entry: nn_split,
        blas.gemm_tn_blas_entry: tn_split,
        blas.gemm_nt_blas_entry: nt_split,
    }
    compiled = {}
    serial_entry_address, serial_step_address = blas.entry_address, optim.step_address

    def entry_address(entry, dtype):
        if entry not in SPLIT:
            return serial_entry_address(entry, dtype)
        key = (entry, np.dtype(dtype))
        if key not in compiled:
            compiled[key] = parallel_cfunc(SPLIT[entry], blas._signature(dtype))
        return compiled[key].address

    def step_address(kind, dtype):
        if kind != optim.ADAM:
            return serial_step_address(kind, dtype)
        key = (kind, np.dtype(dtype))
        if key not in compiled:
            compiled[key] = parallel_cfunc(adam_split, optim.step_signature(dtype))
        return compiled[key].address

    blas.entry_address, optim.step_address = entry_address, step_address


def make_net(widths):
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [fb.Dense(n_in, n_out), fb.ReLU()]
    return fb.Sequential(*layers[:-1], loss=fb.SoftmaxCrossEntropy(), seed=0)


widths = NETS["mlp"]
rng = np.random.default_rng(0)
X = rng.standard_normal((8192, widths[0])).astype(np.float32)
y = rng.integers(0, widths[-1], 8192)
for batch in (int(b) for b in os.environ.get("BATCHES", "16,64,256").split(",")):
    speed = {}
    for name, make_opt in (("sgd", lambda: fb.optim.SGD(lr=1e-2)), ("adam", lambda: fb.optim.Adam(lr=1e-3))):
        net, opt = make_net(widths), make_opt()
        net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0)
        best = float("inf")
        for _ in range(5):
            tick = time.perf_counter()
            net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0)
            best = min(best, time.perf_counter() - tick)
        speed[name] = len(X) / best
    layer = numba.threading_layer() if MODE == "split" else "-"
    figures = f"sgd {speed['sgd']:,.0f} adam {speed['adam']:,.0f} samples/s"
    print(f"{MODE} (layer {layer}) mlp batch {batch}: {figures}", flush=True)
