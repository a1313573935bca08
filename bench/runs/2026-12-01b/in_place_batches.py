"""fit on data in its own order (shuffle=False; "full": one batch of every row), MLP 784-256-128-10,
16384 rows, plain SGD: best epoch of 5 and the first epoch's peak resident memory over what the
process held before it. Run per tree (a fastbp/ exported by git archive, or the checkout),
alternating fresh processes:

    .venv/bin/python bench/runs/2026-12-01b/in_place_batches.py TREE BATCH     # BATCH: 1024 or full
"""

import json
import sys
import time

tree = sys.argv[1]
batch = sys.argv[2]
sys.path.insert(0, tree)
import numpy as np  # noqa: E402

import fastbp as fb  # noqa: E402

fb.set_num_threads(2)
rng = np.random.default_rng(0)
n = 16384
X = rng.standard_normal((n, 784), dtype=np.float32)
y = rng.integers(0, 10, n)
B = n if batch == "full" else int(batch)


def make_net():
    layers = [fb.Dense(784, 256), fb.ReLU(), fb.Dense(256, 128), fb.ReLU(), fb.Dense(128, 10)]
    return fb.Sequential(*layers, loss="cross_entropy", seed=0)


def status_mb(field):
    """A /proc/self/status memory field (VmHWM: the peak resident size; VmRSS: the current one), MB."""
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024


net, opt = make_net(), fb.optim.SGD(lr=0.01)
net.fit(X, y, epochs=1, batch_size=B, shuffle=False, optimizer=opt, verbose=0)  # kernels loaded
open("/proc/self/clear_refs", "w").write("5")  # the peak restarts from here
before = status_mb("VmRSS")
make_net().fit(X, y, epochs=1, batch_size=B, shuffle=False, optimizer=fb.optim.SGD(lr=0.01), verbose=0)
peak = status_mb("VmHWM") - before
best = float("inf")
for _ in range(5):
    tick = time.perf_counter()
    net.fit(X, y, epochs=1, batch_size=B, shuffle=False, optimizer=opt, verbose=0)
    best = min(best, time.perf_counter() - tick)
print(
    json.dumps(
        {
            "tree": "head" if "headtree" in tree else "new",
            "batch": batch,
            "samples_per_s": round(n / best),
            "peak_over_mb": round(peak, 1),
        }
    )
)
