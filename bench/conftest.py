"""pytest-benchmark suites (bench/bench_*.py with test functions), run only when asked for:

    .venv/bin/python -m pytest bench --benchmark-only -q

pytest's default file pattern (test_*.py) would collect nothing here, so this hook collects the
bench_*.py files that define test functions; bench_*.py scripts without any (bench_optim.py, ...)
are not imported. A plain `pytest` from the repository root never gets here: testpaths = ["tests"].
Threads: fastbp's default (all cores), or FASTBP_NUM_THREADS.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb

MLP = (784, 256, 128, 10)


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        if "\ndef test_" in file_path.read_text(encoding="utf-8"):
            return pytest.Module.from_parent(parent, path=file_path)
    return None


def mlp_specs(widths=MLP) -> list:
    """Dense layers with ReLU between them (no activation after the last: softmax is in the loss)."""
    specs = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        specs.append(fb.Dense(n_in, n_out))
        if i < len(widths) - 2:
            specs.append(fb.ReLU())
    return specs


@pytest.fixture
def make_net():
    """make_net(widths=MLP) -> a float32 Sequential with softmax cross-entropy, seed 0."""

    def make(widths=MLP):
        return fb.Sequential(*mlp_specs(widths), loss=fb.SoftmaxCrossEntropy(), dtype=np.float32, seed=0)

    return make


@pytest.fixture
def make_data():
    """make_data(rows, widths=MLP) -> X (rows, in) float32 standard normal, y (rows,) int64 labels."""

    def make(rows, widths=MLP):
        rng = np.random.default_rng(rows)
        X = rng.standard_normal((rows, widths[0]), dtype=np.float32)
        return X, rng.integers(0, widths[-1], size=rows)

    return make
