"""One training epoch of 784-256-128-10 (ReLU, softmax cross-entropy, float32) through net.fit, at
batch 1, 32 and 256 with SGD (lr 1e-2) and Adam (lr 1e-3), against fastbp.reference.train.

    .venv/bin/python -m pytest bench/bench_fit.py --benchmark-only -q

The data sets are small (ROWS below) so that one round stays well under a second even for the
reference; extra_info["samples_per_s"] is rows / the fastest round. The optimizer object persists
across rounds, as in a long fit (the reference's Adam restarts each call: same work per step).
"""

import numpy as np
import pytest

import fastbp as fb
from fastbp import reference

ROWS = {1: 256, 32: 1024, 256: 2048}
LR = {"sgd": 1e-2, "adam": 1e-3}
CASES = [(optimizer, batch) for optimizer in LR for batch in ROWS]


def _label(benchmark, optimizer, batch):
    benchmark.group = f"fit epoch 784-256-128-10 {optimizer} batch {batch} ({ROWS[batch]} rows)"
    benchmark.extra_info.update(batch=batch, rows=ROWS[batch], optimizer=optimizer)


def _samples_per_s(benchmark, rows):
    benchmark.extra_info["samples_per_s"] = rows / benchmark.stats.stats.min


@pytest.mark.parametrize("optimizer,batch", CASES)
def test_fastbp_fit_epoch(benchmark, make_net, make_data, optimizer, batch):
    net = make_net()
    X, y = make_data(ROWS[batch])
    opt = {"sgd": fb.optim.SGD, "adam": fb.optim.Adam}[optimizer](lr=LR[optimizer])
    net.fit(X[: 2 * batch], y[: 2 * batch], batch_size=batch, optimizer=opt, verbose=0)  # compile/load
    _label(benchmark, optimizer, batch)
    history = benchmark(net.fit, X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0, seed=0)
    _samples_per_s(benchmark, ROWS[batch])
    assert len(history) == 1 and np.isfinite(history["loss"][0])


@pytest.mark.parametrize("optimizer,batch", CASES)
def test_reference_fit_epoch(benchmark, make_net, make_data, optimizer, batch):
    net = make_net()
    X, y = make_data(ROWS[batch])
    weights = [layer.W.copy() for layer in net.dense_layers]
    biases = [layer.b.copy() for layer in net.dense_layers]
    _label(benchmark, optimizer, batch)
    losses = benchmark(
        reference.train,
        net.specs,
        net.loss,
        weights,
        biases,
        X,
        y,
        epochs=1,
        batch_size=batch,
        lr=LR[optimizer],
        optimizer=optimizer,
        seed=0,
    )
    _samples_per_s(benchmark, ROWS[batch])
    assert len(losses) == 1 and np.isfinite(losses[0])
