"""Activations: each forward rule sits beside its derivative.

Codes match fastbp.layers (Identity 0 ... Softplus 8). Each activation has its own small loops, so
LLVM vectorizes every one of them (one loop body holding every activation's inlined math did not
vectorize: tanh ran 7x slower than in its own function), and its own two entry points (forward,
backward), compiled when a network first uses them and called through the addresses the plan holds
(indirect.py): the compiled loops carry none of the activations' code, and a network compiles only
its own activations.

Derivatives come from the saved output where that is exact and cheaper (ReLU, LeakyReLU with a
non-negative slope, ELU, Sigmoid, Tanh): those layers run in place and keep no pre-activation, and
their forward map reads and writes one array (two aliased pointers defeat LLVM's vectorizer, which
then falls back to scalar code). GELU, SiLU, Softplus (and LeakyReLU with a negative slope) need
the pre-activation z, kept in its own buffer.

No loop here may store back, on one side of a condition, the value it just loaded (ReLU's
`a = a if a > 0 else 0`): LLVM drops that store as a no-op, leaving a conditional store, which it
vectorizes as masked stores (vmaskmovps), microcoded on AMD CPUs: after a 200 x 100 x 100 GEMM, the
bias and ReLU took 19-24 us that way against 7 us with plain stores (Zen 3, float32). So ReLU,
LeakyReLU and ELU add the bias in their own loop (the value stored always differs from the one
loaded); tests/test_fastmath.py checks the forward loops' assembly. The backward loops keep such
stores: measured after their GEMM, they cost nothing there.
"""

import functools
import math

import numba
import numpy as np
from numba import types

from fastbp._kernels.cpu import indirect
from fastbp._kernels.cpu.batch import copy_rows
from fastbp._kernels.cpu.fastmath import (
    fast_erfc,
    fast_exp,
    fast_expm1,
    fast_log1p,
    fast_sigmoid,
    fast_tanh,
)
from fastbp._kernels.cpu.indirect import array_at
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


# --- ReLU: max(z, 0); derivative 1 where the output is positive (0 at z = 0, as torch) ---------


@njit
def relu_forward(bias, A):
    zero = A.dtype.type(0)
    for i in range(A.shape[0]):
        a = A[i]
        for j in range(A.shape[1]):
            x = a[j] + bias[j]
            a[j] = x if x > zero else zero


@njit
def relu_backward(A, G):
    zero = G.dtype.type(0)
    for i in range(G.shape[0]):
        a, g = A[i], G[i]
        for j in range(G.shape[1]):
            g[j] = g[j] if a[j] > zero else zero


# --- LeakyReLU: z if z > 0 else slope * z ------------------------------------------------------


@njit
def leaky_relu_forward(p, bias, A):
    t = A.dtype.type
    zero, slope = t(0), t(p)
    for i in range(A.shape[0]):
        a = A[i]
        for j in range(A.shape[1]):
            x = a[j] + bias[j]
            a[j] = x if x > zero else slope * x


@njit
def leaky_relu_backward(p, S, G):
    """S is the output when the slope is >= 0 (same sign as z), else z itself."""
    t = G.dtype.type
    zero, slope = t(0), t(p)
    for i in range(G.shape[0]):
        s, g = S[i], G[i]
        for j in range(G.shape[1]):
            g[j] = g[j] if s[j] > zero else g[j] * slope


# --- ELU: z if z > 0 else alpha * (exp(z) - 1); derivative for z <= 0 is output + alpha ---------


@njit
def elu_forward(p, bias, A):
    t = A.dtype.type
    zero, alpha = t(0), t(p)
    for i in range(A.shape[0]):
        a = A[i]
        for j in range(A.shape[1]):
            x = a[j] + bias[j]
            a[j] = x if x > zero else alpha * fast_expm1(x)


@njit
def elu_backward(p, A, G):
    t = G.dtype.type
    zero, alpha = t(0), t(p)
    for i in range(G.shape[0]):
        a, g = A[i], G[i]
        for j in range(G.shape[1]):
            g[j] = g[j] if a[j] > zero else g[j] * (a[j] + alpha)


# --- Sigmoid: 1 / (1 + exp(-z)); derivative s (1 - s) from the output --------------------------


@njit
def sigmoid_forward(A):
    for i in range(A.shape[0]):
        a = A[i]
        for j in range(A.shape[1]):
            a[j] = fast_sigmoid(a[j])


@njit
def sigmoid_backward(A, G):
    one = G.dtype.type(1)
    for i in range(G.shape[0]):
        a, g = A[i], G[i]
        for j in range(G.shape[1]):
            g[j] *= a[j] * (one - a[j])


# --- Tanh; derivative 1 - tanh^2 from the output ----------------------------------------------


@njit
def tanh_forward(A):
    for i in range(A.shape[0]):
        a = A[i]
        for j in range(A.shape[1]):
            a[j] = fast_tanh(a[j])


