"""Training speed of this checkout against an earlier git revision, side by side: for a change that
lives deep inside the compiled kernels (no switch can turn it off at run time).

    .venv/bin/python bench/ab_fit.py --rev df3b68e                       # batch 1, small and deep nets
    .venv/bin/python bench/ab_fit.py --rev HEAD~3 --batch 16 --nets mlp --rounds 5

The revision's fastbp/ is exported (git archive) to a temporary folder. Each round runs one fresh
process per tree, alternating, each with its own temporary Numba cache (filled by an untimed first
round, so compilation is never timed): a process builds the net, fits one untimed epoch, then times
--epochs epochs with SGD and with Adam and reports its best epoch. Prints the best samples/s per
tree over the rounds and the ratio this checkout / revision.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from peers import NETS, rows_for  # noqa: E402

SCRIPT = """
import json, sys, time
import numpy as np, fastbp as fb
widths, batch, epochs, rows = {widths!r}, {batch}, {epochs}, {rows}
fb.set_num_threads({threads})
rng = np.random.default_rng(0)
X = rng.standard_normal((rows, widths[0])).astype(np.float32)
y = rng.integers(0, widths[-1], rows)
layers = []
for n_in, n_out in zip(widths[:-1], widths[1:]):
    layers += [fb.Dense(n_in, n_out), fb.ReLU()]
result = {{}}
for name, opt in (("sgd", fb.optim.SGD(lr=0.01)), ("adam", fb.optim.Adam(lr=1e-3))):
    net = fb.Sequential(*layers[:-1], loss="cross_entropy", seed=0)
    net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0)
    best = float("inf")
    for _ in range(epochs):
        tick = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0)
        best = min(best, time.perf_counter() - tick)
    result[name] = rows / best
print(json.dumps(result))
"""


def export(rev: str, folder: str) -> str:
    """fastbp/ of `rev` under folder; returns the folder (for PYTHONPATH)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "fastbp"], capture_output=True, check=True
    ).stdout
    os.makedirs(folder)
    tar_path = os.path.join(folder, "rev.tar")
    with open(tar_path, "wb") as f:
        f.write(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run(tree: str, cache: str, script: str) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, NUMBA_CACHE_DIR=cache, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=cache)
    if done.returncode != 0:
        raise SystemExit(f"a run in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the git revision to compare against")
    parser.add_argument("--nets", default="small,deep", help=f"from {','.join(NETS)}")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=7, help="timed epochs per process (best kept)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    nets = args.nets.split(",")
    if any(net not in NETS for net in nets) or min(args.batch, args.rounds, args.epochs, args.threads) < 1:
        parser.error(f"nets from {list(NETS)}; batch, rounds, epochs and threads >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this checkout": str(ROOT), args.rev: export(args.rev, os.path.join(tmp, "rev"))}
        caches = {name: tempfile.mkdtemp(dir=tmp) for name in trees}
        what = f"best of {args.epochs} epochs x {args.rounds} rounds"
        print(f"batch {args.batch}, {args.threads} threads, {what}")
        for net in nets:
            script = SCRIPT.format(
                widths=NETS[net],
                batch=args.batch,
                epochs=args.epochs,
                rows=rows_for(args.batch),
                threads=args.threads,
            )
            for name, tree in trees.items():  # a discarded round: fills each tree's cache
                run(tree, caches[name], script)
            best = {name: {} for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    for opt, rate in run(tree, caches[name], script).items():
                        best[name][opt] = max(best[name].get(opt, 0.0), rate)
            for opt in ("sgd", "adam"):
                before, after = best[args.rev][opt], best["this checkout"][opt]
                rates = f"{args.rev} {before:,.0f} -> this checkout {after:,.0f} samples/s"
                print(f"{net} {opt}: {rates} ({after / before:.2f}x)")


if __name__ == "__main__":
    main()
