"""The matrix products alone: how many samples/s a training step could reach if it did nothing but
its GEMMs, through NumPy's BLAS on preallocated arrays (np.dot(a, b, out=c)).

    .venv/bin/python bench/limit.py                      # the peers.py nets at batch 1..1024
    .venv/bin/python bench/limit.py --batches 1,32 --threads 1

Per Dense layer i with input A_i (batch, in_i), weights W_i (in_i, out_i) and delta D_i (batch, out_i)
a step needs Z_i = A_i @ W_i, dW_i = A_i.T @ D_i, and, for every layer but the first,
dA_i = D_i @ W_i.T: 3L - 1 products for L layers. Nothing else is done (no bias, activation, loss or
optimizer update), so this is a ceiling for a BLAS-based step, not a prediction. At batch 1 the
products are matrix-vector shaped and each BLAS call costs microseconds of overhead whatever its
size; a kernel that avoids BLAS there (fastbp's batch-1 path does) can beat this figure.

np.dot, not np.matmul: with an inner dimension of 1 (dW = A.T @ D at batch 1) np.matmul leaves BLAS
for its own loop: 230 us against np.dot's 37 us for the (784, 1) @ (1, 256) product here. Elsewhere
the two call the same sgemm.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


class GemmStep:
    """The products of one training step of an MLP with layer widths `widths` at `batch` rows, on
    arrays allocated once (float32 by default). Call run() for one step."""

    def __init__(self, widths, batch: int, dtype=np.float32, seed: int = 0):
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1 or batch < 1:
            raise ValueError(f"need at least two positive widths and batch >= 1, got {widths}, {batch}")
        rng = np.random.default_rng(seed)

        def array(*shape):
            return rng.standard_normal(shape, dtype=np.float64).astype(dtype)

        self.widths, self.batch = widths, batch
        pairs = list(zip(widths[:-1], widths[1:]))
        self.W = [array(n_in, n_out) for n_in, n_out in pairs]
        # A[i] is layer i's input: the data for i = 0, the previous layer's output otherwise.
        self.A = [array(batch, widths[0])] + [array(batch, n_out) for _, n_out in pairs]
        self.D = [array(batch, n_out) for _, n_out in pairs]
        self.dW = [np.empty_like(W) for W in self.W]
        self.dA = [np.empty((batch, n_in), dtype=dtype) for n_in, _ in pairs]

    @property
    def n_products(self) -> int:
        return 3 * len(self.W) - 1

    @property
    def flops(self) -> int:
        """Floating-point operations of one step (2 per multiply-add)."""
        per = [2 * self.batch * W.shape[0] * W.shape[1] for W in self.W]
        return 3 * sum(per) - per[0]

    def run(self) -> None:
        dot, A, W, D = np.dot, self.A, self.W, self.D
        for i in range(len(W)):
            dot(A[i], W[i], out=A[i + 1])
        for i in reversed(range(len(W))):
            dot(A[i].T, D[i], out=self.dW[i])
            if i:
                dot(D[i], W[i].T, out=self.dA[i])


def limit_samples_per_s(
    widths, batch: int, *, min_seconds: float = 0.05, repeats: int = 3, dtype=np.float32
) -> float:
    """Samples/s of the GEMMs alone of a training step of the MLP `widths` at `batch` rows: the best
    over `repeats` timed runs of at least `min_seconds` each. Uses NumPy's BLAS with whatever
    threads it has (threadpoolctl limits them)."""
    step = GemmStep(widths, batch, dtype=dtype)
    step.run()  # first touch of every buffer
    tick = time.perf_counter()
    step.run()
    once = max(time.perf_counter() - tick, 1e-7)
    count = max(1, int(min_seconds / once))
    best = float("inf")
    for _ in range(max(1, repeats)):
        tick = time.perf_counter()
        for _ in range(count):
            step.run()
        best = min(best, (time.perf_counter() - tick) / count)
    return batch / best


def main(argv=None) -> int:
    from threadpoolctl import threadpool_info, threadpool_limits

    # The same nets as peers.py (kept here too so this file runs on its own).
    nets = {"mlp": (784, 256, 128, 10), "small": (64, 128, 64, 10), "deep": (64,) + (64,) * 10 + (10,)}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--nets", default=",".join(nets), help="comma-separated: mlp, small, deep")
    parser.add_argument("--batches", default="1,16,64,256,1024")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    names = [n for n in args.nets.split(",") if n]
    unknown = [n for n in names if n not in nets]
    if unknown:
        parser.error(f"unknown net(s) {unknown}; choose from {list(nets)}")
    batches = [int(b) for b in args.batches.split(",") if b]
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = [
            f"{i['internal_api']} {i.get('version')} {i.get('architecture')} x{i['num_threads']}"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
        print(f"NumPy BLAS: {'; '.join(blas)}\n")
        print("| net | batch | GEMMs/step | GF/s | samples/s |\n|---|---|---|---|---|")
        for name in names:
            for batch in batches:
                rate = limit_samples_per_s(nets[name], batch)
                step = GemmStep(nets[name], batch)
                gflops = step.flops * rate / batch / 1e9
                print(f"| {name} | {batch} | {step.n_products} | {gflops:.1f} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
