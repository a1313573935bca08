"""The kernels' GEMM backend, before and after: loss_and_grad of 784-256-128-10 (float32, ReLU,
softmax cross-entropy) with the GEMMs through NumPy's OpenBLAS (fastbp's default) and through
Numba's np.dot (scipy's OpenBLAS; FASTBP_BLAS=numba), each in fresh processes, interleaved.

    .venv/bin/python bench/bench_blas.py [--threads 1,2] [--batches 16,64,256,1024] [--rounds 3]

Prints samples/s (best over rounds) and the ratio numpy / numba per thread count and batch.
"""

import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import json, sys, time
import numpy as np
import fastbp as fb
from fastbp._kernels.cpu import blas

threads, batches = int(sys.argv[1]), [int(b) for b in sys.argv[2].split(",")]
fb.set_num_threads(threads)
net = fb.Sequential(fb.Dense(784, 256), fb.ReLU(), fb.Dense(256, 128), fb.ReLU(), fb.Dense(128, 10),
                    loss="cross_entropy", seed=0)
rng = np.random.default_rng(0)
out = {"backend": blas.backend()}
for batch in batches:
    X = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    net.loss_and_grad(X, y)
    times = []
    for _ in range(30):
        tick = time.perf_counter()
        net.loss_and_grad(X, y)
        times.append(time.perf_counter() - tick)
    out[batch] = batch / min(times)
print(json.dumps(out))
"""


def run(choice, threads, batches):
    env = {**os.environ, "FASTBP_BLAS": choice}
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(threads), batches],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="16,64,256,1024")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    print("| threads | batch | numba np.dot (samples/s) | numpy OpenBLAS (samples/s) | ratio |")
    print("|---|---|--:|--:|--:|")
    for threads in (int(t) for t in args.threads.split(",")):
        best = {"numba": {}, "numpy": {}}
        for _ in range(args.rounds):
            for choice in ("numba", "numpy"):  # interleaved: load hits both alike
                figures = run(choice, threads, args.batches)
                for batch in batches:
                    key = str(batch)
                    best[choice][batch] = max(best[choice].get(batch, 0.0), figures[key])
        for batch in batches:
            before, after = best["numba"][batch], best["numpy"][batch]
            print(
                f"| {threads} | {batch} | {before:,.0f} | {after:,.0f} | {after / before:.2f}x |", flush=True
            )


if __name__ == "__main__":
    main()
