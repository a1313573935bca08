"""Bad input gets a clear ValueError/TypeError naming what and where, and the model is unchanged."""

import numpy as np
import pytest

import fastbp as fb
from fastbp._validation import check_features


@pytest.fixture
def clf():
    return fb.Sequential(
        fb.Dense(3, 4), fb.ReLU(), fb.Dense(4, 3), loss=fb.SoftmaxCrossEntropy(), dtype=np.float64, seed=0
    )


@pytest.fixture
def reg():
    return fb.Sequential(fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 2), loss=fb.MSE(), seed=0)


X_OK = np.arange(12, dtype=np.float64).reshape(4, 3) / 10
Y_OK = np.array([0, 1, 2, 1])

BAD_X = [
    (np.ones(3), ValueError, "2-D.*reshape"),
    (np.ones((2, 2, 3)), ValueError, "2-D"),
    (np.ones((4, 5)), ValueError, "5 features.*takes 3"),
    (np.ones((0, 3)), ValueError, "empty"),
    (np.array([[1.0, np.nan, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]), ValueError, "nan at row 0, column 1"),
    (np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, np.inf], [0, 0, 0]]), ValueError, "inf at row 2, column 2"),
    (np.array([["a", "b", "c"]] * 4), TypeError, "numbers"),
    (np.array([[object(), 1, 2]] * 4, dtype=object), TypeError, "numbers"),
    (np.ones((4, 3)) * 1j, TypeError, "complex"),
    (None, TypeError, "None"),
]


@pytest.mark.parametrize("X, error, match", BAD_X)
def test_bad_X_rejected_and_model_unchanged(clf, X, error, match):
    before, grads_before = clf.params.copy(), clf.grads.copy()
    with pytest.raises(error, match=match):
        clf.loss_and_grad(X, Y_OK)
    with pytest.raises(error, match=match):
        clf.forward(X)
    np.testing.assert_array_equal(clf.params, before)
    np.testing.assert_array_equal(clf.grads, grads_before)


def test_value_that_overflows_float32_rejected():
    net = fb.Sequential(fb.Dense(3, 3), loss="cross_entropy", seed=0)
    X = X_OK.copy()
    X[1, 2] = 1e300
    with pytest.raises(ValueError, match="1e\\+300 at row 1, column 2, too large for float32"):
        net.loss_and_grad(X, Y_OK)
    # fit keeps float64 data uncopied (its batches are converted as gathered): the same check, and
    # nothing trained.
    before = net.params.copy()
    with pytest.raises(ValueError, match="1e\\+300 at row 1, column 2, too large for float32"):
        net.fit(X, Y_OK, epochs=1, verbose=0)
    np.testing.assert_array_equal(net.params, before)
    X[1, 2] = np.inf  # a non-finite value is named as such, not as too large
    with pytest.raises(ValueError, match="contains a non-finite value: inf at row 1, column 2"):
        net.fit(X, Y_OK, epochs=1, verbose=0)


@pytest.mark.parametrize("keep_float", [False, True])
def test_features_kept_in_their_float_dtype_only_for_fit(keep_float):
    X = X_OK.astype(np.float64)
    checked = check_features(X, 3, np.dtype(np.float32), keep_float=keep_float)
    assert (checked is X) == keep_float
    assert checked.dtype == (np.float64 if keep_float else np.float32)
    # Fortran order and integers are converted either way.
    for other in (np.asfortranarray(X), X.astype(np.int64)):
        converted = check_features(other, 3, np.dtype(np.float32), keep_float=keep_float)
        assert converted.dtype == np.float32 and converted.flags.c_contiguous


BAD_LABELS = [
    (np.array([0, 1, 3, 1]), ValueError, "label 3 at row 2.*outside"),
    (np.array([0, -1, 2, 1]), ValueError, "label -1 at row 1"),
    (np.array([0, 1.5, 2, 1]), ValueError, "integer class labels.*1.5 at row 1"),
    (np.array([0, np.nan, 2, 1]), ValueError, "nan at row 1"),
    (np.array([0, 1, 2]), ValueError, "3 rows but X has 4"),
    (np.zeros((4, 3)), ValueError, "1-D array of integer class labels"),
    (np.array([True, False, True, False]), TypeError, "booleans"),
    (np.array([], dtype=int), ValueError, "empty"),
    (np.array(["a", "b", "c", "d"]), TypeError, "numbers"),
]


@pytest.mark.parametrize("y, error, match", BAD_LABELS)
def test_bad_labels_rejected(clf, y, error, match):
    before = clf.params.copy()
    with pytest.raises(error, match=match):
        clf.loss_and_grad(X_OK, y)
    np.testing.assert_array_equal(clf.params, before)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.ones((4, 3)), r"shape \(4, 2\)"),
        (np.ones(4), r"shape \(4, 2\)"),
        (np.ones((4, 2, 1)), r"shape \(4, 2\)"),
        (np.array([[0, 1.0], [np.inf, 0], [0, 0], [0, 0]]), "inf at row 1, column 0"),
    ],
)
def test_bad_real_targets_rejected(reg, y, match):
    before = reg.params.copy()
    with pytest.raises(ValueError, match=match):
        reg.loss_and_grad(X_OK, y)
    np.testing.assert_array_equal(reg.params, before)


