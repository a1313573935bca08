"""fastbp.datasets: shapes, dtypes, determinism, argument checks and the train/test split."""

import numpy as np
import pytest

from fastbp import datasets

SYNTHETIC = [datasets.spirals, datasets.xor, datasets.moons]


@pytest.mark.parametrize("make", SYNTHETIC)
def test_synthetic_sets_have_documented_shapes_and_dtypes(make):
    X, y = make(n_samples=101, noise=0.1, seed=0)
    assert X.shape == (101, 2) and X.dtype == np.float64 and X.flags.c_contiguous
    assert y.shape == (101,) and y.dtype == np.int64
    assert np.isfinite(X).all()
    assert set(np.unique(y)) <= set(range(3))


@pytest.mark.parametrize("make", SYNTHETIC)
def test_same_seed_same_data_other_seed_other_data(make):
    X1, y1 = make(n_samples=50, seed=4)
    X2, y2 = make(n_samples=50, seed=4)
    X3, _ = make(n_samples=50, seed=5)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


def test_spirals_classes_are_balanced_and_shuffled():
    X, y = datasets.spirals(n_samples=100, n_classes=4, noise=0.0)
    assert np.bincount(y).tolist() == [25, 25, 25, 25]
    assert not (np.diff(y) >= 0).all()  # rows in random order, not grouped by class
    assert np.abs(X).max() <= 1.0


def test_noise_free_sets_follow_their_definitions():
    X, y = datasets.xor(n_samples=200, noise=0.0)
    np.testing.assert_array_equal(y, ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(int))
    X, y = datasets.moons(n_samples=200, noise=0.0)
    upper = X[y == 0]
    lower = X[y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0)
    assert np.bincount(y).tolist() == [100, 100]


@pytest.mark.parametrize("make", SYNTHETIC)
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_samples": 0}, ValueError, "n_samples must be >= 1"),
        ({"n_samples": 2.5}, TypeError, "n_samples must be an int"),
        ({"noise": -0.1}, ValueError, "noise must be finite and >= 0"),
        ({"noise": float("nan")}, ValueError, "noise"),
        ({"noise": "a lot"}, TypeError, "noise must be a real number"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_bad_arguments_are_rejected(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**kwargs)


def test_spirals_need_two_classes():
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        datasets.spirals(n_classes=1)


def test_digits_scaled_to_unit_interval():
    pytest.importorskip("sklearn")
    X, y = datasets.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.dtype == np.int64 and sorted(np.unique(y)) == list(range(10))


def test_digits_without_sklearn_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError, match=r"pip install fastbp\[sklearn\]"):
        datasets.digits()


def test_train_test_split_partitions_the_rows():
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size=0.25, seed=1)
    assert len(X_test) == 3 and len(X_train) == 7  # 2.5 rows round up
    np.testing.assert_array_equal(X_train[:, 0] / 2, y_train)  # rows stay paired
    np.testing.assert_array_equal(X_test[:, 0] / 2, y_test)
    assert sorted(np.concatenate([y_train, y_test]).tolist()) == list(range(10))
    again = datasets.train_test_split(X, y, test_size=0.25, seed=1)
    np.testing.assert_array_equal(again[3], y_test)
    assert len(datasets.train_test_split(X, y, test_size=4)[1]) == 4


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((np.zeros((5, 2)), np.zeros(4)), {}, ValueError, "X has 5 rows but y has 4"),
        ((np.zeros((1, 2)), np.zeros(1)), {}, ValueError, "at least 2 rows"),
        ((np.zeros((5, 2)), np.zeros(5)), {"test_size": 0.0}, ValueError, r"in \(0, 1\)"),
        ((np.zeros((5, 2)), np.zeros(5)), {"test_size": 5}, ValueError, r"in \[1, 4\]"),
        ((np.zeros((5, 2)), np.zeros(5)), {"test_size": "half"}, TypeError, "test_size"),
    ],
)
def test_train_test_split_checks_its_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        datasets.train_test_split(*args, **kwargs)
