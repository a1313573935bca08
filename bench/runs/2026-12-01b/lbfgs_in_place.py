"""scikit-learn drop-in, L-BFGS on float64 data (20,000 x 100, one hidden layer of 64): ms per
iteration, best of 5 fits of up to 100 iterations, and a checksum of the first layer's weights (the
same in both trees: the same arithmetic). Run per tree, alternating fresh processes:

    .venv/bin/python bench/runs/2026-12-01b/lbfgs_in_place.py TREE
"""

import json
import sys
import time
import warnings

tree = sys.argv[1]
sys.path.insert(0, tree)

import numpy as np  # noqa: E402

import fastbp as fb  # noqa: E402
from fastbp.sklearn import MLPClassifier  # noqa: E402

fb.set_num_threads(2)
rng = np.random.default_rng(0)
X = rng.standard_normal((20000, 100))
y = (X[:, :5].sum(1) > 0).astype(int)
warnings.simplefilter("ignore")  # some fits stop at max_iter
MLPClassifier(hidden_layer_sizes=(64,), solver="lbfgs", max_iter=5, random_state=0).fit(X, y)  # kernels
best = float("inf")
for _ in range(5):
    model = MLPClassifier(hidden_layer_sizes=(64,), solver="lbfgs", max_iter=100, random_state=0)
    tick = time.perf_counter()
    model.fit(X, y)
    best = min(best, (time.perf_counter() - tick) / model.n_iter_)
checksum = float(model.coefs_[0].sum())
print(json.dumps({"tree": tree, "ms_per_iteration": round(best * 1e3, 3), "coef_sum": checksum}))
