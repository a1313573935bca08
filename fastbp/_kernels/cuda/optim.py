"""Optimizer steps over the flat device buffers, and the gradient-norm reduction for clipping.

Mirror of fastbp._kernels.cpu.optim: the same rules (torch.optim's single-tensor path), the same
slot layout, one grid-stride pass over params, grads and the slots per step, in the buffers' dtype.

The per-step float64 factors (bias corrections, step sizes, NAdam's mu_product) are not recomputed
on the GPU: factor_table runs the CPU's own _factors for every step of a chunk on the host, into a
small table the kernel reads one row of per step, so both devices use the very same numbers, and
NAdam's scalar state stays on the host (row k, column MU holds mu_product after step k).
"""

import math

import numpy as np
from numba import cuda

from fastbp._kernels.cpu.optim import (
    ADADELTA,
    ADAGRAD,
    ADAM,
    ADAMAX,
    ADAMW,
    NADAM,
    RMSPROP,
    SGD,
    _factors,
)
from fastbp._kernels.cuda.jit import block_sum, device, grid_rank, grid_size
from fastbp._kernels.jit import njit

N_FACTORS = 11  # _factors' 10, then mu_product
MU = 10


@njit
def factor_table(kind, hyper, scalars, step0, lrs, out):
    """out[k] = the factors of optimizer step step0 + k + 1 (1-based) at learning rate lrs[k], and
    out[k, MU] NAdam's mu_product after it. `scalars` is read, not written (a copy is advanced)."""
    state = scalars.copy()
    for k in range(lrs.shape[0]):
        c = _factors(kind, hyper, state, step0 + k + 1, lrs[k], 1.0)
        for q in range(10):
            out[k, q] = c[q]
        out[k, MU] = state[0]


def new_factor_table(n: int) -> np.ndarray:
    return np.zeros((max(n, 1), N_FACTORS), dtype=np.float64)


# --- the per-element rules, each a grid-stride loop over the whole buffer --------------------------
# c is the factor table, k the row of this step; clip > 0 first scales grads in place by clip (what
# the CPU's scale_ does before its step), so the stored gradient is the clipped one on both devices.


@device
def _clipped(grads, i, clip):
    g = grads[i]
    if clip > 0.0:
        g = g * grads.dtype.type(clip)
        grads[i] = g
    return g


@device
def _sgd_range(params, grads, slots, c, k, clip):
    """p -= lr * d, d = g (+ momentum buffer, Nesterov); writes params and slots[0]."""
    t = params.dtype.type
    sign, wd, lr, mom, damp1 = t(c[k, 0]), t(c[k, 1]), t(c[k, 2]), t(c[k, 3]), t(c[k, 4])
    use_wd, use_mom, nesterov, first = c[k, 1] != 0.0, c[k, 3] != 0.0, c[k, 5] != 0.0, c[k, 6] != 0.0
    for i in range(grid_rank(), params.shape[0], grid_size()):
        g = sign * _clipped(grads, i, clip)
        if use_wd:
            g = g + wd * params[i]
        if use_mom:
            # torch starts the buffer as a copy of the first gradient, undamped.
            b = g if first else slots[0, i] * mom + damp1 * g
            slots[0, i] = b
            g = g + mom * b if nesterov else b
        params[i] = params[i] - lr * g


@device
def _adam_range(params, grads, slots, c, k, clip):
    """Adam / AdamW: writes params, exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad)."""
    t = params.dtype.type
    sign, wd, decay, w1, b2 = t(c[k, 0]), t(c[k, 1]), t(c[k, 2]), t(c[k, 3]), t(c[k, 4])
    w2, eps, bc2_sqrt, step_size = t(c[k, 5]), t(c[k, 6]), t(c[k, 7]), t(c[k, 8])
    coupled, amsgrad = c[k, 1] != 0.0, c[k, 9] != 0.0
    for i in range(grid_rank(), params.shape[0], grid_size()):
        g = sign * _clipped(grads, i, clip)
        p = params[i] * decay
        if coupled:
            g = g + wd * p
        mi = slots[0, i] + w1 * (g - slots[0, i])
        vi = slots[1, i] * b2 + w2 * (g * g)
        slots[0, i] = mi
        slots[1, i] = vi
        if amsgrad:
            vm = slots[2, i]
            vi = vm if vm > vi else vi
            slots[2, i] = vi
        denom = math.sqrt(vi) / bc2_sqrt + eps
        params[i] = p - step_size * (mi / denom)


@device
def _rmsprop_range(params, grads, slots, c, k, clip):
    """RMSprop (centered, momentum): writes params, square_avg, [momentum_buffer], [grad_avg]."""
    t = params.dtype.type
    sign, wd, lr, alpha = t(c[k, 0]), t(c[k, 1]), t(c[k, 2]), t(c[k, 3])
    w, eps, mom = t(c[k, 4]), t(c[k, 5]), t(c[k, 6])
    use_wd, use_mom, centered = c[k, 1] != 0.0, c[k, 6] > 0.0, c[k, 7] != 0.0
    # Slot order: square_avg, [momentum_buffer], [grad_avg].
    gavg_slot = 2 if use_mom else 1
    for i in range(grid_rank(), params.shape[0], grid_size()):
        g = sign * _clipped(grads, i, clip)
        if use_wd:
            g = g + wd * params[i]
        s = slots[0, i] * alpha + w * (g * g)
        slots[0, i] = s
        if centered:
            ga = slots[gavg_slot, i] + w * (g - slots[gavg_slot, i])
            slots[gavg_slot, i] = ga
            avg = math.sqrt(s - ga * ga)
        else:
            avg = math.sqrt(s)
        if use_mom:
            b = slots[1, i] * mom + g / (avg + eps)
            slots[1, i] = b
            params[i] = params[i] - lr * b
        else:
            params[i] = params[i] - lr * (g / (avg + eps))


