"""Whole passes over a network described by its plan: forward, backward, loss and gradient.

Every function takes the plan (li: int columns, lf: float columns, gu: global units; see
fastbp._kernels.plan), the flat buffers and a flat workspace. One compiled version per dtype serves
every architecture. Nothing here allocates: every array is a view into params, grads or the workspace.
"""

import functools

import numba
import numpy as np
from numba import types
from numba.extending import overload

from fastbp._kernels import plan as P
from fastbp._kernels.cpu import indirect
from fastbp._kernels.cpu.activations import activation_backward, bias_activation_forward
from fastbp._kernels.cpu.batch import gather_rows, gather_values
from fastbp._kernels.cpu.blas import gemm_nn_at, gemm_nt_at, gemm_tn_at, gemm_tn_update
from fastbp._kernels.cpu.indirect import array_at
from fastbp._kernels.cpu.losses import loss_and_output_grad
from fastbp._kernels.cpu.views import raw_view
from fastbp._kernels.jit import TRUE, njit


@njit(inline="always")
def region(ws, capacity, unit, rows, cols):
    """The (rows, cols) view of the workspace region that starts at `unit` row units (uncounted:
    see views.py; for use inside a kernel call)."""
    return raw_view(ws, capacity * unit, (rows, cols))


@njit(inline="always")
def counted_region(ws, capacity, unit, rows, cols):
    """region as an ordinary, reference-counted view: for a view that is returned to Python."""
    start = capacity * unit
    return ws[start : start + rows * cols].reshape((rows, cols))


@njit(inline="always")
def consecutive(perm, start, rows):
    """Whether perm[start : start + rows] counts up by one (data in its own order: fit without
    shuffling, or one batch holding every row). Stops at the first step that does not: one
    comparison for a shuffled batch."""
    first = perm[start]
    for i in range(1, rows):
        if perm[start + i] != first + i:
            return False
    return True


def rows_in_place(X, first, rows, ws):
    """(True, rows first .. first + rows - 1 of X as a view) where X has the workspace's dtype, so
    that a batch of consecutive rows is read where it lies; (False, an empty view) otherwise."""
    if X.dtype == ws.dtype:
        return True, X[first : first + rows]
    return False, ws[:0].reshape(0, X.shape[1])


@overload(rows_in_place, inline="always")
def _rows_in_place_compiled(X, first, rows, ws):
    if X.dtype != ws.dtype or X.layout != "C":
        return lambda X, first, rows, ws: (False, raw_view(ws, 0, (0, X.shape[1])))
    # Uncounted like the workspace's regions (views.py); raw_view's type is that of a region.
    return lambda X, first, rows, ws: (True, raw_view(X.reshape(-1), first * X.shape[1], (rows, X.shape[1])))


