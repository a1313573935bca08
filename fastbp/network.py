"""Sequential: compiles layer specs into a plan of integer arrays and owns the flat buffers.

Every weight and bias lives in one flat `params` array (W of shape (in, out), then b, layer after
layer); `grads` has the same layout. Layer W/b/dW/db are views into them. The kernels see only the
plan, the flat buffers and a workspace sized once for the largest batch seen.
"""

from __future__ import annotations

import threading

import numpy as np

from fastbp import cuda as cuda_mod
from fastbp import layers as L
from fastbp import losses as losses_mod
from fastbp._kernels import plan as P
from fastbp._kernels.cpu import blas, steps
from fastbp._kernels.cpu.activations import entry_addresses, needs_preactivation
from fastbp._kernels.cpu.losses import loss_value
from fastbp._validation import as_dtype, check_features

# Inference runs in blocks of this many rows, so predicting on a large X needs a bounded workspace.
_INFERENCE_BLOCK = 1024


class DenseParams:
    """A Dense layer bound to a network: its spec plus W, b, dW, db as views into the flat buffers."""

    def __init__(self, spec: L.Dense, params: np.ndarray, grads: np.ndarray, w_off: int, b_off: int):
        self.spec = spec
        n_in, n_out = spec.in_features, spec.out_features
        # Where W (row-major (in, out)) and b lie in the flat buffers.
        self.w_slice = slice(w_off, w_off + n_in * n_out)
        self.b_slice = slice(b_off, b_off + n_out)
        self.W = params[self.w_slice].reshape(n_in, n_out)
        self.b = params[self.b_slice]
        self.dW = grads[self.w_slice].reshape(n_in, n_out)
        self.db = grads[self.b_slice]

    in_features = property(lambda self: self.spec.in_features)
    out_features = property(lambda self: self.spec.out_features)
    n_params = property(lambda self: self.spec.n_params)

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"


class _Stage:
    """One Dense layer with the activation and dropout that follow it: one row of the plan."""

    def __init__(self, dense: L.Dense):
        self.dense = dense
        self.activation: L.Activation = L.Identity()
        self.dropout = 0.0


def _stages(specs) -> list[_Stage]:
    stages: list[_Stage] = []
    for index, spec in enumerate(specs):
        where = f"layer {index} ({type(spec).__name__})"
        if isinstance(spec, L.Dense):
            if stages and stages[-1].dense.out_features != spec.in_features:
                raise ValueError(
                    f"{where} takes {spec.in_features} inputs but the Dense layer "
                    f"before it gives {stages[-1].dense.out_features}"
                )
            stages.append(_Stage(spec))
        elif isinstance(spec, L.Activation):
            if not stages:
                raise ValueError(f"{where}: an activation must follow a Dense layer")
            last = stages[-1]
            if last.dropout or not isinstance(last.activation, L.Identity):
                raise ValueError(
                    f"{where}: put one activation directly after each Dense layer (before any Dropout)"
                )
            last.activation = spec
        elif isinstance(spec, L.Dropout):
            if not stages:
                raise ValueError(
                    f"{where}: Dropout must follow a Dense layer (input dropout is not supported)"
                )
            if stages[-1].dropout:
                raise ValueError(f"{where}: two Dropout layers in a row; use one")
            stages[-1].dropout = spec.p
        elif isinstance(spec, type) and issubclass(spec, L.Layer):
            raise TypeError(f"{where}: got the class {spec.__name__}; pass an instance, {spec.__name__}()")
        else:
            raise TypeError(f"{where}: not a fastbp layer")
    if not stages:
        raise ValueError("Sequential needs at least one Dense layer")
    return stages


