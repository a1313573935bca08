"""Optimizer steps over flat buffers: one fused pass per step over params, grads and the state slots.

Every rule is torch.optim's single-tensor path (torch 2.x), with the scalar factors (bias corrections,
step sizes) computed once per step in float64, as torch computes them in Python floats, and cast to
the buffers' dtype. The element loops never leave that dtype: a float32 buffer is updated in float32.

`optimizer_step(kind, params, grads, slots, scalars, hyper, step, lr)` is the entry point, a plain
@njit function (Optimizer.step calls it). `optimizer_step_scaled(..., lr, grad_scale)` steps on
grad_scale * grads without writing grads: a clip_grad_norm folded into the step. The compiled
training loops take the same step through the rule's own entry instead (STEP_ENTRIES,
optimizer_step_at: see indirect.py), so that they hold no rule's code.

- params, grads: 1-D, C-contiguous, the same float dtype. grads is read only.
- slots: (n_slots, n) array of that dtype, the per-element state, in the order listed below
  (n_slots >= 1; a kind with no per-element state, such as plain SGD, gets a (1, 0) array).
- scalars: 1-D float64 (length >= 1), scalar state: NAdam's mu_product in scalars[0].
- hyper: 1-D float64, the hyper-parameters in the layout below; flags are 0.0 / 1.0;
  `maximize` negates the gradient (torch's `maximize=True`).
- step: 1-based number of this step. lr: learning rate of this step.

kind      hyper                                                         slots
SGD       momentum, dampening, weight_decay, nesterov, maximize           [momentum_buffer]
ADAM      beta1, beta2, eps, weight_decay, amsgrad, maximize              exp_avg, exp_avg_sq,
ADAMW     (same as ADAM; weight decay decoupled)                          [max_exp_avg_sq]
RMSPROP   alpha, eps, weight_decay, momentum, centered, maximize          square_avg,
                                                                          [momentum_buffer], [grad_avg]
ADAGRAD   lr_decay, weight_decay, eps, maximize                           sum
ADADELTA  rho, eps, weight_decay, maximize                                square_avg, acc_delta
ADAMAX    beta1, beta2, eps, weight_decay, maximize                       exp_avg, exp_inf
NADAM     beta1, beta2, eps, weight_decay, momentum_decay, decoupled,     exp_avg, exp_avg_sq
          maximize                                                        (scalars[0]: mu_product)

Bracketed slots exist only when their option is on (momentum != 0; amsgrad; momentum > 0, centered),
in the order listed.

optimizer_step is serial: one vectorized loop per rule (memory bound from ~10^6 elements on).
optimizer_step_parallel, the same step over chunks in a prange, is opt-in: it paid alone on 2 cores
but lost badly right after a multithreaded BLAS call (bench/optim_results.md). It is kept out of
optimizer_step because a call into a parallel function also makes the caller uncacheable.
"""

import functools
import math

import numba
import numpy as np
from numba import types

from fastbp._kernels.cpu import indirect
from fastbp._kernels.cpu.indirect import array_at
from fastbp._kernels.jit import njit

SGD, ADAM, ADAMW, RMSPROP, ADAGRAD, ADADELTA, ADAMAX, NADAM = range(8)
KIND_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam")

# Piece length of optimizer_step_parallel.
CHUNK = 1 << 16
# grad_norm sums blocks this long in the buffer's dtype, then the block sums in float64.
_BLOCK = 4096


# --- the per-element rules, each over params[lo:hi] ---------------------------------------------
# c is a tuple of float64 factors computed once per step by _factors (below, same order).
# Each rule first takes [lo:hi] views and loops from 0: with a loop index that may be negative,
# numba keeps a wraparound select on every access and the loop no longer vectorizes. The option
# tests (use_wd, amsgrad, ...) are loop-invariant and LLVM unswitches them out of the loop.


@njit
def _sgd_range(params, grads, slots, c, lo, hi):
    """p -= lr * d, d = g (+ momentum buffer, Nesterov); writes params and slots[0]."""
    params, grads = params[lo:hi], grads[lo:hi]
    t = params.dtype.type
    sign, wd, lr, mom, damp1 = t(c[0]), t(c[1]), t(c[2]), t(c[3]), t(c[4])
    use_wd, use_mom, nesterov, first = c[1] != 0.0, c[3] != 0.0, c[5] != 0.0, c[6] != 0.0
    if not use_mom:
        for i in range(hi - lo):
            g = sign * grads[i]
            if use_wd:
                g = g + wd * params[i]
            params[i] = params[i] - lr * g
        return
    buf = slots[0][lo:hi]
    for i in range(hi - lo):
        g = sign * grads[i]
        if use_wd:
            g = g + wd * params[i]
        # torch starts the buffer as a copy of the first gradient, undamped.
        b = g if first else buf[i] * mom + damp1 * g
        buf[i] = b
        d = g + mom * b if nesterov else b
        params[i] = params[i] - lr * d


