"""Shared fixtures. Shapes stay tiny: the suite's cost is Numba compile time, paid once per dtype."""

import numba
import numpy as np
import pytest

import fastbp as fb
from fastbp import config

ALL_ACTIVATIONS = [
    fb.Identity(),
    fb.ReLU(),
    fb.LeakyReLU(0.1),
    fb.LeakyReLU(-0.3),
    fb.ELU(0.7),
    fb.GELU(),
    fb.SiLU(),
    fb.Sigmoid(),
    fb.Tanh(),
    fb.Softplus(),
]
ALL_LOSSES = [fb.MSE(), fb.L1(), fb.Huber(0.5), fb.BinaryCrossEntropy(), fb.SoftmaxCrossEntropy()]


def fresh_asm(function, *args):
    """Assembly of a fresh, uncached compilation of the plain Python `function` with fastbp's flags
    (code loaded from the cache has none), for these arguments."""
    fresh = numba.njit(fastmath=config.FASTMATH, error_model="numpy", cache=False)(function)
    fresh(*args)
    return fresh.inspect_asm(fresh.signatures[0])


def make_targets(loss, rows: int, outputs: int, rng: np.random.Generator) -> np.ndarray:
    """Targets for `loss`, kept away from the kinks of L1/Huber (where derivatives jump)."""
    if loss.integer_targets:
        return rng.integers(0, outputs, size=rows)
    if isinstance(loss, fb.BinaryCrossEntropy):
        return rng.uniform(0.0, 1.0, size=(rows, outputs))
    return rng.normal(size=(rows, outputs)) * 3.0


def fit_and_replay(make_net, make_opt, X, y, w=None, epochs=2, batch_size=8, seed=9):
    """(net trained by fit, net trained by loss_and_grad + opt.step on the same batches in the same
    order): fit draws its dropout seed, then one permutation per epoch, from default_rng(seed)."""
    fitted, replayed = make_net(), make_net()
    fitted.fit(
        X,
        y,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=make_opt(),
        shuffle=True,
        seed=seed,
        verbose=0,
        sample_weight=w,
    )
    opt = make_opt()
    order_rng = np.random.default_rng(seed)
    order_rng.integers(0, 2**62)  # fit draws the dropout seed first
    n = X.shape[0]
    for _ in range(epochs):
        order = order_rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            replayed.loss_and_grad(X[rows], y[rows], sample_weight=None if w is None else w[rows])
            opt.step(replayed.params, replayed.grads)
    return fitted, replayed


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
