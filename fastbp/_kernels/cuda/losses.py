"""Losses with their gradients on the GPU, one thread per row, in one pass over the network output.

Mirror of fastbp._kernels.cpu.losses: same codes, same formulas (softmax and sigmoid fused into their
cross-entropies, computed stably), targets as a float array (one column of class indices for softmax
cross-entropy), rows weighted by sample weights (sum w_i l_i / sum w_i). Each row's loss is a float64;
a block adds its rows' losses (and its correctly classified rows) in shared memory and leaves one
partial per block in `red`; the caller adds the partials after a grid barrier (jit.partial_sum).
"""

import math

from numba import cuda

from fastbp._kernels.cpu.losses import (
    BINARY_CROSS_ENTROPY,
    HUBER,
    L1,
    MSE,
    SOFTMAX_CROSS_ENTROPY,
)
from fastbp._kernels.cuda.jit import block_sum, device, grid_rank, grid_size, like


@device
def weight_total(ws, w_off, rows, red, red_off, sh):
    """Per-block partial sums of the row weights ws[w_off : w_off + rows] into red[red_off + block]."""
    total = 0.0
    for i in range(grid_rank(), rows, grid_size()):
        total += float(ws[w_off + i])
    total = block_sum(total, sh)
    if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
        red[red_off + cuda.blockIdx.x] = total


@device
def count_correct_row(loss_code, ws, out_off, y_off, i, cols):
    """1 if row i is classified right: argmax == label (softmax CE), else every (out > 0) == (y > 0.5)."""
    o = out_off + i * cols
    if loss_code == SOFTMAX_CROSS_ENTROPY:
        best = 0
        for j in range(1, cols):
            if ws[o + j] > ws[o + best]:
                best = j
        return 1 if best == int(ws[y_off + i]) else 0
    y = y_off + i * cols
    for j in range(cols):
        if (ws[o + j] > 0) != (ws[y + j] > 0.5):
            return 0
    return 1


@device
def row_loss_and_grad(code, param, ws, out_off, y_off, g_off, i, cols, w, inv_n):
    """Row i's loss (float64, unweighted) and its gradient w * dl/dout * inv_n into G."""
    o = out_off + i * cols
    g = g_off + i * cols
    zero = like(ws[o], 0.0)
    one = like(ws[o], 1.0)
    if code == SOFTMAX_CROSS_ENTROPY:
        label = int(ws[y_off + i])
        peak = ws[o]
        for j in range(1, cols):
            peak = max(peak, ws[o + j])
        s = zero
        for j in range(cols):
            e = math.exp(ws[o + j] - peak)
            ws[g + j] = e
            s += e
        loss = float(peak) + math.log(float(s)) - float(ws[o + label])
        scale = w * inv_n / s
        for j in range(cols):
            ws[g + j] = ws[g + j] * scale
        ws[g + label] = ws[g + label] - w * inv_n
        return loss
    y = y_off + i * cols
    row_scale = w * inv_n
    loss = 0.0
    for j in range(cols):
        d = ws[o + j] - ws[y + j]
        if code == MSE:
            loss += float(d) * float(d)
            ws[g + j] = like(d, 2.0) * d * row_scale
        elif code == L1:
            loss += abs(float(d))
            ws[g + j] = (one if d > zero else (-one if d < zero else zero)) * row_scale
        elif code == HUBER:
            delta = like(d, param)
            a = abs(d)
            if a < delta:
                loss += 0.5 * float(d) * float(d)
                ws[g + j] = d * row_scale
            else:
                loss += float(delta) * (float(a) - 0.5 * float(delta))
                ws[g + j] = (delta if d > zero else -delta) * row_scale
        elif code == BINARY_CROSS_ENTROPY:
            z = ws[o + j]
            t = ws[y + j]
            e = math.exp(-abs(z))
            loss += float(max(z, zero) - z * t) + math.log1p(float(e))
            # sigmoid(z) from the same e = exp(-|z|): no overflow for either sign.
            p = one / (one + e) if z >= zero else e / (one + e)
            ws[g + j] = (p - t) * row_scale
    return loss


@device
def loss_and_output_grad(
    code, param, ws, out_off, y_off, w_off, weighted, w_sum, g_off, rows, cols, red, red_loss, red_correct, sh
):
    """Gradient of the mean loss of `out` (rows, cols) against Y into G (rows, cols); per-block
    partials of sum(w_i l_i) into red[red_loss + block] and of the correctly classified rows into
    red[red_correct + block]. w_sum is the sum of the weights (rows when unweighted); the mean loss
    is then sum / w_sum (softmax cross-entropy) or sum / (w_sum * cols), as finish_loss computes."""
    total = 0.0
    correct = 0.0
    if w_sum == 0.0:
        for e in range(grid_rank(), rows * cols, grid_size()):
            ws[g_off + e] = like(ws[g_off], 0.0)
        for i in range(grid_rank(), rows, grid_size()):
            correct += count_correct_row(code, ws, out_off, y_off, i, cols)
    else:
        one = like(ws[out_off], 1.0)
        if code == SOFTMAX_CROSS_ENTROPY:
            inv_n = one / like(one, w_sum)
        else:
            inv_n = one / like(one, w_sum * cols)
        for i in range(grid_rank(), rows, grid_size()):
            w = ws[w_off + i] if weighted else one
            loss = row_loss_and_grad(code, param, ws, out_off, y_off, g_off, i, cols, w, inv_n)
            total += float(w) * loss
            correct += count_correct_row(code, ws, out_off, y_off, i, cols)
    total = block_sum(total, sh)
    correct = block_sum(correct, sh)
    if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
        red[red_loss + cuda.blockIdx.x] = total
        red[red_correct + cuda.blockIdx.x] = correct


@device
def finish_loss(code, total, w_sum, cols):
    """The mean loss from the weighted sum of the row losses (0 when every weight is 0)."""
    if w_sum == 0.0:
        return 0.0
    if code == SOFTMAX_CROSS_ENTROPY:
        return total / w_sum
    return total / (w_sum * cols)