@njit(inline="always")
def gather_batch(li, gu, ws, X, Y, sample_weight, perm, start, rows):
    """Copy the rows perm[start : start + rows] of X, Y and sample_weight (empty: unweighted) into
    their workspace regions; returns the views (Xb, Yb, Wb). Wb is sample_weight itself when empty.
    Consecutive rows of an X in the workspace's dtype are not copied: Xb is then a view of X (read
    only by the step: no layer writes its input)."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    Yb = region(ws, capacity, gu[P.Y_UNIT], rows, Y.shape[1])
    in_place, Xb = rows_in_place(X, perm[start], rows, ws)
    if not (in_place and consecutive(perm, start, rows)):
        Xb = region(ws, capacity, gu[P.IN_UNIT], rows, li[0, P.N_IN])
        gather_rows(X, perm, start, start + rows, Xb)
    gather_rows(Y, perm, start, start + rows, Yb)
    if sample_weight.size == 0:
        return Xb, Yb, sample_weight
    Wb = raw_view(ws, capacity * gu[P.SW_UNIT], (rows,))
    gather_values(sample_weight, perm, start, start + rows, Wb)
    return Xb, Yb, Wb


@njit(inline="always")
def weights(params, li, layer):
    n_in, n_out = li[layer, P.N_IN], li[layer, P.N_OUT]
    return raw_view(params, li[layer, P.W_OFF], (n_in, n_out)), raw_view(params, li[layer, P.B_OFF], (n_out,))


_MASK64 = (1 << 64) - 1


def dropout_uniform(seed, step, layer, index):
    """A uniform number in [0, 1) from (seed, step, layer, index): splitmix64's finaliser, so masks
    are the same whatever the thread count or chunking. Python ints here (used without the JIT);
    the compiled version below wraps in uint64 and gives the same bits."""

    def mix(x):
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
        return x ^ (x >> 31)

    base = mix((int(seed) * 0x9E3779B97F4A7C15 + int(step)) & _MASK64)
    base = mix((base + int(layer) * 0xD1B54A32D192ED03) & _MASK64)
    return (mix((base + int(index)) & _MASK64) >> 11) * (1.0 / 9007199254740992.0)


@njit
def _mix64(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@overload(dropout_uniform)
def _dropout_uniform_compiled(seed, step, layer, index):
    def impl(seed, step, layer, index):
        base = _mix64(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(step))
        base = _mix64(base + np.uint64(layer) * np.uint64(0xD1B54A32D192ED03))
        h = _mix64(base + np.uint64(index))
        return float(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)

    return impl


@njit
def fill_dropout_mask(mask, p, seed, step, layer):
    """mask[i] = 0 with probability p, else 1/(1-p), drawn by dropout_uniform."""
    t = mask.dtype.type
    keep = t(1.0 / (1.0 - p))
    zero = t(0)
    rows, cols = mask.shape
    for i in range(rows):
        for j in range(cols):
            u = dropout_uniform(seed, step, layer, i * cols + j)
            mask[i, j] = zero if u < p else keep


def dropout_entry(A, mask, out, rows, cols, p, seed, step, layer):
    """A layer's dropout in training: draws `mask` (fill_dropout_mask) and writes out = A * mask.
    An entry called through its address (the plan's P.DROPOUT_FN, dropout_address), so that a
    network without dropout compiles none of it (0.5 s of a cold first fit: the mask, the hash, the
    copy, and that code again inside every caller)."""
    A, mask, out = array_at(A, (rows, cols)), array_at(mask, (rows, cols)), array_at(out, (rows, cols))
    fill_dropout_mask(mask, p, seed, step, layer)
    for i in range(rows):
        for j in range(cols):
            out[i, j] = A[i, j] * mask[i, j]


@functools.cache
def dropout_address(dtype) -> int:
    """The address of dropout_entry for `dtype` (indirect.py), compiled on first use: the plan of a
    network with dropout holds it."""
    matrix = types.Array(numba.from_dtype(np.dtype(dtype)), 2, "C")
    rows_cols, seed_step_layer = (types.intp,) * 2, (types.intp,) * 3
    return indirect.address(
        dropout_entry, indirect.signature(matrix, matrix, matrix, *rows_cols, types.float64, *seed_step_layer)
    )


@njit(inline="always")
def dropout_at(dropout_fn, A, mask, out, p, seed, step, layer):
    """dropout_entry through its address."""
    indirect.call(dropout_fn, (A, mask, out, A.shape[0], A.shape[1], p, seed, step, layer))


@njit
def forward(li, lf, gu, params, ws, X, rows, training, seed, step):
    """Run the network on X (rows, n_in); returns a view of the output (rows, n_out).

    With training=True, dropout layers draw their masks from (seed, step) and write a dropped-out
    copy of their input; otherwise dropout is the identity and costs nothing."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    A_in = X
    out_unit = 0
    n_layers = li.shape[0]
    for layer in range(n_layers):
        n_out = li[layer, P.N_OUT]
        W, b = weights(params, li, layer)
        Z = region(ws, capacity, li[layer, P.Z_UNIT], rows, n_out)
        A = region(ws, capacity, li[layer, P.A_UNIT], rows, n_out)
        gemm_nn_at(li[layer, P.GEMM_NN_FN], A_in, W, Z)
        bias_activation_forward(li[layer, P.FORWARD_FN], lf[layer, P.ACT_PARAM], Z, b, A)
        out_unit = li[layer, P.A_UNIT]
        if training and li[layer, P.MASK_UNIT] >= 0:
            out_unit = li[layer, P.OUT_UNIT]
            out = region(ws, capacity, out_unit, rows, n_out)
            mask = region(ws, capacity, li[layer, P.MASK_UNIT], rows, n_out)
            dropout_at(li[layer, P.DROPOUT_FN], A, mask, out, lf[layer, P.DROP_P], seed, step, layer)
            A = out
        A_in = A
    # Counted: this view may reach Python (predict), and must keep the workspace alive there.
    return counted_region(ws, capacity, out_unit, rows, li[n_layers - 1, P.N_OUT])


@njit(inline="always")
def output_delta(li, gu, ws, rows):
    """The delta buffer that receives dLoss/dOutput for the last layer."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    last = li.shape[0] - 1
    unit = gu[P.DELTA0_UNIT] if last % 2 == 0 else gu[P.DELTA1_UNIT]
    return region(ws, capacity, unit, rows, li[last, P.N_OUT])


@njit
def _layer_delta(li, lf, gu, grads, ws, X, rows, training, layer):
    """Turn the layer's delta buffer from dLoss/dOutput into D = dLoss/dZ (dropout mask, f'(z)),
    writing db = the column sums of D. Returns D, the input the layer saw, and the buffer that
    receives the previous layer's dLoss/dOutput."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    n_in, n_out = li[layer, P.N_IN], li[layer, P.N_OUT]
    here = gu[P.DELTA0_UNIT] if layer % 2 == 0 else gu[P.DELTA1_UNIT]
    there = gu[P.DELTA1_UNIT] if layer % 2 == 0 else gu[P.DELTA0_UNIT]
    G = region(ws, capacity, here, rows, n_out)
    Z = region(ws, capacity, li[layer, P.Z_UNIT], rows, n_out)
    A = region(ws, capacity, li[layer, P.A_UNIT], rows, n_out)
    use_mask = training and li[layer, P.MASK_UNIT] >= 0
    mask = region(ws, capacity, max(li[layer, P.MASK_UNIT], 0), rows, n_out)
    _, db = weights(grads, li, layer)
    activation_backward(li[layer, P.BACKWARD_FN], lf[layer, P.ACT_PARAM], Z, A, G, mask, use_mask, db)
    if layer == 0:
        A_prev = X
    else:
        # Outside training, dropout is the identity and the next layer read A itself.
        unit = li[layer - 1, P.OUT_UNIT] if training else li[layer - 1, P.A_UNIT]
        A_prev = region(ws, capacity, unit, rows, n_in)
    return G, A_prev, region(ws, capacity, there, rows, n_in)


