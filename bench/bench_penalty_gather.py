"""The weight penalty and the mini-batch gather of the compiled training loop, against the code they
replaced, plus what net.fit gains end to end. A script (no test functions, so bench/conftest.py does
not collect it):

    .venv/bin/python bench/bench_penalty_gather.py             # kernels, then net.fit
    .venv/bin/python bench/bench_penalty_gather.py --fit-only  # net.fit alone (runs on older trees)

Network 784-256-128-10 (ReLU, softmax cross-entropy, float32), l2 = 1e-4, batch 64. Kernel times are
the best of ROUNDS rounds of REPS calls on warm compiled functions, Python dispatch included (the
same for every row); the gathers sweep the batches of a shuffled 20,000-row epoch, as training does.
net.fit is one epoch over 20,000 x 784 standard-normal rows, best of --repeats.
The replaced kernels are kept below, verbatim, so one run shows both sides under the same load.

net.fit before/after: export each tree (git archive <commit> fastbp | tar -x -C /tmp/<tree>) and run
    NUMBA_CACHE_DIR=/tmp/nbc_<tree> PYTHONPATH=/tmp/<tree> .venv/bin/python \
        bench/bench_penalty_gather.py --fit-only
alternating the trees. A cache directory per tree matters: Numba does not invalidate a cached
kernel when a function it calls from another file changes (NUMBA_NOTES.md), so a shared cache can
time the old code.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import fastbp as fb
from fastbp._kernels import plan as P
from fastbp._kernels.jit import njit

WIDTHS = (784, 256, 128, 10)
ROWS = 20_000
BATCH = 64
L2 = 1e-4
REPS, ROUNDS = 100, 20


def make_net(dtype=np.float32, l1=0.0, l2=L2):
    specs = []
    for i, (n_in, n_out) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        specs.append(fb.Dense(n_in, n_out))
        if i < len(WIDTHS) - 2:
            specs.append(fb.ReLU())
    return fb.Sequential(*specs, loss=fb.SoftmaxCrossEntropy(), dtype=dtype, seed=0, l1=l1, l2=l2)


def make_data(dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.standard_normal((ROWS, WIDTHS[0]), dtype=dtype), rng.integers(0, WIDTHS[-1], size=ROWS)


# --- the replaced code ------------------------------------------------------------------------------


@njit
def penalty_scalar(li, params, grads, l1, l2, with_grad):
    """fastbp._kernels.cpu.steps.weight_penalty before: one scalar float64 loop over every weight."""
    total = 0.0
    if l1 == 0.0 and l2 == 0.0:
        return total
    t = params.dtype.type
    c1, c2, zero = t(l1), t(l2), t(0)
    for layer in range(li.shape[0]):
        start = li[layer, P.W_OFF]
        stop = start + li[layer, P.N_IN] * li[layer, P.N_OUT]
        for k in range(start, stop):
            w = params[k]
            total += l1 * abs(float(w)) + 0.5 * l2 * float(w) * float(w)
            if with_grad:
                sign = t(1) if w > zero else (t(-1) if w < zero else zero)
                grads[k] += c1 * sign + c2 * w
    return total


@njit
def gather_row_slices(X, Y, perm, lo, hi, Xb, Yb):
    """train_steps' gather before: one row slice assignment per row."""
    for i in range(hi - lo):
        source = perm[lo + i]
        Xb[i, :] = X[source]
        Yb[i, :] = Y[source]


@njit
def gather_fancy(X, Y, perm, lo, hi, Xb, Yb):
    """The np.take-style gather (allocates the gathered copy, then copies it in)."""
    rows = perm[lo:hi]
    Xb[: hi - lo] = X[rows]
    Yb[: hi - lo] = Y[rows]


# --- timing -----------------------------------------------------------------------------------------


def best_us(call, reps=REPS, rounds=ROUNDS) -> float:
    """Best mean time of one call(i), i = 0 .. reps-1, over `rounds` rounds, in microseconds."""
    call(0)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(reps):
            call(i)
        best = min(best, (time.perf_counter() - start) / reps)
    return best * 1e6


def kernel_rows() -> list[tuple[str, float, float]]:
    from fastbp._kernels.cpu.batch import gather_rows
    from fastbp._kernels.cpu.steps import weight_penalty

    @njit
    def gather_helper(X, Y, perm, lo, hi, Xb, Yb):
        gather_rows(X, perm, lo, hi, Xb)
        gather_rows(Y, perm, lo, hi, Yb)

    rows = []
    net = make_net()
    li, params = net._li, net.params
    grads = np.zeros_like(params)
    for l1, l2, with_grad in [(0.0, L2, True), (0.0, L2, False), (L2, 0.0, True), (L2, L2, True)]:
        label = f"penalty l1={l1:g} l2={l2:g} grad={with_grad}"
        before = best_us(lambda i: penalty_scalar(li, params, grads, l1, l2, with_grad))  # noqa: B023
        after = best_us(lambda i: weight_penalty(li, params, grads, l1, l2, with_grad))  # noqa: B023
        rows.append((label, before, after))

    X, y = make_data()
    Y = y.astype(np.float32).reshape(-1, 1)
    perm = np.random.default_rng(1).permutation(ROWS)
    Xb = np.empty((BATCH, WIDTHS[0]), np.float32)
    Yb = np.empty((BATCH, 1), np.float32)
    n_batches = ROWS // BATCH

    def sweep(gather):
        # Batch after batch through the epoch, as train_steps does: rows come from all of X.
        return lambda i: gather(X, Y, perm, (i % n_batches) * BATCH, (i % n_batches + 1) * BATCH, Xb, Yb)

    helper = best_us(sweep(gather_helper))
    rows.append(("gather X, Y: row slices -> gather_rows", best_us(sweep(gather_row_slices)), helper))
    rows.append(("gather X, Y: fancy index -> gather_rows", best_us(sweep(gather_fancy)), helper))
    return rows


def fit_samples_per_s(repeats: int) -> float:
    net = make_net()
    X, y = make_data()
    opt = fb.optim.Adam(lr=1e-3)
    net.fit(X[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, optimizer=opt, verbose=0)  # compile/load
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=BATCH, optimizer=opt, verbose=0, seed=0)
        best = min(best, time.perf_counter() - start)
    return ROWS / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-only", action="store_true", help="only the net.fit figure")
    parser.add_argument("--repeats", type=int, default=3, help="net.fit epochs timed (best taken)")
    parser.add_argument("--threads", type=int, default=None, help="fb.set_num_threads (default: all)")
    args = parser.parse_args()
    if args.threads is not None:
        fb.set_num_threads(args.threads)
    print(
        f"fastbp from {os.path.dirname(fb.__file__)}, {fb.get_num_threads()} threads; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    if not args.fit_only:
        print(
            f"{'kernel (784-256-128-10 float32, batch 64)':<48} {'before us':>10} {'after us':>10} "
            f"{'ratio':>7}"
        )
        for label, before, after in kernel_rows():
            print(f"{label:<48} {before:>10.1f} {after:>10.1f} {before / after:>6.1f}x")
    print(
        f"net.fit 20000x784, l2={L2:g}, batch {BATCH}, 1 epoch, best of {args.repeats}: "
        f"{fit_samples_per_s(args.repeats):,.0f} samples/s"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
