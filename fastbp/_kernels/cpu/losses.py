"""Losses with their gradients, each computed in one pass over the network output.

Codes match fastbp.losses (MSE 0 ... SoftmaxCrossEntropy 4). Targets always arrive as a float array
of the network's dtype, shape (rows, k); for softmax cross-entropy, one column of class indices (exact in
float32 up to 2**24 classes). One kernel signature then serves every loss: loss_and_output_grad
switches on the code; the training loops call the loss's own entry instead (ENTRIES,
loss_and_output_grad_at: see indirect.py), so that they hold no loss's code.

The loss value is accumulated in float64 whatever the dtype: it is one scalar, and a float32 running
sum over a large batch would lose digits the user sees in the training log.
"""

import functools

import numba
import numpy as np
from numba import types

from fastbp._kernels.cpu import indirect
from fastbp._kernels.cpu.fastmath import fast_exp
from fastbp._kernels.cpu.indirect import array_at
from fastbp._kernels.jit import inlined_copy, njit

MSE, L1, HUBER, BINARY_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY = range(5)


@njit(inline="always")
def weight_total(weights, rows):
    """Sum of the row weights (rows when unweighted: `weights` is empty)."""
    if weights.size == 0:
        return float(rows)
    total = 0.0
    for i in range(rows):
        total += float(weights[i])
    return total


@njit
def loss_and_output_grad(code, param, out, Y, weights, G):
    """Mean loss of `out` (rows, k) against targets Y; writes dLoss/dOut into G (rows, k).

    `weights` (rows,) weighs each row's loss, scikit-learn style: sum(w_i l_i) / sum(w_i); an empty
    array means every weight is 1 (the plain mean). Softmax and sigmoid are fused into their
    cross-entropies: G = w_i (p - y) / sum(w), computed stably."""
    if code == SOFTMAX_CROSS_ENTROPY:
        return softmax_cross_entropy_and_grad(out, Y, weights, G)
    return elementwise_loss_and_grad(code, param, out, Y, weights, G)


@njit
def softmax_cross_entropy_and_grad(out, Y, weights, G):
    """loss_and_output_grad of softmax cross-entropy: Y holds one column of class indices."""
    rows, cols = out.shape
    t = out.dtype.type
    zero, one = t(0), t(1)
    weighted = weights.size > 0
    w_sum = weight_total(weights, rows)
    if w_sum == 0.0:
        G[:, :] = zero
        return 0.0
    total = 0.0
    inv_n = one / t(w_sum)
    for i in range(rows):
        o = out[i]
        g = G[i]
        w = weights[i] if weighted else one
        label = int(Y[i, 0])
        peak = o[0]
        for j in range(1, cols):
            peak = max(peak, o[j])
        s = zero
        for j in range(cols):
            g[j] = fast_exp(o[j] - peak)
            s += g[j]
        total += float(w) * (float(peak) + np.log(float(s)) - float(o[label]))
        scale = w * inv_n / s
        for j in range(cols):
            g[j] *= scale
        g[label] -= w * inv_n
    return total / w_sum


@njit
def elementwise_loss_and_grad(code, param, out, Y, weights, G):
    """loss_and_output_grad of the losses taken element by element (MSE, L1, Huber, binary
    cross-entropy): the mean over rows and columns."""
    rows, cols = out.shape
    t = out.dtype.type
    zero, one = t(0), t(1)
    weighted = weights.size > 0
    w_sum = weight_total(weights, rows)
    if w_sum == 0.0:
        G[:, :] = zero
        return 0.0
    total = 0.0
    inv_n = one / t(w_sum * cols)
    for i in range(rows):
        w = weights[i] if weighted else one
        row_scale = w * inv_n
        row_total = 0.0
        if code == MSE:
            two = t(2)
            for j in range(cols):
                d = out[i, j] - Y[i, j]
                row_total += float(d) * float(d)
                G[i, j] = two * d * row_scale
        elif code == L1:
            for j in range(cols):
                d = out[i, j] - Y[i, j]
                row_total += abs(float(d))
                G[i, j] = (one if d > zero else (-one if d < zero else zero)) * row_scale
        elif code == HUBER:
            delta = t(param)
            for j in range(cols):
                d = out[i, j] - Y[i, j]
                a = abs(d)
                if a < delta:
                    row_total += 0.5 * float(d) * float(d)
                    G[i, j] = d * row_scale
                else:
                    row_total += float(delta) * (float(a) - 0.5 * float(delta))
                    G[i, j] = (delta if d > zero else -delta) * row_scale
        elif code == BINARY_CROSS_ENTROPY:
            for j in range(cols):
                z = out[i, j]
                y = Y[i, j]
                e = fast_exp(-abs(z))
                row_total += float(max(z, zero) - z * y) + np.log1p(float(e))
                # sigmoid(z) from the same e = exp(-|z|): no overflow for either sign.
                p = one / (one + e) if z >= zero else e / (one + e)
                G[i, j] = (p - y) * row_scale
        total += float(w) * row_total
    return total / (w_sum * cols)


# --- entry points: a loss and its gradient, called through an address (indirect.py) -------------
# The training loops call their loss through an address (loss_and_output_grad_at), so that they
# hold the code of none of the losses; each entry gets the arrays as pointers beside their shapes.
# The kernels are inlined into the entries (jit.inlined_copy): compiling the MSE entry alone took
# 1.57-2.20 s with the call, 0.63-0.92 s inlined; softmax cross-entropy's 1.44-2.58 s against
# 1.31-2.09 s (6 alternating fresh processes each, a trivial kernel compiled first).

