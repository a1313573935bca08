"""Whole passes over a network on the GPU: forward, backward, weight penalty, loss and gradient.

Mirror of fastbp._kernels.cpu.steps: the same plan arrays (li, lf, gu; fastbp._kernels.plan), the
same flat params / grads and the same workspace layout in row units, so a device workspace is the
CPU's, byte for byte. Two differences: the input batch is always read from the workspace's input
region (the host copies it there), and every pass is a sequence of grid-stride phases separated by
grid_sync(), so the functions here run inside a cooperative kernel (the *_kernel entry points, or
train.train_steps_kernel). Nothing allocates: every array is params, grads, the workspace, or `red`,
a float64 scratch of per-block partial sums laid out below.
"""

from numba import cuda, float64

from fastbp._kernels import plan as P
from fastbp._kernels.cuda.activations import activation_backward
from fastbp._kernels.cuda.gemm import gemm_bias_activation, gemm_tile, tile_count
from fastbp._kernels.cuda.jit import (
    BLOCK,
    THREADS,
    block_sum,
    device,
    grid_rank,
    grid_size,
    grid_sync,
    kernel,
    partial_sum,
)
from fastbp._kernels.cuda.losses import finish_loss, loss_and_output_grad, weight_total

# Regions of `red`, each one partial per block: red has RED_REGIONS * max_blocks entries.
RED_LOSS, RED_CORRECT, RED_WSUM, RED_PENALTY, RED_NORM = range(5)
RED_REGIONS = 5


@device
def region(capacity, unit):
    """Offset in the flat workspace of the region that starts at `unit` row units."""
    return capacity * unit


@device
def input_offset(li, gu, capacity, layer, training):
    """Where layer `layer` reads its input: the input batch, or the previous layer's output (its
    dropped-out copy while training; outside training dropout is the identity)."""
    if layer == 0:
        return region(capacity, gu[P.IN_UNIT])
    if training:
        return region(capacity, li[layer - 1, P.OUT_UNIT])
    return region(capacity, li[layer - 1, P.A_UNIT])


@device
def forward(li, lf, gu, params, ws, rows, training, seed, step, sh):
    """Run the network on the input region (rows, n_in); returns the offset of the output (rows,
    n_out) in ws. With training=True, dropout layers draw their masks from (seed, step) and write a
    dropped-out copy of their output; otherwise dropout costs nothing. Ends with a grid barrier."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    n_layers = li.shape[0]
    for layer in range(n_layers):
        n_in, n_out = li[layer, P.N_IN], li[layer, P.N_OUT]
        dropout = training and li[layer, P.MASK_UNIT] >= 0
        gemm_bias_activation(
            ws,
            input_offset(li, gu, capacity, layer, training),
            params,
            li[layer, P.W_OFF],
            li[layer, P.B_OFF],
            ws,
            region(capacity, li[layer, P.Z_UNIT]),
            region(capacity, li[layer, P.A_UNIT]),
            li[layer, P.ACT],
            lf[layer, P.ACT_PARAM],
            rows,
            n_out,
            n_in,
            dropout,
            region(capacity, max(li[layer, P.MASK_UNIT], 0)),
            region(capacity, li[layer, P.OUT_UNIT]),
            lf[layer, P.DROP_P],
            seed,
            step,
            layer,
            sh,
        )
        grid_sync()
    return input_offset(li, gu, capacity, n_layers, training)


@device
def output_delta(li, gu, capacity):
    """Offset of the delta buffer that receives dLoss/dOutput for the last layer."""
    last = li.shape[0] - 1
    return region(capacity, gu[P.DELTA0_UNIT] if last % 2 == 0 else gu[P.DELTA1_UNIT])


@device
def backward(li, lf, gu, params, grads, ws, rows, training, sh):
    """Backpropagate the output delta (already in output_delta) through every layer into grads.

    Per layer: D = G * mask * f'(z) fused with db = the column sums of D; then, in one phase (they
    are independent), dW = A_prev.T @ D and the next G = D @ W.T (none for the first layer). Each
    phase ends with a grid barrier."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    for layer in range(li.shape[0] - 1, -1, -1):
        n_in, n_out = li[layer, P.N_IN], li[layer, P.N_OUT]
        here = region(capacity, gu[P.DELTA0_UNIT] if layer % 2 == 0 else gu[P.DELTA1_UNIT])
        there = region(capacity, gu[P.DELTA1_UNIT] if layer % 2 == 0 else gu[P.DELTA0_UNIT])
        use_mask = training and li[layer, P.MASK_UNIT] >= 0
        activation_backward(
            li[layer, P.ACT],
            lf[layer, P.ACT_PARAM],
            ws,
            region(capacity, li[layer, P.Z_UNIT]),
            region(capacity, li[layer, P.A_UNIT]),
            here,
            region(capacity, max(li[layer, P.MASK_UNIT], 0)),
            use_mask,
            grads,
            li[layer, P.B_OFF],
            rows,
            n_out,
            sh,
        )
        grid_sync()
        a_prev = input_offset(li, gu, capacity, layer, training)
        w_off = li[layer, P.W_OFF]
        dw_tiles = tile_count(n_in, n_out)
        da_tiles = tile_count(rows, n_in) if layer > 0 else 0
        for tile in range(cuda.blockIdx.x, dw_tiles + da_tiles, cuda.gridDim.x):
            if tile < dw_tiles:
                # dW (n_in, n_out) = A_prev.T @ D: A_prev is stored (rows, n_in).
                gemm_tile(ws, a_prev, True, ws, here, False, grads, w_off, n_in, n_out, rows, tile, sh)
            else:
                # dA (rows, n_in) = D @ W.T: W is stored (n_in, n_out).
                gemm_tile(
                    ws, here, False, params, w_off, True, ws, there, rows, n_in, n_out, tile - dw_tiles, sh
                )
        grid_sync()