@njit
def tanh_backward(A, G):
    one = G.dtype.type(1)
    for i in range(G.shape[0]):
        a, g = A[i], G[i]
        for j in range(G.shape[1]):
            g[j] *= one - a[j] * a[j]


# --- GELU (exact): z Phi(z) = 0.5 z erfc(-z / sqrt 2); derivative Phi(z) + z phi(z) ------------


@njit
def gelu_forward(Z, A):
    t = A.dtype.type
    half, k = t(0.5), t(_INV_SQRT2)
    for i in range(A.shape[0]):
        z, a = Z[i], A[i]
        for j in range(A.shape[1]):
            # erfc(-z / sqrt2) rather than 1 + erf(z / sqrt2): no cancellation for negative z.
            a[j] = half * z[j] * fast_erfc(-z[j] * k)


@njit
def gelu_backward(Z, G):
    t = G.dtype.type
    half, k, c = t(0.5), t(_INV_SQRT2), t(_INV_SQRT_2PI)
    for i in range(G.shape[0]):
        z, g = Z[i], G[i]
        for j in range(G.shape[1]):
            x = z[j]
            g[j] *= half * fast_erfc(-x * k) + x * c * fast_exp(-half * x * x)


# --- SiLU: z sigmoid(z); derivative s (1 + z (1 - s)) -----------------------------------------


@njit
def silu_forward(Z, A):
    for i in range(A.shape[0]):
        z, a = Z[i], A[i]
        for j in range(A.shape[1]):
            a[j] = z[j] * fast_sigmoid(z[j])


@njit
def silu_backward(Z, G):
    one = G.dtype.type(1)
    for i in range(G.shape[0]):
        z, g = Z[i], G[i]
        for j in range(G.shape[1]):
            s = fast_sigmoid(z[j])
            g[j] *= s * (one + z[j] * (one - s))


# --- Softplus: log(1 + exp(z)), z itself above 20; derivative sigmoid(z), 1 above 20 ----------


@njit
def softplus_forward(Z, A):
    t = A.dtype.type
    zero, threshold = t(0), t(SOFTPLUS_THRESHOLD)
    for i in range(A.shape[0]):
        z, a = Z[i], A[i]
        for j in range(A.shape[1]):
            x = z[j]
            # max(x, 0) + log1p(exp(-|x|)): the log1p argument stays in (0, 1].
            soft = max(x, zero) + fast_log1p(fast_exp(-abs(x)))
            a[j] = x if x > threshold else soft


@njit
def softplus_backward(Z, G):
    t = G.dtype.type
    one, threshold = t(1), t(SOFTPLUS_THRESHOLD)
    for i in range(G.shape[0]):
        z, g = Z[i], G[i]
        for j in range(G.shape[1]):
            g[j] *= one if z[j] > threshold else fast_sigmoid(z[j])


# --- entry points: one per activation and direction, called through the plan (indirect.py) -----
# forward(p, z, bias, a, rows, cols, in_place): Z += bias, A = f(Z); A is Z itself when in_place.
# backward(p, z, a, g, rows, cols): G *= f'(z), from the output A or from Z (needs_preactivation).
# Arrays arrive as data pointers. Plain Python functions: each is compiled once, as a C function,
# when a network first uses it. Their helpers are inlined into them (an entry runs once per layer
# and pass: at batch 1 the calls to them cost as much as the ReLU loop itself).


@njit
def add_bias(Z, bias):
    for i in range(Z.shape[0]):
        z = Z[i]
        for j in range(Z.shape[1]):
            z[j] += bias[j]


@njit(inline="always")
def _forward_arrays(z, bias, a, rows, cols):
    return array_at(z, (rows, cols)), array_at(bias, (cols,)), array_at(a, (rows, cols))


@njit(inline="always")
def _backward_arrays(z, a, g, rows, cols):
    return array_at(z, (rows, cols)), array_at(a, (rows, cols)), array_at(g, (rows, cols))


@njit(inline="always")
def _bias_then_copy(Z, bias, A, in_place):
    add_bias(Z, bias)
    if not in_place:
        copy_rows(Z, 0, A)


@njit(inline="always")
def _copy_then_bias(Z, bias, A, in_place):
    """For the loops that add the bias themselves (the module's note on masked stores): a separate
    A (LeakyReLU's negative slope keeps z) starts as z without the bias, then both get it."""
    if not in_place:
        copy_rows(Z, 0, A)
        add_bias(Z, bias)