def _build_plan(stages: list[_Stage], dtype):
    """The plan arrays (li, lf, gu) and the parameter count, for these stages and dtype."""
    li = np.zeros((len(stages), P.N_INT), dtype=np.int64)
    lf = np.zeros((len(stages), P.N_FLOAT), dtype=np.float64)
    offset = 0
    units = 0

    def take(width: int) -> int:
        nonlocal units
        start = units
        units += width
        return start

    input_unit = take(stages[0].dense.in_features)
    for row, stage in enumerate(stages):
        n_in, n_out = stage.dense.in_features, stage.dense.out_features
        act = stage.activation
        li[row, P.N_IN], li[row, P.N_OUT], li[row, P.ACT] = n_in, n_out, act.code
        li[row, P.FORWARD_FN], li[row, P.BACKWARD_FN] = entry_addresses(act.code, dtype)
        li[row, P.GEMM_NN_FN], li[row, P.GEMM_TN_FN], li[row, P.GEMM_NT_FN] = blas.layer_addresses(
            n_in, n_out, dtype
        )
        li[row, P.W_OFF] = offset
        li[row, P.B_OFF] = offset + n_in * n_out
        offset += n_in * n_out + n_out
        li[row, P.Z_UNIT] = take(n_out)
        li[row, P.A_UNIT] = take(n_out) if needs_preactivation(act.code, act.param) else li[row, P.Z_UNIT]
        if stage.dropout:
            li[row, P.MASK_UNIT] = take(n_out)
            li[row, P.OUT_UNIT] = take(n_out)
            li[row, P.DROPOUT_FN] = steps.dropout_address(dtype)
        else:
            li[row, P.MASK_UNIT] = -1
            li[row, P.OUT_UNIT] = li[row, P.A_UNIT]
        lf[row, P.ACT_PARAM] = act.param
        lf[row, P.DROP_P] = stage.dropout
    widest = max(max(s.dense.in_features, s.dense.out_features) for s in stages)
    gu = np.zeros(P.N_GLOBAL, dtype=np.int64)
    gu[P.IN_UNIT] = input_unit
    gu[P.Y_UNIT] = take(stages[-1].dense.out_features)
    gu[P.DELTA0_UNIT] = take(widest)
    gu[P.DELTA1_UNIT] = take(widest)
    gu[P.SW_UNIT] = take(1)
    gu[P.TOTAL_UNITS] = units
    return li, lf, gu, offset