@njit
def _adam_range(params, grads, slots, c, lo, hi):
    """Adam / AdamW: writes params, exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad)."""
    params, grads = params[lo:hi], grads[lo:hi]
    t = params.dtype.type
    sign, wd, decay, w1, b2 = t(c[0]), t(c[1]), t(c[2]), t(c[3]), t(c[4])
    w2, eps, bc2_sqrt, step_size = t(c[5]), t(c[6]), t(c[7]), t(c[8])
    coupled, amsgrad = c[1] != 0.0, c[9] != 0.0
    m, v = slots[0][lo:hi], slots[1][lo:hi]
    vmax = slots[2][lo:hi] if amsgrad else v
    for i in range(hi - lo):
        g = sign * grads[i]
        p = params[i] * decay
        if coupled:
            g = g + wd * p
        mi = m[i] + w1 * (g - m[i])
        vi = v[i] * b2 + w2 * (g * g)
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vm = vmax[i]
            vi = vm if vm > vi else vi
            vmax[i] = vi
        denom = np.sqrt(vi) / bc2_sqrt + eps
        params[i] = p - step_size * (mi / denom)


# Adam's arithmetic per element for the batch-1 loop that folds Adam into its sweeps over W
# (online.py): _adam_range's loop body, term for term. Not shared with _adam_range: that loop, written
# through these helpers, compiled with its multiply-adds fused differently, and a step on grads
# scaled inside (optimizer_step_scaled) no longer equalled the step on grads scaled before (1 ulp,
# float32 with amsgrad and weight decay: tests/test_optim.py). A fused sweep is another loop anyway,
# which fast-math may contract differently: the rule is the same to rounding (tests/test_online_pair.py).


@njit(inline="always")
def adam_constants(c, t):
    """_adam_factors' float64 factors c, cast to the buffers' scalar type t (and the coupled-decay flag)."""
    sign, wd, decay, w1, b2 = t(c[0]), t(c[1]), t(c[2]), t(c[3]), t(c[4])
    w2, eps, bc2_sqrt, step_size = t(c[5]), t(c[6]), t(c[7]), t(c[8])
    return sign, wd, decay, w1, b2, w2, eps, bc2_sqrt, step_size, c[1] != 0.0


@njit(inline="always")
def adam_moments(p, g, m, v, k):
    """One element's decayed parameter and new first and second moments for gradient g."""
    sign, wd, decay, w1, b2, w2, _, _, _, coupled = k
    g = sign * g
    p = p * decay
    if coupled:
        g = g + wd * p
    return p, m + w1 * (g - m), v * b2 + w2 * (g * g)


@njit(inline="always")
def adam_param(p, m, v, k):
    """The parameter after the step, from adam_moments' p and moments (v: the max with amsgrad)."""
    eps, bc2_sqrt, step_size = k[6], k[7], k[8]
    denom = np.sqrt(v) / bc2_sqrt + eps
    return p - step_size * (m / denom)


# RMSprop's four (centered, momentum) variants are four functions: as four loops of one function,
# each with its weight-decay test, three of them did not vectorize (8x slower).


@njit
def _rmsprop_plain(params, grads, sq, sign, wd, use_wd, lr, alpha, w, eps):
    for i in range(params.shape[0]):
        g = sign * grads[i]
        if use_wd:
            g = g + wd * params[i]
        s = sq[i] * alpha + w * (g * g)
        sq[i] = s
        params[i] = params[i] - lr * (g / (np.sqrt(s) + eps))


@njit
def _rmsprop_momentum(params, grads, sq, buf, sign, wd, use_wd, lr, alpha, w, eps, mom):
    for i in range(params.shape[0]):
        g = sign * grads[i]
        if use_wd:
            g = g + wd * params[i]
        s = sq[i] * alpha + w * (g * g)
        sq[i] = s
        b = buf[i] * mom + g / (np.sqrt(s) + eps)
        buf[i] = b
        params[i] = params[i] - lr * b


