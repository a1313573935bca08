"""Compile fastbp's CPU kernels ahead of the first fit: `fastbp compile`, or fb.precompile().

With an empty Numba cache a first fit spends 12-14 s compiling (bench/compile_time.py); an
image build, an install step or a CI job can pay that here instead, so that the user's first fit
loads the kernels from the cache (under a second). One compiled version per dtype serves every
architecture, loss and optimizer, so a few tiny fits cover every network: the mini-batch and batch-1
loops, and batch 1's fused loop of larger networks (online_pair.py), each for data of either float
dtype (fit trains on float data where it lies, converting each batch or sample), the forward pass
of predict and evaluate, and loss_and_grad; and the entry points of every activation, loss,
optimizer rule and matrix product, the fused SGD pass, the weight penalty and dropout (each
compiled on its own when a fit first uses it: indirect.py). The kernels land where Numba's cache is
(NUMBA_CACHE_DIR, else __pycache__ beside fastbp's sources, which must be writable).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

DTYPES = ("float32", "float64")


def _other_dtype(dtype) -> str:
    """The float dtype that is not `dtype`: fit and the drop-ins train on data of either."""
    return "float64" if np.dtype(dtype) == np.float32 else "float32"


def _tiny_data(dtype):
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype(dtype), rng.integers(0, 2, size=8)


def _network_parts(dtype) -> None:
    from fastbp import layers
    from fastbp._kernels.cpu import activations, blas, losses, online_pair, optim, steps
    from fastbp.network import Sequential

    for code in range(len(activations.ENTRIES)):
        activations.entry_addresses(code, dtype)
    for code in range(len(losses.ENTRIES)):
        losses.entry_address(code, dtype)
    for kind in range(len(optim.STEP_ENTRIES)):
        optim.step_address(kind, dtype)
    for entry in blas.NN_ENTRIES + blas.TN_ENTRIES + blas.NT_ENTRIES:
        if entry is not None:
            blas.entry_address(entry, dtype)
    steps.backward_sgd_address(dtype)
    steps.penalty_address(dtype)
    steps.dropout_address(dtype)
    X, y = _tiny_data(dtype)
    net = Sequential(layers.Dense(3, 4), layers.ReLU(), layers.Dense(4, 2), loss="cross_entropy", dtype=dtype)
    other = _other_dtype(dtype)
    for data in (X, X.astype(other)):  # fit trains on data of either float dtype where it lies
        net.fit(data, y, epochs=1, batch_size=4, verbose=0)  # the mini-batch loop
        net.fit(data, y, epochs=1, batch_size=1, optimizer="sgd", verbose=0)  # the batch-1 loop
        # The fused batch-1 loop of larger networks (online_pair.py), one per rule, 5-8 s each
        # cold: one worker compiles the function both worker counts run.
        with online_pair.forcing(1):
            for rule in ("sgd", "adam"):
                net.fit(data, y, epochs=1, batch_size=1, optimizer=rule, verbose=0)
    net.evaluate(X, y)  # predict's forward pass, the loss and the penalty
    net.loss_and_grad(X, y)  # one pass without an update (gradcheck, custom loops)


def _sklearn_parts(dtype) -> None:
    from sklearn.exceptions import ConvergenceWarning

    from fastbp.sklearn import MLPClassifier, MLPRegressor

    X, y = _tiny_data(dtype)
    other = _other_dtype(dtype)
    for solver in ("adam", "lbfgs"):  # sgd runs the same compiled epoch as adam
        for estimator in (MLPClassifier, MLPRegressor):
            model = estimator(hidden_layer_sizes=(4,), solver=solver, max_iter=2, dtype=dtype, random_state=0)
            # Data of either float dtype, which the drop-ins train on as it is.
            for data in (X, X.astype(other)):
                with warnings.catch_warnings():  # two iterations do not converge, on purpose
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(data, y.astype(dtype) if estimator is MLPRegressor else y)
            model.predict(X)


def precompile(dtypes=DTYPES, *, sklearn: bool = False, report=None) -> dict[str, float]:
    """Compile (or load from the cache) every kernel a fit, predict and evaluate of any network
    needs, for each dtype in `dtypes`; with sklearn=True also the scikit-learn drop-ins' (needs
    scikit-learn). `report(part, seconds)` is called after each part. Returns {part: seconds}, one
    part per dtype (and per dtype with ' sklearn')."""
    names = [np.dtype(d).name for d in ([dtypes] if isinstance(dtypes, str) else dtypes)]
    if not names or any(name not in DTYPES for name in names):
        raise ValueError(f"dtypes must be taken from {DTYPES}, got {dtypes!r}")
    parts = [(name, _network_parts, name) for name in names]
    if sklearn:
        parts += [(f"{name} sklearn", _sklearn_parts, name) for name in names]
    seconds = {}
    for part, run, dtype in parts:
        tick = time.perf_counter()
        run(dtype)
        seconds[part] = time.perf_counter() - tick
        if report is not None:
            report(part, seconds[part])
    return seconds
