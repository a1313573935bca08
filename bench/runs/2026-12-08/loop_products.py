"""Prototype: the three products of a mini-batch step (forward A @ W, weight gradient A.T @ D,
delta D @ W.T) as plain Numba loops (two rows of the output and four of the other operand per pass
over a row; the delta as four dot products at a time, or through a transposed copy of W), against
NumPy's BLAS on one and two threads; float32, median of many calls per shape (batch x in x out).

    .venv/bin/python bench/runs/2026-12-08/loop_products.py
"""

import os
import time

import numba
import numpy as np
import threadpoolctl

FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(fastmath=FM)
def nn2(A, B, C):  # C = A @ B, two rows of C per pass, four rows of B per pass
    m, k = A.shape
    n = B.shape[1]
    i = 0
    while i < m:
        i1 = i + 1 if i + 1 < m else i
        c0, c1 = C[i], C[i1]
        c0[:] = 0
        c1[:] = 0
        p = 0
        while p + 4 <= k:
            b0, b1, b2, b3 = B[p], B[p + 1], B[p + 2], B[p + 3]
            x0, x1, x2, x3 = A[i, p], A[i, p + 1], A[i, p + 2], A[i, p + 3]
            y0, y1, y2, y3 = A[i1, p], A[i1, p + 1], A[i1, p + 2], A[i1, p + 3]
            for j in range(n):
                c0[j] += (x0 * b0[j] + x1 * b1[j]) + (x2 * b2[j] + x3 * b3[j])
                c1[j] += (y0 * b0[j] + y1 * b1[j]) + (y2 * b2[j] + y3 * b3[j])
            p += 4
        while p < k:
            b0 = B[p]
            x0, y0 = A[i, p], A[i1, p]
            for j in range(n):
                c0[j] += x0 * b0[j]
                c1[j] += y0 * b0[j]
            p += 1
        i += 2


@numba.njit(fastmath=FM)
def tn2(A, D, C):  # C = A.T @ D: C[i, :] = sum_s A[s, i] D[s, :]
    m, k = A.shape
    n = D.shape[1]
    i = 0
    while i < k:
        i1 = i + 1 if i + 1 < k else i
        c0, c1 = C[i], C[i1]
        c0[:] = 0
        c1[:] = 0
        s = 0
        while s + 4 <= m:
            d0, d1, d2, d3 = D[s], D[s + 1], D[s + 2], D[s + 3]
            x0, x1, x2, x3 = A[s, i], A[s + 1, i], A[s + 2, i], A[s + 3, i]
            y0, y1, y2, y3 = A[s, i1], A[s + 1, i1], A[s + 2, i1], A[s + 3, i1]
            for j in range(n):
                c0[j] += (x0 * d0[j] + x1 * d1[j]) + (x2 * d2[j] + x3 * d3[j])
                c1[j] += (y0 * d0[j] + y1 * d1[j]) + (y2 * d2[j] + y3 * d3[j])
            s += 4
        while s < m:
            d0 = D[s]
            x0, y0 = A[s, i], A[s, i1]
            for j in range(n):
                c0[j] += x0 * d0[j]
                c1[j] += y0 * d0[j]
            s += 1
        i += 2


@numba.njit(fastmath=FM)
def nt_dots(D, W, C):  # C = D @ W.T, four dots at a time
    m, n = D.shape
    k = W.shape[0]
    for s in range(m):
        d = D[s]
        c = C[s]
        i = 0
        while i + 4 <= k:
            w0, w1, w2, w3 = W[i], W[i + 1], W[i + 2], W[i + 3]
            t0 = t1 = t2 = t3 = np.float32(0)
            for j in range(n):
                t0 += d[j] * w0[j]
                t1 += d[j] * w1[j]
                t2 += d[j] * w2[j]
                t3 += d[j] * w3[j]
            c[i], c[i + 1], c[i + 2], c[i + 3] = t0, t1, t2, t3
            i += 4
        while i < k:
            t = np.float32(0)
            for j in range(n):
                t += d[j] * W[i, j]
            c[i] = t
            i += 1


@numba.njit(fastmath=FM)
def nt_transposed(D, W, WT, C):  # W.T copied, then nn2
    k, n = W.shape
    for i in range(k):
        for j in range(n):
            WT[j, i] = W[i, j]
    nn2(D, WT, C)


def median(f, n):
    t = []
    for _ in range(n):
        s = time.perf_counter()
        f()
        t.append(time.perf_counter() - s)
    return float(np.median(t)) * 1e6


SHAPES = [(16, 64, 64), (64, 64, 64), (256, 64, 64), (16, 64, 128), (64, 64, 128), (64, 128, 64),
          (16, 784, 256), (64, 784, 256), (16, 256, 128), (64, 256, 128)]  # fmt: skip


def measure_shape(rng, m, k, n):
    A = rng.standard_normal((m, k), dtype=np.float32)
    W = rng.standard_normal((k, n), dtype=np.float32)
    D = rng.standard_normal((m, n), dtype=np.float32)
    Z, G, X = np.empty((m, n), np.float32), np.empty((k, n), np.float32), np.empty((m, k), np.float32)
    WT = np.empty((n, k), np.float32)
    nn2(A, W, Z)
    tn2(A, D, G)
    nt_dots(D, W, X)
    assert np.allclose(Z, A @ W, atol=1e-3) and np.allclose(G, A.T @ D, atol=1e-3)
    assert np.allclose(X, D @ W.T, atol=1e-3)
    nt_transposed(D, W, WT, X)
    assert np.allclose(X, D @ W.T, atol=1e-3)
    reps = max(50, int(2e6 / (m * k * n)) * 20)
    blas_us = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, "blas"):
            products = lambda: (np.matmul(A, W, out=Z), np.matmul(A.T, D, out=G), np.matmul(D, W.T, out=X))  # noqa: E731
            blas_us.append(median(products, reps))
    nn = median(lambda: nn2(A, W, Z), reps)
    tn = median(lambda: tn2(A, D, G), reps)
    nt1 = median(lambda: nt_dots(D, W, X), reps)
    nt2 = median(lambda: nt_transposed(D, W, WT, X), reps)
    loops = nn + tn + min(nt1, nt2)
    print(
        f"{m:4d}x{k:4d}x{n:4d}: BLAS 3 products 1 thr {blas_us[0]:8.2f} us, 2 thr {blas_us[1]:8.2f}"
        f" | loops nn {nn:7.2f} tn {tn:7.2f} nt dots {nt1:7.2f} nt via T {nt2:7.2f} | sum {loops:8.2f}"
        f"  best BLAS / loops {min(blas_us) / loops:5.2f}x"
    )


print("OPENBLAS_CORETYPE", os.environ.get("OPENBLAS_CORETYPE"))
for shape in SHAPES:
    measure_shape(np.random.default_rng(0), *shape)