@njit
def backward(li, lf, gu, params, grads, ws, X, rows, training):
    """Backpropagate the output delta (already in output_delta) through every layer into grads.

    Per layer: D = G * mask * f'(z) fused with db = sum of D's rows; dW = A_prev.T @ D; the next G =
    D @ W.T. The first layer computes no input gradient."""
    for layer in range(li.shape[0] - 1, -1, -1):
        D, A_prev, previous = _layer_delta(li, lf, gu, grads, ws, X, rows, training, layer)
        dW, _ = weights(grads, li, layer)
        gemm_tn_at(li[layer, P.GEMM_TN_FN], A_prev, D, dW)
        if layer > 0:
            W, _ = weights(params, li, layer)
            gemm_nt_at(li[layer, P.GEMM_NT_FN], D, W, previous)


@njit
def backward_sgd(li, lf, gu, params, grads, ws, X, rows, training, lr):
    """backward with plain SGD (p -= lr * g) folded in, layer by layer: the next G = D @ W.T while W
    is still the old one, then W -= lr * A_prev.T @ D inside the BLAS (C += alpha A.T @ B, so dW is
    never written nor read back), and b -= lr * db. Only where blas.accumulates(); grads is left
    holding db alone. The same update as backward then the SGD step, up to the rounding of
    lr * dW, which the BLAS fuses. The training loop calls it through backward_sgd_at."""
    t = params.dtype.type
    rate = t(lr)
    for layer in range(li.shape[0] - 1, -1, -1):
        D, A_prev, previous = _layer_delta(li, lf, gu, grads, ws, X, rows, training, layer)
        W, b = weights(params, li, layer)
        if layer > 0:
            gemm_nt_at(li[layer, P.GEMM_NT_FN], D, W, previous)
        gemm_tn_update(A_prev, D, W, -lr)
        _, db = weights(grads, li, layer)
        for j in range(b.size):
            b[j] = b[j] - rate * db[j]


