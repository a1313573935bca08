"""Gradient clipping on the flat gradient buffer, with torch.nn.utils' formulas.

Because every gradient of a network lives in one buffer, the global norm is one reduction and the
rescale one pass (both compiled: fastbp._kernels.cpu.optim.grad_norm / scale_ / clip_value_).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from fastbp._kernels.cpu import optim as _k

__all__ = ["clip_grad_norm", "clip_grad_value"]

# torch.nn.utils.clip_grad_norm_'s guard against a zero norm: coef = max_norm / (norm + 1e-6).
_NORM_EPS = 1e-6


def _check_grads(grads) -> None:
    if not isinstance(grads, np.ndarray):
        raise TypeError(f"grads must be a numpy array, got {type(grads).__name__}")
    if grads.dtype not in (np.float32, np.float64):
        raise TypeError(f"grads must be float32 or float64, got dtype {grads.dtype}")
    if grads.ndim != 1 or not grads.flags.c_contiguous:
        raise ValueError(f"grads must be a flat contiguous 1-D buffer, got shape {grads.shape}")
    if not grads.flags.writeable:
        raise ValueError("grads must be writable (clipping works in place)")


def _nonneg(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not value >= 0.0:  # also NaN
        raise ValueError(f"invalid {name} {value!r}: must be >= 0")
    return value


def clip_grad_norm(
    grads: np.ndarray, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float:
    """Scale `grads` (1-D float32/float64, in place) so that its norm is at most about max_norm;
    return the norm before clipping, as a float.

    total = ||grads||_p (p = norm_type: any p > 0, or inf for max |g|)
    grads *= min(max_norm / (total + 1e-6), 1)                  (torch.nn.utils.clip_grad_norm_)

    A non-finite norm scales grads by NaN, as torch does, unless error_if_nonfinite=True, which
    raises RuntimeError first and leaves grads unchanged.
    """
    _check_grads(grads)
    max_norm = _nonneg("max_norm", max_norm)
    try:
        p = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"norm_type must be a number or 'inf', got {norm_type!r}") from None
    if isinstance(norm_type, bool) or not p > 0.0:
        raise ValueError(f"invalid norm_type {norm_type!r}: must be > 0 or inf")
    total = _k.grad_norm(grads) if p == 2.0 else _k.grad_norm_p(grads, p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"the total norm of order {p} of the gradients is {total}, so they "
            f"cannot be clipped; pass error_if_nonfinite=False to scale anyway"
        )
    coef = max_norm / (total + _NORM_EPS)
    if coef < 1.0 or coef != coef:  # min(coef, 1) that keeps a NaN, as torch.clamp does
        _k.scale_(grads, coef)
    return float(total)


def clip_grad_value(grads: np.ndarray, clip_value: float) -> None:
    """Clamp every element of `grads` (1-D float32/float64, in place) to [-clip_value, clip_value]
    (torch.nn.utils.clip_grad_value_); NaN stays NaN."""
    _check_grads(grads)
    clip_value = _nonneg("clip_value", clip_value)
    _k.clip_value_(grads, clip_value)
