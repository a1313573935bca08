"""A floor under a batch-1 SGD step: the first layer's update alone, which no implementation skips.

    .venv/bin/python bench/batch1_floor.py                 # the peers.py nets
    .venv/bin/python bench/batch1_floor.py --nets mlp --repeats 3

At batch 1 plain SGD changes W0[i, j] by -lr * x[i] * d[j]: with a dense input every element of the
first layer's weights is read and written once per sample, whatever else the step does (fastbp
does it inside its forward sweep, bench/../fastbp/_kernels/cpu/online.py). This script times that
rank-1 update alone, a vectorized loop over W0 in place (best of many calls, the weights left where
one sample leaves them in cache), and fastbp's whole batch-1 SGD epoch on peers.py's data in the
same process. "floor" is 1 / (the update alone): no batch-1 SGD step on this machine beats it, and
for the MLP, whose 784 KB W0 does not fit the 512 KB L2 of this project's machine, it is the
memory traffic of that one matrix.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fastbp as fb
from fastbp._kernels.jit import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import NETS, layer_specs, make_data, rows_for  # noqa: E402


@njit
def rank1_updates(W, x, d, step, count):
    """W += step * outer(x, d), `count` times (in place, W's dtype)."""
    for _ in range(count):
        for i in range(W.shape[0]):
            c = step * x[i]
            w = W[i]
            for j in range(W.shape[1]):
                w[j] += c * d[j]


def update_alone_us(n_in: int, n_out: int, repeats: int, seed: int = 0) -> float:
    """Best time of one rank-1 update of an (n_in, n_out) float32 W, dense x, in microseconds."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    x = rng.standard_normal(n_in).astype(np.float32)
    d = rng.standard_normal(n_out).astype(np.float32)
    step = np.float32(-1e-9)
    rank1_updates(W, x, d, step, 1)
    count = max(1, 20_000_000 // (n_in * n_out))
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        rank1_updates(W, x, d, step, count)
        best = min(best, (time.perf_counter() - tick) / count)
    return best * 1e6


def fit_samples_per_s(widths, repeats: int) -> float:
    rows = rows_for(1)
    X, y = make_data(widths, rows)
    net = fb.Sequential(*layer_specs(widths), loss=fb.SoftmaxCrossEntropy(), dtype=np.float32, seed=0)
    opt = fb.optim.SGD(lr=1e-2)
    net.fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)  # compile or load
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
        best = min(best, time.perf_counter() - tick)
    return rows / best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(NETS), help=f"comma-separated, from {','.join(NETS)}")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    names = [n for n in args.nets.split(",") if n]
    if args.repeats < 1 or not names or any(n not in NETS for n in names):
        parser.error(f"need repeats >= 1 and nets from {list(NETS)}")
    print("| net | W0 | W0 update alone (us) | floor (samples/s) | fastbp SGD (samples/s) | fastbp / floor |")
    print("|---|--:|--:|--:|--:|--:|")
    for name in names:
        widths = NETS[name]
        alone = update_alone_us(widths[0], widths[1], args.repeats)
        fit = fit_samples_per_s(widths, args.repeats)
        size = f"{widths[0]}x{widths[1]} ({widths[0] * widths[1] * 4 // 1024} KB)"
        floor = 1e6 / alone
        row = f"| {name} | {size} | {alone:.2f} | {floor:,.0f} | {fit:,.0f} | {fit / floor:.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
