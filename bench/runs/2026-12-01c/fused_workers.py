"""Batch 1 on online.py's loop, on online_pair.py's fused loop alone, and on its two workers.

For each net and rule, one process fits one epoch of 2048 rows (float32, ReLU, softmax
cross-entropy; SGD lr 1e-2, Adam lr 1e-3) per mode, the modes interleaved, best of --rounds x 3
epochs. The mode is forced through online_pair.workers (0: online.py; 1: ALONE; 2: two workers),
whatever the thresholds say. Prints samples/s and the ratios alone / online and pair / online.

    .venv/bin/python bench/runs/2026-12-01c/fused_workers.py [--nets mlp,small,deep,100-100-50-10]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fastbp as fb
from fastbp._kernels.cpu import online_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import peers  # noqa: E402
from adam_cost import make_net  # noqa: E402

MODES = {"online": 0, "alone": 1, "pair": 2}


def widths_of(name):
    return peers.NETS[name] if name in peers.NETS else tuple(int(w) for w in name.split("-"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", default="mlp,small,deep,300-300-10,100-100-50-10,64-64-10")
    parser.add_argument("--rules", default="sgd,adam")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name in args.nets.split(","):
        widths = widths_of(name)
        X = rng.standard_normal((2048, widths[0])).astype(np.float32)
        y = rng.integers(0, widths[-1], 2048)
        for rule in args.rules.split(","):
            make_opt = (lambda: fb.optim.Adam(lr=1e-3)) if rule == "adam" else (lambda: fb.optim.SGD(lr=1e-2))
            nets = {mode: make_net(widths) for mode in MODES}
            opts = {mode: make_opt() for mode in MODES}
            best = dict.fromkeys(MODES, float("inf"))
            for _ in range(args.rounds):
                for mode, count in MODES.items():
                    online_pair.workers = lambda li, params, adam=False, _count=count: _count
                    for _ in range(3):
                        tick = time.perf_counter()
                        nets[mode].fit(X, y, epochs=1, batch_size=1, optimizer=opts[mode], verbose=0)
                        best[mode] = min(best[mode], time.perf_counter() - tick)
            rates = {mode: 2048 / seconds for mode, seconds in best.items()}
            n_params = nets["online"].params.size
            print(
                f"{name} ({n_params:,} parameters) {rule}: "
                + "  ".join(f"{mode} {rate:,.0f}/s" for mode, rate in rates.items())
                + f"  | alone/online {rates['alone'] / rates['online']:.2f}x"
                + f"  pair/online {rates['pair'] / rates['online']:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
