"""What forcing OpenBLAS's kernel set costs: sgemm (1024 x 784 by 784 x 256, float32) through
NumPy's and SciPy's OpenBLAS copies (two threads each), best of 30 calls, and the kernels each copy
chose. Run it with and without OPENBLAS_CORETYPE in the environment (it is read when a library
loads, so each setting needs its own process)."""

import os
import time

import numpy as np
import threadpoolctl
from scipy.linalg import blas

rng = np.random.default_rng(0)
A = rng.standard_normal((1024, 784), dtype=np.float32)
B = rng.standard_normal((784, 256), dtype=np.float32)
Af, Bf = np.asfortranarray(A), np.asfortranarray(B)


def best(f, n=30):
    times = []
    for _ in range(n):
        tick = time.perf_counter()
        f()
        times.append(time.perf_counter() - tick)
    return min(times)


flops = 2 * 1024 * 784 * 256
kernels = {
    d["filepath"].rsplit("/", 1)[-1][:22]: d.get("architecture") for d in threadpoolctl.threadpool_info()
}
numpy_s = best(lambda: A @ B)
scipy_s = best(lambda: blas.sgemm(1.0, Af, Bf))
setting = os.environ.get("OPENBLAS_CORETYPE", "(unset)")
print(
    f"OPENBLAS_CORETYPE={setting:8s} numpy {flops / numpy_s / 1e9:6.1f} GFLOP/s"
    f"  scipy {flops / scipy_s / 1e9:6.1f} GFLOP/s  {kernels}"
)
