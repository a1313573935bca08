"""Weight exchange with PyTorch: nn.Sequential <-> fastbp Sequential, and torch-style state dicts.

The layer lists map one to one: nn.Linear is Dense, each supported activation is its fastbp twin,
nn.Dropout is Dropout; module i of an nn.Sequential is spec i of the fastbp network, so the state
dict keys are torch's own ("0.weight", "0.bias", "2.weight", ...). torch stores a Linear's weight as
(out, in), fastbp's W is (in, out): the arrays are transposed on the way.

state_dict / load_state_dict need only NumPy (they take torch tensors too); from_torch / to_torch
import torch when called (the "torch" extra).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from fastbp import layers as L
from fastbp.network import DenseParams, Sequential

__all__ = ["IncompatibleKeys", "from_torch", "load_state_dict", "state_dict", "to_torch"]

_SUPPORTED = (
    "Linear, ReLU, LeakyReLU, ELU, GELU(approximate='none'), SiLU, Sigmoid, Tanh, "
    "Softplus(beta=1, threshold=20), Identity, Dropout"
)


class IncompatibleKeys(NamedTuple):
    """What load_state_dict(strict=False) left out, as torch reports it."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _torch():
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            "fastbp's PyTorch exchange needs torch: pip install 'fastbp[torch]' (or torch itself)"
        ) from err
    return torch


def _dense_entries(net: Sequential):
    """(key prefix, bound Dense layer) for each Dense layer: the prefix is its index among the
    network's layers, as in the matching nn.Sequential."""
    return [(str(index), layer) for index, layer in enumerate(net.layers) if isinstance(layer, DenseParams)]


def state_dict(net: Sequential) -> OrderedDict:
    """The network's weights with torch's names and shapes: "i.weight" (out, in) and "i.bias"
    (out,) for the Dense layer at index i, as NumPy arrays of the network's dtype (copies)."""
    params = net.get_params()  # a host copy, on either device
    out = OrderedDict()
    for prefix, layer in _dense_entries(net):
        out[f"{prefix}.weight"] = np.ascontiguousarray(params[layer.w_slice].reshape(layer.W.shape).T)
        out[f"{prefix}.bias"] = params[layer.b_slice].copy()
    return out


def _as_array(key: str, value) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "fiub":
        raise TypeError(f"state dict entry {key!r} must hold real numbers, got dtype {array.dtype}")
    return array


