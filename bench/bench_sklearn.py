"""Fit time of fastbp.sklearn's MLPClassifier / MLPRegressor against scikit-learn's, same settings.

    .venv/bin/python bench/bench_sklearn.py              # digits and 50,000 x 100 (~10 minutes)
    .venv/bin/python bench/bench_sklearn.py --quick      # digits only, 2 repeats
    .venv/bin/python bench/bench_sklearn.py --threads 2  # BLAS / Numba threads (default 1)

Data: scikit-learn's digits (1,797 x 64, pixels / 16; 75% fit, 25% scored), and make_classification
/ make_regression with 50,000 rows x 100 features (45,000 fit, 5,000 scored). Settings: the
estimators' defaults (hidden_layer_sizes=(100,), adam, batch_size=200, max_iter=200, tol=1e-4)
with random_state=0; on the 50,000-row sets max_iter=10 and tol=0, so both run exactly 10 epochs.
Each time is the best of --repeats fits (fastbp and scikit-learn interleaved, after one warm-up fit
each): the machine may be shared, and the best run is the least disturbed.

Rows compare, for one data set and solver:
- "defaults": float64 data, both estimators at their defaults: scikit-learn computes in float64,
  fastbp in float32 (its dtype default);
- float64 data, fastbp with dtype=None (scikit-learn's rule: float64 here), both in float64;
- float32 data to both (scikit-learn keeps float32, as does fastbp).
Times: CPU seconds of the process (BLAS and Numba on --threads threads, 1 by default: then CPU time
is the fit's own work, and moves much less than wall time when others share the machine); wall
time in brackets.
Results and their reading: bench/sklearn_results.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np


def _setup_threads(n: int) -> None:
    from threadpoolctl import threadpool_limits

    import fastbp as fb

    fb.set_num_threads(n)
    threadpool_limits(n)  # numpy's OpenBLAS too (scikit-learn's GEMMs)


def _data(name: str):
    from sklearn.datasets import load_digits, make_classification, make_regression
    from sklearn.model_selection import train_test_split

    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        return train_test_split(X, y, test_size=0.25, random_state=0)
    if name == "digits-regression":  # the digit's value as a real target
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        return train_test_split(X, (y - 4.5) / 2.9, test_size=0.25, random_state=0)
    if name == "synthetic":
        X, y = make_classification(
            n_samples=50_000, n_features=100, n_informative=40, n_classes=5, random_state=0
        )
    else:
        X, y = make_regression(n_samples=50_000, n_features=100, n_informative=40, noise=10.0, random_state=0)
        y = (y - y.mean()) / y.std()
    return train_test_split(X, y, test_size=0.1, random_state=0)


def _time_fit(make, X, y):
    """(wall seconds, CPU seconds of this process, fitted model). With one thread for BLAS and
    Numba, CPU time is the fit's own work, much less moved by other jobs on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    model = make().fit(X, y)
    return time.perf_counter() - wall, time.process_time() - cpu, model


# The runs of one case: (label, library, data dtype, fastbp dtype parameter).
RUNS = [
    ("sk64", "sklearn", np.float64, None),
    ("sk32", "sklearn", np.float32, None),
    ("fb", "fastbp", np.float64, "float32"),
    ("fb64", "fastbp", np.float64, None),
    ("fb32", "fastbp", np.float32, None),
]
# The rows: (what, scikit-learn's run, fastbp's run).
ROWS = [
    ("defaults: f64 data; sk f64, fb f32", "sk64", "fb"),
    ("f64 data, both f64 (fb dtype=None)", "sk64", "fb64"),
    ("f32 data, both f32", "sk32", "fb32"),
]


def run_case(data_name, estimator, params, repeats, runs=RUNS):
    """Best wall and CPU time of each run over `repeats` rounds (the runs interleaved in each)."""
    import sklearn.neural_network as sk

    import fastbp.sklearn as fbsk

    X_train, X_test, y_train, y_test = _data(data_name)
    makers = {}
    for label, library, data_dtype, dtype in runs:
        if library == "sklearn":
            makers[label] = (lambda: getattr(sk, estimator)(**params), data_dtype)
        else:
            makers[label] = (lambda dtype=dtype: getattr(fbsk, estimator)(**params, dtype=dtype), data_dtype)
    best = {label: [float("inf"), float("inf"), None] for label in makers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for make, data_dtype in makers.values():  # warm-up: compile or cache load, BLAS
            make().set_params(max_iter=1).fit(X_train[:500].astype(data_dtype), y_train[:500])
        for _ in range(repeats):
            for label, (make, data_dtype) in makers.items():
                wall, cpu, model = _time_fit(make, X_train.astype(data_dtype), y_train)
                entry = best[label]
                entry[0], entry[1] = min(entry[0], wall), min(entry[1], cpu)
                entry[2] = model
    scores = {
        label: (entry[2].n_iter_, entry[2].score(X_test.astype(makers[label][1]), y_test))
        for label, entry in best.items()
    }
    return best, scores


CASES = [
    # (data, estimator, parameters, rows)
    ("digits", "MLPClassifier", {}, ROWS),
    ("digits", "MLPClassifier", {"solver": "sgd"}, ROWS[:1]),
    ("digits", "MLPClassifier", {"solver": "lbfgs"}, ROWS[1:2]),
    ("digits-regression", "MLPRegressor", {}, ROWS),
    ("synthetic", "MLPClassifier", {"max_iter": 10, "tol": 0.0}, ROWS),
    ("synthetic-regression", "MLPRegressor", {"max_iter": 10, "tol": 0.0}, ROWS),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="digits only, 2 repeats")
    args = parser.parse_args(argv)
    _setup_threads(args.threads)

    import numba
    import sklearn

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"threads={args.threads}; numpy {np.__version__}, numba {numba.__version__}, "
        f"scikit-learn {sklearn.__version__}"
    )
    repeats = 2 if args.quick else args.repeats
    print(f"best of {repeats}; times are CPU seconds of the process (wall in brackets)")
    print(
        "| data | estimator | solver | compared | scikit-learn | fastbp | speed-up CPU (wall) "
        "| epochs sk / fb | test score sk / fb |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for data_name, estimator, params, rows in CASES:
        if args.quick and not data_name.startswith("digits"):
            continue
        needed = {label for _, sk_label, fb_label in rows for label in (sk_label, fb_label)}
        runs = [run for run in RUNS if run[0] in needed]
        best, scores = run_case(data_name, estimator, {"random_state": 0, **params}, repeats, runs)
        solver = params.get("solver", "adam")
        for what, sk_label, fb_label in rows:
            (sk_wall, sk_cpu, _), (fb_wall, fb_cpu, _) = best[sk_label], best[fb_label]
            if solver == "lbfgs":
                what = "f64 data, both f64 (lbfgs is f64)"
            print(
                f"| {data_name} | {estimator} | {solver} | {what} | {sk_cpu:.2f} s ({sk_wall:.2f}) "
                f"| {fb_cpu:.2f} s ({fb_wall:.2f}) | {sk_cpu / fb_cpu:.1f}x ({sk_wall / fb_wall:.1f}x) "
                f"| {scores[sk_label][0]} / {scores[fb_label][0]} "
                f"| {scores[sk_label][1]:.4f} / {scores[fb_label][1]:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
