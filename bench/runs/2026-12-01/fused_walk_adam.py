"""Experiment (issue 5, batch-1 Adam): the batch-1 backward walk over the MLP's first layer (784 x 256
float32: the previous layer's delta and dW = outer(a, d)) followed by Adam's pass over W and both
moments, against the same with each row's gradient computed into a 256-value scratch that stays in
L1 and stepped at once (dW never written: three streams of the ten fewer). Best of 400 calls.

    .venv/bin/python bench/runs/2026-12-01/fused_walk_adam.py
"""

import time

import numpy as np

from fastbp._kernels.jit import njit

f = np.float32
n_in, n_out = 784, 256
rng = np.random.default_rng(0)
W = (rng.standard_normal((n_in, n_out)) * 0.05).astype(f)
dW = np.zeros_like(W)
m = np.zeros_like(W)
v = np.full_like(W, 1e-6)
a = rng.standard_normal(n_in).astype(f)
d = rng.standard_normal(n_out).astype(f)
g_prev = np.zeros(n_in, f)
c = (f(0.1), f(0.999), f(1e-3), f(1e-8), f(1 / 0.03), f(1e-3))


@njit(inline="always")
def adam_row(w, g, mm, vv, w1, b2, w2, eps, ibc, ss):
    for j in range(w.shape[0]):
        gj = g[j]
        mi = mm[j] + w1 * (gj - mm[j])
        vi = vv[j] * b2 + w2 * (gj * gj)
        mm[j] = mi
        vv[j] = vi
        w[j] = w[j] - ss * (mi / (np.sqrt(vi) * ibc + eps))


@njit
def separate(W, dW, m, v, a, d, g_prev, w1, b2, w2, eps, ibc, ss):
    for i in range(W.shape[0]):  # the walk: delta and dW
        w, g, ai = W[i], dW[i], a[i]
        s = W.dtype.type(0)
        for j in range(W.shape[1]):
            s += w[j] * d[j]
            g[j] = ai * d[j]
        g_prev[i] = s
    for i in range(W.shape[0]):  # the pass
        adam_row(W[i], dW[i], m[i], v[i], w1, b2, w2, eps, ibc, ss)


@njit
def fused(W, dW, m, v, a, d, g_prev, w1, b2, w2, eps, ibc, ss):
    scratch = np.empty(W.shape[1], W.dtype)  # allocated once per call here (a stack buffer in the library)
    for i in range(W.shape[0]):
        w, ai = W[i], a[i]
        s = W.dtype.type(0)
        for j in range(W.shape[1]):
            s += w[j] * d[j]
            scratch[j] = ai * d[j]
        g_prev[i] = s
        adam_row(w, scratch, m[i], v[i], w1, b2, w2, eps, ibc, ss)


for fn in (separate, fused):
    fn(W, dW, m, v, a, d, g_prev, *c)
for _ in range(3):
    res = {}
    for fn in (separate, fused):
        best = 1e9
        for _ in range(400):
            t = time.perf_counter()
            fn(W, dW, m, v, a, d, g_prev, *c)
            best = min(best, time.perf_counter() - t)
        res[fn.__name__] = best * 1e6
    ratio = res["separate"] / res["fused"]
    figures = f"separate {res['separate']:.1f} us, fused {res['fused']:.1f} us, {ratio:.2f}x"
    print(f"784 x 256 float32, walk + Adam: {figures}")