@device
def weight_penalty(li, params, grads, l1, l2, with_grad, red, red_off, sh):
    """Per-block partials of l1 * sum|W| + l2/2 * sum W^2 over every weight matrix (biases are not
    penalised) into red[red_off + block]; with_grad adds l1 * sign(W) + l2 * W to grads."""
    total = 0.0
    t = params.dtype.type
    c1, c2, zero, one = t(l1), t(l2), t(0.0), t(1.0)
    for layer in range(li.shape[0]):
        start = li[layer, P.W_OFF]
        count = li[layer, P.N_IN] * li[layer, P.N_OUT]
        for e in range(grid_rank(), count, grid_size()):
            k = start + e
            w = params[k]
            total += l1 * abs(float(w)) + 0.5 * l2 * float(w) * float(w)
            if with_grad:
                sign = one if w > zero else (-one if w < zero else zero)
                grads[k] += c1 * sign + c2 * w
    total = block_sum(total, sh)
    if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
        red[red_off + cuda.blockIdx.x] = total


@device
def weighted_rows(gu, ws, rows, weighted, red, sh):
    """The sum of the batch's row weights (rows when unweighted); a grid barrier when weighted."""
    if not weighted:
        return float(rows)
    capacity = ws.size // gu[P.TOTAL_UNITS]
    weight_total(ws, region(capacity, gu[P.SW_UNIT]), rows, red, RED_WSUM * cuda.gridDim.x, sh)
    grid_sync()
    return partial_sum(red, RED_WSUM * cuda.gridDim.x)


@device
def loss_and_grad(
    li,
    lf,
    gu,
    loss_code,
    loss_param,
    l1,
    l2,
    params,
    grads,
    ws,
    rows,
    weighted,
    training,
    seed,
    step,
    red,
    sh,
):
    """One forward and backward pass over the batch in the workspace (input, targets and, when
    weighted, row weights in their regions); fills grads and returns (data loss, penalty, correct
    rows), the same numbers on every thread."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    nb = cuda.gridDim.x
    w_sum = weighted_rows(gu, ws, rows, weighted, red, sh)
    out = forward(li, lf, gu, params, ws, rows, training, seed, step, sh)
    cols = li[li.shape[0] - 1, P.N_OUT]
    loss_and_output_grad(
        loss_code,
        loss_param,
        ws,
        out,
        region(capacity, gu[P.Y_UNIT]),
        region(capacity, gu[P.SW_UNIT]),
        weighted,
        w_sum,
        output_delta(li, gu, capacity),
        rows,
        cols,
        red,
        RED_LOSS * nb,
        RED_CORRECT * nb,
        sh,
    )
    grid_sync()
    backward(li, lf, gu, params, grads, ws, rows, training, sh)
    penalty = 0.0
    if l1 != 0.0 or l2 != 0.0:
        weight_penalty(li, params, grads, l1, l2, True, red, RED_PENALTY * nb, sh)
        grid_sync()
        penalty = partial_sum(red, RED_PENALTY * nb)
    loss = finish_loss(loss_code, partial_sum(red, RED_LOSS * nb), w_sum, cols)
    return loss, penalty, partial_sum(red, RED_CORRECT * nb)


@kernel
def loss_and_grad_kernel(
    li, lf, gu, loss_code, loss_param, l1, l2, params, grads, ws, rows, weighted, red, result
):
    """result[0] = the mean loss plus the weight penalty of the batch in ws; fills grads."""
    tile_a = cuda.shared.array(BLOCK, dtype=params.dtype)
    tile_b = cuda.shared.array(BLOCK, dtype=params.dtype)
    sums = cuda.shared.array(THREADS, dtype=float64)
    loss, penalty, _ = loss_and_grad(
        li,
        lf,
        gu,
        loss_code,
        loss_param,
        l1,
        l2,
        params,
        grads,
        ws,
        rows,
        weighted,
        False,
        0,
        0,
        red,
        (tile_a, tile_b, sums),
    )
    if grid_rank() == 0:
        result[0] = loss + penalty


@kernel
def forward_kernel(li, lf, gu, params, ws, rows, result):
    """The network's output for the input region, left in ws; result[0] = its offset there."""
    tile_a = cuda.shared.array(BLOCK, dtype=params.dtype)
    tile_b = cuda.shared.array(BLOCK, dtype=params.dtype)
    sums = cuda.shared.array(THREADS, dtype=float64)
    out = forward(li, lf, gu, params, ws, rows, False, 0, 0, (tile_a, tile_b, sums))
    if grid_rank() == 0:
        result[0] = out


@kernel
def weight_penalty_kernel(li, params, grads, l1, l2, with_grad, red, result):
    tile_a = cuda.shared.array(BLOCK, dtype=params.dtype)
    sums = cuda.shared.array(THREADS, dtype=float64)
    weight_penalty(li, params, grads, l1, l2, with_grad, red, 0, (tile_a, tile_a, sums))
    grid_sync()
    if grid_rank() == 0:
        result[0] = partial_sum(red, 0)
