"""Activations: each forward rule sits beside its derivative.

Codes match fastbp.layers (Identity 0 ... Softplus 8). The switch on the code happens once per layer,
outside the element loops, so every loop body is branch-light and vectorizes.

Derivatives come from the saved output where that is exact and cheaper (ReLU, LeakyReLU with a
non-negative slope, ELU, Sigmoid, Tanh): those layers run in place and keep no pre-activation. GELU,
SiLU, Softplus (and LeakyReLU with a negative slope) need the pre-activation z, kept in its own buffer.
"""

import math

import numpy as np

from fastbp._kernels.jit import njit

IDENTITY, RELU, LEAKY_RELU, ELU, GELU, SILU, SIGMOID, TANH, SOFTPLUS = range(9)
# torch.nn.Softplus's default threshold: above it softplus(x) is x and its derivative 1.
SOFTPLUS_THRESHOLD = 20.0
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def needs_preactivation(code: int, param: float) -> bool:
    """Whether the backward pass of this activation needs z rather than the output."""
    if code == LEAKY_RELU:
        return param < 0.0
    return code in (GELU, SILU, SOFTPLUS)


@njit
def sigmoid(z, one):
    """Logistic function without overflow for either sign; `one` carries the dtype."""
    if z >= 0:
        return one / (one + np.exp(-z))
    e = np.exp(z)
    return e / (one + e)


@njit
def bias_activation_forward(code, param, Z, bias, A):
    """Z += bias (row-wise), then A = f(Z). A may be Z itself: the layers whose derivative comes from
    their output run in place and keep no pre-activation."""
    rows, cols = Z.shape
    t = A.dtype.type
    zero, one, half = t(0), t(1), t(0.5)
    p = t(param)
    for i in range(rows):
        src = Z[i]
        ar = A[i]
        for j in range(cols):
            src[j] += bias[j]
        if code == IDENTITY:
            for j in range(cols):
                ar[j] = src[j]
        elif code == RELU:
            for j in range(cols):
                ar[j] = src[j] if src[j] > zero else zero
        elif code == LEAKY_RELU:
            for j in range(cols):
                z = src[j]
                ar[j] = z if z > zero else p * z
        elif code == ELU:
            for j in range(cols):
                z = src[j]
                ar[j] = z if z > zero else p * np.expm1(z)
        elif code == GELU:
            for j in range(cols):
                z = src[j]
                ar[j] = half * z * (one + t(math.erf(z * t(_INV_SQRT2))))
        elif code == SILU:
            for j in range(cols):
                z = src[j]
                ar[j] = z * sigmoid(z, one)
        elif code == SIGMOID:
            for j in range(cols):
                ar[j] = sigmoid(src[j], one)
        elif code == TANH:
            for j in range(cols):
                ar[j] = np.tanh(src[j])
        elif code == SOFTPLUS:
            thr = t(SOFTPLUS_THRESHOLD)
            for j in range(cols):
                z = src[j]
                ar[j] = z if z > thr else np.log1p(np.exp(z))


@njit
def activation_backward(code, param, Z, A, G, mask, use_mask, db):
    """G[i] = G[i] * mask[i] (dropout, if used) * f'(z[i]); db = column sums of the result.

    G holds dLoss/dOutput on entry and dLoss/dZ on exit; db is overwritten. Z is read only for the
    activations that need it (see needs_preactivation)."""
    rows, cols = G.shape
    t = G.dtype.type
    zero, one, half = t(0), t(1), t(0.5)
    p = t(param)
    db[:] = zero
    for i in range(rows):
        g = G[i]
        if use_mask:
            m = mask[i]
            for j in range(cols):
                g[j] *= m[j]
        if code == IDENTITY:
            pass
        elif code == RELU:
            a = A[i]
            for j in range(cols):
                g[j] = g[j] if a[j] > zero else zero
        elif code == LEAKY_RELU:
            # Sign of z from the output when the slope keeps it (slope >= 0); else from z itself.
            s = A[i] if p >= zero else Z[i]
            for j in range(cols):
                g[j] = g[j] if s[j] > zero else g[j] * p
        elif code == ELU:
            a = A[i]
            for j in range(cols):
                g[j] = g[j] if a[j] > zero else g[j] * (a[j] + p)
        elif code == GELU:
            z = Z[i]
            for j in range(cols):
                x = z[j]
                cdf = half * (one + t(math.erf(x * t(_INV_SQRT2))))
                pdf = t(_INV_SQRT_2PI) * np.exp(-half * x * x)
                g[j] *= cdf + x * pdf
        elif code == SILU:
            z = Z[i]
            for j in range(cols):
                s = sigmoid(z[j], one)
                g[j] *= s * (one + z[j] * (one - s))
        elif code == SIGMOID:
            a = A[i]
            for j in range(cols):
                g[j] *= a[j] * (one - a[j])
        elif code == TANH:
            a = A[i]
            for j in range(cols):
                g[j] *= one - a[j] * a[j]
        elif code == SOFTPLUS:
            z = Z[i]
            thr = t(SOFTPLUS_THRESHOLD)
            for j in range(cols):
                if z[j] <= thr:
                    g[j] *= sigmoid(z[j], one)
        for j in range(cols):
            db[j] += g[j]
