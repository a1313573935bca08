"""Shared fixtures. Shapes stay tiny: the suite's cost is Numba compile time, paid once per dtype."""

import numpy as np
import pytest

import fastbp as fb

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


def make_targets(loss, rows: int, outputs: int, rng: np.random.Generator) -> np.ndarray:
    """Targets for `loss`, kept away from the kinks of L1/Huber (where derivatives jump)."""
    if loss.integer_targets:
        return rng.integers(0, outputs, size=rows)
    if isinstance(loss, fb.BinaryCrossEntropy):
        return rng.uniform(0.0, 1.0, size=(rows, outputs))
    return rng.normal(size=(rows, outputs)) * 3.0


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
