"""fastbp.sklearn against scikit-learn itself: its estimator checks, its trajectories (same seeds,
same rules: equal up to rounding in float64), its accuracy on its own data sets, its messages for bad
parameters, and the places estimators live: Pipeline, GridSearchCV with workers, clone, pickle."""

import pickle
import re
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import scipy.sparse  # noqa: E402
import sklearn.neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_friedman1  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402
from sklearn.utils.estimator_checks import (  # noqa: E402
    check_sample_weight_equivalence_on_dense_data,
    check_sample_weight_equivalence_on_sparse_data,
    parametrize_with_checks,
)

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

FLOAT32_REASON = (
    "compares fitting with integer sample weights against fitting on repeated rows at rtol=1e-7; "
    "the default dtype is float32, whose rounding (about 6e-8 per operation) moves predictions by "
    "~1e-7 relative. The check passes with dtype='float64' (test_sample_weight_checks_in_float64)."
)
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data": FLOAT32_REASON,
    "check_sample_weight_equivalence_on_sparse_data": FLOAT32_REASON,
}


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# --- scikit-learn's own estimator checks --------------------------------------------------------


@parametrize_with_checks(
    [MLPClassifier(), MLPRegressor()], expected_failed_checks=lambda est: EXPECTED_FAILED
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_sample_weight_checks_in_float64(Estimator):
    name = Estimator.__name__
    check_sample_weight_equivalence_on_dense_data(name, Estimator(dtype="float64"))
    check_sample_weight_equivalence_on_sparse_data(name, Estimator(dtype="float64"))


# --- the same trajectory as scikit-learn ----------------------------------------------------------


def _data(kind, rows=47, features=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    if kind == "multiclass":
        return X, rng.choice(np.array(["a", "b", "c"]), size=rows)
    if kind == "binary":
        return X, rng.integers(0, 2, size=rows) * 3 - 1
    if kind == "multilabel":
        return X, rng.integers(0, 2, size=(rows, 3))
    if kind == "regression":
        return X, X @ rng.normal(size=features) + 0.1 * rng.normal(size=rows)
    if kind == "multioutput":
        return X, X @ rng.normal(size=(features, 2)) + 0.1 * rng.normal(size=(rows, 2))
    if kind == "counts":
        return X, rng.poisson(np.exp(0.3 * X[:, 0]), size=rows).astype(float)
    raise ValueError(kind)


TRAJECTORIES = [
    ("multiclass", {}),
    ("multiclass", {"solver": "sgd", "learning_rate_init": 0.05}),
    (
        "multiclass",
        {
            "solver": "sgd",
            "nesterovs_momentum": False,
            "learning_rate": "invscaling",
            "learning_rate_init": 0.2,
        },
    ),
    (
        "multiclass",
        {"solver": "sgd", "learning_rate": "adaptive", "tol": 10.0, "n_iter_no_change": 1, "max_iter": 12},
    ),
    ("multiclass", {"solver": "lbfgs", "max_iter": 15}),
    ("multiclass", {"early_stopping": True, "validation_fraction": 0.3, "max_iter": 15}),
    ("binary", {"activation": "logistic", "batch_size": 10}),
    ("binary", {"solver": "lbfgs", "activation": "tanh", "max_iter": 15}),
    ("multilabel", {"hidden_layer_sizes": (6, 4), "activation": "tanh"}),
    ("regression", {"batch_size": 13, "alpha": 0.1}),
    ("regression", {"activation": "identity", "early_stopping": True, "tol": 10.0}),
    ("multioutput", {"solver": "sgd", "learning_rate_init": 0.01, "momentum": 0.5}),
    ("multioutput", {"solver": "lbfgs", "alpha": 1.0, "max_iter": 15}),
    ("counts", {"loss": "poisson", "learning_rate_init": 0.01}),
]


@pytest.mark.parametrize("kind,params", TRAJECTORIES)
@pytest.mark.parametrize("weighted", [False, True])
def test_same_trajectory_as_sklearn(kind, params, weighted):
    X, y = _data(kind)
    sample_weight = np.random.default_rng(1).uniform(0.2, 3.0, size=len(X)) if weighted else None
    params = {"hidden_layer_sizes": (7,), "max_iter": 8, "random_state": 3, **params}
    is_regression = kind in ("regression", "multioutput", "counts")
    ours = (MLPRegressor if is_regression else MLPClassifier)(dtype=None, **params)
    theirs = (sk.MLPRegressor if is_regression else sk.MLPClassifier)(**params)
    ours.fit(X, y, sample_weight=sample_weight)
    theirs.fit(X, y, sample_weight=sample_weight)

    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    assert ours.out_activation_ == theirs.out_activation_
    assert (ours.n_layers_, ours.n_outputs_) == (theirs.n_layers_, theirs.n_outputs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
    for name in ("loss_curve_", "validation_scores_"):
        if getattr(theirs, name, None) is not None:
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-9)
    for name in ("best_loss_", "best_validation_score_"):
        if getattr(theirs, name, None) is not None:
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-9)
    if is_regression:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-11)
    else:
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-11)
        np.testing.assert_allclose(
            ours.predict_log_proba(X), theirs.predict_log_proba(X), rtol=1e-8, atol=1e-10
        )
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-9)


