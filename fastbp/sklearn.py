"""MLPClassifier and MLPRegressor: scikit-learn's estimators, trained by fastbp's compiled passes.

A drop-in for sklearn.neural_network: the constructor parameters, defaults, validation messages,
fitted attributes and training rules are scikit-learn's (its _multilayer_perceptron.py,
_stochastic_optimizers.py and _base.py), down to the order in which `random_state` draws the initial
weights, the epoch shuffles and the early-stopping split. The same settings therefore follow the
same trajectory up to rounding. What changes is where the work runs: one epoch of mini-batch steps
(gather, forward, loss, backward, penalty, update) is one compiled call over fastbp's flat parameter
buffer, and each loss-and-gradient evaluation for L-BFGS is one compiled call.

Why `train_epoch` below rather than Sequential.fit: scikit-learn's rules differ from fastbp's
torch-style ones in ways one fixed setting cannot absorb.
- Its L2 penalty is 0.5 * alpha * sum(W^2) / (sum of the batch's sample weights): it changes from
  batch to batch (the last, partial batch; every batch when rows are weighted). `train_epoch` passes
  l2 = alpha / sum(w) to the penalty for each batch.
- Its Adam adds epsilon to sqrt(v) before the bias correction (lr_t = lr sqrt(1 - b2^t) / (1 - b1^t));
  its SGD keeps velocity = momentum * velocity - lr * g. Neither is torch's rule, so the update is
  a loop of its own here, fused into the epoch.
- Its losses are half the squared error (mean over outputs), the log-loss summed over labels and half
  the Poisson deviance under an exp output, while the output delta is act(z) - y for all of them.
The forward pass, backpropagation and penalty are fastbp's own kernels (fastbp._kernels.cpu.steps).

Precision: the sgd and adam solvers compute in float32 unless dtype="float64" (or dtype=None,
scikit-learn's rule: float64 unless X is float32); lbfgs always in float64. A dense float X is
trained on in its own dtype, each batch converted as it is copied in (no whole copy of float64 data
for the float32 default). Sparse X is accepted, as scikit-learn does, and made dense (the kernels
are dense).
"""

from __future__ import annotations

import math
import warnings
from itertools import pairwise
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse

try:
    import sklearn  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("fastbp.sklearn needs scikit-learn: pip install 'fastbp[sklearn]'") from err

from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastbp import layers as L
from fastbp import losses as losses_mod
from fastbp._kernels import plan as P
from fastbp._kernels.cache import will_compile
from fastbp._kernels.cpu.batch import copy_rows
from fastbp._kernels.cpu.fastmath import fast_exp
from fastbp._kernels.cpu.steps import backward, forward, gather_batch, output_delta, region, rows_in_place
from fastbp._kernels.jit import FALSE, ZERO, njit
from fastbp.network import Sequential
from fastbp.train import COMPILE_NOTICE

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC_SOLVERS = ["sgd", "adam"]
_HIDDEN_ACTIVATIONS = {"identity": None, "logistic": L.Sigmoid, "tanh": L.Tanh, "relu": L.ReLU}
# Output activations, with the loss scikit-learn pairs with each (canonical link: delta = act(z) - y).
IDENTITY, LOGISTIC, SOFTMAX, EXP = range(4)
_OUTPUT_CODES = {"identity": IDENTITY, "logistic": LOGISTIC, "softmax": SOFTMAX, "exp": EXP}
# Rows per block when L-BFGS evaluates the whole data set: bounds the workspace on large X.
_LBFGS_BLOCK = 8192


# --- kernels ------------------------------------------------------------------------------------


