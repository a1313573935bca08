"""Adam's pass split over both cores by Numba's TBB layer, the GEMMs left to OpenBLAS's two threads.

The one-pool experiment of 2026-12-01 (split_gemm_tbb.py) pinned the BLAS to one thread and split
every GEMM too; this one changes only the Adam pass: the step entry (optim.step_adam) runs
_adam_range on two halves of the buffers under prange. It needs `pip install tbb` (loaded as
shared/NUMBA_NOTES.md says). Alternating fresh processes, HEAD's fastbp against the patched copy:

    .venv/bin/python bench/runs/2026-12-01b/adam_pass_tbb.py [--rounds 3] [--net mlp] [--batches 1,16,64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

OLD = """def step_adam(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _adam_range(P, G, S, _adam_factors(False, H, step, lr, scale), 0, n)
"""
NEW = """@njit(parallel=True)
def _adam_halves(P, G, S, c, n):
    half = (n // 2 + 15) // 16 * 16
    for k in numba.prange(2):
        lo = k * half
        _adam_range(P, G, S, c, lo, min(lo + half, n))


def step_adam(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _adam_halves(P, G, S, _adam_factors(False, H, step, lr, scale), n)
"""

CHILD = """
import ctypes, os, sys, time
tree, layer, net, batches = sys.argv[1], sys.argv[2], sys.argv[3], [int(b) for b in sys.argv[4].split(",")]
if layer == "tbb":
    ctypes.CDLL(os.path.join(sys.prefix, "lib", "libtbb.so.12"), mode=ctypes.RTLD_GLOBAL)
    import numba
    numba.config.THREADING_LAYER = "tbb"
sys.path.insert(0, tree)
sys.path.insert(0, os.path.join(sys.argv[5], "bench"))
import fastbp as fb, peers
fb.set_num_threads(2)
widths, cells = peers.NETS[net], []
for batch in batches:
    n = peers.rows_for(batch)
    X, y = peers.make_data(widths, n)
    init = peers.initial_weights(widths)
    runs = {o: peers.FastbpPeer(widths, o, peers.LR[o], batch, X, y, init) for o in ("sgd", "adam")}
    best = dict.fromkeys(runs, 0.0)
    for peer in runs.values():
        peer.warmup()
    for r in range(7):
        for name, peer in runs.items():
            tick = time.perf_counter()
            peer.epoch(r)
            best[name] = max(best[name], n / (time.perf_counter() - tick))
    cells.append(f"batch {batch}: sgd {best['sgd']:,.0f} adam {best['adam']:,.0f}")
try:
    layer = __import__("numba").threading_layer()
except ValueError:  # no parallel region ran
    layer = "none"
print(f"[threading layer {layer}] " + " | ".join(cells), flush=True)
"""


def export(tmp: str, patched: bool) -> str:
    tree = os.path.join(tmp, "patched" if patched else "base")
    os.makedirs(tree)
    command = ["git", "-C", str(ROOT), "archive", "HEAD", "fastbp"]
    archive = subprocess.run(command, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
    if patched:
        path = Path(tree, "fastbp", "_kernels", "cpu", "optim.py")
        source = path.read_text()
        if OLD not in source:
            raise SystemExit("optim.step_adam is not what this experiment patches any more")
        path.write_text(source.replace(OLD, NEW))
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--net", default="mlp")
    parser.add_argument("--batches", default="1,16,64")
    args = parser.parse_args()
    if not Path(sys.prefix, "lib", "libtbb.so.12").exists():
        raise SystemExit("needs tbb in this environment: pip install tbb")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": export(tmp, False), "Adam pass on 2 cores (tbb)": export(tmp, True)}
        for round_ in range(args.rounds):
            for label, tree in trees.items():
                layer = "tbb" if "tbb" in label else "default"
                command = [sys.executable, "-c", CHILD, tree, layer, args.net, args.batches, str(ROOT)]
                out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
                print(f"round {round_ + 1} {label}, {args.net}: {out.strip()}", flush=True)


if __name__ == "__main__":
    main()