def test_partial_fit_and_warm_start_follow_sklearn():
    X, y = _data("multiclass")
    params = {"hidden_layer_sizes": (6,), "random_state": 0, "max_iter": 3, "warm_start": True}
    ours, theirs = MLPClassifier(dtype=None, **params), sk.MLPClassifier(**params)
    for _ in range(2):
        ours.fit(X, y)
        theirs.fit(X, y)
    for _ in range(3):
        ours.partial_fit(X[:30], y[:30])
        theirs.partial_fit(X[:30], y[:30])
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.t_ == theirs.t_

    fresh, reference = MLPRegressor(dtype=None, random_state=0), sk.MLPRegressor(random_state=0)
    Xr, yr = _data("regression")
    for start in (0, 20):
        fresh.partial_fit(Xr[start : start + 20], yr[start : start + 20])
        reference.partial_fit(Xr[start : start + 20], yr[start : start + 20])
    np.testing.assert_allclose(fresh.predict(Xr), reference.predict(Xr), rtol=1e-9, atol=1e-11)


def test_float32_default_stays_close_to_float64():
    X, y = _data("multiclass", rows=120)
    a = MLPClassifier(random_state=0, max_iter=20).fit(X, y)
    b = MLPClassifier(random_state=0, max_iter=20, dtype="float64").fit(X, y)
    assert a.coefs_[0].dtype == np.float32 and b.coefs_[0].dtype == np.float64
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], atol=1e-4)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-4)
    # float32 input stays float32 under scikit-learn's rule, float64 input stays float64.
    assert MLPClassifier(dtype=None, max_iter=2).fit(X.astype(np.float32), y).coefs_[0].dtype == np.float32
    assert MLPClassifier(solver="lbfgs", max_iter=2).fit(X, y).coefs_[0].dtype == np.float64


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_float64_data_in_float32_trains_as_its_float32_copy(solver, early_stopping):
    """The float32 default trains on float64 data as it is, each batch converted as it is copied in
    (no float32 copy of the whole data): bit for bit what training on X.astype(float32) gives."""
    X, y = _data("multiclass", rows=150)
    params = dict(solver=solver, early_stopping=early_stopping, random_state=0, max_iter=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        kept = MLPClassifier(**params).fit(X, y)
        copied = MLPClassifier(**params).fit(X.astype(np.float32), y)
    for a, b in zip(kept.coefs_ + kept.intercepts_, copied.coefs_ + copied.intercepts_):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert kept.loss_curve_ == copied.loss_curve_


def test_lbfgs_reads_float64_blocks_in_place_as_it_converts_float32_ones(monkeypatch):
    """L-BFGS computes in float64: float64 X is read block by block where it lies, float32 X copied
    and converted per block. From the same weights (warm start: the initial draw follows X's dtype,
    as scikit-learn's does), with the same values and blocks smaller than X (three of 64 rows), the
    same weights bit for bit."""
    from fastbp import sklearn as drop_in

    monkeypatch.setattr(drop_in, "_LBFGS_BLOCK", 64)
    X, y = _data("multiclass", rows=150)
    X = X.astype(np.float32)
    models = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for data in (X.astype(np.float64), X):
            model = MLPClassifier(solver="lbfgs", random_state=0, max_iter=1, warm_start=True)
            model.fit(X.astype(np.float64), y)  # the same float64 initial weights for both
            models.append(model.set_params(max_iter=15).fit(data, y))
    in_place, converted = models
    for a, b in zip(in_place.coefs_ + in_place.intercepts_, converted.coefs_ + converted.intercepts_):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)


