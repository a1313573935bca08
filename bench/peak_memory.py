"""Peak memory of fit against issue 5's bound: the data plus 4x the parameters plus one batch's
workspace plus 60 MB.

    .venv/bin/python bench/peak_memory.py                  # 60,000 x 784 float32, the peers.py nets
    .venv/bin/python bench/peak_memory.py --rows 20000 --nets mlp

What is measured is the process's resident memory (Linux: VmRSS and its high-water mark VmHWM in
/proc/self/status, the mark reset by writing 5 to /proc/self/clear_refs), so NumPy's buffers, Numba's
and the BLAS's all count, and pages allocated but never touched do not. Each case builds its network,
runs a short fit first (kernels compiled or loaded, the workspace sized, the optimizer's state
created), then measures one epoch: "fit peak" is the high-water mark during that epoch over the
resident memory just before it. The data is already resident then, so "bound" is the rest of the
issue's bound, 4 x parameter bytes + workspace bytes + 60 MB: a fit within it keeps the whole
process within data + 4P + workspace + 60 MB over what it held before the data.

Cases beyond the plain fit: validation_split (the training rows are a view; the held-out rows are
converted once if the data's dtype is not the network's), sample_weight, float64 data for a float32
network (kept as it is: each batch, or each sample at batch size 1, is converted as it is read),
and one input fit copies once to train on, marked "copied" in the table and not held to the bound:
Fortran-ordered data (batches are gathered row by row, from C-ordered rows).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import fastbp as fb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import NETS  # noqa: E402

MB = 10**6
SLACK = 60 * MB  # the bound's constant
STATUS = "/proc/self/status"


def supported() -> bool:
    """Whether this system lets a process read and reset its resident high-water mark."""
    return os.path.exists(STATUS) and os.access("/proc/self/clear_refs", os.W_OK)


def _status_bytes(key: str) -> int:
    with open(STATUS) as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"{key} not in {STATUS}")


def peak_over(run) -> int:
    """Bytes by which the resident high-water mark during run() exceeds the resident memory just
    before it."""
    before = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # the high-water mark starts again from the current resident size
    run()
    return _status_bytes("VmHWM") - before


def bound(net) -> int:
    """The issue's bound less the data: 4 x the parameters + the workspace + 60 MB."""
    return 4 * net.params.nbytes + net._workspace.nbytes + SLACK


def make_net(widths):
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [fb.Dense(n_in, n_out), fb.ReLU()]
    return fb.Sequential(*layers[:-1], loss=fb.SoftmaxCrossEntropy(), seed=0)


def fit_peak(widths, X, y, batch: int, optimizer: str, **fit_kwargs) -> tuple[int, int]:
    """(fit peak, bound) in bytes for one epoch of a fresh network, after a short warm-up fit."""
    net = make_net(widths)
    opt = fb.optim.get(optimizer, lr=1e-3)
    net.fit(X[: 2 * batch], y[: 2 * batch], epochs=1, batch_size=batch, optimizer=opt, verbose=0)
    peak = peak_over(
        lambda: net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0, **fit_kwargs)
    )
    return peak, bound(net)


CASES = {
    "plain": lambda X, rng: (X, {}),
    "validation_split": lambda X, rng: (X, {"validation_split": 0.1}),
    "sample_weight": lambda X, rng: (X, {"sample_weight": rng.random(X.shape[0])}),
    "float64 data": lambda X, rng: (X.astype(np.float64), {}),
    "Fortran-ordered": lambda X, rng: (np.asfortranarray(X), {}),
}


def copied(case: str) -> bool:
    """Whether fit trains on a copy of this case's data (see the docstring)."""
    return case == "Fortran-ordered"


def measure_case(net: str, optimizer: str, batch: int, case: str, rows: int) -> tuple[int, int, int]:
    """(data bytes, fit peak, bound) of one case. Run in a fresh process (main does): in a process
    that has freed memory before, the allocator hands it out again without the resident size
    growing, and the measure would miss it."""
    widths = NETS[net]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], rows)
    X, fit_kwargs = CASES[case](X, rng)
    return (X.nbytes, *fit_peak(widths, X, y, batch, optimizer, **fit_kwargs))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--nets", default="mlp,small,deep", help="of " + ", ".join(NETS))
    parser.add_argument("--batches", default="1,64,1024")
    args = parser.parse_args(argv)
    if not supported():
        print("needs Linux's /proc/self/status and a writable /proc/self/clear_refs")
        return 2
    runs = []
    for net in args.nets.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            runs += [(net, "adam", batch, "plain"), (net, "sgd", batch, "plain")]
            more = ("validation_split", "sample_weight", "float64 data")
            runs += [(net, "adam", batch, case) for case in more]
        runs += [(net, "adam", 64, "Fortran-ordered")]
    print(f"fit's peak resident memory over the resident memory before it: one epoch of {args.rows:,} "
          "rows, each case in a fresh process; MB = 10^6 bytes")  # fmt: skip
    print("| net | optimizer | batch | case | data (MB) | fit peak (MB) | bound (MB) | within |")
    print("|---|---|--:|---|--:|--:|--:|---|")
    misses = 0
    spawn = multiprocessing.get_context("spawn")
    for net, optimizer, batch, case in runs:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as fresh:
            data, peak, limit = fresh.submit(measure_case, net, optimizer, batch, case, args.rows).result()
        misses += peak > limit and not copied(case)
        label = case + (" (copied)" if copied(case) else "")
        row = (net, optimizer, batch, label, data / MB, peak / MB, limit / MB, peak <= limit)
        print("| {} | {} | {} | {} | {:.0f} | {:.1f} | {:.1f} | {} |".format(*row), flush=True)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
