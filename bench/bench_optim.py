"""One optimizer step over 10^4, 10^6 and 10^7 parameters: fastbp's fused kernel against the same rule
written as NumPy expressions, and against torch.optim when torch is installed.

    .venv/bin/python bench/bench_optim.py            # all eight optimizers, float32 (~3 minutes)
    .venv/bin/python bench/bench_optim.py --quick    # Adam only, fewer repeats
    .venv/bin/python bench/bench_optim.py --dtype float64 --sizes 1e6

Each figure is the best over several repeats of a short run of steps (the machine may be shared:
the best is the least disturbed). Also measured: clip_grad_norm, and the serial kernel against the
prange one alone and right after a multithreaded GEMM (why the default step is serial).
Results and their reading: bench/optim_results.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numba
import numpy as np

from fastbp import clip, optim
from fastbp._kernels.cpu import optim as K

try:
    import torch
except ImportError:  # the torch columns are left out
    torch = None

# (fastbp / torch class name, keyword arguments): representative settings, torch's defaults else.
SETTINGS = {
    "SGD": {"momentum": 0.9},
    "Adam": {},
    "AdamW": {},
    "RMSprop": {},
    "Adagrad": {},
    "Adadelta": {},
    "Adamax": {},
    "NAdam": {},
}
LR = 1e-3


# --- the rules as NumPy expressions: in-place where a NumPy user would write it, temporaries else --


def _adam_core(p, g, st, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m, v = st["m"], st["v"]
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * (g * g)
    denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
    p -= (lr / (1 - b1**t)) * m / denom


def np_sgd(p, g, st, t, lr):
    b = st["b"]
    b *= 0.9
    b += g
    p -= lr * b


def np_adam(p, g, st, t, lr):
    _adam_core(p, g, st, t, lr)


def np_adamw(p, g, st, t, lr):
    p *= 1 - lr * 1e-2
    _adam_core(p, g, st, t, lr)


def np_rmsprop(p, g, st, t, lr, alpha=0.99, eps=1e-8):
    s = st["s"]
    s *= alpha
    s += (1 - alpha) * (g * g)
    p -= lr * g / (np.sqrt(s) + eps)


def np_adagrad(p, g, st, t, lr, eps=1e-10):
    s = st["s"]
    s += g * g
    p -= lr * g / (np.sqrt(s) + eps)


def np_adadelta(p, g, st, t, lr, rho=0.9, eps=1e-6):
    s, u = st["s"], st["u"]
    s *= rho
    s += (1 - rho) * (g * g)
    d = np.sqrt(u + eps) / np.sqrt(s + eps) * g
    u *= rho
    u += (1 - rho) * (d * d)
    p -= lr * d


def np_adamax(p, g, st, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m, u = st["m"], st["u"]
    m *= b1
    m += (1 - b1) * g
    np.maximum(u * b2, np.abs(g) + eps, out=u)
    p -= (lr / (1 - b1**t)) * m / u


def np_nadam(p, g, st, t, lr, b1=0.9, b2=0.999, eps=1e-8, psi=4e-3):
    m, v = st["m"], st["v"]
    mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
    st["P"] = st.get("P", 1.0) * mu
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * (g * g)
    denom = np.sqrt(v / (1 - b2**t)) + eps
    p -= (lr * (1 - mu) / (1 - st["P"])) * g / denom
    p -= (lr * mu_next / (1 - st["P"] * mu_next)) * m / denom


NUMPY_RULES = {
    "SGD": np_sgd, "Adam": np_adam, "AdamW": np_adamw, "RMSprop": np_rmsprop,
    "Adagrad": np_adagrad, "Adadelta": np_adadelta, "Adamax": np_adamax, "NAdam": np_nadam,
}  # fmt: skip


# --- timing ---------------------------------------------------------------------------------------


def best_time(fn, n, repeats):
    """Best seconds per call over `repeats` runs of a batch of calls sized for ~20 ms."""
    fn()
    inner = max(1, min(200, int(2e6 // max(n, 1))))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def problem(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    g = (rng.standard_normal(n) * 1e-2).astype(dtype)
    return p, g


def time_fastbp(name, n, dtype, repeats):
    p, g = problem(n, dtype)
    opt = getattr(optim, name)(LR, **SETTINGS[name])
    return best_time(lambda: opt.step(p, g), n, repeats)


def time_kernel(name, n, dtype, repeats):
    p, g = problem(n, dtype)
    opt = getattr(optim, name)(LR, **SETTINGS[name])
    kind, slots, scalars, hyper = opt.prepare(p)
    step = K.optimizer_step
    return best_time(lambda: step(kind, p, g, slots, scalars, hyper, 2, LR), n, repeats)


def time_numpy(name, n, dtype, repeats):
    p, g = problem(n, dtype)
    st = {k: np.zeros(n, dtype) for k in ("m", "v", "s", "u", "b")}
    rule = NUMPY_RULES[name]
    t = [0]

    def step():
        t[0] += 1
        rule(p, g, st, t[0], LR)

    return best_time(step, n, repeats)


def time_torch(name, n, dtype, repeats, fused=False):
    if torch is None:
        return None
    p, g = problem(n, dtype)
    tp = torch.from_numpy(p).requires_grad_(True)
    tp.grad = torch.from_numpy(g)
    kwargs = dict(SETTINGS[name], fused=True) if fused else dict(SETTINGS[name])
    try:
        opt = getattr(torch.optim, name)([tp], lr=LR, **kwargs)
        opt.step()
    except (RuntimeError, TypeError, ValueError):
        return None  # no fused CPU kernel for this optimizer
    return best_time(opt.step, n, repeats)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [
        f"{cpu}, {os.cpu_count()} cores",
        f"numpy {np.__version__}",
        f"numba {numba.__version__} ({numba.get_num_threads()} threads)",
    ]
    if torch is not None:
        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    return "; ".join(parts)


def fmt_time(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def ratio(other, ours):
    return "-" if other is None else f"{other / ours:.1f}x"


# --- tables ---------------------------------------------------------------------------------------


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def step_table(names, sizes, dtype, repeats, rounds):
    """Each cell is the best over `rounds` passes over the whole table (a disturbance on a shared
    machine then spoils one pass of a cell, not all its repeats)."""
    cols = {
        "fastbp": time_fastbp,
        "kernel": time_kernel,
        "numpy": time_numpy,
        "torch": time_torch,
        "fused": lambda *a: time_torch(*a, fused=True),
    }
    best: dict = {}
    for _ in range(rounds):
        for name in names:
            for n in sizes:
                for col, fn in cols.items():
                    key = (name, n, col)
                    best[key] = _min(best.get(key), fn(name, n, dtype, repeats))
    rows = [
        "| optimizer | n | fastbp step | kernel only | NumPy expressions | torch.optim | torch fused |"
        " NumPy / fastbp | torch / fastbp | torch fused / fastbp |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for n in sizes:
            ours, kern, ref, tor, fus = (best[(name, n, c)] for c in cols)
            rows.append(
                f"| {name} | {n:.0e} | {fmt_time(ours)} | {fmt_time(kern)} | {fmt_time(ref)} | "
                f"{fmt_time(tor)} | {fmt_time(fus)} | {ratio(ref, ours)} | {ratio(tor, ours)} | "
                f"{ratio(fus, ours)} |"
            )
    print("\n".join(rows), flush=True)
    return rows


def clip_table(sizes, dtype, repeats):
    rows = [
        "| n | fastbp clip_grad_norm | NumPy (norm, multiply) | torch clip_grad_norm_ |",
        "|---|---|---|---|",
    ]
    for n in sizes:
        _, g = problem(n, dtype)
        ours = best_time(lambda: clip.clip_grad_norm(g, 1e-3), n, repeats)  # noqa: B023

        def numpy_clip():
            total = float(np.linalg.norm(g))  # noqa: B023
            coef = 1e-3 / (total + 1e-6)
            if coef < 1.0:
                np.multiply(g, coef, out=g)  # noqa: B023

        ref = best_time(numpy_clip, n, repeats)
        tor = None
        if torch is not None:
            tp = torch.zeros(n, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
            tp.grad = torch.from_numpy(g)
            tor = best_time(lambda: torch.nn.utils.clip_grad_norm_([tp], 1e-3), n, repeats)  # noqa: B023
        rows.append(f"| {n:.0e} | {fmt_time(ours)} | {fmt_time(ref)} | {fmt_time(tor)} |")
        print(rows[-1], flush=True)
    return rows


def parallel_table(sizes, dtype, repeats):
    """Serial step vs the prange step, alone and each right after a multithreaded GEMM."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((256, 784)).astype(dtype)
    B = rng.standard_normal((784, 256)).astype(dtype)
    rows = [
        "| n | serial alone | prange alone | GEMM alone | GEMM + serial | GEMM + prange |",
        "|---|---|---|---|---|---|",
    ]
    for n in sizes:
        p, g = problem(n, dtype)
        opt = optim.Adam(LR)
        kind, slots, scalars, hyper = opt.prepare(p)
        args = (kind, p, g, slots, scalars, hyper, 2, LR)
        serial = best_time(lambda: K.optimizer_step(*args), n, repeats)  # noqa: B023
        par = best_time(lambda: K.optimizer_step_parallel(*args), n, repeats)  # noqa: B023
        gemm = best_time(lambda: np.dot(A, B), n, repeats)
        mix_s = best_time(lambda: (np.dot(A, B), K.optimizer_step(*args)), n, repeats)  # noqa: B023
        mix_p = best_time(lambda: (np.dot(A, B), K.optimizer_step_parallel(*args)), n, repeats)  # noqa: B023
        rows.append(
            f"| {n:.0e} | {fmt_time(serial)} | {fmt_time(par)} | {fmt_time(gemm)} | "
            f"{fmt_time(mix_s)} | {fmt_time(mix_p)} |"
        )
        print(rows[-1], flush=True)
    return rows