@njit
def _rmsprop_centered(params, grads, sq, gavg, sign, wd, use_wd, lr, alpha, w, eps):
    for i in range(params.shape[0]):
        g = sign * grads[i]
        if use_wd:
            g = g + wd * params[i]
        s = sq[i] * alpha + w * (g * g)
        ga = gavg[i] + w * (g - gavg[i])
        sq[i] = s
        gavg[i] = ga
        params[i] = params[i] - lr * (g / (np.sqrt(s - ga * ga) + eps))


@njit
def _rmsprop_centered_momentum(params, grads, sq, gavg, buf, sign, wd, use_wd, lr, alpha, w, eps, mom):
    for i in range(params.shape[0]):
        g = sign * grads[i]
        if use_wd:
            g = g + wd * params[i]
        s = sq[i] * alpha + w * (g * g)
        ga = gavg[i] + w * (g - gavg[i])
        sq[i] = s
        gavg[i] = ga
        b = buf[i] * mom + g / (np.sqrt(s - ga * ga) + eps)
        buf[i] = b
        params[i] = params[i] - lr * b


@njit
def _rmsprop_range(params, grads, slots, c, lo, hi):
    """RMSprop (centered, momentum): writes params, square_avg, [momentum_buffer], [grad_avg]."""
    params, grads = params[lo:hi], grads[lo:hi]
    t = params.dtype.type
    sign, wd, lr, alpha, w, eps, mom = t(c[0]), t(c[1]), t(c[2]), t(c[3]), t(c[4]), t(c[5]), t(c[6])
    use_wd, use_mom, centered = c[1] != 0.0, c[6] > 0.0, c[7] != 0.0
    sq = slots[0][lo:hi]
    if use_mom and centered:
        buf, gavg = slots[1][lo:hi], slots[2][lo:hi]
        _rmsprop_centered_momentum(params, grads, sq, gavg, buf, sign, wd, use_wd, lr, alpha, w, eps, mom)
    elif centered:
        _rmsprop_centered(params, grads, sq, slots[1][lo:hi], sign, wd, use_wd, lr, alpha, w, eps)
    elif use_mom:
        _rmsprop_momentum(params, grads, sq, slots[1][lo:hi], sign, wd, use_wd, lr, alpha, w, eps, mom)
    else:
        _rmsprop_plain(params, grads, sq, sign, wd, use_wd, lr, alpha, w, eps)


@njit
def _adagrad_range(params, grads, slots, c, lo, hi):
    """Adagrad: writes params and sum."""
    params, grads = params[lo:hi], grads[lo:hi]
    t = params.dtype.type
    sign, wd, clr, eps = t(c[0]), t(c[1]), t(c[2]), t(c[3])
    use_wd = c[1] != 0.0
    acc = slots[0][lo:hi]
    for i in range(hi - lo):
        g = sign * grads[i]
        if use_wd:
            g = g + wd * params[i]
        s = acc[i] + g * g
        acc[i] = s
        params[i] = params[i] - clr * (g / (np.sqrt(s) + eps))


@njit
def _adadelta_range(params, grads, slots, c, lo, hi):
    """Adadelta: writes params, square_avg and acc_delta."""
    params, grads = params[lo:hi], grads[lo:hi]
    t = params.dtype.type
    sign, wd, lr, rho, w, eps = t(c[0]), t(c[1]), t(c[2]), t(c[3]), t(c[4]), t(c[5])
    use_wd = c[1] != 0.0
    sq, acc = slots[0][lo:hi], slots[1][lo:hi]
    for i in range(hi - lo):
        g = sign * grads[i]
        if use_wd:
            g = g + wd * params[i]
        s = sq[i] * rho + w * (g * g)
        sq[i] = s
        delta = np.sqrt(acc[i] + eps) / np.sqrt(s + eps) * g
        acc[i] = acc[i] * rho + w * (delta * delta)
        params[i] = params[i] - lr * delta


@njit
def _adamax_range(params, grads, slots, c, lo, hi):
    """Adamax: writes params, exp_avg and exp_inf."""
    params, grads = params[lo:hi], grads[lo:hi]
    t = params.dtype.type
    sign, wd, w1, b2, eps, clr = t(c[0]), t(c[1]), t(c[2]), t(c[3]), t(c[4]), t(c[5])
    use_wd = c[1] != 0.0
    m, u = slots[0][lo:hi], slots[1][lo:hi]
    for i in range(hi - lo):
        g = sign * grads[i]
        if use_wd:
            g = g + wd * params[i]
        mi = m[i] + w1 * (g - m[i])
        m[i] = mi
        a = u[i] * b2
        b = np.abs(g) + eps
        # torch.maximum propagates a NaN from either side.
        ui = a if (a >= b or a != a) else b
        u[i] = ui
        params[i] = params[i] - clr * (mi / ui)


