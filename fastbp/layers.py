"""Layer specs: Dense, the activations and Dropout. They know their shapes and settings, never the math.

`Sequential` compiles a list of these into a plan of integer codes (and, per activation, the
addresses of its compiled kernels: fastbp/_kernels/cpu/indirect.py), which the kernels read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

INITIALIZERS = ("auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal", "zeros")


def _check_width(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def _check_real(name: str, value, *, low=-math.inf, low_inclusive=True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < low or (value == low and not low_inclusive):
        bound = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {bound} {low}, got {value}")
    return value


class Layer:
    """Base of every layer spec."""


@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer: out = X @ W + b with W of shape (in_features, out_features).

    init: "auto" (He for the ReLU family that follows, Glorot otherwise), "glorot_uniform",
    "glorot_normal", "he_uniform", "he_normal", "lecun_normal" or "zeros". Biases start at zero.
    """

    in_features: int
    out_features: int
    init: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "in_features", _check_width("Dense in_features", self.in_features))
        object.__setattr__(self, "out_features", _check_width("Dense out_features", self.out_features))
        if self.init not in INITIALIZERS:
            raise ValueError(f"Dense init must be one of {INITIALIZERS}, got {self.init!r}")

    @property
    def n_params(self) -> int:
        return self.in_features * self.out_features + self.out_features


@dataclass(frozen=True)
class Activation(Layer):
    """An elementwise nonlinearity. `name` is the code used in the plan and the kernels."""

    name = "identity"
    code = 0
    # He initialisation suits activations that zero about half their inputs.
    relu_family = False

    @property
    def param(self) -> float:
        return 0.0


@dataclass(frozen=True)
class Identity(Activation):
    name = "identity"
    code = 0


@dataclass(frozen=True)
class ReLU(Activation):
    """max(x, 0); the derivative at 0 is 0, the subgradient torch uses."""

    name = "relu"
    code = 1
    relu_family = True


@dataclass(frozen=True)
class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x."""

    negative_slope: float = 0.01
    name = "leaky_relu"
    code = 2
    relu_family = True

    def __post_init__(self):
        object.__setattr__(
            self, "negative_slope", _check_real("LeakyReLU negative_slope", self.negative_slope)
        )

    @property
    def param(self) -> float:
        return self.negative_slope


@dataclass(frozen=True)
class ELU(Activation):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    alpha: float = 1.0
    name = "elu"
    code = 3
    relu_family = True

    def __post_init__(self):
        object.__setattr__(self, "alpha", _check_real("ELU alpha", self.alpha, low=0.0))

    @property
    def param(self) -> float:
        return self.alpha


@dataclass(frozen=True)
class GELU(Activation):
    """x * Phi(x), the exact form with erf (torch's approximate='none')."""

    name = "gelu"
    code = 4
    relu_family = True


@dataclass(frozen=True)
class SiLU(Activation):
    """x * sigmoid(x) (also called swish)."""

    name = "silu"
    code = 5
    relu_family = True


@dataclass(frozen=True)
class Sigmoid(Activation):
    """1 / (1 + exp(-x))."""

    name = "sigmoid"
    code = 6


@dataclass(frozen=True)
class Tanh(Activation):
    name = "tanh"
    code = 7


@dataclass(frozen=True)
class Softplus(Activation):
    """log(1 + exp(x)), with torch's defaults beta=1 and threshold=20 (x above 20 passes through)."""

    name = "softplus"
    code = 8


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout: during fit, zero each input with probability p and scale the rest by
    1 / (1 - p); the identity at inference."""

    p: float = 0.5
    name: str = field(default="dropout", init=False)

    def __post_init__(self):
        p = _check_real("Dropout p", self.p, low=0.0)
        if p >= 1.0:
            raise ValueError(f"Dropout p must be in [0, 1), got {p}")
        object.__setattr__(self, "p", p)


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Identity, ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh, Softplus)
}
ACTIVATION_BY_CODE: dict[int, type[Activation]] = {cls.code: cls for cls in ACTIVATIONS.values()}


def activation(name_or_layer) -> Activation:
    """An activation spec from a name ("relu", "tanh", ...) or an Activation instance."""
    if isinstance(name_or_layer, Activation):
        return name_or_layer
    if isinstance(name_or_layer, str):
        key = name_or_layer.strip().lower().replace("-", "_")
        aliases = {
            "logistic": "sigmoid",
            "swish": "silu",
            "linear": "identity",
            "none": "identity",
            "leakyrelu": "leaky_relu",
        }
        key = aliases.get(key, key)
        if key in ACTIVATIONS:
            return ACTIVATIONS[key]()
        raise ValueError(f"unknown activation {name_or_layer!r}; choose one of {sorted(ACTIVATIONS)}")
    raise TypeError(f"an activation must be a name or an Activation, got {type(name_or_layer).__name__}")


def initialize_weights(
    rng: np.random.Generator, dense: Dense, following: Activation | None, out: np.ndarray
) -> None:
    """Fill `out` (shape (in, out)) with the dense layer's initial weights, drawn from `rng`."""
    fan_in, fan_out = dense.in_features, dense.out_features
    scheme = dense.init
    if scheme == "auto":
        scheme = "he_uniform" if following is not None and following.relu_family else "glorot_uniform"
    if scheme == "zeros":
        out[...] = 0
        return
    if scheme == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        out[...] = rng.uniform(-limit, limit, size=out.shape)
    elif scheme == "glorot_normal":
        out[...] = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=out.shape)
    elif scheme == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        out[...] = rng.uniform(-limit, limit, size=out.shape)
    elif scheme == "he_normal":
        out[...] = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=out.shape)
    elif scheme == "lecun_normal":
        out[...] = rng.normal(0.0, math.sqrt(1.0 / fan_in), size=out.shape)
    else:  # pragma: no cover - Dense validates init
        raise ValueError(f"unknown init {scheme!r}")
