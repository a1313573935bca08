"""The `fastbp` command: train | predict | demo | compile | bench.

    fastbp train data.csv --target species --hidden 64,32 --epochs 30 --out model.npz
    fastbp predict model.npz new.csv --out predictions.csv
    fastbp demo [--quick]
    fastbp compile [--dtypes float32,float64] [--sklearn]
    fastbp bench

Exit status: 0 done, 1 training failed (diverged), 2 bad input (a missing or unreadable file, an
unknown column, a bad flag): one line on stderr, `fastbp: error: ...`, never a traceback.

`train` standardizes the features (and a regression target) for training, then folds the scaling
into the first (and last) Dense layer, so the saved file is an ordinary fastbp model that takes raw
inputs: `fb.load("model.npz").predict(X_raw)` works as `fastbp predict` does. Class labels (any
numbers or strings) are remapped to 0..k-1 for training; their values are stored in the file
(`extra.classes`) and mapped back by `predict`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io as _io
import math
import os
import sys
import time

import numpy as np

# The loss `auto` picks for an integer-valued target with at most this many distinct values
# (and fewer than half as many as rows): softmax cross-entropy. Anything else is regression (mse).
AUTO_MAX_CLASSES = 50

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """Bad input: reported as one line on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage too; we promise one line
        raise CLIError(f"{message} (see '{self.prog} --help')")


# --- flag values --------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _dtype_list(text: str) -> tuple[str, ...]:
    from fastbp.precompile import DTYPES

    names = tuple(name.strip() for name in text.split(","))
    if not all(name in DTYPES for name in names):
        raise argparse.ArgumentTypeError(f"expected float32 and/or float64, comma-separated, got {text!r}")
    return names


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _batch_size(text: str):
    if text.strip().lower() in ("full", "all"):
        return None  # full-batch gradient descent
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'full', got {text!r}") from None


def _hidden(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = (0,)
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer widths such as 256,128, got {text!r}"
        )
    return widths