def backward_sgd_entry(li, lf, gu, params, grads, ws, X, n_layers, n_params, n_ws, rows, lr):
    """backward_sgd (training) called through its address (backward_sgd_address)."""
    li = array_at(li, (n_layers, P.N_INT))
    X = array_at(X, (rows, li[0, P.N_IN]))
    params, grads, ws = array_at(params, (n_params,)), array_at(grads, (n_params,)), array_at(ws, (n_ws,))
    lf, gu = array_at(lf, (n_layers, P.N_FLOAT)), array_at(gu, (P.N_GLOBAL,))
    backward_sgd(li, lf, gu, params, grads, ws, X, rows, TRUE, lr)


@functools.cache  # asked at every train_steps call (building the signature each time: ~60 us)
def backward_sgd_address(dtype) -> int:
    """The address of backward_sgd_entry for `dtype` (indirect.py): a mini-batch loop calls the
    fused SGD pass through it, so that a fit with another optimizer compiles none of it."""
    vector = types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")
    plan = (
        types.Array(types.int64, 2, "C"),
        types.Array(types.float64, 2, "C"),
        types.Array(types.int64, 1, "C"),
    )
    X = types.Array(vector.dtype, 2, "C")
    shape = (types.intp,) * 4
    return indirect.address(
        backward_sgd_entry, indirect.signature(*plan, vector, vector, vector, X, *shape, types.float64)
    )


@njit(inline="always")
def backward_sgd_at(backward_fn, li, lf, gu, params, grads, ws, X, rows, lr):
    """backward_sgd(..., training=True, lr) through the entry at backward_fn."""
    shape = (li.shape[0], params.shape[0], ws.shape[0], rows)
    indirect.call(backward_fn, (li, lf, gu, params, grads, ws, X) + shape + (lr,))


# Partial sums in the weights' dtype over at most this many weights, then float64 across blocks: the
# sums vectorize without converting every term (a float64 accumulator was ~1.4x slower in float32) and
# stay within ~1e-8 relative in float32.
PENALTY_BLOCK = 1024