VARIANTS = [
    ("SGD", {}), ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("Adam", {}), ("Adam", {"amsgrad": True, "weight_decay": 1e-2}), ("AdamW", {"amsgrad": True}),
    ("RMSprop", {}), ("RMSprop", {"momentum": 0.9}), ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.9, "weight_decay": 1e-3}),
    ("Adagrad", {"weight_decay": 1e-3}), ("Adadelta", {"weight_decay": 1e-3}),
    ("Adamax", {"weight_decay": 1e-3}), ("NAdam", {"weight_decay": 1e-3}),
    ("NAdam", {"decoupled_weight_decay": True, "weight_decay": 1e-3}), ("Adam", {"maximize": True}),
]  # fmt: skip


def variants_table(dtype, repeats, n=50_000):
    """Kernel time per element for each option set, on a buffer that stays in cache: a variant far
    above its neighbours has lost its vectorized loop (as RMSprop's centered/momentum loops once
    did)."""
    rows = ["| optimizer | options | ns / element |", "|---|---|---|"]
    for name, hp in VARIANTS:
        p, g = problem(n, dtype)
        opt = getattr(optim, name)(LR, **hp)
        kind, slots, scalars, hyper = opt.prepare(p)
        args = (kind, p, g, slots, scalars, hyper, 2, LR)
        seconds = best_time(lambda: K.optimizer_step(*args), n, repeats)  # noqa: B023
        rows.append(f"| {name} | {hp or 'defaults'} | {seconds / n * 1e9:.2f} |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Adam only, 3 repeats")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--sizes", default="1e4,1e6,1e7", help="comma-separated buffer lengths")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the step table")
    parser.add_argument("--only", default="", help="comma-separated optimizer names")
    parser.add_argument("--no-extras", action="store_true", help="skip the clip and prange tables")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    repeats = 3 if args.quick else args.repeats
    names = ["Adam"] if args.quick else list(SETTINGS)
    if args.only:
        names = [n for n in SETTINGS if n.lower() in args.only.lower().split(",")]
    rounds = 1 if args.quick else args.rounds
    print(f"# One optimizer step, {dtype}, best of {rounds} x {repeats}\n\n{machine()}\n")
    step_table(names, sizes, dtype, repeats, rounds)
    if not args.no_extras:
        print("\n## clip_grad_norm (a clipping norm, so every call scales)\n")
        clip_table(sizes, dtype, repeats)
        print("\n## serial vs prange step (Adam), alone and after a 256x784 @ 784x256 GEMM\n")
        parallel_table(sizes, dtype, repeats)
        print("\n## kernel time per element by option set (5e4 elements, in cache)\n")
        variants_table(dtype, repeats)


if __name__ == "__main__":
    main()