def test_bce_targets_must_be_probabilities():
    net = fb.Sequential(fb.Dense(3, 1), loss="bce", seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\].*2.0 at row 1"):
        net.loss_and_grad(X_OK, np.array([0.0, 2.0, 1.0, 0.0]))


def test_other_dtypes_and_layouts_are_converted(clf):
    reference_loss = clf.loss_and_grad(X_OK, Y_OK)
    grads = clf.grads.copy()
    fortran = np.asfortranarray(X_OK)
    strided = np.repeat(X_OK, 2, axis=0)[::2]
    assert not strided.flags.c_contiguous
    for X in (fortran, strided, X_OK.astype(np.longdouble), X_OK.tolist()):
        assert clf.loss_and_grad(X, Y_OK) == reference_loss
        np.testing.assert_array_equal(clf.grads, grads)
    ints = np.arange(12).reshape(4, 3)
    assert np.isfinite(clf.loss_and_grad(ints, Y_OK.astype(np.float64)))
    assert np.isfinite(clf.loss_and_grad(ints, Y_OK.reshape(-1, 1)))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: fb.Dense(0, 3), ValueError, "in_features must be at least 1"),
        (lambda: fb.Dense(3, -1), ValueError, "out_features must be at least 1"),
        (lambda: fb.Dense(3.5, 2), TypeError, "in_features must be an int"),
        (lambda: fb.Dense(3, 2, init="magic"), ValueError, "init must be one of"),
        (lambda: fb.Sequential(fb.Dense(3, 4), fb.Dense(5, 2)), ValueError, "takes 5 inputs.*gives 4"),
        (lambda: fb.Sequential(), ValueError, "at least one Dense"),
        (lambda: fb.Sequential(fb.ReLU(), fb.Dense(3, 2)), ValueError, "follow a Dense"),
        (lambda: fb.Sequential(fb.Dense(3, 2), fb.ReLU, fb.Dense(2, 2)), TypeError, "instance"),
        (lambda: fb.Sequential(fb.Dense(3, 2), "relu"), TypeError, "not a fastbp layer"),
        (lambda: fb.Sequential(fb.Dense(3, 2), dtype=np.int32), ValueError, "float32 or float64"),
        (lambda: fb.Sequential(fb.Dense(3, 2), loss="hinge"), ValueError, "unknown loss"),
        (lambda: fb.Sequential(fb.Dense(3, 1), loss="cross_entropy"), ValueError, "at least 2 outputs"),
        (lambda: fb.Sequential(fb.Dense(3, 2), l2=-1.0), ValueError, "l2 must be >= 0"),
        (lambda: fb.Sequential(fb.Dense(3, 2), seed=1.5), TypeError, "seed"),
        (lambda: fb.Dropout(1.0), ValueError, r"\[0, 1\)"),
        (lambda: fb.LeakyReLU(float("nan")), ValueError, "finite"),
        (lambda: fb.Huber(0.0), ValueError, "delta"),
        (lambda: fb.ELU(-1.0), ValueError, "alpha"),
    ],
)
def test_bad_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "w, match",
    [
        (np.ones(3), r"shape \(4,\)"),
        (np.array([1.0, -1.0, 1.0, 1.0]), "non-negative, got -1.0 at row 1"),
        (np.array([1.0, np.nan, 1.0, 1.0]), "nan at row 1"),
        (np.zeros(4), "all zeros"),
    ],
)
def test_bad_sample_weight(clf, w, match):
    before = clf.params.copy()
    with pytest.raises(ValueError, match=match):
        clf.loss_and_grad(X_OK, Y_OK, sample_weight=w)
    with pytest.raises(ValueError, match=match):
        clf.fit(X_OK, Y_OK, sample_weight=w, verbose=0)
    np.testing.assert_array_equal(clf.params, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["first block", "later block", "last element"])
def test_a_non_finite_value_is_found_in_any_block_without_a_copy_of_the_data(dtype, where):
    """The finiteness scan goes block by block (FINITE_BLOCK values each): a bad value in any
    block, the last partial one included, is found and named, and the scan's temporaries stay a
    block's size (np.isfinite(X).all() would build a boolean copy of X: 2.4 MB here)."""
    import tracemalloc

    from fastbp import _validation

    rows, cols = 2 * _validation.FINITE_BLOCK // 55 + 7, 55  # two blocks and a part of one
    X = np.zeros((rows, cols), dtype)
    clean = X.copy()
    tracemalloc.start()
    assert _validation.check_features(clean, cols, np.dtype(dtype)) is clean
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * _validation.FINITE_BLOCK
    places = {"first block": (3, 4), "later block": (rows // 2, 9), "last element": (rows - 1, cols - 1)}
    row, col = places[where]
    X[row, col] = np.inf
    with pytest.raises(ValueError, match=f"X contains a non-finite value: inf at row {row}, column {col}"):
        _validation.check_features(X, cols, np.dtype(dtype))
