"""How to split the batch-1 first-layer sweep between two cores: by columns or by rows of W.

The sweep is online.py's deferred SGD update fused with the next forward product over the MLP's
first layer (784 x 256, float32, 64-byte aligned): W[i, :] += c[i] * d, then z += a[i] * W[i, :].
Timed per sweep (best of --rounds rounds of --reps sweeps):

- one core, the whole of W;
- two cores (Python threads running nogil compiled loops), by columns: each sweeps all rows, its
  128 columns of each (its own cache lines; W shared);
- two cores by rows: each sweeps its 392 rows (a contiguous block), into its own z.

    .venv/bin/python bench/runs/2026-12-01c/pair_split.py [--rounds 4]
"""

import argparse
import threading
import time

import numpy as np

from fastbp._kernels.cpu.views import raw_view
from fastbp._kernels.jit import njit


@njit
def sweep(W, u, a, d, z, r0, r1, j0, j1, reps):
    """reps sweeps of rows [r0, r1) x columns [j0, j1) of W."""
    n_out = W.shape[1]
    m = j1 - j0
    flat = W.reshape(-1)
    zz = raw_view(z, j0, (m,))
    dd = raw_view(d, j0, (m,))
    for _ in range(reps):
        for j in range(m):
            zz[j] = 0
        for i in range(r0, r1):
            c, ai = u[i], a[i]
            row = raw_view(flat, i * n_out + j0, (m,))
            for j in range(m):
                v = row[j] + c * dd[j]
                row[j] = v
                zz[j] += ai * v


def aligned(shape):
    n = int(np.prod(shape))
    raw = np.zeros(n + 16, np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip : skip + n].reshape(shape)


def timed(jobs, reps):
    """Seconds per sweep with the jobs (argument tuples of sweep) run at once, one per thread."""
    threads = [threading.Thread(target=sweep, args=job + (reps,)) for job in jobs[1:]]
    tick = time.perf_counter()
    for t in threads:
        t.start()
    sweep(*jobs[0], reps)
    for t in threads:
        t.join()
    return (time.perf_counter() - tick) / reps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_in, n_out = 784, 256
    W = aligned((n_in, n_out))
    W[:] = rng.standard_normal((n_in, n_out)) * 0.01
    u = (rng.standard_normal(n_in) * 1e-4).astype(np.float32)
    a = rng.standard_normal(n_in).astype(np.float32)
    d = aligned((n_out,))
    d[:] = 1e-3
    z0, z1 = aligned((n_out,)), aligned((n_out,))
    half_rows, half_cols = n_in // 2, n_out // 2
    c = (W, u, a, d)
    layouts = {
        "one core, all of W": [c + (z0, 0, n_in, 0, n_out)],
        "two cores, by columns": [c + (z0, 0, n_in, 0, half_cols), c + (z0, 0, n_in, half_cols, n_out)],
        "two cores, by rows": [c + (z0, 0, half_rows, 0, n_out), c + (z1, half_rows, n_in, 0, n_out)],
    }
    sweep(*layouts["one core, all of W"][0], 1)  # compile
    best = dict.fromkeys(layouts, float("inf"))
    for r in range(args.rounds):
        for name, jobs in layouts.items():
            seconds = timed(jobs, args.reps)
            best[name] = min(best[name], seconds)
            print(f"round {r + 1} {name}: {seconds * 1e6:.1f} us")
    base = best["one core, all of W"]
    print("\nbest per layout (us per sweep; one core / this):")
    for name, seconds in best.items():
        print(f"  {name:24s} {seconds * 1e6:7.1f}  {base / seconds:.2f}x")


if __name__ == "__main__":
    main()