@njit
def output_loss_and_delta(kind, Z, Y, weights, sw_sum, clip, G):
    """scikit-learn's data loss of the logits Z (rows, k) against Y, summed over the rows with the
    row weights (empty: all 1), not yet divided by sw_sum; writes G = w_i (act(Z) - Y) / sw_sum.

    identity: 0.5 (z - y)^2 averaged over outputs. logistic: log-loss summed over outputs.
    softmax: cross-entropy. exp: half Poisson deviance summed over outputs. Each log-loss term is
    capped at clip = -log(eps), as scikit-learn's clipping of the probabilities to [eps, 1 - eps]."""
    rows, k = Z.shape
    t = G.dtype.type
    weighted = weights.size > 0
    inv = 1.0 / sw_sum
    total = 0.0
    for i in range(rows):
        w = float(weights[i]) if weighted else 1.0
        scale = w * inv
        row = 0.0
        if kind == SOFTMAX:
            peak = Z[i, 0]
            for j in range(1, k):
                peak = max(peak, Z[i, j])
            s = 0.0
            for j in range(k):
                e = fast_exp(Z[i, j] - peak)
                G[i, j] = e
                s += float(e)
            log_s = math.log(s)
            inv_s = t(1.0 / s)
            for j in range(k):
                y = float(Y[i, j])
                if y != 0.0:
                    row += y * min(float(peak) + log_s - float(Z[i, j]), clip)
                G[i, j] = (G[i, j] * inv_s - Y[i, j]) * t(scale)
        elif kind == LOGISTIC:
            for j in range(k):
                z = float(Z[i, j])
                y = float(Y[i, j])
                e = math.exp(-abs(z))
                log1p_e = math.log1p(e)
                # -log p = softplus(-z) and -log(1 - p) = softplus(z), computed without overflow.
                row += y * min(max(-z, 0.0) + log1p_e, clip) + (1.0 - y) * min(max(z, 0.0) + log1p_e, clip)
                p = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
                G[i, j] = t((p - y) * scale)
        elif kind == EXP:
            for j in range(k):
                z = float(Z[i, j])
                y = float(Y[i, j])
                mu = math.exp(z)
                row += (y * (math.log(y) - z) if y > 0.0 else 0.0) - y + mu
                G[i, j] = t((mu - y) * scale)
        else:
            for j in range(k):
                d = float(Z[i, j]) - float(Y[i, j])
                row += 0.5 * d * d
                G[i, j] = t(d * scale)
            row /= k
        total += w * row
    return total


@njit
def l2_penalty(li, params, grads, l2):
    """l2/2 * sum W^2 over the weight matrices (not the biases); adds l2 * W to grads."""
    t = params.dtype.type
    c = t(l2)
    total = 0.0
    for layer in range(li.shape[0]):
        start = li[layer, P.W_OFF]
        stop = start + li[layer, P.N_IN] * li[layer, P.N_OUT]
        W, dW = params[start:stop], grads[start:stop]  # slices vectorize, see _adam_range
        for i in range(W.size):
            w = W[i]
            dW[i] += c * w
            total += float(w) * float(w)
    return 0.5 * l2 * total


@njit
def _adam_range(params, grads, m, v, lo, hi, c, rate, b1, b2, eps):
    """The Adam step on params[lo:hi] with gradient grads + c * params; returns sum(params^2)."""
    # Slices and a loop from 0: with range(lo, hi) the negative-index wraparound check stays in the
    # loop and it does not vectorize (7x slower).
    params, grads, m, v = params[lo:hi], grads[lo:hi], m[lo:hi], v[lo:hi]
    t = params.dtype.type
    c1, c2 = t(1) - b1, t(1) - b2
    total = 0.0
    for i in range(params.size):
        w = params[i]
        g = grads[i] + c * w
        total += float(w) * float(w)
        mi = b1 * m[i] + c1 * g
        vi = b2 * v[i] + c2 * (g * g)
        m[i] = mi
        v[i] = vi
        params[i] = w - rate * mi / (np.sqrt(vi) + eps)
    return total


@njit
def adam_update(li, params, grads, m, v, l2, lr_t, beta_1, beta_2, epsilon):
    """scikit-learn's Adam on the gradient grads + l2 * W (the penalty's part added on the fly;
    biases are not penalised): m, v the raw moments, params -= lr_t m / (sqrt(v) + epsilon) with
    lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t) (the bias correction sits in the rate).
    Returns the penalty l2/2 * sum W^2 at the parameters before the step."""
    t = params.dtype.type
    b1, b2, eps, rate, c = t(beta_1), t(beta_2), t(epsilon), t(lr_t), t(l2)
    total = 0.0
    for layer in range(li.shape[0]):
        w0, b0 = li[layer, P.W_OFF], li[layer, P.B_OFF]
        w1, b1_end = w0 + li[layer, P.N_IN] * li[layer, P.N_OUT], b0 + li[layer, P.N_OUT]
        total += _adam_range(params, grads, m, v, w0, w1, c, rate, b1, b2, eps)
        _adam_range(params, grads, m, v, b0, b1_end, t(0), rate, b1, b2, eps)
    return 0.5 * l2 * total


