"""Small built-in data sets for demos, tests and examples, plus a NumPy train/test split.

The synthetic sets (spirals, xor, moons) need NumPy only. Each returns `(X, y)`: X float64 of
shape (n_samples, 2), y int64 class labels of shape (n_samples,), rows in random order (so a
validation split taken from the end is a fair sample). The same seed gives the same data.
`digits()` goes through scikit-learn when it is installed.
"""

from __future__ import annotations

import math

import numpy as np

SKLEARN_HINT = "pip install fastbp[sklearn]"


def _check_n(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_noise(noise) -> float:
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)):
        raise TypeError(f"noise must be a real number, got {type(noise).__name__} {noise!r}")
    noise = float(noise)
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be finite and >= 0, got {noise}")
    return noise


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed


def _shuffled(rng: np.random.Generator, X: np.ndarray, y: np.ndarray):
    order = rng.permutation(X.shape[0])
    return np.ascontiguousarray(X[order]), y[order]


def _class_sizes(n_samples: int, n_classes: int) -> list[int]:
    """n_samples split over the classes as evenly as possible (the first classes get the extra)."""
    base, extra = divmod(n_samples, n_classes)
    return [base + (1 if c < extra else 0) for c in range(n_classes)]


def spirals(n_samples: int = 600, n_classes: int = 3, noise: float = 0.2, seed: int | None = 0):
    """Interleaved spiral arms in the plane, one per class (the CS231n toy problem): a linear model
    gets about 1/n_classes right, a small MLP nearly all.

    noise: standard deviation of the Gaussian jitter added to each point's angle (radians).
    Returns X float64 (n_samples, 2) within [-1, 1]^2, y int64 (n_samples,) in 0..n_classes-1."""
    n_samples = _check_n("n_samples", n_samples)
    n_classes = _check_n("n_classes", n_classes, low=2)
    noise = _check_noise(noise)
    rng = np.random.default_rng(_check_seed(seed))
    X = np.empty((n_samples, 2))
    y = np.empty(n_samples, dtype=np.int64)
    start = 0
    for label, size in enumerate(_class_sizes(n_samples, n_classes)):
        radius = np.linspace(0.05, 1.0, size)
        # Each arm turns through 4 radians; the arms start 2 pi / n_classes apart.
        angle = np.linspace(0.0, 4.0, size) + label * 2.0 * math.pi / n_classes
        angle += rng.normal(0.0, noise, size) if noise else 0.0
        X[start : start + size, 0] = radius * np.sin(angle)
        X[start : start + size, 1] = radius * np.cos(angle)
        y[start : start + size] = label
        start += size
    return _shuffled(rng, X, y)


def xor(n_samples: int = 400, noise: float = 0.1, seed: int | None = 0):
    """Points uniform in [-1, 1]^2, labelled 1 where exactly one coordinate is positive (the XOR of
    the signs), then jittered by Gaussian noise of standard deviation `noise` (labels keep the
    clean quadrant, so noise blurs the boundary). Not linearly separable.

    Returns X float64 (n_samples, 2), y int64 (n_samples,) in {0, 1}."""
    n_samples = _check_n("n_samples", n_samples)
    noise = _check_noise(noise)
    rng = np.random.default_rng(_check_seed(seed))
    X = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    if noise:
        X += rng.normal(0.0, noise, size=X.shape)
    return X, y


def moons(n_samples: int = 400, noise: float = 0.1, seed: int | None = 0):
    """Two interleaving half circles, as scikit-learn's make_moons draws them (NumPy only): class 0
    on the upper arc of the unit circle, class 1 on the lower arc shifted by (1, 0.5), plus
    Gaussian noise of standard deviation `noise`.

    Returns X float64 (n_samples, 2), y int64 (n_samples,) in {0, 1}."""
    n_samples = _check_n("n_samples", n_samples)
    noise = _check_noise(noise)
    rng = np.random.default_rng(_check_seed(seed))
    n_outer, n_inner = _class_sizes(n_samples, 2)
    t_outer = np.linspace(0.0, math.pi, n_outer)
    t_inner = np.linspace(0.0, math.pi, n_inner)
    X = np.concatenate(
        [
            np.stack([np.cos(t_outer), np.sin(t_outer)], axis=1),
            np.stack([1.0 - np.cos(t_inner), 0.5 - np.sin(t_inner)], axis=1),
        ]
    )
    y = np.concatenate([np.zeros(n_outer, np.int64), np.ones(n_inner, np.int64)])
    if noise:
        X += rng.normal(0.0, noise, size=X.shape)
    return _shuffled(rng, X, y)


def digits():
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), needs scikit-learn.

    Returns X float64 (1797, 64) with pixel values scaled from 0..16 to [0, 1], y int64 (1797,)
    in 0..9, in scikit-learn's order (use train_test_split to shuffle and split)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(f"fastbp.datasets.digits needs scikit-learn: {SKLEARN_HINT}") from None
    data = load_digits()
    X = np.ascontiguousarray(data.data, dtype=np.float64) / 16.0
    return X, np.asarray(data.target, dtype=np.int64)


def train_test_split(X, y, test_size: float | int = 0.2, seed: int | None = 0):
    """Shuffle the rows of X and y together and split them; returns (X_train, X_test, y_train,
    y_test), scikit-learn's order. test_size: a fraction in (0, 1) (rounded up to whole rows) or
    a row count in [1, rows - 1]. Not stratified. X and y keep their dtypes and trailing shapes."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y must be arrays with one row per sample")
    n = X.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {y.shape[0]}")
    if n < 2:
        raise ValueError(f"train_test_split needs at least 2 rows, got {n}")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer, np.floating)):
        raise TypeError(f"test_size must be a fraction or a row count, got {test_size!r}")
    if isinstance(test_size, (int, np.integer)):
        if not 1 <= test_size <= n - 1:
            raise ValueError(f"test_size as a row count must be in [1, {n - 1}], got {test_size}")
        n_test = int(test_size)
    else:
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a fraction must be in (0, 1), got {test_size}")
        n_test = min(max(math.ceil(n * test_size), 1), n - 1)
    order = np.random.default_rng(_check_seed(seed)).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]
