"""Batch-1 fits with validation data, the validation between epochs on OpenBLAS's default threads
against one thread (blas.one_thread), interleaved in one process; and what the validation itself
costs on each.

Each fit: 6 epochs of 4096 rows at batch 1 (peers.py's data), validation_data 1024 rows; medians
of --rounds fits per mode. "no validation" is the same fit without it, for scale.

    .venv/bin/python bench/runs/2026-12-08/validation_threads.py [--rounds 5]
"""

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import fastbp as fb
from fastbp._kernels.cpu import blas

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import peers  # noqa: E402
from adam_cost import make_net  # noqa: E402

ONE_THREAD = blas.one_thread


def fit_ms(widths, rule, X, y, validation):
    net = make_net(widths)
    opt = fb.optim.Adam(lr=1e-3) if rule == "adam" else fb.optim.SGD(lr=1e-2)
    net.fit(X[:64], y[:64], epochs=1, batch_size=1, optimizer=opt, verbose=0)
    tick = time.perf_counter()
    net.fit(X, y, epochs=6, batch_size=1, optimizer=opt, verbose=0, validation_data=validation)
    return (time.perf_counter() - tick) * 1e3


def evaluate_us(widths, Xv, yv, one):
    net = make_net(widths)
    best = float("inf")
    for _ in range(20):
        with ONE_THREAD() if one else contextlib.nullcontext():
            tick = time.perf_counter()
            net.evaluate(Xv, yv)
            best = min(best, time.perf_counter() - tick)
    return best * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default="small:adam,mlp:sgd,mlp:adam,deep:adam,small:sgd")
    args = parser.parse_args()
    for case in args.cases.split(","):
        name, rule = case.split(":")
        widths = peers.NETS[name]
        X, y = peers.make_data(widths, 4096)
        Xv, yv = peers.make_data(widths, 1024, seed=1)
        times = {"no validation": [], "default threads": [], "one thread": []}
        for _ in range(args.rounds):
            times["no validation"].append(fit_ms(widths, rule, X, y, None))
            blas.one_thread = contextlib.nullcontext
            times["default threads"].append(fit_ms(widths, rule, X, y, (Xv, yv)))
            blas.one_thread = ONE_THREAD
            times["one thread"].append(fit_ms(widths, rule, X, y, (Xv, yv)))
        med = {mode: statistics.median(values) for mode, values in times.items()}
        print(
            f"{name} {rule}: 6 epochs, no validation {med['no validation']:.0f} ms; with validation,"
            f" default BLAS threads {med['default threads']:.0f} ms, one thread {med['one thread']:.0f} ms"
            f" ({med['default threads'] / med['one thread']:.2f}x); one validation alone:"
            f" {evaluate_us(widths, Xv, yv, False):.0f} us on default threads,"
            f" {evaluate_us(widths, Xv, yv, True):.0f} us on one",
            flush=True,
        )


if __name__ == "__main__":
    main()
