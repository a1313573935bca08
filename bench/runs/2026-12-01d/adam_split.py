"""Does Adam's pass pay split between the calling thread and a helper thread in a mini-batch step?

    .venv/bin/python bench/runs/2026-12-01d/adam_split.py [--batch 16] [--spins 0] [--rounds 6]

The mini-batch loop runs Adam's pass (optim._adam_range) serially after the step's GEMMs: the pass
alone was 80 us of the MLP's 279 us Adam step at batch 16 (bench/runs/2026-12-01c/targets_2.txt),
and a prange split of it lost 6-15x right after OpenBLAS's threads (bench/optim_results.md). This
prototype splits it instead as online_pair.py splits batch 1: a plain Python helper thread, nogil,
waiting on a release/acquire counter (pause for --spins rounds, then sched_yield), steps the second
half of the buffer while the calling thread steps the first. Forward and backward are steps.py's
loss_and_grad; the peers.py MLP (784-256-128-10), float32. Four modes, interleaved each round in one
process, best per-step time over the rounds: BLAS on 2 or 1 threads, x serial or split pass.
"""

import argparse
import threading
import time

import numpy as np

import fastbp as fb
from fastbp._kernels.cpu.optim import _adam_factors, _adam_range
from fastbp._kernels.cpu.steps import loss_and_grad
from fastbp._kernels.cpu.sync import load_acquire, spin_pause, store_release, yield_core
from fastbp._kernels.cpu.views import raw_view
from fastbp._kernels.jit import TRUE, njit

REQUEST, DONE = 0, 16  # counters 128 bytes apart
LR = 1e-3
HYPER = np.array([0.9, 0.999, 1e-8, 0.0, 0.0, 0.0])  # betas, eps, weight decay, amsgrad, maximize


@njit
def steps(li, lf, gu, params, grads, ws, X, Y, batch, slots, flags, split, step0, loss_code, seed):
    """Every batch of X: loss_and_grad, then Adam's pass; split > 0 hands [split, n) to the helper.
    Flags and codes come as plain values (jit.TRUE; loss_code and seed from Python): a literal True
    or 0 here compiled, and cached, another forward pass."""
    n = params.size
    no_weights = X[0, :0]
    for k in range(X.shape[0] // batch):
        Xb = raw_view(X.reshape(-1), k * batch * X.shape[1], (batch, X.shape[1]))
        Yb = raw_view(Y.reshape(-1), k * batch * Y.shape[1], (batch, Y.shape[1]))
        loss_and_grad(
            li, lf, gu, loss_code, 0.0, 0.0, 0.0, params, grads, ws, Xb, Yb, no_weights, batch, TRUE, seed, k
        )
        step = step0 + k + 1
        c = _adam_factors(False, HYPER, step, LR, 1.0)
        if split == 0:
            _adam_range(params, grads, slots, c, 0, n)
            continue
        store_release(flags, REQUEST, step)
        _adam_range(params, grads, slots, c, 0, split)
        while load_acquire(flags, DONE) < step:
            spin_pause()


@njit
def helper(params, grads, slots, flags, split, spins_before_yield, seen):
    """Steps [split, n) for every request after `seen`, until the request is negative."""
    while True:
        spins = 0
        request = load_acquire(flags, REQUEST)
        while request == seen:
            if spins < spins_before_yield:
                spins += 1
                spin_pause()
            else:
                yield_core()
            request = load_acquire(flags, REQUEST)
        if request < 0:
            return
        _adam_range(params, grads, slots, _adam_factors(False, HYPER, request, LR, 1.0), split, params.size)
        store_release(flags, DONE, request)
        seen = request


class Run:
    def __init__(self, X, Y, batch, split, spins):
        self.net = fb.Sequential(
            fb.Dense(784, 256), fb.ReLU(), fb.Dense(256, 128), fb.ReLU(), fb.Dense(128, 10),
            loss=fb.SoftmaxCrossEntropy(), seed=0,
        )  # fmt: skip
        self.slots = np.zeros((2, self.net.params.size), np.float32)
        self.X, self.Y, self.batch, self.spins, self.step = X, Y, batch, spins, 0
        self.split = (self.net.params.size // 2) // 16 * 16 if split else 0

    def epoch(self) -> float:
        """Seconds per step of one pass over X."""
        net, flags = self.net, np.zeros(48, np.int64)
        flags[REQUEST] = flags[DONE] = self.step
        ws = net._workspace_for(self.batch)
        thread = None
        if self.split:
            args = (net.params, net.grads, self.slots, flags, self.split, self.spins, self.step)
            thread = threading.Thread(target=helper, args=args, daemon=True)
            thread.start()
        tick = time.perf_counter()
        plan = (net._li, net._lf, net._gu)
        data = (self.X, self.Y, self.batch)
        steps(
            *plan,
            net.params,
            net.grads,
            ws,
            *data,
            self.slots,
            flags,
            self.split,
            self.step,
            net.loss.code,
            0,
        )
        elapsed = time.perf_counter() - tick
        if thread is not None:
            flags[REQUEST] = -1
            thread.join()
        n_steps = self.X.shape[0] // self.batch
        self.step += n_steps
        return elapsed / n_steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--spins", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rows", type=int, default=4096)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, 784), dtype=np.float32)
    Y = np.zeros((args.rows, 10), np.float32)
    Y[np.arange(args.rows), rng.integers(0, 10, args.rows)] = 1
    modes = {
        (threads, split): Run(X, Y, args.batch, split, args.spins) for threads in (2, 1) for split in (0, 1)
    }
    best = dict.fromkeys(modes, float("inf"))
    for round_ in range(args.rounds + 1):
        for (threads, split), run in modes.items():
            fb.set_num_threads(threads)
            seconds = run.epoch()
            if round_:  # the first round compiles and warms up
                best[threads, split] = min(best[threads, split], seconds)
    base = best[2, 0]
    print(f"MLP 784-256-128-10, float32, batch {args.batch}, helper spins {args.spins} before yielding")
    print("| BLAS threads | Adam pass | us per step (best) | vs BLAS 2 threads, serial pass |")
    print("|--:|---|--:|--:|")
    for (threads, split), seconds in best.items():
        mode = "split (helper thread)" if split else "serial"
        print(f"| {threads} | {mode} | {seconds * 1e6:,.1f} | {base / seconds:.2f}x |")
    # The split steps each element as the serial pass does; the BLAS thread count rounds differently.
    for threads in (2, 1):
        same = np.array_equal(modes[threads, 0].net.params, modes[threads, 1].net.params)
        print(f"BLAS {threads} threads: split and serial passes ended with the same parameters: {same}")


if __name__ == "__main__":
    main()