@njit
def _sgd_range(params, grads, velocity, lo, hi, c, mu, rate, nesterov):
    """The SGD step on params[lo:hi] with gradient grads + c * params; returns sum(params^2)."""
    params, grads, velocity = params[lo:hi], grads[lo:hi], velocity[lo:hi]
    total = 0.0
    for i in range(params.size):
        w = params[i]
        g = grads[i] + c * w
        total += float(w) * float(w)
        vi = mu * velocity[i] - rate * g
        velocity[i] = vi
        params[i] = w + (mu * vi - rate * g if nesterov else vi)
    return total


@njit
def sgd_update(li, params, grads, velocity, l2, lr, momentum, nesterov):
    """scikit-learn's SGD on the gradient grads + l2 * W: velocity = momentum velocity - lr g, then
    params += velocity, or with Nesterov params += momentum velocity - lr g. Returns the penalty
    l2/2 * sum W^2 at the parameters before the step."""
    t = params.dtype.type
    mu, rate, c = t(momentum), t(lr), t(l2)
    total = 0.0
    for layer in range(li.shape[0]):
        w0, b0 = li[layer, P.W_OFF], li[layer, P.B_OFF]
        w1, b1 = w0 + li[layer, P.N_IN] * li[layer, P.N_OUT], b0 + li[layer, P.N_OUT]
        total += _sgd_range(params, grads, velocity, w0, w1, c, mu, rate, nesterov)
        _sgd_range(params, grads, velocity, b0, b1, t(0), mu, rate, nesterov)
    return 0.5 * l2 * total


@njit
def train_epoch(
    li,
    lf,
    gu,
    kind,
    clip,
    alpha,
    params,
    grads,
    ws,
    X,
    Y,
    sample_weight,
    perm,
    batch_size,
    adam,
    hyper,
    m,
    v,
    t0,
    lr,
    batch_losses,
):
    """One epoch of scikit-learn's mini-batch training, in place on params (and m, v).

    Batch b takes rows perm[b*batch_size : (b+1)*batch_size] (the last may be short); per batch: the
    forward pass, the loss and output delta, backpropagation, and one update on the gradient with
    the penalty 0.5 alpha |W|^2 / sum(w) added: scikit-learn's Adam (adam=True; hyper = beta_1, beta_2,
    epsilon; m, v the moments; t0 steps taken before) or its SGD (hyper = momentum, nesterov;
    m the velocities). sample_weight (n,) weighs rows; empty: unweighted. Writes each batch's loss."""
    n = perm.size
    weighted = sample_weight.size > 0
    n_batches = (n + batch_size - 1) // batch_size
    for b in range(n_batches):
        start = b * batch_size
        rows = min(batch_size, n - start)
        Xb, Yb, Wb = gather_batch(li, gu, ws, X, Y, sample_weight, perm, start, rows)
        sw_sum = float(rows)
        if weighted:
            sw_sum = 0.0
            for i in range(rows):
                sw_sum += float(Wb[i])
        out = forward(li, lf, gu, params, ws, Xb, rows, FALSE, ZERO, ZERO)
        data = output_loss_and_delta(kind, out, Yb, Wb, sw_sum, clip, output_delta(li, gu, ws, rows))
        backward(li, lf, gu, params, grads, ws, Xb, rows, FALSE)
        if adam:
            step = t0 + b + 1
            lr_t = lr * math.sqrt(1.0 - hyper[1] ** step) / (1.0 - hyper[0] ** step)
            penalty = adam_update(li, params, grads, m, v, alpha / sw_sum, lr_t, hyper[0], hyper[1], hyper[2])
        else:
            penalty = sgd_update(li, params, grads, m, alpha / sw_sum, lr, hyper[0], hyper[1] != 0.0)
        batch_losses[b] = data / sw_sum + penalty
    return n_batches