@njit
def _nadam_range(params, grads, slots, c, lo, hi):
    """NAdam: writes params, exp_avg and exp_avg_sq (mu_product is updated once, by _factors)."""
    params, grads = params[lo:hi], grads[lo:hi]
    t = params.dtype.type
    sign, wd, decay, w1, b2, w2 = t(c[0]), t(c[1]), t(c[2]), t(c[3]), t(c[4]), t(c[5])
    eps, bc2, cg, cm = t(c[6]), t(c[7]), t(c[8]), t(c[9])
    coupled = c[1] != 0.0
    m, v = slots[0][lo:hi], slots[1][lo:hi]
    for i in range(hi - lo):
        g = sign * grads[i]
        p = params[i] * decay
        if coupled:
            g = g + wd * p
        mi = m[i] + w1 * (g - m[i])
        vi = v[i] * b2 + w2 * (g * g)
        m[i] = mi
        v[i] = vi
        denom = np.sqrt(vi / bc2) + eps
        p = p + cg * (g / denom)
        params[i] = p + cm * (mi / denom)


# --- the per-step factors, each rule's 10-tuple of float64 (the order its _range reads) -----------
# c[0], the factor on grads, carries maximize's sign and a clipping scale. A float exponent
# throughout: numba's float ** int multiplies repeatedly and drifts from the pow() that torch's
# Python floats use, by up to ~t ulps.
_Z = 0.0


@njit(inline="always")
def _signed(grad_scale, maximize):
    return -grad_scale if maximize != 0.0 else grad_scale


@njit(inline="always")
def _sgd_factors(hyper, step, lr, grad_scale):
    first = 1.0 if step == 1 else 0.0
    sign = _signed(grad_scale, hyper[4])
    return (sign, hyper[2], lr, hyper[0], 1.0 - hyper[1], hyper[3], first, _Z, _Z, _Z)


@njit(inline="always")
def _adam_factors(decoupled, hyper, step, lr, grad_scale):
    """Adam (decoupled False) and AdamW (True)."""
    b1, b2, eps, wd = hyper[0], hyper[1], hyper[2], hyper[3]
    t = float(step)
    bc1 = 1.0 - b1**t
    bc2 = 1.0 - b2**t
    decay, wd_grad = (1.0 - lr * wd, 0.0) if decoupled else (1.0, wd)
    sign = _signed(grad_scale, hyper[5])
    return (sign, wd_grad, decay, 1.0 - b1, b2, 1.0 - b2, eps, bc2**0.5, lr / bc1, hyper[4])


@njit(inline="always")
def _rmsprop_factors(hyper, step, lr, grad_scale):
    alpha = hyper[0]
    sign = _signed(grad_scale, hyper[5])
    return (sign, hyper[2], lr, alpha, 1.0 - alpha, hyper[1], hyper[3], hyper[4], _Z, _Z)


@njit(inline="always")
def _adagrad_factors(hyper, step, lr, grad_scale):
    clr = lr / (1.0 + (step - 1) * hyper[0])
    return (_signed(grad_scale, hyper[3]), hyper[1], clr, hyper[2], _Z, _Z, _Z, _Z, _Z, _Z)


@njit(inline="always")
def _adadelta_factors(hyper, step, lr, grad_scale):
    rho = hyper[0]
    return (_signed(grad_scale, hyper[3]), hyper[2], lr, rho, 1.0 - rho, hyper[1], _Z, _Z, _Z, _Z)


@njit(inline="always")
def _adamax_factors(hyper, step, lr, grad_scale):
    b1 = hyper[0]
    clr = lr / (1.0 - b1 ** float(step))
    return (_signed(grad_scale, hyper[4]), hyper[3], 1.0 - b1, hyper[1], hyper[2], clr, _Z, _Z, _Z, _Z)