@njit
def penalty_slice(w, g, c1, c2, with_grad):
    """(sum|w|, sum w^2) of the 1-D slice w, as float64; with_grad adds c1 * sign(w) + c2 * w to the
    slice g, leaving out a term whose coefficient is zero. One plain loop per case, so each vectorizes;
    sign(0) = 0 (and sign(NaN) = 0), as torch.sign, from two selects rather than a branch."""
    t = w.dtype.type
    one, zero = t(1), t(0)
    abs_total = 0.0
    square_total = 0.0
    # Slices and loops from 0: a loop over range(start, stop) of the whole buffer keeps the
    # negative-index check and does not vectorize (as in sklearn._adam_range).
    for lo in range(0, w.size, PENALTY_BLOCK):
        wb = w[lo : lo + PENALTY_BLOCK]
        gb = g[lo : lo + PENALTY_BLOCK]
        a = zero
        s = zero
        if not with_grad:
            for k in range(wb.size):
                x = wb[k]
                a += abs(x)
                s += x * x
        elif c1 == zero:
            for k in range(wb.size):
                x = wb[k]
                gb[k] += c2 * x
                a += abs(x)
                s += x * x
        elif c2 == zero:
            for k in range(wb.size):
                x = wb[k]
                gb[k] += c1 * ((one if x > zero else zero) - (one if x < zero else zero))
                a += abs(x)
                s += x * x
        else:
            for k in range(wb.size):
                x = wb[k]
                gb[k] += c1 * ((one if x > zero else zero) - (one if x < zero else zero)) + c2 * x
                a += abs(x)
                s += x * x
        abs_total += float(a)
        square_total += float(s)
    return abs_total, square_total


@njit
def weight_penalty(li, params, grads, l1, l2, with_grad):
    """l1 * sum|W| + l2/2 * sum W^2 over every weight matrix (biases are not penalised); with_grad
    adds l1 * sign(W) + l2 * W to grads (in their dtype). grads is not touched when with_grad is
    False."""
    if l1 == 0.0 and l2 == 0.0:
        return 0.0
    t = params.dtype.type
    c1, c2 = t(l1), t(l2)
    abs_total = 0.0
    square_total = 0.0
    for layer in range(li.shape[0]):
        start = li[layer, P.W_OFF]
        stop = start + li[layer, P.N_IN] * li[layer, P.N_OUT]
        a, s = penalty_slice(params[start:stop], grads[start:stop], c1, c2, with_grad)
        abs_total += a
        square_total += s
    return l1 * abs_total + 0.5 * l2 * square_total


def penalty_entry(li, params, grads, n_layers, n_columns, n_params, l1, l2):
    """weight_penalty with the gradient, called through its address (penalty_address)."""
    plan = array_at(li, (n_layers, n_columns))
    return weight_penalty(plan, array_at(params, (n_params,)), array_at(grads, (n_params,)), l1, l2, TRUE)


@functools.cache  # asked at every train_steps call (building the signature each time: ~60 us)
def penalty_address(dtype) -> int:
    """The address of penalty_entry for `dtype` (indirect.py): the training loops call the penalty
    through it, so that a fit without one (l1 = l2 = 0, the usual case) compiles none of it."""
    vector = types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")
    plan = types.Array(types.int64, 2, "C")
    shape = (types.intp,) * 3
    signature = indirect.signature(
        plan, vector, vector, *shape, types.float64, types.float64, returns=types.float64
    )
    return indirect.address(penalty_entry, signature)


@njit(inline="always")
def penalty_at(penalty_fn, li, params, grads, l1, l2):
    """weight_penalty(li, params, grads, l1, l2, True) through the entry at penalty_fn."""
    shape = (li.shape[0], li.shape[1], params.shape[0])
    return indirect.call_float(penalty_fn, (li, params, grads) + shape + (l1, l2))


@njit
def loss_and_grad(
    li, lf, gu, loss_code, loss_param, l1, l2, params, grads, ws, X, Y, weights, rows, training, seed, step
):
    """One forward and backward pass over X (rows, n_in) against Y, rows weighted by `weights`
    (empty: unweighted); fills grads, returns the loss (data term plus weight penalty)."""
    out = forward(li, lf, gu, params, ws, X, rows, training, seed, step)
    G = output_delta(li, gu, ws, rows)
    loss = loss_and_output_grad(loss_code, loss_param, out, Y, weights, G)
    backward(li, lf, gu, params, grads, ws, X, rows, training)
    return loss + weight_penalty(li, params, grads, l1, l2, TRUE)