@device
def _adagrad_range(params, grads, slots, c, k, clip):
    """Adagrad: writes params and sum."""
    t = params.dtype.type
    sign, wd, clr, eps = t(c[k, 0]), t(c[k, 1]), t(c[k, 2]), t(c[k, 3])
    use_wd = c[k, 1] != 0.0
    for i in range(grid_rank(), params.shape[0], grid_size()):
        g = sign * _clipped(grads, i, clip)
        if use_wd:
            g = g + wd * params[i]
        s = slots[0, i] + g * g
        slots[0, i] = s
        params[i] = params[i] - clr * (g / (math.sqrt(s) + eps))


@device
def _adadelta_range(params, grads, slots, c, k, clip):
    """Adadelta: writes params, square_avg and acc_delta."""
    t = params.dtype.type
    sign, wd, lr, rho, w, eps = t(c[k, 0]), t(c[k, 1]), t(c[k, 2]), t(c[k, 3]), t(c[k, 4]), t(c[k, 5])
    use_wd = c[k, 1] != 0.0
    for i in range(grid_rank(), params.shape[0], grid_size()):
        g = sign * _clipped(grads, i, clip)
        if use_wd:
            g = g + wd * params[i]
        s = slots[0, i] * rho + w * (g * g)
        slots[0, i] = s
        delta = math.sqrt(slots[1, i] + eps) / math.sqrt(s + eps) * g
        slots[1, i] = slots[1, i] * rho + w * (delta * delta)
        params[i] = params[i] - lr * delta


@device
def _adamax_range(params, grads, slots, c, k, clip):
    """Adamax: writes params, exp_avg and exp_inf."""
    t = params.dtype.type
    sign, wd, w1, b2, eps, clr = t(c[k, 0]), t(c[k, 1]), t(c[k, 2]), t(c[k, 3]), t(c[k, 4]), t(c[k, 5])
    use_wd = c[k, 1] != 0.0
    for i in range(grid_rank(), params.shape[0], grid_size()):
        g = sign * _clipped(grads, i, clip)
        if use_wd:
            g = g + wd * params[i]
        mi = slots[0, i] + w1 * (g - slots[0, i])
        slots[0, i] = mi
        a = slots[1, i] * b2
        b = abs(g) + eps
        # torch.maximum propagates a NaN from either side.
        ui = a if (a >= b or a != a) else b
        slots[1, i] = ui
        params[i] = params[i] - clr * (mi / ui)


@device
def _nadam_range(params, grads, slots, c, k, clip):
    """NAdam: writes params, exp_avg and exp_avg_sq (mu_product lives in the factor table)."""
    t = params.dtype.type
    sign, wd, decay, w1, b2, w2 = t(c[k, 0]), t(c[k, 1]), t(c[k, 2]), t(c[k, 3]), t(c[k, 4]), t(c[k, 5])
    eps, bc2, cg, cm = t(c[k, 6]), t(c[k, 7]), t(c[k, 8]), t(c[k, 9])
    coupled = c[k, 1] != 0.0
    for i in range(grid_rank(), params.shape[0], grid_size()):
        g = sign * _clipped(grads, i, clip)
        p = params[i] * decay
        if coupled:
            g = g + wd * p
        mi = slots[0, i] + w1 * (g - slots[0, i])
        vi = slots[1, i] * b2 + w2 * (g * g)
        slots[0, i] = mi
        slots[1, i] = vi
        denom = math.sqrt(vi / bc2) + eps
        p = p + cg * (g / denom)
        params[i] = p + cm * (mi / denom)


@device
def optimizer_step(kind, params, grads, slots, c, k, clip):
    """One step of optimizer `kind` with the factors in row k of the table c: writes params and
    slots; reads grads, first scaling them in place by `clip` when clip > 0."""
    if kind == SGD:
        _sgd_range(params, grads, slots, c, k, clip)
    elif kind == ADAM or kind == ADAMW:
        _adam_range(params, grads, slots, c, k, clip)
    elif kind == RMSPROP:
        _rmsprop_range(params, grads, slots, c, k, clip)
    elif kind == ADAGRAD:
        _adagrad_range(params, grads, slots, c, k, clip)
    elif kind == ADADELTA:
        _adadelta_range(params, grads, slots, c, k, clip)
    elif kind == ADAMAX:
        _adamax_range(params, grads, slots, c, k, clip)
    elif kind == NADAM:
        _nadam_range(params, grads, slots, c, k, clip)


# --- gradient clipping ---------------------------------------------------------------------------


@device
def grad_norm(grads, red, red_off, sh):
    """Per-block partial sums of grads**2 (float64) into red[red_off + block]; the norm is the
    square root of their sum (jit.partial_sum) after a grid barrier."""
    total = 0.0
    for i in range(grid_rank(), grads.shape[0], grid_size()):
        g = float(grads[i])
        total += g * g
    total = block_sum(total, sh)
    if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
        red[red_off + cuda.blockIdx.x] = total


@device
def scale_(x, factor):
    """x *= factor in place, in x's dtype."""
    f = x.dtype.type(factor)
    for i in range(grid_rank(), x.shape[0], grid_size()):
        x[i] = x[i] * f