@njit
def loss_and_gradient(li, lf, gu, kind, clip, alpha, params, grads, total, ws, X, Y, sample_weight):
    """scikit-learn's loss over all of X (rows, n_in) against Y, with the penalty; fills grads.
    Runs in blocks of the workspace's capacity, summing the blocks' gradients in `total`."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    n = X.shape[0]
    n_in = li[0, P.N_IN]
    k = Y.shape[1]
    weighted = sample_weight.size > 0
    sw_sum = 0.0
    if weighted:
        for i in range(n):
            sw_sum += float(sample_weight[i])
    else:
        sw_sum = float(n)
    data = 0.0
    for start in range(0, n, capacity):
        rows = min(capacity, n - start)
        Yb = region(ws, capacity, gu[P.Y_UNIT], rows, k)
        # The block's rows are consecutive: read in place where X has the workspace's dtype, as
        # fit's batches are (steps.gather_batch); copied, and converted, otherwise.
        in_place, Xb = rows_in_place(X, start, rows, ws)
        if not in_place:
            Xb = region(ws, capacity, gu[P.IN_UNIT], rows, n_in)
            copy_rows(X, start, Xb)
        copy_rows(Y, start, Yb)
        Wb = sample_weight[start : start + rows] if weighted else sample_weight
        out = forward(li, lf, gu, params, ws, Xb, rows, FALSE, ZERO, ZERO)
        data += output_loss_and_delta(kind, out, Yb, Wb, sw_sum, clip, output_delta(li, gu, ws, rows))
        backward(li, lf, gu, params, grads, ws, Xb, rows, FALSE)
        if n > capacity:
            # Loops, not total[:] = grads: see batch.copy_rows on what such an assignment compiles.
            for i in range(grads.size):
                total[i] = grads[i] if start == 0 else total[i] + grads[i]
    if n > capacity:
        for i in range(grads.size):
            grads[i] = total[i]
    return data / sw_sum + l2_penalty(li, params, grads, alpha / sw_sum)


def _notice_if_compiling(verbose, kernel, args, dtype) -> None:
    """With verbose, fit's line about a first compile (fastbp.train.COMPILE_NOTICE), on stdout where
    scikit-learn's verbose output goes, when `kernel` must compile for these arguments."""
    if verbose and will_compile(kernel, args):
        print(COMPILE_NOTICE.format(dtype=np.dtype(dtype).name), flush=True)


# --- the network behind an estimator --------------------------------------------------------------


class _Engine:
    """A fastbp Sequential of the estimator's shape (plan and flat buffers) and a training workspace.

    Dense layers with the hidden activation between them; the last layer gives logits, and the
    output activation (softmax, logistic, exp or identity) is applied by the loss kernel and by
    `output`. coefs_[i] / intercepts_[i] of a fitted estimator are views of net.layers' W and b."""

    def __init__(self, layer_units, activation: str, out_activation: str, dtype):
        specs = []
        for i, (n_in, n_out) in enumerate(pairwise(layer_units)):
            # Weights come from scikit-learn's initialisation; "zeros" skips a wasted random draw.
            specs.append(L.Dense(int(n_in), int(n_out), init="zeros"))
            hidden = _HIDDEN_ACTIVATIONS[activation]
            if i < len(layer_units) - 2 and hidden is not None:
                specs.append(hidden())
        if out_activation == "softmax":
            loss = losses_mod.SoftmaxCrossEntropy()
        elif out_activation == "logistic":
            loss = losses_mod.BinaryCrossEntropy()
        else:
            loss = losses_mod.MSE()
        self.net = Sequential(*specs, loss=loss, dtype=dtype)
        self.key = (tuple(int(u) for u in layer_units), activation, out_activation, np.dtype(dtype).name)
        self.kind = _OUTPUT_CODES[out_activation]
        self.out_activation = out_activation
        self.clip = float(-np.log(np.finfo(dtype).eps))
        self.ws = np.zeros(0, dtype=dtype)

    @property
    def dtype(self):
        return self.net.dtype

    def workspace(self, rows: int) -> np.ndarray:
        size = rows * int(self.net._gu[P.TOTAL_UNITS])
        if self.ws.size != size:
            self.ws = np.zeros(size, dtype=self.dtype)
        return self.ws

    def load(self, coefs, intercepts) -> None:
        """Copy coefs / intercepts into the flat buffer (nothing to do for the views of it)."""
        for i, (layer, W, b) in enumerate(zip(self.net.dense_layers, coefs, intercepts)):
            for name, mine, theirs in (("coefs_", layer.W, W), ("intercepts_", layer.b, b)):
                if theirs is mine:
                    continue
                theirs = np.asarray(theirs)
                if theirs.shape != mine.shape:
                    raise ValueError(f"{name}[{i}] has shape {theirs.shape}; the network needs {mine.shape}")
                mine[...] = theirs

    def views(self):
        layers = self.net.dense_layers
        return [layer.W for layer in layers], [layer.b for layer in layers]

    def output(self, X) -> np.ndarray:
        """The output layer's activations for X (rows, n_features): (rows, n_outputs)."""
        out = self.net.forward(X)
        if self.out_activation == "softmax":
            out -= out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
        elif self.out_activation == "logistic":
            expit(out, out=out)
        elif self.out_activation == "exp":
            np.exp(out, out=out)
        return out


