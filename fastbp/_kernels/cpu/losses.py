"""Losses with their gradients, each computed in one pass over the network output.

Codes match fastbp.losses (MSE 0 ... SoftmaxCrossEntropy 4). Targets always arrive as a float array
of the network's dtype, shape (rows, k); for softmax cross-entropy, one column of class indices (exact in
float32 up to 2**24 classes). One kernel signature then serves every loss.

The loss value is accumulated in float64 whatever the dtype: it is one scalar, and a float32 running
sum over a large batch would lose digits the user sees in the training log.
"""

import numpy as np

from fastbp._kernels.cpu.fastmath import fast_exp
from fastbp._kernels.jit import njit

MSE, L1, HUBER, BINARY_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY = range(5)


@njit
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
    rows, cols = out.shape
    t = out.dtype.type
    zero, one = t(0), t(1)
    weighted = weights.size > 0
    w_sum = weight_total(weights, rows)
    if w_sum == 0.0:
        G[:, :] = zero
        return 0.0
    total = 0.0
    if code == SOFTMAX_CROSS_ENTROPY:
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