def forward_identity(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    _bias_then_copy(Z, bias, A, in_place)


def backward_identity(p, z, a, g, rows, cols):
    pass


def forward_relu(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    _copy_then_bias(Z, bias, A, in_place)
    relu_forward(bias, A)


def backward_relu(p, z, a, g, rows, cols):
    Z, A, G = _backward_arrays(z, a, g, rows, cols)
    relu_backward(A, G)


def forward_leaky_relu(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    _copy_then_bias(Z, bias, A, in_place)
    leaky_relu_forward(p, bias, A)


def backward_leaky_relu(p, z, a, g, rows, cols):
    Z, A, G = _backward_arrays(z, a, g, rows, cols)
    leaky_relu_backward(p, A if p >= 0.0 else Z, G)


def forward_elu(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    _copy_then_bias(Z, bias, A, in_place)
    elu_forward(p, bias, A)


def backward_elu(p, z, a, g, rows, cols):
    Z, A, G = _backward_arrays(z, a, g, rows, cols)
    elu_backward(p, A, G)


def forward_gelu(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    add_bias(Z, bias)
    gelu_forward(Z, A)


def backward_gelu(p, z, a, g, rows, cols):
    Z, A, G = _backward_arrays(z, a, g, rows, cols)
    gelu_backward(Z, G)


def forward_silu(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    add_bias(Z, bias)
    silu_forward(Z, A)


def backward_silu(p, z, a, g, rows, cols):
    Z, A, G = _backward_arrays(z, a, g, rows, cols)
    silu_backward(Z, G)


def forward_sigmoid(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    _bias_then_copy(Z, bias, A, in_place)
    sigmoid_forward(A)


def backward_sigmoid(p, z, a, g, rows, cols):
    Z, A, G = _backward_arrays(z, a, g, rows, cols)
    sigmoid_backward(A, G)


def forward_tanh(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    _bias_then_copy(Z, bias, A, in_place)
    tanh_forward(A)


def backward_tanh(p, z, a, g, rows, cols):
    Z, A, G = _backward_arrays(z, a, g, rows, cols)
    tanh_backward(A, G)


def forward_softplus(p, z, bias, a, rows, cols, in_place):
    Z, bias, A = _forward_arrays(z, bias, a, rows, cols)
    add_bias(Z, bias)
    softplus_forward(Z, A)


def backward_softplus(p, z, a, g, rows, cols):
    Z, A, G = _backward_arrays(z, a, g, rows, cols)
    softplus_backward(Z, G)


# By code (fastbp.layers' order).
ENTRIES = (
    (forward_identity, backward_identity),
    (forward_relu, backward_relu),
    (forward_leaky_relu, backward_leaky_relu),
    (forward_elu, backward_elu),
    (forward_gelu, backward_gelu),
    (forward_silu, backward_silu),
    (forward_sigmoid, backward_sigmoid),
    (forward_tanh, backward_tanh),
    (forward_softplus, backward_softplus),
)


def signatures(dtype):
    """The C signatures of a forward and a backward entry for arrays of `dtype`: what
    bias_activation_forward and activation_backward below pass to indirect.call."""
    matrix = types.Array(numba.from_dtype(np.dtype(dtype)), 2, "C")
    vector = types.Array(matrix.dtype, 1, "C")
    forward = indirect.signature(types.float64, matrix, vector, matrix, types.intp, types.intp, types.boolean)
    backward = indirect.signature(types.float64, matrix, matrix, matrix, types.intp, types.intp)
    return forward, backward


@functools.cache  # asked at every train_steps call (building the signature each time: ~60 us)
def entry_addresses(code: int, dtype) -> tuple[int, int]:
    """The addresses of activation `code`'s forward and backward entries for `dtype` (compiled, or
    loaded from the cache, on first use): what the plan holds in P.FORWARD_FN and P.BACKWARD_FN."""
    forward_signature, backward_signature = signatures(dtype)
    forward, backward = ENTRIES[code]
    return indirect.address(forward, forward_signature), indirect.address(backward, backward_signature)


# --- dispatch, once per layer ----------------------------------------------------------------


@njit(inline="always")
def bias_activation_forward(forward_fn, param, Z, bias, A):
    """Z += bias (row-wise), then A = f(Z), through the entry at forward_fn. A may be Z itself
    (the in-place layers)."""
    rows, cols = Z.shape
    indirect.call(forward_fn, (param, Z, bias, A, rows, cols, Z.ctypes.data == A.ctypes.data))


@njit(inline="always")
def activation_backward(backward_fn, param, Z, A, G, mask, use_mask, db):
    """G = G * mask (dropout, if used) * f'(z) through the entry at backward_fn; db = the column
    sums of the result.

    G holds dLoss/dOutput on entry and dLoss/dZ on exit; db is overwritten. Z is read only for the
    activations that need it (see needs_preactivation)."""
    rows, cols = G.shape
    if use_mask:
        for i in range(rows):
            g, m = G[i], mask[i]
            for j in range(cols):
                g[j] *= m[j]
    indirect.call(backward_fn, (param, Z, A, G, rows, cols))
    db[:] = 0
    for i in range(rows):
        g = G[i]
        for j in range(cols):
            db[j] += g[j]