@njit(inline="always")
def _nadam_factors(hyper, scalars, step, lr, grad_scale):
    """NAdam's factors; also advances its mu_product, scalars[0]."""
    b1, b2, eps, wd, md = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4]
    t = float(step)
    mu = b1 * (1.0 - 0.5 * 0.96 ** (t * md))
    mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1.0) * md))
    mu_product = scalars[0] * mu
    scalars[0] = mu_product
    cg = -lr * (1.0 - mu) / (1.0 - mu_product)
    cm = (-lr * mu_next) / (1.0 - mu_product * mu_next)
    decay, wd_grad = (1.0 - lr * wd, 0.0) if hyper[5] != 0.0 else (1.0, wd)
    sign = _signed(grad_scale, hyper[6])
    return (sign, wd_grad, decay, 1.0 - b1, b2, 1.0 - b2, eps, 1.0 - b2**t, cg, cm)


@njit
def _factors(kind, hyper, scalars, step, lr, grad_scale):
    """The factors of rule `kind` for this step (and NAdam's mu_product update)."""
    if kind == SGD:
        return _sgd_factors(hyper, step, lr, grad_scale)
    if kind == ADAM or kind == ADAMW:
        return _adam_factors(kind == ADAMW, hyper, step, lr, grad_scale)
    if kind == RMSPROP:
        return _rmsprop_factors(hyper, step, lr, grad_scale)
    if kind == ADAGRAD:
        return _adagrad_factors(hyper, step, lr, grad_scale)
    if kind == ADADELTA:
        return _adadelta_factors(hyper, step, lr, grad_scale)
    if kind == ADAMAX:
        return _adamax_factors(hyper, step, lr, grad_scale)
    return _nadam_factors(hyper, scalars, step, lr, grad_scale)


@njit
def _apply_range(kind, params, grads, slots, c, lo, hi):
    if kind == SGD:
        _sgd_range(params, grads, slots, c, lo, hi)
    elif kind == ADAM or kind == ADAMW:
        _adam_range(params, grads, slots, c, lo, hi)
    elif kind == RMSPROP:
        _rmsprop_range(params, grads, slots, c, lo, hi)
    elif kind == ADAGRAD:
        _adagrad_range(params, grads, slots, c, lo, hi)
    elif kind == ADADELTA:
        _adadelta_range(params, grads, slots, c, lo, hi)
    elif kind == ADAMAX:
        _adamax_range(params, grads, slots, c, lo, hi)
    else:
        _nadam_range(params, grads, slots, c, lo, hi)


@njit
def optimizer_step(kind, params, grads, slots, scalars, hyper, step, lr):
    """One step of optimizer `kind` in place: writes params, slots and scalars; reads grads."""
    c = _factors(kind, hyper, scalars, step, lr, 1.0)
    _apply_range(kind, params, grads, slots, c, 0, params.shape[0])


@njit
def optimizer_step_scaled(kind, params, grads, slots, scalars, hyper, step, lr, grad_scale):
    """optimizer_step on grad_scale * grads, grads left as they are: clip_grad_norm's rescale
    folded into the step's one pass (the same numbers as scale_ then optimizer_step)."""
    c = _factors(kind, hyper, scalars, step, lr, grad_scale)
    _apply_range(kind, params, grads, slots, c, 0, params.shape[0])


@njit(parallel=True)
def optimizer_step_parallel(kind, params, grads, slots, scalars, hyper, step, lr):
    """optimizer_step with the buffer split into CHUNK-long pieces run by prange. Opt-in only
    (fastbp.optim.Optimizer.parallel_min_size): right after multithreaded BLAS, as in training,
    the OpenMP region ran ~6x slower than the serial step (bench/optim_results.md)."""
    c = _factors(kind, hyper, scalars, step, lr, 1.0)
    n = params.shape[0]
    for k in numba.prange((n + CHUNK - 1) // CHUNK):
        lo = k * CHUNK
        _apply_range(kind, params, grads, slots, c, lo, min(lo + CHUNK, n))


# --- entry points: one step of one rule, called through its address (indirect.py) ---------------
# A compiled training loop calls the step of its optimizer through an address (optimizer_step_at),
# so that it holds no rule's code: through the switch above, every rule was compiled into the
# loop and into each kernel between. Each entry gets params, grads, slots, scalars (c) and hyper (h)
# as pointers, and their shapes as integers.


@njit(inline="always")
def _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h):
    return (
        array_at(p, (n,)),
        array_at(g, (n,)),
        array_at(s, (s_rows, s_cols)),
        array_at(c, (n_c,)),
        array_at(h, (n_h,)),
    )