class _Optimizer:
    """scikit-learn's SGDOptimizer / AdamOptimizer: the same settings, learning-rate logic and
    stopping rule, with its state as flat arrays in the layout of fastbp's parameter buffer."""

    def __init__(self, est, n_params: int, dtype):
        self.adam = est.solver == "adam"
        self.learning_rate_init = est.learning_rate_init
        self.learning_rate = float(est.learning_rate_init)
        self.lr_schedule = est.learning_rate
        self.momentum, self.nesterov, self.power_t = est.momentum, est.nesterovs_momentum, est.power_t
        self.beta_1, self.beta_2, self.epsilon = est.beta_1, est.beta_2, est.epsilon
        self.t = 0
        self.ms = np.zeros(n_params, dtype=dtype)
        self.vs = np.zeros(n_params if self.adam else 0, dtype=dtype)

    @property
    def hyper(self) -> np.ndarray:
        if self.adam:
            return np.array([self.beta_1, self.beta_2, self.epsilon], dtype=np.float64)
        return np.array([self.momentum, float(self.nesterov)], dtype=np.float64)

    def state_as(self, dtype):
        self.ms = self.ms.astype(dtype, copy=False)
        self.vs = self.vs.astype(dtype, copy=False)
        return self.ms, self.vs

    def iteration_ends(self, time_step: int) -> None:
        if not self.adam and self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose) -> bool:
        if self.adam or self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(f"{msg} Setting learning rate to {self.learning_rate:f}")
        return False


def _dense(X):
    return X.toarray() if scipy.sparse.issparse(X) else X


def _lbfgs_print_options(iprint: int) -> dict:
    # scipy 1.15 deprecated L-BFGS-B's iprint; scikit-learn passes it only below that version.
    try:
        from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    except ImportError:  # pragma: no cover - older scikit-learn
        return {"iprint": iprint}
    return _get_additional_lbfgs_options_dict("iprint", iprint)