class Sequential:
    """A stack of Dense layers, activations and Dropout, trained by backpropagation.

    >>> net = Sequential(Dense(4, 16), ReLU(), Dense(16, 3), loss=SoftmaxCrossEntropy(), seed=0)

    params / grads: flat 1-D arrays of `dtype` holding every W (in, out) and b, layer after layer.
    l1, l2: penalties l1 * sum|W| + l2/2 * sum W^2 on the weights (not the biases), part of the loss.
    device: "cpu", or "cuda" (numba-cuda and an NVIDIA GPU; see `to`).
    """

    def __init__(
        self,
        *layers,
        loss="mse",
        dtype=np.float32,
        seed: int | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        device: str = "cpu",
    ):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        self.loss = losses_mod.loss(loss)
        self.dtype = as_dtype(dtype)
        self.l1 = L._check_real("l1", l1, low=0.0)
        self.l2 = L._check_real("l2", l2, low=0.0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        self._stages = _stages(layers)
        self.specs = tuple(layers)
        if self.loss.integer_targets and self._stages[-1].dense.out_features < 2:
            raise ValueError(
                "softmax cross-entropy needs at least 2 outputs (one per class); for "
                "two classes with one output use BinaryCrossEntropy"
            )
        # Last of the checks: building the plan compiles (or loads) the activations' entries.
        self._li, self._lf, self._gu, n_params = _build_plan(self._stages, self.dtype)
        self.params = np.zeros(n_params, dtype=self.dtype)
        self.grads = np.zeros(n_params, dtype=self.dtype)
        self.layers = self._bind_layers()
        self._workspace = np.zeros(0, dtype=self.dtype)
        self._lock = threading.RLock()
        self.device = "cpu"
        self._cuda = None  # the fastbp.cuda.CudaBackend while on "cuda"
        self._chunk_hints = {}  # fit's steps per chunk, by the kind of run (train.py)
        self.reset_parameters(seed)
        if device != "cpu":
            self.to(device)

    # -- construction ------------------------------------------------------------------------

    def _bind_layers(self) -> list:
        bound, row = [], 0
        for spec in self.specs:
            if isinstance(spec, L.Dense):
                bound.append(
                    DenseParams(
                        spec,
                        self.params,
                        self.grads,
                        int(self._li[row, P.W_OFF]),
                        int(self._li[row, P.B_OFF]),
                    )
                )
                row += 1
            else:
                bound.append(spec)
        return bound

    def reset_parameters(self, seed: int | None = None) -> None:
        """Draw fresh initial weights (zero biases) from `seed`."""
        rng = np.random.default_rng(seed)
        fresh = np.zeros(self.n_params, dtype=self.dtype)
        for stage, row in zip(self._stages, self._li):
            # Draw in float64 and round once, so float32 and float64 nets start from the same point.
            W = np.empty((int(row[P.N_IN]), int(row[P.N_OUT])), dtype=np.float64)
            L.initialize_weights(rng, stage.dense, stage.activation, W)
            fresh[int(row[P.W_OFF]) : int(row[P.W_OFF]) + W.size] = W.ravel()
        self.set_params(fresh)

    def set_params(self, values) -> None:
        """Copy `values` (a 1-D array of n_params numbers, the layout of `params`) into params, on
        whichever device the network is."""
        values = np.asarray(values)
        if values.shape != (self.n_params,):
            raise ValueError(f"params must have shape ({self.n_params},), got {values.shape}")
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if not np.isfinite(values).all():
            raise ValueError("params hold NaN or infinity")
        with self._lock:
            if self._cuda is None:
                self.params[...] = values
            else:
                self._cuda.params.copy_to_device(values)

    def get_params(self) -> np.ndarray:
        """A host copy of params (never a view: changing it leaves the network alone)."""
        if self._cuda is None:
            return self.params.copy()
        return cuda_mod.to_numpy(self.params)  # already a fresh host copy

    def to(self, device: str) -> Sequential:
        """Run every pass (loss_and_grad, forward, fit, ...) on "cpu" or "cuda"; returns self.

        On "cuda", params and grads are device arrays and the layers' W, b, dW, db views into them
        (fb.to_numpy copies one to the host); fit and the passes take host or device arrays.
        Without numba-cuda or without a GPU, RuntimeError says which is missing."""
        return cuda_mod.move(self, device)

    @property
    def dense_layers(self) -> list[DenseParams]:
        return [layer for layer in self.layers if isinstance(layer, DenseParams)]

    @property
    def n_params(self) -> int:
        return int(self.params.size)

    @property
    def n_features(self) -> int:
        return int(self._li[0, P.N_IN])

    @property
    def n_outputs(self) -> int:
        return int(self._li[-1, P.N_OUT])

    # -- workspace ---------------------------------------------------------------------------

    def _workspace_for(self, rows: int) -> np.ndarray:
        """A workspace holding at least `rows` rows; reallocated only when a larger batch comes."""
        units = int(self._gu[P.TOTAL_UNITS])
        if self._workspace.size < rows * units:
            self._workspace = np.zeros(rows * units, dtype=self.dtype)
        return self._workspace

    # -- passes ------------------------------------------------------------------------------

    def loss_and_grad(self, X, y, sample_weight=None) -> float:
        """One forward and backward pass on the batch (X, y): returns the mean loss (plus the weight
        penalty) and fills `grads`. Dropout is off here (the deterministic gradient); fit uses it.

        X: (rows, n_features); y: (rows, n_outputs) or (rows,) reals, or (rows,) integer labels for
        SoftmaxCrossEntropy. sample_weight: (rows,) non-negative; the loss becomes
        sum(w_i l_i) / sum(w_i), as in scikit-learn."""
        X, Y, weights = self._checked(X, y, sample_weight)
        with self._lock:
            if self._cuda is not None:
                return self._cuda.loss_and_grad(X, Y, weights)
            ws = self._workspace_for(X.shape[0])
            return float(
                steps.loss_and_grad(
                    self._li,
                    self._lf,
                    self._gu,
                    self.loss.code,
                    self.loss.param,
                    self.l1,
                    self.l2,
                    self.params,
                    self.grads,
                    ws,
                    X,
                    Y,
                    weights,
                    X.shape[0],
                    False,
                    0,
                    0,
                )
            )

    def forward(self, X) -> np.ndarray:
        """The network's output for X (rows, n_features): (rows, n_outputs), raw (logits for the
        cross-entropy losses); a host array on either device. On the CPU a C-ordered float32 or
        float64 X is read where it lies, block by block, each block converted to the network's
        dtype."""
        return self._forward_checked(self._features(X, keep_float=True))

    def _features(self, X, keep_float: bool = False):
        """X validated for this network and its device. keep_float (fit, forward, evaluate; on the
        CPU only, where the GPU stages X in the network's dtype): a C-contiguous float32 or float64
        X is kept in its own dtype, uncopied (the training loops convert each batch, or sample, as
        they read it; _forward_checked each block)."""
        if keep_float and self._cuda is None:
            return check_features(X, self.n_features, self.dtype, keep_float=True)
        return cuda_mod.checks(self)[0](X, self.n_features, self.dtype)

    def _checked(self, X, y, sample_weight, keep_float: bool = False):
        """(X, Y, weights) validated for this network and its device; keep_float as in _features.
        Targets are always converted: they are small next to X, and each dtype kept would be one
        more compiled version of the loops."""
        _, check_y, check_w = cuda_mod.checks(self)
        X = self._features(X, keep_float)
        Y = check_y(y, self.loss, X.shape[0], self.n_outputs, self.dtype)
        return X, Y, check_w(sample_weight, X.shape[0], self.dtype)

    def _forward_checked(self, X: np.ndarray) -> np.ndarray:
        rows = X.shape[0]
        with self._lock:
            if self._cuda is not None:
                return self._cuda.forward(X)
            out = np.empty((rows, self.n_outputs), dtype=self.dtype)
            ws = self._workspace_for(min(rows, _INFERENCE_BLOCK))
            for start in range(0, rows, _INFERENCE_BLOCK):
                # A view where X has the network's dtype; else this block converted (X is kept).
                block = np.asarray(X[start : start + _INFERENCE_BLOCK], dtype=self.dtype)
                out[start : start + block.shape[0]] = steps.forward(
                    self._li, self._lf, self._gu, self.params, ws, block, block.shape[0], False, 0, 0
                )
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: softmax of the logits (SoftmaxCrossEntropy), or sigmoid of each
        output (BinaryCrossEntropy)."""
        if not self.loss.classifies:
            raise ValueError(
                f"predict_proba needs a classification loss; this network's loss is "
                f"{type(self.loss).__name__}"
            )
        return probabilities(self.loss, self.forward(X))

    def predict(self, X) -> np.ndarray:
        """Class labels (argmax, or output > 0 for binary cross-entropy) for the classification
        losses; the raw output for the regression losses."""
        out = self.forward(X)
        return predictions(self.loss, out)

    def evaluate(self, X, y, sample_weight=None) -> dict:
        """{"loss": mean loss with the weight penalty, "accuracy": where the loss defines classes}.
        sample_weight weighs the loss as in loss_and_grad (accuracy stays unweighted). X is read
        as forward reads it."""
        X, Y, weights = self._checked(X, y, sample_weight, keep_float=True)
        out = self._forward_checked(X)
        result = {
            "loss": float(loss_value(self.loss.code, self.loss.param, out, Y, weights)) + self.penalty()
        }
        if self.loss.classifies:
            result["accuracy"] = accuracy(self.loss, out, Y)
        return result

    def fit(
        self,
        X,
        y,
        epochs: int = 1,
        batch_size: int | None = 32,
        optimizer="adam",
        lr=None,
        shuffle: bool = True,
        validation_data=None,
        validation_split: float = 0.0,
        callbacks=(),
        verbose: int = 1,
        seed: int | None = None,
        clip_grad_norm: float | None = None,
        sample_weight=None,
    ):
        """Train by gradient descent; returns a History of per-epoch metrics.

        batch_size=None is full-batch gradient descent, 1 stochastic gradient descent, k mini-batch
        (the last partial batch is used). optimizer: a name ("adam", "sgd", ...) with `lr`, or an
        fb.optim optimizer, whose state then carries over between calls. The same seed gives
        bit-identical parameters at a fixed thread count. A non-finite loss raises
        FloatingPointError (or ends quietly with a TerminateOnNaN callback) with the parameters
        back at their last finite values. verbose: 0 silent, 1 progress bar, 2 a line per epoch.
        sample_weight (rows,) weighs each row's loss: sum(w_i l_i) / sum(w_i) per batch.
        A C-ordered float32 or float64 X is trained on where it lies, each batch (or sample)
        converted to the network's dtype as it is read; any other X is converted once.
        `grads` is working space during fit: plain SGD (no momentum, decay, penalty or clipping)
        folds its step into the backward pass and never writes dW there."""
        from fastbp.train import fit

        return fit(
            self,
            X,
            y,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            shuffle=shuffle,
            validation_data=validation_data,
            validation_split=validation_split,
            callbacks=callbacks,
            verbose=verbose,
            seed=seed,
            clip_grad_norm=clip_grad_norm,
            sample_weight=sample_weight,
        )

    def train_on_batch(self, X, y, optimizer, sample_weight=None) -> float:
        """One optimizer step on (X, y), for online learning; returns the batch loss.

        As in fit, `grads` is working space here: plain SGD folds its step into the backward pass and
        does not write dW. loss_and_grad is the call that fills `grads` with the gradient."""
        from fastbp.train import train_on_batch

        return train_on_batch(self, X, y, optimizer, sample_weight=sample_weight)

    def state_dict(self):
        """The weights under torch's names and shapes ("i.weight" (out, in), "i.bias" for the Dense
        layer at index i), as NumPy copies: what torch's nn.Sequential.load_state_dict takes."""
        from fastbp.interop import state_dict

        return state_dict(self)

    def load_state_dict(self, state, strict: bool = True):
        """Copy weights named as in state_dict (NumPy arrays or torch tensors) into the network,
        every entry checked before anything is written; returns torch's (missing_keys,
        unexpected_keys)."""
        from fastbp.interop import load_state_dict

        return load_state_dict(self, state, strict=strict)

    def to_torch(self):
        """An equivalent torch.nn.Sequential holding a copy of the weights (needs torch)."""
        from fastbp.interop import to_torch

        return to_torch(self)

    def save(self, path, optimizer=None, *, extra: dict | None = None) -> None:
        """Write the network (and optionally the optimizer's state, and `extra` named arrays) to one
        versioned .npz of plain arrays, atomically; fb.load reads it back without unpickling."""
        from fastbp.io import save

        save(self, path, optimizer=optimizer, extra=extra)

    def penalty(self) -> float:
        """The weight penalty l1 * sum|W| + l2/2 * sum W^2 at the current parameters."""
        if self._cuda is not None:
            return self._cuda.penalty()
        return float(steps.weight_penalty(self._li, self.params, self.grads, self.l1, self.l2, False))

    # -- description -------------------------------------------------------------------------

    def get_config(self) -> dict:
        """A JSON-able description of the architecture (what save() stores beside the arrays)."""
        return {
            "layers": [layer_config(spec) for spec in self.specs],
            "loss": {"name": self.loss.name, "param": self.loss.param},
            "dtype": self.dtype.name,
            "l1": self.l1,
            "l2": self.l2,
        }

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        layers = [layer_from_config(entry) for entry in config["layers"]]
        loss_cls = losses_mod.LOSSES[config["loss"]["name"]]
        loss = loss_cls(config["loss"]["param"]) if loss_cls is losses_mod.Huber else loss_cls()
        return cls(*layers, loss=loss, dtype=config["dtype"], l1=config["l1"], l2=config["l2"])

    def summary(self) -> str:
        """A table of the layers, their output shapes and parameter counts."""
        rows = [("layer", "output", "parameters")]
        width = self.n_features
        for spec in self.specs:
            if isinstance(spec, L.Dense):
                width = spec.out_features
                rows.append(
                    (
                        f"Dense({spec.in_features} -> {spec.out_features})",
                        f"(batch, {width})",
                        f"{spec.n_params:,}",
                    )
                )
            else:
                rows.append((repr(spec), f"(batch, {width})", "0"))
        rows.append((f"loss: {type(self.loss).__name__}", "", f"{self.n_params:,} total"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        lines = ["  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def __repr__(self) -> str:
        inner = ", ".join(repr(spec) for spec in self.specs)
        where = "" if self.device == "cpu" else f", device={self.device!r}"
        return (
            f"Sequential({inner}, loss={self.loss!r}, dtype={self.dtype.name}, "
            f"n_params={self.n_params:,}{where})"
        )


def layer_config(spec) -> dict:
    if isinstance(spec, L.Dense):
        return {
            "type": "dense",
            "in_features": spec.in_features,
            "out_features": spec.out_features,
            "init": spec.init,
        }
    if isinstance(spec, L.Dropout):
        return {"type": "dropout", "p": spec.p}
    return {"type": spec.name, "param": spec.param}


def layer_from_config(entry: dict):
    kind = entry["type"]
    if kind == "dense":
        return L.Dense(entry["in_features"], entry["out_features"], init=entry.get("init", "auto"))
    if kind == "dropout":
        return L.Dropout(entry["p"])
    cls = L.ACTIVATIONS.get(kind)
    if cls is None:
        raise ValueError(f"unknown layer type {kind!r}")
    if cls in (L.LeakyReLU, L.ELU):
        return cls(entry["param"])
    return cls()


def probabilities(loss, out: np.ndarray) -> np.ndarray:
    if loss.integer_targets:
        shifted = out - out.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
    return 0.5 * (1.0 + np.tanh(0.5 * out))  # sigmoid without overflow


def predictions(loss, out: np.ndarray) -> np.ndarray:
    if loss.integer_targets:
        return out.argmax(axis=1)
    if loss.classifies:
        labels = (out > 0).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels
    return out


def accuracy(loss, out: np.ndarray, Y: np.ndarray) -> float:
    """Fraction of rows classified right (every label right, for several binary outputs)."""
    if loss.integer_targets:
        return float((out.argmax(axis=1) == Y[:, 0].astype(np.int64)).mean())
    return float(((out > 0) == (Y > 0.5)).all(axis=1).mean())
