"""Where a mini-batch step's time goes, in one process: the batch gather alone, + the forward pass,
+ the loss, the whole plain-SGD step (fastbp's kernels in a compiled loop over a shuffled 8192-row
X), and the step's products alone as fastbp issues them (the same BLAS calls, nothing else), best
of 9 interleaved rounds. "step/products" is what the rest of a step costs on top of its GEMMs.

    .venv/bin/python bench/runs/2026-12-01b/step_vs_products.py NET BATCH THREADS
"""

import sys
import time
from pathlib import Path

import numpy as np
from numba.typed import List

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import peers  # noqa: E402

import fastbp as fb  # noqa: E402
from fastbp._kernels.cpu import losses  # noqa: E402
from fastbp._kernels.cpu.blas import gemm_nn, gemm_nt, gemm_tn_update  # noqa: E402
from fastbp._kernels.cpu.losses import loss_and_output_grad_at  # noqa: E402
from fastbp._kernels.cpu.steps import (  # noqa: E402
    backward_sgd_address,
    backward_sgd_at,
    forward,
    gather_batch,
    output_delta,
)
from fastbp._kernels.jit import TRUE, ZERO, njit  # noqa: E402

GATHER, FORWARD, LOSS, STEP = range(4)


@njit
def steps_up_to(li, lf, gu, params, grads, ws, X, Y, perm, batch, steps, stop, loss_fn, sgd_fn, lr):
    """`steps` training steps of fastbp's mini-batch loop, each cut after part `stop`."""
    unweighted = np.empty(0, params.dtype)
    total = 0.0
    for k in range(steps):
        start = (k * batch) % (perm.size - batch + 1)
        Xb, Yb, Wb = gather_batch(li, gu, ws, X, Y, unweighted, perm, start, batch)
        if stop == GATHER:
            total += Xb[0, 0]
            continue
        out = forward(li, lf, gu, params, ws, Xb, batch, TRUE, ZERO, k)  # no literal: see jit.TRUE
        if stop == FORWARD:
            total += out[0, 0]
            continue
        total += loss_and_output_grad_at(loss_fn, 0.0, out, Yb, Wb, output_delta(li, gu, ws, batch))
        if stop == LOSS:
            continue
        backward_sgd_at(sgd_fn, li, lf, gu, params, grads, ws, Xb, batch, lr)
    return total


@njit
def products(A, W, D, dA, steps, lr):
    """The step's products as fastbp issues them: Z = A @ W, dA = D @ W.T, W -= lr A.T @ D."""
    for _ in range(steps):
        for i in range(len(W)):
            gemm_nn(A[i], W[i], A[i + 1])
        for i in range(len(W) - 1, -1, -1):
            if i > 0:
                gemm_nt(D[i], W[i], dA[i])
            gemm_tn_update(A[i], D[i], W[i], -lr)


def main() -> None:
    name, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fb.set_num_threads(threads)
    widths = peers.NETS[name]
    net = fb.Sequential(*peers.layer_specs(widths), loss=fb.SoftmaxCrossEntropy(), dtype=np.float32)
    X, labels = peers.make_data(widths, 8192)
    Y = labels.reshape(-1, 1).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(X))
    ws = net._workspace_for(batch)
    entries = (
        losses.entry_address(losses.SOFTMAX_CROSS_ENTROPY, np.float32),
        backward_sgd_address(np.float32),
    )
    rng = np.random.default_rng(1)
    A = List([rng.standard_normal((batch, w)).astype(np.float32) for w in widths])
    W = List([(rng.standard_normal(s) * 0.01).astype(np.float32) for s in zip(widths[:-1], widths[1:])])
    D = List([rng.standard_normal((batch, w)).astype(np.float32) for w in widths[1:]])
    dA = List([np.empty((batch, w), np.float32) for w in widths[:-1]])
    steps = max(2, 4096 // batch * 4)

    def args(stop, count):
        state = (net._li, net._lf, net._gu, net.params, net.grads, ws, X, Y, perm, batch)
        return state + (count, stop) + entries + (1e-3,)

    for stop in range(4):
        steps_up_to(*args(stop, 2))
    products(A, W, D, dA, 2, 1e-6)
    best = [float("inf")] * 5
    for _ in range(9):
        for stop in range(4):
            tick = time.perf_counter()
            steps_up_to(*args(stop, steps))
            best[stop] = min(best[stop], (time.perf_counter() - tick) / steps)
        tick = time.perf_counter()
        products(A, W, D, dA, steps, 1e-6)
        best[4] = min(best[4], (time.perf_counter() - tick) / steps)
    us = [b * 1e6 for b in best]
    print(
        f"{name} batch {batch}, {threads} thread(s): gather {us[0]:.1f}, + forward {us[1]:.1f}, "
        f"+ loss {us[2]:.1f}, step {us[3]:.1f} us ({batch / best[3]:,.0f}/s); products alone "
        f"{us[4]:.1f} us ({batch / best[4]:,.0f}/s); step/products {us[3] / us[4]:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
