"""The first two-worker batch-1 fit after the process did something else, with and without the
partner thread moving itself off the calling thread's CPU (online_pair.move_off), interleaved in
one process.

Each trial: idle for 0.5 s, or a 512 x 512 NumPy product (OpenBLAS on two threads) then 5 ms of
the calling thread alone, then one timed fit of one epoch at batch 1 (peers.py's data, 2048 rows),
then three more fits back to back ("hot", the best of them). Medians over --trials.

    .venv/bin/python bench/runs/2026-12-08/placement.py [--trials 15] [--cases small:adam,mlp:sgd]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import fastbp as fb
from fastbp._kernels.cpu import online_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import peers  # noqa: E402
from adam_cost import make_net  # noqa: E402

PLACED = online_pair.move_off


def unplaced(cpu):
    return None


def one_trial(net, opt, X, y, before):
    before()
    tick = time.perf_counter()
    net.fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
    first = time.perf_counter() - tick
    hot = float("inf")
    for _ in range(3):
        tick = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
        hot = min(hot, time.perf_counter() - tick)
    return first * 1e3, hot * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--cases", default="small:adam,mlp:sgd,mlp:adam,deep:adam")
    args = parser.parse_args()
    product = np.ones((512, 512), np.float32)

    def idle():
        time.sleep(0.5)

    def after_product():
        product @ product
        tick = time.perf_counter()
        while time.perf_counter() - tick < 0.005:
            pass

    for case in args.cases.split(","):
        name, rule = case.split(":")
        widths = peers.NETS[name]
        X, y = peers.make_data(widths, 2048)
        net = make_net(widths)
        opt = fb.optim.Adam(lr=1e-3) if rule == "adam" else fb.optim.SGD(lr=1e-2)
        net.fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
        assert online_pair.workers(net._li, net.params, rule == "adam") == 2, case
        times = {(mode, before): [] for mode in ("unplaced", "placed") for before in ("idle", "product")}
        for _ in range(args.trials):
            for mode, move in (("unplaced", unplaced), ("placed", PLACED)):
                online_pair.move_off = move
                for before, action in (("idle", idle), ("product", after_product)):
                    times[mode, before].append(one_trial(net, opt, X, y, action))
        online_pair.move_off = PLACED
        for before in ("idle", "product"):
            line = [f"{name} {rule}, after {'0.5 s idle' if before == 'idle' else 'a NumPy product'}:"]
            medians = {}
            for mode in ("unplaced", "placed"):
                firsts = [first for first, _ in times[mode, before]]
                hots = [hot for _, hot in times[mode, before]]
                medians[mode] = statistics.median(firsts)
                line.append(
                    f"{mode} first fit {medians[mode]:.1f} ms (range {min(firsts):.1f}-{max(firsts):.1f}),"
                    f" hot {statistics.median(hots):.1f} ms;"
                )
            line.append(f"first fit unplaced / placed {medians['unplaced'] / medians['placed']:.2f}x")
            print(" ".join(line), flush=True)


if __name__ == "__main__":
    main()