def test_sparse_input_gives_the_dense_result():
    X, y = _data("multiclass")
    X[np.abs(X) < 0.8] = 0.0
    dense = MLPClassifier(random_state=0, max_iter=5).fit(X, y)
    sparse = MLPClassifier(random_state=0, max_iter=5).fit(scipy.sparse.csr_matrix(X), y)
    np.testing.assert_array_equal(dense.coefs_[0], sparse.coefs_[0])
    np.testing.assert_array_equal(dense.predict_proba(X), sparse.predict_proba(scipy.sparse.csc_matrix(X)))


# --- accuracy on scikit-learn's data, three seeds -------------------------------------------------


def test_digits_accuracy_matches_sklearn():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
    ours, theirs = [], []
    for seed in range(3):
        params = {"random_state": seed, "max_iter": 60}
        ours.append(MLPClassifier(**params).fit(X_train, y_train).score(X_test, y_test))
        theirs.append(sk.MLPClassifier(**params).fit(X_train, y_train).score(X_test, y_test))
    assert np.mean(theirs) > 0.95
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.005, (ours, theirs)


def test_friedman1_r2_matches_sklearn():
    X, y = make_friedman1(n_samples=2000, noise=1.0, random_state=0)
    y = (y - y.mean()) / y.std()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    ours, theirs = [], []
    for seed in range(3):
        params = {"random_state": seed, "max_iter": 150}
        model = make_pipeline(StandardScaler(), MLPRegressor(**params)).fit(X_train, y_train)
        reference = make_pipeline(StandardScaler(), sk.MLPRegressor(**params)).fit(X_train, y_train)
        ours.append(model.score(X_test, y_test))
        theirs.append(reference.score(X_test, y_test))
    assert np.mean(theirs) > 0.85
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.005, (ours, theirs)


# --- where estimators live -------------------------------------------------------------------------


def test_grid_search_with_two_workers():
    X, y = _data("multiclass", rows=60)
    MLPClassifier(max_iter=2).fit(X, y)  # compile (and cache) before the workers start
    search = GridSearchCV(
        MLPClassifier(max_iter=20, random_state=0),
        {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(4,), (8,)]},
        cv=2,
        n_jobs=2,
    )
    search.fit(X, y)
    assert set(search.best_params_) == {"alpha", "hidden_layer_sizes"}
    assert search.best_estimator_.predict(X).shape == (60,)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_pipeline_clone_and_pickle():
    X, y = _data("multiclass")
    pipe = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0, solver="sgd")
    )
    pipe.fit(X, y)
    assert clone(pipe).get_params()["mlpclassifier__hidden_layer_sizes"] == (5,)
    assert not hasattr(clone(pipe)[-1], "coefs_")
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))
    # The optimizer state travels too: partial_fit goes on exactly where the original would.
    pipe[-1].partial_fit(X, y)
    restored[-1].partial_fit(X, y)
    np.testing.assert_array_equal(restored[-1].coefs_[0], pipe[-1].coefs_[0])


def test_coefs_can_be_edited_like_sklearns():
    X, y = _data("regression")
    model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    before = model.predict(X)
    model.intercepts_[-1] += 1.0  # in place
    np.testing.assert_allclose(model.predict(X), before + 1.0, rtol=1e-5)
    model.coefs_[-1] = np.zeros_like(model.coefs_[-1])  # replaced
    np.testing.assert_allclose(model.predict(X), model.intercepts_[-1][0], rtol=1e-6)


