"""Experiment (issue 5, Adam's cost): what bounds Adam's pass over the parameters, its arithmetic or
its memory traffic? Three loops over n float32 elements with fastbp's compile options, best of many
calls: fastbp's own Adam rule (optimizer_step), plain SGD with momentum (read p, g, buf; write p,
buf), and Adam's loop with its square root and both divisions taken out ("no sqrt/div": the same
loads, stores and the rest of the arithmetic). n from in-L1/L2 sizes to the MLP's 235,146
parameters and beyond.

    .venv/bin/python bench/runs/2026-12-01/adam_pass_floor.py
"""

import time

import numpy as np

from fastbp._kernels.cpu.optim import ADAM, SGD, optimizer_step
from fastbp._kernels.jit import njit


@njit
def adam_without_sqrt_div(p, g, m, v, w1, b2, w2, eps, bc, step_size):
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] + w1 * (gi - m[i])
        vi = v[i] * b2 + w2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - step_size * (mi * (vi * bc + eps))


def best_of(function, args, n: int) -> float:
    function(*args)
    best = float("inf")
    for _ in range(max(50, 20_000_000 // n)):
        tick = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - tick)
    return best


def main():
    f = np.float32
    columns = ("Adam", "SGD momentum", "Adam, no sqrt/div")
    print("| n | " + " | ".join(f"{name} (us) | ns/element" for name in columns) + " |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for n in (4096, 16384, 65536, 235146, 1 << 20):
        rng = np.random.default_rng(0)
        p = rng.standard_normal(n).astype(f)
        g = (rng.standard_normal(n) * 1e-3).astype(f)
        adam_slots, sgd_slot = np.full((2, n), 1e-6, f), np.zeros((1, n), f)
        scalars = np.zeros(1)
        adam_hyper = np.array([0.9, 0.999, 1e-8, 0.0, 0.0, 0.0])
        sgd_hyper = np.array([0.9, 0.0, 0.0, 0.0, 0.0])
        m, v = adam_slots
        factors = (f(0.1), f(0.999), f(1e-3), f(1e-8), f(30), f(1e-3))
        times = (
            best_of(optimizer_step, (ADAM, p, g, adam_slots, scalars, adam_hyper, 5, 1e-3), n),
            best_of(optimizer_step, (SGD, p, g, sgd_slot, scalars, sgd_hyper, 5, 1e-3), n),
            best_of(adam_without_sqrt_div, (p, g, m, v, *factors), n),
        )
        cells = " | ".join(f"{t * 1e6:.1f} | {t * 1e9 / n:.3f}" for t in times)
        print(f"| {n:,} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
