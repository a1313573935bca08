"""Loss specs. Each is the mean over the batch exactly as torch.nn.functional defines it by default.

The kernels take the network's raw output. The cross-entropies take logits: their activation (sigmoid,
softmax) is fused into the loss, so the gradient with respect to the logits is simply (p - y) / n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Loss:
    """Base of every loss spec. `code` identifies it in the plan; `param` is its one setting."""

    name = "loss"
    code = -1
    # Whether targets are integer class labels (one column of indices) rather than real values.
    integer_targets = False
    # Whether the loss defines classes, so predict() returns labels and fit() reports accuracy.
    classifies = False

    @property
    def param(self) -> float:
        return 0.0


@dataclass(frozen=True)
class MSE(Loss):
    """mean((out - y)^2) over all elements."""

    name = "mse"
    code = 0


@dataclass(frozen=True)
class L1(Loss):
    """mean(|out - y|) over all elements; the derivative at 0 is 0, as in torch."""

    name = "l1"
    code = 1


@dataclass(frozen=True)
class Huber(Loss):
    """mean over all elements of 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta); d = out - y."""

    delta: float = 1.0
    name = "huber"
    code = 2

    def __post_init__(self):
        if isinstance(self.delta, bool) or not isinstance(self.delta, (int, float)):
            raise TypeError(f"Huber delta must be a real number, got {self.delta!r}")
        if not math.isfinite(self.delta) or self.delta <= 0:
            raise ValueError(f"Huber delta must be finite and > 0, got {self.delta}")
        object.__setattr__(self, "delta", float(self.delta))

    @property
    def param(self) -> float:
        return self.delta


@dataclass(frozen=True)
class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits z with targets y in [0, 1], mean over all elements:
    max(z, 0) - z y + log(1 + exp(-|z|)) (torch's BCEWithLogitsLoss). One output per label."""

    name = "binary_cross_entropy"
    code = 3
    classifies = True


@dataclass(frozen=True)
class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(z) against integer labels, mean over the batch:
    logsumexp(z) - z[y] (torch's cross_entropy)."""

    name = "softmax_cross_entropy"
    code = 4
    integer_targets = True
    classifies = True


LOSSES: dict[str, type[Loss]] = {
    cls.name: cls for cls in (MSE, L1, Huber, BinaryCrossEntropy, SoftmaxCrossEntropy)
}
LOSS_BY_CODE: dict[int, type[Loss]] = {cls.code: cls for cls in LOSSES.values()}
_ALIASES = {
    "cross_entropy": "softmax_cross_entropy",
    "ce": "softmax_cross_entropy",
    "bce": "binary_cross_entropy",
    "squared_error": "mse",
    "mae": "l1",
}


def loss(name_or_loss) -> Loss:
    """A loss spec from a name ("mse", "cross_entropy", ...) or a Loss instance."""
    if isinstance(name_or_loss, Loss):
        return name_or_loss
    if isinstance(name_or_loss, str):
        key = name_or_loss.strip().lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key in LOSSES:
            return LOSSES[key]()
        raise ValueError(f"unknown loss {name_or_loss!r}; choose one of {sorted(LOSSES)}")
    raise TypeError(f"a loss must be a name or a Loss, got {type(name_or_loss).__name__}")
