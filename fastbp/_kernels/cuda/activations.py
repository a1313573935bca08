"""Activations on the GPU: each forward rule beside its derivative, one element at a time.

Mirror of fastbp._kernels.cpu.activations: same codes, same names, same formulas (derivatives from
the saved output for ReLU, LeakyReLU with a non-negative slope, ELU, Sigmoid, Tanh; from z for GELU,
SiLU, Softplus). Here each rule is a scalar device function; the forward map runs in the GEMM's
epilogue (gemm.gemm_bias_activation) and the derivative in activation_backward, which also reduces
the bias gradient. The switch on the code is uniform over the grid: no divergence.
"""

import math

from numba import cuda

from fastbp._kernels.cpu.activations import (
    _INV_SQRT2,
    _INV_SQRT_2PI,
    ELU,
    GELU,
    LEAKY_RELU,
    RELU,
    SIGMOID,
    SILU,
    SOFTPLUS,
    SOFTPLUS_THRESHOLD,
    TANH,
)
from fastbp._kernels.cuda.jit import TILE, device, grid_rank, grid_size, like

# --- ReLU: max(z, 0); derivative 1 where the output is positive (0 at z = 0, as torch) ---------


@device
def relu_forward(z):
    zero = like(z, 0.0)
    return z if z > zero else zero


@device
def relu_backward(a, g):
    return g if a > like(a, 0.0) else like(g, 0.0)


# --- LeakyReLU: z if z > 0 else slope * z ------------------------------------------------------


@device
def leaky_relu_forward(p, z):
    return z if z > like(z, 0.0) else like(z, p) * z


@device
def leaky_relu_backward(p, s, g):
    """s is the output when the slope is >= 0 (same sign as z), else z itself."""
    return g if s > like(s, 0.0) else g * like(g, p)


# --- ELU: z if z > 0 else alpha * (exp(z) - 1); derivative for z <= 0 is output + alpha ---------


@device
def elu_forward(p, z):
    return z if z > like(z, 0.0) else like(z, p) * math.expm1(z)


@device
def elu_backward(p, a, g):
    return g if a > like(a, 0.0) else g * (a + like(a, p))


# --- Sigmoid: 1 / (1 + exp(-z)); derivative s (1 - s) from the output --------------------------


@device
def sigmoid(x):
    """Stable logistic function: exp of a non-positive number only."""
    one = like(x, 1.0)
    if x >= like(x, 0.0):
        return one / (one + math.exp(-x))
    e = math.exp(x)
    return e / (one + e)


@device
def sigmoid_forward(z):
    return sigmoid(z)


@device
def sigmoid_backward(a, g):
    return g * (a * (like(a, 1.0) - a))


# --- Tanh; derivative 1 - tanh^2 from the output ----------------------------------------------


@device
def tanh_forward(z):
    return math.tanh(z)


@device
def tanh_backward(a, g):
    return g * (like(a, 1.0) - a * a)


# --- GELU (exact): z Phi(z) = 0.5 z erfc(-z / sqrt 2); derivative Phi(z) + z phi(z) ------------


@device
def gelu_forward(z):
    return like(z, 0.5) * z * math.erfc(-z * like(z, _INV_SQRT2))


@device
def gelu_backward(z, g):
    half = like(z, 0.5)
    return g * (
        half * math.erfc(-z * like(z, _INV_SQRT2)) + z * like(z, _INV_SQRT_2PI) * math.exp(-half * z * z)
    )


# --- SiLU: z sigmoid(z); derivative s (1 + z (1 - s)) -----------------------------------------


@device
def silu_forward(z):
    return z * sigmoid(z)


@device
def silu_backward(z, g):
    one = like(z, 1.0)
    s = sigmoid(z)
    return g * (s * (one + z * (one - s)))


# --- Softplus: log(1 + exp(z)), z itself above 20; derivative sigmoid(z), 1 above 20 ----------


@device
def softplus_forward(z):
    if z > like(z, SOFTPLUS_THRESHOLD):
        return z
    return max(z, like(z, 0.0)) + math.log1p(math.exp(-abs(z)))


@device
def softplus_backward(z, g):
    return g if z > like(z, SOFTPLUS_THRESHOLD) else g * sigmoid(z)


# --- dispatch ------------------------------------------------------------------------------------


@device
def activation_forward(code, param, z):
    """f(z) for activation `code` (Identity for any code not listed)."""
    if code == RELU:
        return relu_forward(z)
    if code == LEAKY_RELU:
        return leaky_relu_forward(param, z)
    if code == ELU:
        return elu_forward(param, z)
    if code == GELU:
        return gelu_forward(z)
    if code == SILU:
        return silu_forward(z)
    if code == SIGMOID:
        return sigmoid_forward(z)
    if code == TANH:
        return tanh_forward(z)
    if code == SOFTPLUS:
        return softplus_forward(z)
    return z


@device
def activation_grad(code, param, z, a, g):
    """g * f'(z), from the output a where the CPU kernel uses it, else from z."""
    if code == RELU:
        return relu_backward(a, g)
    if code == LEAKY_RELU:
        return leaky_relu_backward(param, a if param >= 0.0 else z, g)
    if code == ELU:
        return elu_backward(param, a, g)
    if code == GELU:
        return gelu_backward(z, g)
    if code == SILU:
        return silu_backward(z, g)
    if code == SIGMOID:
        return sigmoid_backward(a, g)
    if code == TANH:
        return tanh_backward(a, g)
    if code == SOFTPLUS:
        return softplus_backward(z, g)
    return g


# --- grid-stride phases over workspace regions (row-major, `cols` wide, starting at an offset) ---


@device
def bias_activation_forward(code, param, ws, z_off, bias, b_off, a_off, rows, cols):
    """Z += bias (row-wise), then A = f(Z); A may be Z itself (a_off == z_off). For a GEMM that did
    not run its own epilogue (gemm.gemm_bias_activation does this fused)."""
    for e in range(grid_rank(), rows * cols, grid_size()):
        z = ws[z_off + e] + bias[b_off + e % cols]
        ws[z_off + e] = z
        ws[a_off + e] = activation_forward(code, param, z)


@device
def activation_backward(
    code, param, ws, z_off, a_off, g_off, mask_off, use_mask, grads, db_off, rows, cols, sh
):
    """G = G * mask (dropout, if used) * f'(z); db = the column sums of the result.

    One block owns TILE columns at a time: its TILE x TILE threads walk the rows in steps of TILE,
    each keeping a running column sum, then one shared-memory pass per column adds the TILE sums.
    Every db entry is written by one thread: no race, no atomics, the same sums on every run.
    The column sums meet in sh[0]."""
    partial = sh[0]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    for tile in range(cuda.blockIdx.x, (cols + TILE - 1) // TILE, cuda.gridDim.x):
        j = tile * TILE + tx
        acc = like(grads[0], 0.0)
        if j < cols:
            for i in range(ty, rows, TILE):
                e = i * cols + j
                g = ws[g_off + e]
                if use_mask:
                    g = g * ws[mask_off + e]
                g = activation_grad(code, param, ws[z_off + e], ws[a_off + e], g)
                ws[g_off + e] = g
                acc += g
        partial[ty, tx] = acc
        cuda.syncthreads()
        if ty == 0 and j < cols:
            total = partial[0, tx]
            for r in range(1, TILE):
                total += partial[r, tx]
            grads[db_off + j] = total
        cuda.syncthreads()