def load_state_dict(net: Sequential, state, strict: bool = True) -> IncompatibleKeys:
    """Copy weights named as in state_dict (NumPy arrays or torch tensors; weight (out, in)) into
    the network. strict=True: the keys must match exactly. Every entry is checked (shape, numbers)
    before anything is written; a shape mismatch names its key. Returns the missing and unexpected
    keys (empty when strict)."""
    if not hasattr(state, "keys"):
        raise TypeError(f"state must be a mapping of names to arrays, got {type(state).__name__}")
    targets = {}
    for prefix, layer in _dense_entries(net):
        targets[f"{prefix}.weight"] = (layer.w_slice, tuple(layer.W.shape), True)
        targets[f"{prefix}.bias"] = (layer.b_slice, tuple(layer.b.shape), False)
    keys = [str(k) for k in state.keys()]
    missing = [k for k in targets if k not in state]
    unexpected = [k for k in keys if k not in targets]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        raise KeyError(
            f"the state dict does not match the network: {'; '.join(parts)} (the "
            f"network expects {list(targets)})"
        )
    staged = []
    for key, (where, shape, transposed) in targets.items():
        if key not in state:
            continue
        array = _as_array(key, state[key])
        want = shape[::-1] if transposed else shape
        if array.shape != want:
            what = "(out_features, in_features)" if transposed else "(out_features,)"
            raise ValueError(
                f"state dict entry {key!r} has shape {tuple(array.shape)}, but the "
                f"network's layer needs {want} {what}"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            converted = array.astype(net.dtype)
        if not np.isfinite(converted).all():
            raise ValueError(
                f"state dict entry {key!r} holds a non-finite value (or one too large for {net.dtype})"
            )
        staged.append((where, converted.T if transposed else converted))
    with net._lock:
        params = net.get_params()
        for where, value in staged:
            params[where] = value.ravel()
        net.set_params(params)  # one write, on whichever device the network is
    return IncompatibleKeys(missing, unexpected)


def _spec_from_module(index: int, module):
    """The fastbp layer spec for torch module `index`, or a ValueError naming it."""
    nn = _torch().nn
    kind = type(module)
    where = f"module {index} ({module!r})"
    if kind is nn.Linear:
        return L.Dense(module.in_features, module.out_features)
    if kind is nn.ReLU:
        return L.ReLU()
    if kind is nn.LeakyReLU:
        return L.LeakyReLU(float(module.negative_slope))
    if kind is nn.ELU:
        if module.alpha < 0:
            raise ValueError(f"{where}: fastbp's ELU needs alpha >= 0")
        return L.ELU(float(module.alpha))
    if kind is nn.GELU:
        if module.approximate != "none":
            raise ValueError(
                f"{where}: fastbp's GELU is the exact (erf) form; "
                f"approximate={module.approximate!r} is not supported"
            )
        return L.GELU()
    if kind is nn.SiLU:
        return L.SiLU()
    if kind is nn.Sigmoid:
        return L.Sigmoid()
    if kind is nn.Tanh:
        return L.Tanh()
    if kind is nn.Softplus:
        if module.beta != 1 or module.threshold != 20:
            raise ValueError(f"{where}: fastbp's Softplus is beta=1, threshold=20")
        return L.Softplus()
    if kind is nn.Identity:
        return L.Identity()
    if kind is nn.Dropout:
        return L.Dropout(float(module.p))
    raise ValueError(f"{where} is not supported by fastbp; an nn.Sequential of {_SUPPORTED} can be converted")


def _resolve_dtype(module, dtype):
    if dtype is not None:
        return dtype
    torch = _torch()
    for param in module.parameters():
        if param.dtype == torch.float64:
            return np.float64
        break
    return np.float32  # float32, and float16 / bfloat16 (widened exactly)


def from_torch(module, dtype=None, *, loss="mse") -> Sequential:
    """A fastbp Sequential with the layers and weights of `module`, an nn.Sequential of Linear and
    the supported activations (ReLU, LeakyReLU, ELU, GELU exact, SiLU, Sigmoid, Tanh, Softplus with
    torch's defaults, Identity) and Dropout. dtype: None keeps the module's (float64 stays float64,
    anything else becomes float32). loss: the network's loss (a name or fb loss), for training on.
    A Linear without bias becomes a Dense layer with zero bias."""
    torch = _torch()
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch takes an nn.Sequential, got {type(module).__name__}")
    specs = [_spec_from_module(index, child) for index, child in enumerate(module)]
    try:
        net = Sequential(*specs, loss=loss, dtype=_resolve_dtype(module, dtype))
    except (ValueError, TypeError) as err:
        raise type(err)(f"from_torch: this nn.Sequential has no fastbp equivalent: {err}") from None
    state = OrderedDict()
    for index, child in enumerate(module):
        if type(child) is torch.nn.Linear:
            state[f"{index}.weight"] = child.weight
            state[f"{index}.bias"] = child.bias if child.bias is not None else np.zeros(child.out_features)
    load_state_dict(net, state)
    return net


def _module_from_spec(spec, nn):
    if isinstance(spec, L.Dense):
        return nn.Linear(spec.in_features, spec.out_features)
    if isinstance(spec, L.Dropout):
        return nn.Dropout(spec.p)
    simple = {
        L.Identity: nn.Identity,
        L.ReLU: nn.ReLU,
        L.GELU: nn.GELU,
        L.SiLU: nn.SiLU,
        L.Sigmoid: nn.Sigmoid,
        L.Tanh: nn.Tanh,
        L.Softplus: nn.Softplus,
    }
    if type(spec) in simple:
        return simple[type(spec)]()
    if isinstance(spec, L.LeakyReLU):
        return nn.LeakyReLU(spec.negative_slope)
    if isinstance(spec, L.ELU):
        return nn.ELU(spec.alpha)
    raise ValueError(f"no torch module for fastbp layer {spec!r}")  # pragma: no cover


def to_torch(net: Sequential):
    """An nn.Sequential with the network's layers and a copy of its weights, in the network's
    dtype. Like any new torch module it is in training mode: call .eval() before comparing outputs
    (it matters only with Dropout)."""
    torch = _torch()
    module = torch.nn.Sequential(*[_module_from_spec(spec, torch.nn) for spec in net.specs])
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    module = module.to(dtype)
    with torch.no_grad():
        for key, value in state_dict(net).items():
            module.get_parameter(key).copy_(torch.from_numpy(value))
    return module
