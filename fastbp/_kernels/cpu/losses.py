"""Losses with their gradients, each computed in one pass over the network output.

Codes match fastbp.losses (MSE 0 ... SoftmaxCrossEntropy 4). Targets always arrive as a float array
of the network's dtype, shape (rows, k); for softmax cross-entropy, one column of class indices (exact in
float32 up to 2**24 classes). One kernel signature then serves every loss.

The loss value is accumulated in float64 whatever the dtype: it is one scalar, and a float32 running
sum over a large batch would lose digits the user sees in the training log.
"""

import numpy as np

from fastbp._kernels.jit import njit

MSE, L1, HUBER, BINARY_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY = range(5)


@njit
def loss_and_output_grad(code, param, out, Y, G):
    """Mean loss of `out` (rows, k) against targets Y; writes dLoss/dOut into G (rows, k).

    Softmax and sigmoid are fused into their cross-entropies: G = (p - y) / n, computed stably."""
    rows, cols = out.shape
    t = out.dtype.type
    zero, one = t(0), t(1)
    total = 0.0
    if code == SOFTMAX_CROSS_ENTROPY:
        inv_n = one / t(rows)
        for i in range(rows):
            o = out[i]
            g = G[i]
            label = int(Y[i, 0])
            peak = o[0]
            for j in range(1, cols):
                peak = max(peak, o[j])
            s = zero
            for j in range(cols):
                g[j] = np.exp(o[j] - peak)
                s += g[j]
            total += float(peak) + np.log(float(s)) - float(o[label])
            scale = inv_n / s
            for j in range(cols):
                g[j] *= scale
            g[label] -= inv_n
        return total / rows

    inv_n = one / t(rows * cols)
    if code == MSE:
        two = t(2)
        for i in range(rows):
            for j in range(cols):
                d = out[i, j] - Y[i, j]
                total += float(d) * float(d)
                G[i, j] = two * d * inv_n
    elif code == L1:
        for i in range(rows):
            for j in range(cols):
                d = out[i, j] - Y[i, j]
                total += abs(float(d))
                G[i, j] = (one if d > zero else (-one if d < zero else zero)) * inv_n
    elif code == HUBER:
        delta = t(param)
        for i in range(rows):
            for j in range(cols):
                d = out[i, j] - Y[i, j]
                a = abs(d)
                if a < delta:
                    total += 0.5 * float(d) * float(d)
                    G[i, j] = d * inv_n
                else:
                    total += float(delta) * (float(a) - 0.5 * float(delta))
                    G[i, j] = (delta if d > zero else -delta) * inv_n
    elif code == BINARY_CROSS_ENTROPY:
        for i in range(rows):
            for j in range(cols):
                z = out[i, j]
                y = Y[i, j]
                e = np.exp(-abs(z))
                total += float(max(z, zero) - z * y) + np.log1p(float(e))
                # sigmoid(z) from the same e = exp(-|z|): no overflow for either sign.
                p = one / (one + e) if z >= zero else e / (one + e)
                G[i, j] = (p - y) * inv_n
    return total / (rows * cols)


@njit
def loss_value(code, param, out, Y):
    """Mean loss of `out` against Y without a gradient (evaluation and validation)."""
    rows, cols = out.shape
    total = 0.0
    for i in range(rows):
        if code == SOFTMAX_CROSS_ENTROPY:
            o = out[i]
            peak = float(o[0])
            for j in range(1, cols):
                peak = max(peak, float(o[j]))
            s = 0.0
            for j in range(cols):
                s += np.exp(float(o[j]) - peak)
            total += peak + np.log(s) - float(o[int(Y[i, 0])])
            continue
        for j in range(cols):
            d = float(out[i, j]) - float(Y[i, j])
            if code == MSE:
                total += d * d
            elif code == L1:
                total += abs(d)
            elif code == HUBER:
                a = abs(d)
                total += 0.5 * d * d if a < param else param * (a - 0.5 * param)
            else:
                z = float(out[i, j])
                total += max(z, 0.0) - z * float(Y[i, j]) + np.log1p(np.exp(-abs(z)))
    if code == SOFTMAX_CROSS_ENTROPY:
        return total / rows
    return total / (rows * cols)
