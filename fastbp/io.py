"""Save and load networks as one versioned .npz of plain arrays; never pickle.

File format, version 1 (an uncompressed zip of .npy members, readable with np.load(path,
allow_pickle=False)). Text is stored as 0-d unicode arrays, JSON included:

    format                   "fastbp.model", the marker
    version                  int64 scalar, 1
    fastbp_version           the fastbp that wrote the file (informational)
    config                   JSON of net.get_config(): layers, loss, dtype, l1, l2
    dtype                    "float32" or "float64", the dtype of params
    params                   1-D, the flat parameter buffer (bit-exact)
    optimizer.class          optional: the fb.optim class name, e.g. "Adam"
    optimizer.hyper          JSON of its constructor's keyword arguments ("lr": null when the
                             rate was a schedule, which arrays cannot hold; see load)
    optimizer.state.<key>    one array per entry of optimizer.state_dict()
    extra.<name>             optional arrays the caller stores beside the model (numbers, bools or
                             unicode; the CLI keeps its class labels here)

Writes are atomic: the file is written under a temporary name in the same directory, synced, then
moved over `path`; an error leaves no partial file. Reads check every key, dtype, shape and length
before building anything, and say what is wrong in a ValueError.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

MARKER = "fastbp.model"
FORMAT_VERSION = 1

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_REQUIRED = ("format", "version", "config", "dtype", "params")
_OPTIONAL = ("fastbp_version", "optimizer.class", "optimizer.hyper")


@dataclass
class Checkpoint:
    """What a model file holds: the network, the optimizer (None when none was saved) and the
    extra arrays saved beside them."""

    net: object
    optimizer: object | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    version: int = FORMAT_VERSION


# --- save -----------------------------------------------------------------------------------------


def save(net, path, optimizer=None, *, extra: dict | None = None) -> None:
    """Write `net` (and optionally `optimizer`'s hyper-parameters and state, and `extra` arrays)
    to `path`, exactly that name (no suffix is added), atomically.

    extra: {name: array} of numbers, bools or strings (never objects); read back with
    load_checkpoint(path).extra."""
    arrays = _arrays_to_save(net, optimizer, extra)
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open rather than mkstemp: the file gets the usual permissions (0o666 less the umask).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
                for key, array in arrays.items():
                    with archive.open(key + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _sync_directory(directory)


def _sync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); best effort, and a no-op where directories cannot be
    opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _text(value: str) -> np.ndarray:
    return np.array(value, dtype=np.str_)


def _arrays_to_save(net, optimizer, extra) -> dict[str, np.ndarray]:
    """Every array the file will hold, checked before anything is written."""
    from fastbp import __version__
    from fastbp.network import Sequential

    if not isinstance(net, Sequential):
        raise TypeError(f"save needs a fastbp Sequential, got {type(net).__name__}")
    arrays = {
        "format": _text(MARKER),
        "version": np.array(FORMAT_VERSION, dtype=np.int64),
        "fastbp_version": _text(__version__),
        "config": _text(json.dumps(net.get_config(), allow_nan=False)),
        "dtype": _text(net.dtype.name),
        "params": net.get_params(),
    }
    if optimizer is not None:
        arrays.update(_optimizer_arrays(optimizer))
    if extra is not None:
        if not isinstance(extra, dict):
            raise TypeError(f"extra must be a dict of name -> array, got {type(extra).__name__}")
        for name, value in extra.items():
            arrays[f"extra.{_check_name('extra', name)}"] = _plain_array(f"extra[{name!r}]", value)
    return arrays


def _check_name(what: str, name) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} names must be identifiers (letters, digits, _), got {name!r}")
    return name


def _plain_array(what: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biufU":
        raise TypeError(
            f"{what} must hold numbers, bools or strings, got dtype {array.dtype}; "
            f"fastbp files hold plain arrays only, never pickled objects"
        )
    return array


def _hyper_parameters(optimizer) -> dict:
    """The optimizer's constructor keywords and their current values, JSON-able."""
    hyper = {}
    for name, parameter in inspect.signature(type(optimizer).__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = getattr(optimizer, name)
        if isinstance(value, (bool, np.bool_)):
            value = bool(value)
        elif isinstance(value, (np.integer, np.floating)):
            value = value.item()
        elif isinstance(value, tuple):
            value = [float(v) for v in value]
        hyper[name] = value
    return hyper


def _optimizer_arrays(optimizer) -> dict[str, np.ndarray]:
    from fastbp import optim

    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"optimizer must be an fb.optim optimizer, got {type(optimizer).__name__}")
    cls = type(optimizer)
    if optim.OPTIMIZERS.get(cls.__name__.lower()) is not cls:
        raise TypeError(
            f"only the built-in optimizers ({', '.join(optim.OPTIMIZERS)}) can be saved, got {cls.__name__}"
        )
    hyper = _hyper_parameters(optimizer)
    if callable(hyper.get("lr")):
        # A schedule is code, and a file of plain arrays holds no code: keep its description and
        # ask for the schedule again at load time.
        hyper["lr_schedule"] = repr(hyper["lr"])
        hyper["lr"] = None
    try:
        text = json.dumps(hyper, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"the hyper-parameters of {optimizer!r} cannot be stored as JSON: {err}") from None
    arrays = {"optimizer.class": _text(cls.__name__), "optimizer.hyper": _text(text)}
    for key, value in optimizer.state_dict().items():
        name = f"optimizer.state.{_check_name('optimizer state', key)}"
        arrays[name] = _plain_array(f"optimizer state {key!r}", value)
    return arrays


# --- load -----------------------------------------------------------------------------------------


def load(path, *, with_optimizer: bool = False, lr=None):
    """The network saved at `path` (a Sequential with the saved parameters, bit-exact).

    with_optimizer=True returns (net, optimizer): the optimizer saved with it, whose state
    continues training bit for bit (ValueError when none was saved). lr: the learning-rate
    schedule, needed when the optimizer was saved with one (a file holds no code), or a float
    to use instead of the saved rate.
    Raises FileNotFoundError for a missing file and ValueError, saying what is wrong, for a file
    that is not a valid fastbp model file. Never unpickles."""
    checkpoint = _read(path, build_optimizer=with_optimizer, lr=lr)
    if not with_optimizer:
        return checkpoint.net
    if checkpoint.optimizer is None:
        raise ValueError(
            f"{os.fspath(path)!r} holds no optimizer state (it was saved without "
            f"one); call load(path) for the network alone"
        )
    return checkpoint.net, checkpoint.optimizer


def load_checkpoint(path, *, with_optimizer: bool = True, lr=None) -> Checkpoint:
    """Everything in the file at `path`: Checkpoint(net, optimizer or None, extra, version).
    with_optimizer=False leaves the optimizer out (None) without building it; lr as in load()."""
    return _read(path, build_optimizer=with_optimizer, lr=lr)


class _Invalid(ValueError):
    pass


def _read(path, build_optimizer: bool, lr) -> Checkpoint:
    path = os.fspath(path)
    try:
        return _read_checked(path, build_optimizer, lr)
    except _Invalid as err:
        raise ValueError(f"{path!r}: {err}") from None


def _read_checked(path: str, build_optimizer: bool, lr) -> Checkpoint:
    raw = _read_arrays(path)
    if "format" not in raw:
        raise _Invalid(f"not a fastbp model file (no 'format' marker; it holds {_listing(raw)})")
    if _as_text(raw, "format") != MARKER:
        raise _Invalid(
            f"not a fastbp model file (format marker {_as_text(raw, 'format')!r}, expected {MARKER!r})"
        )
    version = raw.get("version")
    if version is None or version.ndim != 0 or version.dtype.kind not in "iu":
        raise _Invalid("wrong or missing format version: 'version' must be an integer scalar")
    version = int(version)
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"format version {version} was written by a newer fastbp; this one reads "
            f"up to version {FORMAT_VERSION}"
        )
    if version < 1:
        raise _Invalid(f"wrong format version {version}")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise _Invalid(f"missing key(s) {missing} (truncated or tampered file)")
    unknown = [
        key
        for key in raw
        if key not in _REQUIRED + _OPTIONAL and not key.startswith(("optimizer.state.", "extra."))
    ]
    if unknown:
        raise _Invalid(f"unexpected key(s) {unknown}")

    config = _as_json(raw, "config")
    dtype = _as_text(raw, "dtype")
    if dtype not in ("float32", "float64"):
        raise _Invalid(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    params = raw["params"]
    if params.ndim != 1:
        raise _Invalid(f"params must be 1-D, got shape {params.shape}")
    if params.dtype != np.dtype(dtype):
        raise _Invalid(f"params is {params.dtype} but the file says dtype {dtype}")
    if not isinstance(config, dict):
        raise _Invalid("config must be a JSON object")
    if config.get("dtype") != dtype:
        raise _Invalid(f"the architecture says dtype {config.get('dtype')!r} but params is {dtype}")
    needed = _count_params(config)
    if params.size != needed:
        raise _Invalid(f"params has {params.size} values but the architecture needs {needed}")
    net = _build_net(config)
    net.params[...] = params

    optimizer = None
    has_optimizer = "optimizer.class" in raw
    state_keys = [key for key in raw if key.startswith("optimizer.state.")]
    if not has_optimizer and ("optimizer.hyper" in raw or state_keys):
        raise _Invalid("optimizer state without 'optimizer.class'")
    if has_optimizer and build_optimizer:
        state = {key[len("optimizer.state.") :]: raw[key] for key in state_keys}
        optimizer = _build_optimizer(raw, state, net, lr)
    extra = {key[len("extra.") :]: raw[key] for key in raw if key.startswith("extra.")}
    for name, value in extra.items():
        if value.dtype.kind not in "biufU":
            raise _Invalid(f"extra array {name!r} has dtype {value.dtype}; only numbers, bools and text")
    return Checkpoint(net=net, optimizer=optimizer, extra=extra, version=version)


def _listing(raw: dict) -> str:
    keys = sorted(raw)
    shown = ", ".join(repr(k) for k in keys[:8]) + (", ..." if len(keys) > 8 else "")
    return f"keys {shown}" if keys else "no arrays"


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    """Every member of the .npz, read without pickle, or a ValueError saying why not."""
    with open(path, "rb") as handle:  # FileNotFoundError / IsADirectoryError pass through
        head = handle.read(8)
    if not head:
        raise _Invalid("the file is empty (truncated or corrupt)")
    if head.startswith(_NPY_MAGIC):
        raise _Invalid("not a fastbp model file: it is a single .npy array, not an .npz archive")
    if not head.startswith(_ZIP_MAGIC):
        raise _Invalid("not a fastbp model file: not an .npz archive")
    raw = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                try:
                    raw[key] = archive[key]
                except ValueError as err:
                    if "allow_pickle" in str(err) or "Object arrays" in str(err):
                        raise _Invalid(
                            f"{key!r} holds pickled Python objects; fastbp never unpickles (a "
                            f"model file holds plain arrays only)"
                        ) from None
                    raise
                if not isinstance(raw[key], np.ndarray):  # a zip member that is not a .npy
                    raise _Invalid(f"not a fastbp model file: its member {key!r} is not a .npy array")
    except _Invalid:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise _Invalid(f"truncated or corrupt ({type(err).__name__}: {err})") from None
    return raw


def _as_text(raw: dict, key: str) -> str:
    value = raw[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise _Invalid(f"{key!r} must be a text scalar, got {value.dtype} of shape {value.shape}")
    return str(value)


def _as_json(raw: dict, key: str):
    text = _as_text(raw, key)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise _Invalid(f"{key!r} is not valid JSON (tampered or corrupt): {err}") from None


def _count_params(config: dict) -> int:
    """The parameter count the architecture implies, checked before allocating anything."""
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _Invalid("config has no list of 'layers'")
    total = 0
    for index, entry in enumerate(layers):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise _Invalid(f"config layer {index} must be an object with a 'type'")
        if entry["type"] == "dense":
            n_in, n_out = entry.get("in_features"), entry.get("out_features")
            for name, width in (("in_features", n_in), ("out_features", n_out)):
                if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                    raise _Invalid(
                        f"config layer {index} (dense): {name} must be a positive integer, got {width!r}"
                    )
            total += n_in * n_out + n_out
    return total


def _build_net(config: dict):
    from fastbp.network import Sequential

    try:
        return Sequential.from_config(config)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        detail = f"missing {err}" if isinstance(err, KeyError) else str(err)
        raise _Invalid(f"config does not describe a valid network: {detail}") from None


def _build_optimizer(raw: dict, state: dict, net, lr):
    from fastbp import optim

    name = _as_text(raw, "optimizer.class")
    cls = optim.OPTIMIZERS.get(name.lower())
    if cls is None or cls.__name__ != name:
        raise _Invalid(
            f"unknown optimizer class {name!r}; expected one of "
            f"{', '.join(c.__name__ for c in optim.OPTIMIZERS.values())}"
        )
    if "optimizer.hyper" not in raw:
        raise _Invalid("missing key 'optimizer.hyper'")
    hyper = _as_json(raw, "optimizer.hyper")
    if not isinstance(hyper, dict):
        raise _Invalid("'optimizer.hyper' must be a JSON object")
    schedule = hyper.pop("lr_schedule", None)
    if lr is not None:
        hyper["lr"] = lr
    elif hyper.get("lr") is None:
        raise ValueError(
            f"the {name} optimizer was saved with the learning-rate schedule "
            f"{schedule or '(unknown)'}, which a file of plain arrays cannot hold; "
            f"pass it again with lr=..."
        )
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(hyper) - accepted)
    if unknown:
        raise _Invalid(f"'optimizer.hyper' has unknown {name} argument(s) {unknown}")
    try:
        optimizer = cls(**hyper)
    except (TypeError, ValueError) as err:
        raise _Invalid(f"invalid {name} hyper-parameters: {err}") from None
    for key, value in state.items():
        if value.ndim == 1 and (value.size != net.n_params or value.dtype != net.dtype):
            raise _Invalid(
                f"optimizer state {key!r} has {value.size} values of {value.dtype} "
                f"but the network has {net.n_params} parameters of {net.dtype}"
            )
    if lr is not None:  # the caller's rate wins over the saved one
        state = {key: value for key, value in state.items() if key != "lr"}
    try:
        optimizer.load_state_dict(state)
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise _Invalid(f"invalid optimizer state: {err}") from None
    return optimizer