def test_multilabel_and_multioutput_shapes():
    X, Y = _data("multilabel")
    clf = MLPClassifier(max_iter=5).fit(X, Y)
    assert clf.predict(X).shape == Y.shape and clf.predict_proba(X).shape == Y.shape
    assert clf.out_activation_ == "logistic"
    X, Y = _data("multioutput")
    assert MLPRegressor(max_iter=5).fit(X, Y).predict(X).shape == Y.shape


# --- bad input: scikit-learn's exception types and messages ---------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "newton"},
        {"activation": "softmax"},
        {"alpha": -1.0},
        {"batch_size": 0},
        {"learning_rate": "cosine"},
        {"learning_rate_init": 0.0},
        {"max_iter": 0},
        {"momentum": 1.5},
        {"beta_1": 1.0},
        {"epsilon": 0.0},
        {"validation_fraction": 1.0},
        {"n_iter_no_change": 0},
        {"hidden_layer_sizes": "wide"},
        {"shuffle": "yes"},
        {"max_fun": 0},
        {"tol": -1.0},
    ],
)
@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_invalid_parameters_raise_sklearns_error(name, params):
    X, y = _data("multiclass" if name == "MLPClassifier" else "regression")
    with pytest.raises(InvalidParameterError) as theirs:
        getattr(sk, name)(**params).fit(X, y)
    with pytest.raises(InvalidParameterError) as ours:
        {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[name](**params).fit(X, y)
    assert _same_order(str(ours.value)) == _same_order(str(theirs.value))


def _same_order(message: str) -> str:
    """The message with each {...} set written in sorted order (a set's order follows hashing)."""
    return re.sub(r"\{([^{}]*)\}", lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", message)


def test_other_bad_input_raises_like_sklearn():
    X, y = _data("multiclass")
    for params in ({"hidden_layer_sizes": (5, 0)}, {"hidden_layer_sizes": [3, -1]}):
        with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
            MLPClassifier(**params).fit(X, y)
    with pytest.raises(InvalidParameterError, match="dtype"):
        MLPClassifier(dtype="float16").fit(X, y)
    with pytest.raises(InvalidParameterError, match="loss"):
        MLPRegressor(loss="huber").fit(*_data("regression"))
    for Estimator in (MLPClassifier, MLPRegressor):
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
            Estimator(solver="lbfgs").partial_fit(X, y)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.unique(y))
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.01).fit(X, y)
    model = MLPClassifier(max_iter=2, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        model.fit(X, np.where(y == "a", "z", y))
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :3])
    with pytest.warns(UserWarning, match="batch_size"):
        MLPClassifier(batch_size=500, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        MLPRegressor(solver="sgd", learning_rate_init=10.0, max_iter=5).fit(X, y=1e6 * X[:, 0])


def test_verbose_prints_what_sklearn_prints(capsys):
    X, y = _data("multiclass")
    params = {
        "hidden_layer_sizes": (4,),
        "max_iter": 6,
        "random_state": 0,
        "verbose": True,
        "early_stopping": True,
        "validation_fraction": 0.3,
        "tol": 0.5,
        "n_iter_no_change": 2,
    }
    MLPClassifier(dtype=None, **params).fit(X, y)
    ours = capsys.readouterr().out
    sk.MLPClassifier(**params).fit(X, y)
    theirs = capsys.readouterr().out
    assert ours == theirs and "Iteration 1, loss = " in ours and "Validation score" in ours


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_verbose_fit_says_when_it_must_compile(solver, capsys, monkeypatch):
    """The line fit prints before a first compile, on stdout with scikit-learn's own verbose output
    and before it, only with verbose and only when fastbp._kernels.cache.will_compile says so."""
    from fastbp import sklearn as fsk

    X, y = make_classification(n_samples=60, n_features=5, n_classes=2, random_state=0)
    for compiles in (True, False):
        monkeypatch.setattr(fsk, "will_compile", lambda kernel, args, compiles=compiles: compiles)
        for verbose in (True, False):
            model = MLPClassifier(hidden_layer_sizes=(4,), solver=solver, max_iter=2, verbose=verbose)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X, y)
            out = capsys.readouterr().out
            shown = "compiling the training kernels for float" in out  # lbfgs runs in float64
            assert shown == (compiles and verbose), (compiles, verbose, out)
            if shown and solver == "adam":
                assert out.index("compiling") < out.index("Iteration 1")