_softmax_cross_entropy_inlined = inlined_copy(softmax_cross_entropy_and_grad)
_elementwise_inlined = inlined_copy(elementwise_loss_and_grad)


@njit(inline="always")
def _loss_arrays(out, y, w, g, rows, cols, y_cols, n_w):
    return (
        array_at(out, (rows, cols)),
        array_at(y, (rows, y_cols)),
        array_at(w, (n_w,)),
        array_at(g, (rows, cols)),
    )


def mse_entry(param, out, y, w, g, rows, cols, y_cols, n_w):
    out, y, w, g = _loss_arrays(out, y, w, g, rows, cols, y_cols, n_w)  # no *args into an inlined call
    return _elementwise_inlined(MSE, param, out, y, w, g)


def l1_entry(param, out, y, w, g, rows, cols, y_cols, n_w):
    out, y, w, g = _loss_arrays(out, y, w, g, rows, cols, y_cols, n_w)
    return _elementwise_inlined(L1, param, out, y, w, g)


def huber_entry(param, out, y, w, g, rows, cols, y_cols, n_w):
    out, y, w, g = _loss_arrays(out, y, w, g, rows, cols, y_cols, n_w)
    return _elementwise_inlined(HUBER, param, out, y, w, g)


def binary_cross_entropy_entry(param, out, y, w, g, rows, cols, y_cols, n_w):
    out, y, w, g = _loss_arrays(out, y, w, g, rows, cols, y_cols, n_w)
    return _elementwise_inlined(BINARY_CROSS_ENTROPY, param, out, y, w, g)


def softmax_cross_entropy_entry(param, out, y, w, g, rows, cols, y_cols, n_w):
    out, y, w, g = _loss_arrays(out, y, w, g, rows, cols, y_cols, n_w)
    return _softmax_cross_entropy_inlined(out, y, w, g)


# By code.
ENTRIES = (mse_entry, l1_entry, huber_entry, binary_cross_entropy_entry, softmax_cross_entropy_entry)


def entry_signature(dtype):
    """The C signature of a loss entry for arrays of `dtype`: what loss_and_output_grad_at passes."""
    matrix = types.Array(numba.from_dtype(np.dtype(dtype)), 2, "C")
    vector = types.Array(matrix.dtype, 1, "C")
    shape = (types.intp,) * 4
    return indirect.signature(types.float64, matrix, matrix, vector, matrix, *shape, returns=types.float64)


@functools.cache  # asked at every train_steps call (building the signature each time: ~60 us)
def entry_address(code: int, dtype) -> int:
    """The address of loss `code`'s entry for `dtype` (compiled, or loaded from the cache, on first
    use): what a compiled training loop takes as `loss_fn`."""
    return indirect.address(ENTRIES[code], entry_signature(dtype))


@njit(inline="always")
def loss_and_output_grad_at(loss_fn, param, out, Y, weights, G):
    """loss_and_output_grad through the entry at loss_fn (entry_address) instead of a code."""
    rows, cols = out.shape
    return indirect.call_float(loss_fn, (param, out, Y, weights, G, rows, cols, Y.shape[1], weights.shape[0]))


@njit
def loss_value(code, param, out, Y, weights):
    """Mean loss of `out` against Y without a gradient (evaluation and validation); `weights` as in
    loss_and_output_grad."""
    rows, cols = out.shape
    weighted = weights.size > 0
    w_sum = weight_total(weights, rows)
    if w_sum == 0.0:
        return 0.0
    total = 0.0
    for i in range(rows):
        row_total = 0.0
        if code == SOFTMAX_CROSS_ENTROPY:
            o = out[i]
            peak = float(o[0])
            for j in range(1, cols):
                peak = max(peak, float(o[j]))
            s = 0.0
            for j in range(cols):
                s += np.exp(float(o[j]) - peak)
            row_total = peak + np.log(s) - float(o[int(Y[i, 0])])
        else:
            for j in range(cols):
                d = float(out[i, j]) - float(Y[i, j])
                if code == MSE:
                    row_total += d * d
                elif code == L1:
                    row_total += abs(d)
                elif code == HUBER:
                    a = abs(d)
                    row_total += 0.5 * d * d if a < param else param * (a - 0.5 * param)
                else:
                    z = float(out[i, j])
                    row_total += max(z, 0.0) - z * float(Y[i, j]) + np.log1p(np.exp(-abs(z)))
        total += (float(weights[i]) if weighted else 1.0) * row_total
    if code == SOFTMAX_CROSS_ENTROPY:
        return total / w_sum
    return total / (w_sum * cols)


@njit(inline="always")
def count_correct(loss_code, out, Y):
    """Rows classified right: argmax == label (softmax CE), else every (out > 0) == (y > 0.5)."""
    rows, cols = out.shape
    correct = 0
    for i in range(rows):
        if loss_code == SOFTMAX_CROSS_ENTROPY:
            best = 0
            for j in range(1, cols):
                if out[i, j] > out[i, best]:
                    best = j
            correct += best == int(Y[i, 0])
        else:
            ok = True
            for j in range(cols):
                ok = ok and ((out[i, j] > 0) == (Y[i, j] > 0.5))
            correct += ok
    return correct