# --- the estimators ---------------------------------------------------------------------------


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share; scikit-learn's BaseMultilayerPerceptron."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dtype": [None, StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
    }

    _loss_name = "squared_error"

    # The engine (a Sequential and its workspace) is a cache, rebuilt on demand: it holds a lock,
    # which does not pickle, and the fitted weights travel as coefs_ / intercepts_.
    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_engine", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- the network ---------------------------------------------------------------------------

    def _engine_for(self, dtype, layer_units=None):
        """The engine for the current shape, activation and dtype, loaded with coefs_ and
        intercepts_ (built, or rebuilt after unpickling or set_params)."""
        if layer_units is None:
            layer_units = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        key = (
            tuple(int(u) for u in layer_units),
            self.activation,
            self.out_activation_,
            np.dtype(dtype).name,
        )
        engine = self.__dict__.get("_engine")
        if engine is None or engine.key != key:
            engine = _Engine(layer_units, self.activation, self.out_activation_, dtype)
            self._engine = engine
        engine.load(self.coefs_, self.intercepts_)
        return engine

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        dtype = self.coefs_[0].dtype
        if dtype not in (np.float32, np.float64):
            dtype = np.float64
        engine = self.__dict__.get("_engine")
        if engine is not None:
            dtype = engine.dtype
        engine = self._engine_for(dtype)
        return engine.output(_dense(X))

    # -- training ------------------------------------------------------------------------------

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self._loss_name == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"

        self.coefs_ = []
        self.intercepts_ = []
        for i in range(self.n_layers_ - 1):
            coef_init, intercept_init = self._init_coef(layer_units[i], layer_units[i + 1], dtype)
            self.coefs_.append(coef_init)
            self.intercepts_.append(intercept_init)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]

        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _init_coef(self, fan_in, fan_out, dtype):
        # Glorot et al.'s uniform initialisation, with scikit-learn's factor and draw order.
        factor = 2.0 if self.activation == "logistic" else 6.0
        init_bound = np.sqrt(factor / (fan_in + fan_out))
        coef_init = self._random_state.uniform(-init_bound, init_bound, (fan_in, fan_out))
        intercept_init = self._random_state.uniform(-init_bound, init_bound, fan_out)
        return coef_init.astype(dtype, copy=False), intercept_init.astype(dtype, copy=False)

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden_layer_sizes}.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        X = _dense(X)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features] + hidden_layer_sizes + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)

        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        else:
            shapes = [c.shape for c in self.coefs_]
            if shapes != list(pairwise(layer_units)):
                raise ValueError(
                    f"the fitted layers have shapes {shapes}, but this data and "
                    f"hidden_layer_sizes need {list(pairwise(layer_units))}"
                )

        dtype = self._compute_dtype(X.dtype)
        engine = self._engine_for(dtype, layer_units)
        self.coefs_, self.intercepts_ = engine.views()
        # X stays in its float dtype (validate_data gave float32 or float64): the compiled epoch and
        # loss convert each batch as they copy it in, so float64 data for the float32 default is not
        # copied whole (as scikit-learn's own MLP does not copy it).
        X = np.ascontiguousarray(X)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)

        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(engine, X, y, sample_weight, incremental)
        else:
            self._fit_lbfgs(engine, X, y, sample_weight)

        if not np.isfinite(engine.net.params).all():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _compute_dtype(self, input_dtype) -> np.dtype:
        # L-BFGS works in float64: scipy's iterate is float64 (scikit-learn's weights become float64
        # there too), and its line search needs a loss that precise.
        if self.solver == "lbfgs":
            return np.dtype(np.float64)
        if self.dtype is None:
            return np.dtype(input_dtype)
        return np.dtype(self.dtype)

    def _fit_lbfgs(self, engine, X, y, sample_weight):
        net = engine.net
        params, grads = net.params, net.grads
        Y = np.ascontiguousarray(y, dtype=engine.dtype)
        weights = np.zeros(0, engine.dtype) if sample_weight is None else sample_weight
        ws = engine.workspace(min(X.shape[0], _LBFGS_BLOCK))
        total = np.zeros_like(grads)

        args = (net._li, net._lf, net._gu, engine.kind, engine.clip, float(self.alpha))
        buffers = (params, grads, total, ws, X, Y, weights)
        _notice_if_compiling(self.verbose, loss_and_gradient, args + buffers, engine.dtype)

        def loss_grad(packed):
            params[...] = packed
            return loss_and_gradient(*args, *buffers), grads.astype(np.float64)

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        opt_res = scipy.optimize.minimize(
            loss_grad,
            params.astype(np.float64),
            method="L-BFGS-B",
            jac=True,
            options={
                "maxfun": self.max_fun,
                "maxiter": self.max_iter,
                "gtol": self.tol,
                **_lbfgs_print_options(iprint),
            },
        )
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        params[...] = opt_res.x

    def _fit_stochastic(self, engine, X, y, sample_weight, incremental):
        net = engine.net
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _Optimizer(self, net.n_params, engine.dtype)
        optimizer = self._optimizer
        ms, vs = optimizer.state_as(engine.dtype)

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # Don't stratify in multilabel classification.
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X,
                    y,
                    random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=stratify,
                )
                sample_weight_train = sample_weight_val = None
            else:
                X_train, X_val, y_train, y_val, sample_weight_train, sample_weight_val = train_test_split(
                    X,
                    y,
                    sample_weight,
                    random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=stratify,
                )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = sample_weight_val = None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                    stacklevel=3,
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        X_train = np.ascontiguousarray(X_train)
        Y_train = np.ascontiguousarray(y_train, dtype=engine.dtype)
        weights = (
            np.zeros(0, engine.dtype)
            if sample_weight_train is None
            else np.ascontiguousarray(sample_weight_train)
        )
        n_batches = -(-n_samples // batch_size)
        batch_rows = np.full(n_batches, batch_size, dtype=np.float64)
        batch_rows[-1] = n_samples - batch_size * (n_batches - 1)
        batch_losses = np.zeros(n_batches, dtype=np.float64)
        ws = engine.workspace(batch_size)
        hyper = optimizer.hyper
        alpha = float(self.alpha)

        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    # What sklearn.utils.shuffle(sample_idx, random_state=...) does, without its
                    # validation (a tenth of a digits epoch): the same draws, the same order.
                    self._random_state.shuffle(sample_idx)
                args = (
                    net._li,
                    net._lf,
                    net._gu,
                    engine.kind,
                    engine.clip,
                    alpha,
                    net.params,
                    net.grads,
                    ws,
                    X_train,
                    Y_train,
                    weights,
                    sample_idx,
                    batch_size,
                    optimizer.adam,
                    hyper,
                    ms,
                    vs,
                    optimizer.t,
                    float(optimizer.learning_rate),
                    batch_losses,
                )
                if self.n_iter_ == 0:
                    _notice_if_compiling(self.verbose, train_epoch, args, engine.dtype)
                train_epoch(*args)
                if optimizer.adam:
                    optimizer.t += n_batches
                self.n_iter_ += 1
                self.loss_ = float(batch_losses @ batch_rows) / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")

                self._update_no_improvement_count(early_stopping, X_val, y_val, sample_weight_val)
                optimizer.iteration_ends(self.t_)

                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = (
                            f"Validation score did not improve more than tol={self.tol:f} for "
                            f"{self.n_iter_no_change} consecutive epochs."
                        )
                    else:
                        msg = (
                            f"Training loss did not improve more than tol={self.tol:f} for "
                            f"{self.n_iter_no_change} consecutive epochs."
                        )
                    if optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                        "the optimization hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)

        if early_stopping:
            # Restore the best weights.
            engine.load(self._best_coefs, self._best_intercepts)

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        if early_stopping:
            # The validation score (can be NaN) decides.
            self.validation_scores_.append(self._score(X, y, sample_weight=sample_weight))
            if self.verbose:
                print(f"Validation score: {self.validation_scores_[-1]:f}")
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and y (class labels, or real targets), rows
        weighted by sample_weight (n_samples,). Returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier, trained by fastbp.

    Parameters, defaults and fitted attributes are scikit-learn's (see its documentation):
    hidden_layer_sizes, activation {identity, logistic, tanh, relu}, solver {lbfgs, sgd, adam},
    alpha, batch_size, learning_rate {constant, invscaling, adaptive}, learning_rate_init, power_t,
    max_iter, shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
    early_stopping, validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun.
    Multiclass output is softmax; binary and multi-label outputs are logistic.

    One parameter of fastbp's own, keyword-only: dtype, the precision the sgd and adam solvers
    compute in. "float32" (the default: fastbp's precision, and what makes the GEMMs fast) or
    "float64"; None follows scikit-learn's rule (float32 input stays float32, anything else is
    float64), for results equal to scikit-learn's up to rounding. lbfgs always runs in float64.
    """

    _loss_name = "log_loss"

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype="float32",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        # See scikit-learn: fit defines classes_; warm_start and partial_fit check them.
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def predict(self, X):
        """Class labels for X (n_samples, n_features): (n_samples,), or (n_samples, n_labels)
        for multi-label targets."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight=sample_weight, score_function=accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y) (solver sgd or adam). `classes`, all the labels y may hold, is
        required on the first call. Returns self."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """Log of predict_proba."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), in the order of classes_."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor, trained by fastbp.

    loss: "squared_error" (half the squared error, identity output) or "poisson" (half the Poisson
    deviance, exp output). The other parameters, dtype included, are MLPClassifier's."""

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype="float32",
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    @property
    def _loss_name(self):
        return self.loss

    def predict(self, X):
        """Predicted targets for X (n_samples, n_features): (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight=sample_weight, score_function=r2_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) (solver sgd or adam). Returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