def _lr(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _activation(text: str) -> str:
    from fastbp.layers import activation

    try:
        return activation(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _loss(text: str) -> str:
    from fastbp.losses import loss

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return loss(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _optimizer(text: str) -> str:
    from fastbp.optim import OPTIMIZERS

    name = text.strip().lower()
    if name not in OPTIMIZERS:
        raise argparse.ArgumentTypeError(f"unknown optimizer {text!r}; choose one of {', '.join(OPTIMIZERS)}")
    return name


# --- data files ---------------------------------------------------------------------------------


class Table:
    """Features X (float64, rows x columns), the raw target (numbers or strings; None when the
    file has none), and what predict needs to find the same columns again."""

    def __init__(self, X, y=None, feature_names=None, target_name=None, target_index=None):
        self.X = X
        self.y = y
        self.feature_names = feature_names
        self.target_name = target_name
        self.target_index = target_index


def _suffix(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".csv", ".npy", ".npz"):
        raise CLIError(f"{path}: data must be a .csv, .npy or .npz file")
    return suffix


def _read_csv_rows(path: str) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = None
            rows = []
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue  # blank line
                if header is None:
                    header = [cell.strip() for cell in record]
                    continue
                if len(record) != len(header):
                    raise CLIError(
                        f"{path}, line {reader.line_num}: {len(record)} fields but the header "
                        f"has {len(header)}"
                    )
                rows.append(record)
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as err:
        raise CLIError(f"{path}: not a readable CSV file ({err})") from None
    if header is None:
        raise CLIError(f"{path}: the file is empty (a header row and data rows are needed)")
    if not rows:
        raise CLIError(f"{path}: no data rows after the header")
    return header, rows


def _numeric_column(path: str, name: str, cells: list[str]) -> np.ndarray | None:
    """The column as float64, or None when a cell is not a number."""
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        return None
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise CLIError(
            f"{path}: column {name!r} holds {cells[row].strip()!r} in data row {row + 1}; "
            f"values must be finite numbers"
        )
    return values


def _column_index(path: str, header: list[str], target: str) -> int:
    if target in header:
        if header.count(target) > 1:
            raise CLIError(f"{path}: more than one column is named {target!r}")
        return header.index(target)
    try:
        index = int(target)
    except ValueError:
        shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
        raise CLIError(f"{path}: no column named {target!r}; the columns are: {shown}") from None
    if not -len(header) <= index < len(header):
        raise CLIError(f"{path}: column index {index} is out of range for {len(header)} columns")
    return index % len(header)


def _read_csv(path: str, target: str | None, wanted: list[str] | None = None) -> Table:
    """Training (wanted=None): the target column and every other column as a feature. Prediction:
    the `wanted` feature columns by name (other columns, such as the target, are ignored)."""
    header, rows = _read_csv_rows(path)
    if wanted is not None:
        missing = [name for name in wanted if name not in header]
        if missing:
            raise CLIError(f"{path}: missing feature column(s) {', '.join(map(repr, missing))}")
        target_index = None
        feature_indices = [header.index(name) for name in wanted]
    else:
        target_index = _column_index(path, header, target if target is not None else "-1")
        feature_indices = [i for i in range(len(header)) if i != target_index]
    if not feature_indices:
        raise CLIError(f"{path}: no feature columns besides the target")
    columns = list(zip(*rows))
    features = []
    for index in feature_indices:
        cells = columns[index]
        values = _numeric_column(path, header[index], cells)
        if values is None:
            row = next(r for r, cell in enumerate(cells) if not _is_number(cell))
            if not cells[row].strip():
                raise CLIError(
                    f"{path}: feature column {header[index]!r} has an empty cell in data row "
                    f"{row + 1} (missing values are not supported)"
                )
            raise CLIError(
                f"{path}: feature column {header[index]!r} is not numeric "
                f"(data row {row + 1} holds {cells[row]!r})"
            )
        features.append(values)
    X = np.ascontiguousarray(np.stack(features, axis=1))
    y = None
    if target_index is not None:
        cells = columns[target_index]
        if any(not cell.strip() for cell in cells):
            row = next(r for r, cell in enumerate(cells) if not cell.strip())
            raise CLIError(f"{path}: target column {header[target_index]!r} is empty in data row {row + 1}")
        y = _numeric_column(path, header[target_index], cells)
        if y is None:
            y = np.array([cell.strip() for cell in cells])
    names = [header[i] for i in feature_indices]
    name = header[target_index] if target_index is not None else None
    return Table(X, y, feature_names=names, target_name=name)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numeric_array(path: str, what: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise CLIError(f"{path}: {what} must hold numbers, got dtype {array.dtype}")
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise CLIError(f"{path}: {what} holds a NaN or infinite value")
    return array


def _load_npy_or_npz(path: str, suffix: str):
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise CLIError(f"{path}: holds pickled objects, which fastbp never loads") from None
        raise CLIError(f"{path}: not a readable {suffix} file ({err})") from None
    except (OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CLIError(f"{path}: not a readable {suffix} file ({err})") from None
    if suffix == ".npy" and not isinstance(loaded, np.ndarray):
        loaded.close()
        raise CLIError(f"{path}: not a .npy array (an .npz archive? name it .npz)")
    if suffix == ".npz" and isinstance(loaded, np.ndarray):
        raise CLIError(f"{path}: not an .npz archive (a single array? name it .npy)")
    return loaded


def _read_npz(path: str, need_y: bool) -> Table:
    with _load_npy_or_npz(path, ".npz") as archive:
        keys = set(archive.files)
        for key in ("X", "y") if need_y else ("X",):
            if key not in keys:
                raise CLIError(
                    f"{path}: an .npz data file must hold arrays 'X' and 'y'; it holds "
                    f"{', '.join(sorted(keys)) or 'nothing'}"
                )
        try:
            X = archive["X"]
            y = archive["y"] if need_y else None
        except ValueError as err:
            raise CLIError(f"{path}: cannot read its arrays ({err})") from None
    X = _numeric_array(path, "X", X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[0] == 0:
        raise CLIError(f"{path}: X must be 2-D (rows, features) with rows, got shape {X.shape}")
    if y is not None:
        if y.dtype.kind not in "biufU" or y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise CLIError(
                f"{path}: y must be 1-D or 2-D with one row per row of X (numbers "
                f"or strings), got {y.dtype} of shape {y.shape}"
            )
        if y.dtype.kind != "U":
            y = _numeric_array(path, "y", y)
    return Table(X, y)


def _read_npy(path: str, target_index: int | None, n_features: int | None = None) -> Table:
    """Training: the column `target_index` (default the last) is the target. Prediction
    (n_features given): all columns, or all but `target_index` when there is one more."""
    array = _numeric_array(path, "the array", _load_npy_or_npz(path, ".npy"))
    if array.ndim != 2 or array.shape[0] == 0:
        raise CLIError(f"{path}: a .npy data file must be 2-D (rows, columns), got shape {array.shape}")
    columns = array.shape[1]
    if n_features is not None:
        if columns == n_features:
            return Table(np.ascontiguousarray(array))
        if columns == n_features + 1 and target_index is not None:
            return Table(np.ascontiguousarray(np.delete(array, target_index, axis=1)))
        raise CLIError(f"{path}: {columns} columns but the model takes {n_features} features")
    index = -1 if target_index is None else target_index
    if not -columns <= index < columns:
        raise CLIError(f"{path}: target column {index} is out of range for {columns} columns")
    index %= columns
    if columns < 2:
        raise CLIError(f"{path}: needs a target column and at least one feature column")
    X = np.ascontiguousarray(np.delete(array, index, axis=1))
    return Table(X, array[:, index], target_index=index)


def load_table(path: str, target: str | None) -> Table:
    """The training data in `path` (.csv, .npy or .npz), with its target."""
    suffix = _suffix(path)
    _check_readable(path)
    if suffix == ".csv":
        return _read_csv(path, target)
    if suffix == ".npz":
        if target is not None:
            raise CLIError("--target does not apply to .npz data (it holds arrays X and y)")
        return _read_npz(path, need_y=True)
    index = None
    if target is not None:
        try:
            index = int(target)
        except ValueError:
            raise CLIError(f"--target for .npy data must be a column index, got {target!r}") from None
    return _read_npy(path, index)


def _check_readable(path: str) -> None:
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory, not a data file")
    if not os.access(path, os.R_OK):
        raise CLIError(f"{path}: permission denied")


# --- targets ------------------------------------------------------------------------------------


def _looks_like_classes(y: np.ndarray) -> bool:
    if y.dtype.kind == "U":
        return True
    if y.ndim != 1 or (y != np.round(y)).any():
        return False
    k = np.unique(y).size
    return 2 <= k <= AUTO_MAX_CLASSES and k <= y.size // 2


def prepare_target(y: np.ndarray, loss_name: str):
    """(loss name, targets for fit, n_outputs, class values or None) for the raw target."""
    if loss_name == "auto":
        loss_name = "softmax_cross_entropy" if _looks_like_classes(y) else "mse"
    if loss_name in ("softmax_cross_entropy", "binary_cross_entropy") and y.ndim == 1:
        classes, labels = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise CLIError(f"the target has a single value ({classes[0]!r}); nothing to classify")
        if loss_name == "binary_cross_entropy":
            if classes.size != 2:
                raise CLIError(
                    f"binary cross-entropy needs a target with 2 classes, got "
                    f"{classes.size}; use --loss cross_entropy"
                )
            return loss_name, labels.astype(np.float64), 1, classes
        return loss_name, labels.astype(np.int64), int(classes.size), classes
    if loss_name == "softmax_cross_entropy":
        raise CLIError("cross-entropy needs one column of class labels as the target")
    if y.dtype.kind == "U":
        raise CLIError(
            f"the target is not numeric (e.g. {str(y.flat[0])!r}); use a classification "
            f"loss (--loss auto or cross_entropy)"
        )
    targets = y if y.ndim == 2 else y.reshape(-1, 1)
    return loss_name, targets, int(targets.shape[1]), None


# --- building, scaling, training ----------------------------------------------------------------


def build_network(n_features, hidden, activation, n_outputs, loss, dtype, seed):
    import fastbp as fb
    from fastbp.layers import activation as make_activation

    layers, width = [], n_features
    for h in hidden:
        layers += [fb.Dense(width, h), make_activation(activation)]
        width = h
    layers.append(fb.Dense(width, n_outputs))
    return fb.Sequential(*layers, loss=loss, dtype=dtype, seed=seed)


def _standardizer(A: np.ndarray):
    mean = A.mean(axis=0)
    scale = A.std(axis=0)
    scale[scale == 0] = 1.0  # a constant column is left as it is (centred)
    return mean, scale


def fold_input_scaling(net, mean: np.ndarray, scale: np.ndarray) -> None:
    """Make the net take raw x where it was trained on (x - mean) / scale: z = x @ (W / s) +
    (b - (m / s) @ W), computed in float64."""
    layer = net.dense_layers[0]
    W = layer.W.astype(np.float64)
    b = layer.b.astype(np.float64) - (mean / scale) @ W
    layer.W[...] = W / scale[:, None]
    layer.b[...] = b


def fold_output_scaling(net, mean: np.ndarray, scale: np.ndarray) -> None:
    """Make the net output y where it was trained on (y - mean) / scale."""
    layer = net.dense_layers[-1]
    W = layer.W.astype(np.float64)
    b = layer.b.astype(np.float64)
    layer.W[...] = W * scale[None, :]
    layer.b[...] = b * scale + mean


def _describe(net) -> str:
    from fastbp.layers import Dense

    parts = [
        f"Dense({s.in_features}->{s.out_features})" if isinstance(s, Dense) else repr(s) for s in net.specs
    ]
    return " ".join(parts)


def _fit(net, *args, **kwargs):
    try:
        return net.fit(*args, **kwargs)
    except FloatingPointError:
        raise
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from None


def _save(net, path, extra) -> None:
    from fastbp.io import save

    try:
        save(net, path, extra=extra)
    except OSError as err:
        raise CLIError(f"cannot write {path}: {err.strerror or err}") from None


def _check_writable(path: str) -> None:
    """Fail before a long training run, not after it, when the model cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(directory):
        raise CLIError(f"cannot write {path}: no directory {directory}")
    if not os.access(directory, os.W_OK):
        raise CLIError(f"cannot write {path}: permission denied")


def cmd_train(args) -> int:
    _check_writable(args.out)
    table = load_table(args.data, args.target)
    loss_name, targets, n_outputs, classes = prepare_target(table.y, args.loss)
    X = table.X
    n = X.shape[0]
    order = np.random.default_rng(args.seed).permutation(n)
    n_val = int(math.floor(n * args.val_split))
    if args.val_split and n_val < 1:
        raise CLIError(f"--val-split {args.val_split} of {n} rows leaves no validation rows")
    if n - n_val < 1:
        raise CLIError(f"--val-split {args.val_split} of {n} rows leaves no training rows")
    train_rows, val_rows = order[: n - n_val], order[n - n_val :]

    regression = classes is None and loss_name != "binary_cross_entropy"
    x_mean = np.zeros(X.shape[1])
    x_scale = np.ones(X.shape[1])
    y_mean = np.zeros(n_outputs)
    y_scale = np.ones(n_outputs)
    if args.standardize:
        x_mean, x_scale = _standardizer(X[train_rows])
        if regression:
            y_mean, y_scale = _standardizer(targets[train_rows])
    Xs = (X - x_mean) / x_scale
    Ts = (targets - y_mean) / y_scale if regression else targets

    try:
        net = build_network(
            X.shape[1], args.hidden, args.activation, n_outputs, loss_name, args.dtype, args.seed
        )
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from None
    what = f"{len(classes)} classes" if classes is not None else f"{n_outputs} output(s)"
    print(f"network: {_describe(net)}  [{loss_name}, {what}, {net.n_params:,} parameters]")
    print(
        f"data: {args.data}: {n - n_val} training rows"
        + (f", {n_val} validation rows" if n_val else "")
        + f", {X.shape[1]} features"
    )
    validation = (Xs[val_rows], Ts[val_rows]) if n_val else None
    started = time.perf_counter()
    history = _fit(
        net,
        Xs[train_rows],
        Ts[train_rows],
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        validation_data=validation,
        verbose=args.verbose,
        seed=args.seed,
    )
    seconds = time.perf_counter() - started

    fold_input_scaling(net, x_mean, x_scale)
    if regression:
        fold_output_scaling(net, y_mean, y_scale)
    extra = {}
    if classes is not None:
        extra["classes"] = classes
    if table.feature_names is not None:
        extra["feature_names"] = np.array(table.feature_names)
    if table.target_name is not None:
        extra["target_name"] = np.array(table.target_name)
    if table.target_index is not None:
        extra["target_index"] = np.array(table.target_index, dtype=np.int64)
    _save(net, args.out, extra)

    train_metrics = _metrics(net, X[train_rows], targets[train_rows], regression)
    val_metrics = _metrics(net, X[val_rows], targets[val_rows], regression) if n_val else {}
    rows = [("", "train", "validation" if n_val else "")]
    rows += [(key, value, val_metrics.get(key, "")) for key, value in train_metrics.items()]
    samples = len(history) * len(train_rows)
    print(
        f"trained {len(history)} epochs in {seconds:.2f} s "
        f"({samples / max(seconds, 1e-9):,.0f} samples/s, including compilation)"
    )
    print(_table(rows))
    print(f"saved {args.out}")
    return EXIT_OK


def _metrics(net, X, targets, regression) -> dict[str, str]:
    """Metrics of the saved (scale-folded) network in the data's own units."""
    if regression:
        error = net.predict(X).astype(np.float64) - targets
        return {"rmse": f"{math.sqrt(np.mean(error**2)):.6g}", "mae": f"{np.mean(np.abs(error)):.6g}"}
    scores = net.evaluate(X, targets)
    return {"loss": f"{scores['loss']:.4f}", "accuracy": f"{100 * scores['accuracy']:.2f} %"}


def _table(rows) -> str:
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  "
        + "  ".join(
            str(cell).rjust(widths[c]) if c else str(cell).ljust(widths[c]) for c, cell in enumerate(r)
        ).rstrip()
        for r in rows
    )


# --- predict ------------------------------------------------------------------------------------


def cmd_predict(args) -> int:
    from fastbp.io import load_checkpoint

    _check_readable(args.model)
    try:
        checkpoint = load_checkpoint(args.model, with_optimizer=False)
    except ValueError as err:
        raise CLIError(str(err)) from None
    net, extra = checkpoint.net, checkpoint.extra
    suffix = _suffix(args.data)
    _check_readable(args.data)
    if suffix == ".csv":
        names = extra.get("feature_names")
        # A model trained from .npy/.npz data knows no column names: then every column is a feature.
        wanted = [str(n) for n in names] if names is not None else _read_csv_rows(args.data)[0]
        table = _read_csv(args.data, None, wanted=wanted)
    elif suffix == ".npz":
        table = _read_npz(args.data, need_y=False)
    else:
        index = extra.get("target_index")
        table = _read_npy(args.data, None if index is None else int(index), net.n_features)
    if table.X.shape[1] != net.n_features:
        raise CLIError(
            f"{args.data}: {table.X.shape[1]} feature columns but the model takes {net.n_features}"
        )
    try:
        out = net.predict(table.X)
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from None
    classes = extra.get("classes")
    if classes is not None:
        out = classes[out]
    name = str(extra["target_name"]) if "target_name" in extra else "prediction"
    text = _predictions_csv(out, name)
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        with open(args.out, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        raise CLIError(f"cannot write {args.out}: {err.strerror or err}") from None
    print(f"wrote {out.shape[0]} predictions to {args.out}", file=sys.stderr)
    return EXIT_OK


def _predictions_csv(out: np.ndarray, name: str) -> str:
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    values = out if out.ndim == 2 else out.reshape(-1, 1)
    if values.shape[1] == 1:
        writer.writerow([name])
    else:
        writer.writerow([f"{name}_{j}" for j in range(values.shape[1])])
    as_text = (lambda v: f"{v:.9g}") if values.dtype.kind == "f" else str
    for row in values:
        writer.writerow([as_text(v) for v in row])
    return buffer.getvalue()


# --- demo ---------------------------------------------------------------------------------------


def _demo_data(name: str, quick: bool):
    from fastbp import datasets

    if name == "auto":
        try:
            import sklearn  # noqa: F401

            name = "spirals" if quick else "digits"
        except ImportError:
            name = "spirals"
    if name == "digits":
        try:
            X, y = datasets.digits()
        except ImportError as err:
            raise CLIError(str(err)) from None
        return name, X, y, "8x8 handwritten digits (scikit-learn)"
    n = 300 if quick else 3000
    make = {"spirals": datasets.spirals, "moons": datasets.moons, "xor": datasets.xor}[name]
    X, y = make(n_samples=n, noise=0.2 if name == "spirals" else 0.1, seed=0)
    return name, X, y, f"synthetic {name}"


def cmd_demo(args) -> int:
    import fastbp as fb
    from fastbp.datasets import train_test_split

    name, X, y, about = _demo_data(args.dataset, args.quick)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, seed=args.seed)
    n_classes = int(y.max()) + 1
    hidden = (32,) if args.quick else ((256, 128) if name == "digits" else (64, 64))
    epochs = args.epochs or (10 if args.quick else (30 if name == "digits" else 60))
    batch_size, lr = 32, 1e-3 if name == "digits" else 1e-2

    def make_net():
        return build_network(
            X.shape[1], hidden, "relu", n_classes, "softmax_cross_entropy", np.float32, args.seed
        )

    net = make_net()
    optimizer = fb.optim.Adam(lr=lr)
    print(
        f"fastbp demo: {name}, {about}: {len(X):,} samples, {X.shape[1]} features, "
        f"{n_classes} classes ({len(X_train):,} train / {len(X_test):,} test)"
    )
    print(f"network:     {_describe(net)}  ({net.n_params:,} parameters, float32)")
    print(f"training:    Adam(lr={lr:g}), batch {batch_size}, {epochs} epochs")
    sys.stdout.flush()
    # Compile (or load from Numba's cache) before timing, so the timing is of training alone.
    print("warm-up:     the kernels, from Numba's cache (half a minute or so if they must compile first)")
    sys.stdout.flush()
    tick = time.perf_counter()
    make_net().fit(X_train[:batch_size], y_train[:batch_size], epochs=1, verbose=0)
    warmup = time.perf_counter() - tick
    tick = time.perf_counter()
    net.fit(
        X_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        verbose=args.verbose,
        seed=args.seed,
    )
    seconds = time.perf_counter() - tick
    test = net.evaluate(X_test, y_test)
    train = net.evaluate(X_train, y_train)
    rows = [
        ("test accuracy", f"{100 * test['accuracy']:.2f} %", f"{len(X_test):,} held-out samples"),
        ("train accuracy", f"{100 * train['accuracy']:.2f} %", ""),
        ("test loss", f"{test['loss']:.4f}", "softmax cross-entropy"),
        ("training time", f"{seconds:.2f} s", f"{epochs} epochs of {len(X_train):,} samples"),
        ("throughput", f"{epochs * len(X_train) / max(seconds, 1e-9):,.0f}", "samples/s"),
        ("JIT warm-up", f"{warmup:.2f} s", "compile or cache load, not in the training time"),
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(2)]
    print()
    for label, value, note in rows:
        print(f"  {label.ljust(widths[0])}  {value.rjust(widths[1])}  {note}".rstrip())
    return EXIT_OK


# --- compile ------------------------------------------------------------------------------------


def cmd_compile(args) -> int:
    from fastbp.precompile import DTYPES, precompile

    def report(part, seconds):
        print(f"  {part:<16} {seconds:7.2f} s", flush=True)

    print("compiling fastbp's kernels, or loading them from Numba's cache where they are already")
    try:
        dtypes = args.dtypes or DTYPES
        seconds = precompile(dtypes, sklearn=args.sklearn, report=report)
    except ImportError as missing:  # --sklearn without scikit-learn
        raise CLIError(f"--sklearn needs scikit-learn ({missing}): pip install 'fastbp[sklearn]'") from None
    print(f"done in {sum(seconds.values()):.1f} s: later fits load the kernels from the cache")
    return EXIT_OK


# --- bench --------------------------------------------------------------------------------------


def bench_script() -> str:
    """bench/peers.py of the source checkout this fastbp runs from (absent from an installed wheel)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "peers.py")


def cmd_bench(args) -> int:
    import runpy

    script = bench_script()
    if not os.path.isfile(script):
        print(
            f"fastbp: bench is not available: no {script} (bench/peers.py ships with a source "
            f"checkout of fastbp, not with the installed package)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    saved = sys.argv
    sys.argv = [script, *args.args]
    try:  # exactly `python bench/peers.py ARGS...`
        runpy.run_path(script, run_name="__main__")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = saved
    return EXIT_OK


# --- entry point --------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    # No abbreviated flags: `--epoch 3` should be an error, not a silent `--epochs 3`.
    parser = _Parser(
        prog="fastbp",
        allow_abbrev=False,
        description="Train dense neural networks fast, by backpropagation with Numba kernels.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{train,predict,demo,compile,bench}")
    commands.add_parser = functools.partial(commands.add_parser, allow_abbrev=False)

    train = commands.add_parser(
        "train",
        help="train a network on a .csv/.npy/.npz file and save it",
        description="Train a network on DATA and save it to --out.",
    )
    train.add_argument(
        "data",
        metavar="DATA",
        help=".csv with a header row, .npz with arrays X "
        "and y, or .npy whose last column (or --target) is the target",
    )
    train.add_argument(
        "--target", metavar="COL", help="target column: a name or an index (default: the last column)"
    )
    train.add_argument(
        "--hidden",
        type=_hidden,
        default=(256, 128),
        metavar="W1,W2,...",
        help="hidden layer widths (default: 256,128; 'none' for none)",
    )
    train.add_argument(
        "--activation",
        type=_activation,
        default="relu",
        help="hidden activation: relu, tanh, gelu, ... (default: relu)",
    )
    train.add_argument(
        "--loss",
        type=_loss,
        default="auto",
        help="auto (default: cross-entropy "
        "for a target of few integer or text values, else mse), mse, l1, huber, "
        "cross_entropy, bce",
    )
    train.add_argument(
        "--optimizer",
        type=_optimizer,
        default="adam",
        help="sgd, adam, adamw, rmsprop, adagrad, adadelta, adamax, nadam (default: adam)",
    )
    train.add_argument(
        "--lr", type=_lr, default=None, help="learning rate (default: the optimizer's, 1e-3 for adam)"
    )
    train.add_argument("--epochs", type=_positive_int, default=20, help="default: 20")
    train.add_argument(
        "--batch-size", type=_batch_size, default=32, help="rows per step, or 'full' (default: 32)"
    )
    train.add_argument(
        "--val-split",
        type=_fraction,
        default=0.1,
        help="fraction of rows (drawn at random) held out for validation (default: 0.1)",
    )
    train.add_argument("--out", default="model.npz", help="model file (default: model.npz)")
    train.add_argument(
        "--seed", type=_seed, default=0, help="seed for weights, split and shuffling (default: 0)"
    )
    train.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0 quiet, 1 progress bar, 2 a line per epoch (default: 1)",
    )
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument(
        "--no-standardize",
        dest="standardize",
        action="store_false",
        help="train on the raw features (default: standardize, then fold the scaling into the saved weights)",
    )
    train.set_defaults(handler=cmd_train)

    predict = commands.add_parser(
        "predict",
        help="predict with a saved model",
        description="Print (or write) the predictions of MODEL on DATA.",
    )
    predict.add_argument("model", metavar="MODEL", help="a model file from fastbp train or fb.save")
    predict.add_argument(
        "data", metavar="DATA", help=".csv (the training feature columns, by name), .npz (array X) or .npy"
    )
    predict.add_argument("--out", help="write the predictions to this .csv (default: stdout)")
    predict.set_defaults(handler=cmd_predict)

    demo = commands.add_parser(
        "demo",
        help="train on built-in data and report speed and accuracy",
        description="Train on digits (with scikit-learn) or spirals and "
        "report test accuracy, training time and samples/s.",
    )
    demo.add_argument(
        "--dataset",
        choices=("auto", "digits", "spirals", "moons", "xor"),
        default="auto",
        help="default: digits with scikit-learn, else spirals",
    )
    demo.add_argument("--quick", action="store_true", help="a tiny, fast run (a smoke test)")
    demo.add_argument("--epochs", type=_positive_int, default=None)
    demo.add_argument("--seed", type=_seed, default=0)
    demo.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    demo.set_defaults(handler=cmd_demo)

    compile_ = commands.add_parser(
        "compile",
        help="compile the kernels ahead of the first fit (for an install step or an image build)",
        description="Compile fastbp's CPU kernels into Numba's cache (or load them where they are), "
        "so that the first fit of every later process starts at once.",
    )
    compile_.add_argument(
        "--dtypes",
        type=_dtype_list,
        default=None,
        help="comma-separated, from float32,float64 (default: both)",
    )
    compile_.add_argument("--sklearn", action="store_true", help="also the scikit-learn drop-ins' kernels")
    compile_.set_defaults(handler=cmd_compile)

    bench = commands.add_parser(
        "bench",
        help="compare fastbp with its peers (bench/peers.py)",
        description="Run bench/peers.py from a source checkout; further arguments go to it.",
    )
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv=None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    try:
        parser = make_parser()
        # bench passes what it does not know to bench/peers.py (argparse.REMAINDER fails on a
        # leading --flag); every other command rejects it.
        args, rest = parser.parse_known_args(argv)
        if rest and args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.args = rest
        if args.command is None:
            raise CLIError("choose a command: train, predict, demo, compile or bench (see 'fastbp --help')")
        return args.handler(args)
    except CLIError as err:
        print(f"fastbp: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except FloatingPointError as err:
        print(f"fastbp: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