def step_sgd(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _sgd_range(P, G, S, _sgd_factors(H, step, lr, scale), 0, n)


def step_adam(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _adam_range(P, G, S, _adam_factors(False, H, step, lr, scale), 0, n)


def step_adamw(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _adam_range(P, G, S, _adam_factors(True, H, step, lr, scale), 0, n)


def step_rmsprop(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _rmsprop_range(P, G, S, _rmsprop_factors(H, step, lr, scale), 0, n)


def step_adagrad(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _adagrad_range(P, G, S, _adagrad_factors(H, step, lr, scale), 0, n)


def step_adadelta(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _adadelta_range(P, G, S, _adadelta_factors(H, step, lr, scale), 0, n)


def step_adamax(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, _, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _adamax_range(P, G, S, _adamax_factors(H, step, lr, scale), 0, n)


def step_nadam(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h, step, lr, scale):
    P, G, S, C, H = _state_at(p, g, s, c, h, n, s_rows, s_cols, n_c, n_h)
    _nadam_range(P, G, S, _nadam_factors(H, C, step, lr, scale), 0, n)


# By kind.
STEP_ENTRIES = (
    step_sgd, step_adam, step_adamw, step_rmsprop, step_adagrad, step_adadelta, step_adamax, step_nadam
)  # fmt: skip


def step_signature(dtype):
    """The C signature of a step entry for buffers of `dtype`: what optimizer_step_at passes."""
    vector = types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")
    matrix = types.Array(vector.dtype, 2, "C")
    floats = types.Array(types.float64, 1, "C")
    shape = (types.intp,) * 5
    step, lr, scale = types.intp, types.float64, types.float64
    return indirect.signature(vector, vector, matrix, floats, floats, *shape, step, lr, scale)


@functools.cache  # asked at every train_steps call (building the signature each time: ~60 us)
def step_address(kind: int, dtype) -> int:
    """The address of rule `kind`'s step entry for buffers of `dtype` (compiled, or loaded from the
    cache, on first use): what a compiled training loop takes as `step_fn`."""
    return indirect.address(STEP_ENTRIES[kind], step_signature(dtype))


@njit(inline="always")
def optimizer_step_at(step_fn, params, grads, slots, scalars, hyper, step, lr, grad_scale):
    """optimizer_step_scaled through the entry at step_fn (step_address) instead of a kind."""
    n = params.shape[0]
    shape = (n, slots.shape[0], slots.shape[1], scalars.shape[0], hyper.shape[0])
    indirect.call(step_fn, (params, grads, slots, scalars, hyper) + shape + (step, lr, grad_scale))


# --- gradient clipping ---------------------------------------------------------------------------


@njit
def grad_norm(grads):
    """Global L2 norm of a flat buffer, as a float64. Blocks of _BLOCK elements are summed in the
    buffer's dtype (a vectorized loop) and the block sums in float64, so float32 keeps its accuracy
    on 10^7 elements."""
    total = 0.0
    n = grads.shape[0]
    zero = grads.dtype.type(0)
    for lo in range(0, n, _BLOCK):
        block = grads[lo : min(lo + _BLOCK, n)]
        s = zero
        for i in range(block.shape[0]):
            s += block[i] * block[i]
        total += s
    return math.sqrt(total)


@njit
def grad_norm_p(grads, p):
    """Global p-norm (sum |g|^p)^(1/p) for finite p > 0, max |g| for p = inf, as a float64."""
    n = grads.shape[0]
    if p == 2.0:
        return grad_norm(grads)
    if math.isinf(p):
        m = 0.0
        for i in range(n):
            a = abs(float(grads[i]))
            if a > m or a != a:
                m = a
        return m
    total = 0.0
    if p == 1.0:
        for i in range(n):
            total += abs(float(grads[i]))
        return total
    for i in range(n):
        total += abs(float(grads[i])) ** p
    return total ** (1.0 / p)


@njit
def scale_(x, factor):
    """x *= factor in place, in x's dtype."""
    f = x.dtype.type(factor)
    for i in range(x.shape[0]):
        x[i] = x[i] * f


@njit
def clip_value_(x, clip):
    """Clamp x to [-clip, clip] in place; NaN stays NaN, as torch.clamp_ leaves it."""
    hi = x.dtype.type(clip)
    lo = -hi
    for i in range(x.shape[0]):
        v = x[i]
        if v > hi:
            x[i] = hi
        elif v < lo:
            x[i] = lo
