"""One sample at a time (batch size 1): matrix-vector products without BLAS.

At batch 1 a BLAS call costs microseconds whatever its size, and a step needs several. Here the
forward pass accumulates rows, z += a[i] * W[i, :] (vectorized over the outputs, rows with a[i] == 0
skipped: ReLU zeros and sparse inputs cost nothing), and the backward pass walks W once per layer,
computing the previous layer's delta from row i before touching that row. For plain SGD the update is
fused into that walk, W[i, :] -= lr * a[i] * d, so the gradient is never stored.
"""

from fastbp._kernels import plan as P
from fastbp._kernels.cpu.activations import activation_backward, bias_activation_forward
from fastbp._kernels.cpu.steps import region, weights
from fastbp._kernels.jit import FALSE, njit


@njit
def sample_forward(li, lf, gu, params, ws, x, pending_x, pending_lr):
    """Forward pass of one sample x (1, n_in) through every layer; returns the output (1, n_out).

    pending_lr > 0: first apply the previous sample's deferred first-layer SGD update,
    W[i, :] -= pending_lr * pending_x[i] * d (d still in the first layer's delta buffer), in the same
    sweep over W that computes z: the largest matrix is read and written once per step, not twice."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    a = x
    for layer in range(li.shape[0]):
        n_in, n_out = li[layer, P.N_IN], li[layer, P.N_OUT]
        W, b = weights(params, li, layer)
        Z = region(ws, capacity, li[layer, P.Z_UNIT], 1, n_out)
        A = region(ws, capacity, li[layer, P.A_UNIT], 1, n_out)
        z = Z[0]
        z[:] = 0
        a_row = a[0]
        if layer == 0 and pending_lr > 0.0:
            d = region(ws, capacity, gu[P.DELTA0_UNIT], 1, n_out)[0]
            step = params.dtype.type(-pending_lr)
            for i in range(n_in):
                ai = a_row[i]
                scale = step * pending_x[0, i]
                w = W[i]
                if scale != 0:
                    if ai != 0:
                        for j in range(n_out):
                            w[j] += scale * d[j]
                            z[j] += ai * w[j]
                    else:
                        for j in range(n_out):
                            w[j] += scale * d[j]
                elif ai != 0:
                    for j in range(n_out):
                        z[j] += ai * w[j]
        else:
            for i in range(n_in):
                ai = a_row[i]
                if ai != 0:
                    w = W[i]
                    for j in range(n_out):
                        z[j] += ai * w[j]
        bias_activation_forward(li[layer, P.ACT], lf[layer, P.ACT_PARAM], Z, b, A)
        a = A
    return a


@njit
def flush_first_layer(li, gu, params, ws, pending_x, pending_lr):
    """Apply a deferred first-layer update now (at the end of a run of steps)."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    n_in, n_out = li[0, P.N_IN], li[0, P.N_OUT]
    W, _ = weights(params, li, 0)
    d = region(ws, capacity, gu[P.DELTA0_UNIT], 1, n_out)[0]
    step = params.dtype.type(-pending_lr)
    for i in range(n_in):
        scale = step * pending_x[0, i]
        if scale != 0:
            w = W[i]
            for j in range(n_out):
                w[j] += scale * d[j]


@njit
def sample_backward(li, lf, gu, params, grads, ws, x, fused_lr, defer_first):
    """Backpropagate the output delta of one sample. fused_lr > 0: apply plain SGD to W and b as the
    walk goes (grads then holds only db); otherwise write dW and db into grads. defer_first leaves
    the first layer's W update to the next sample_forward (or flush_first_layer): its delta stays in
    the first layer's delta buffer until then."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    fused = fused_lr > 0.0
    for layer in range(li.shape[0] - 1, -1, -1):
        n_in, n_out = li[layer, P.N_IN], li[layer, P.N_OUT]
        here = gu[P.DELTA0_UNIT] if layer % 2 == 0 else gu[P.DELTA1_UNIT]
        there = gu[P.DELTA1_UNIT] if layer % 2 == 0 else gu[P.DELTA0_UNIT]
        G = region(ws, capacity, here, 1, n_out)
        Z = region(ws, capacity, li[layer, P.Z_UNIT], 1, n_out)
        A = region(ws, capacity, li[layer, P.A_UNIT], 1, n_out)
        dW, db = weights(grads, li, layer)
        W, b = weights(params, li, layer)
        activation_backward(li[layer, P.ACT], lf[layer, P.ACT_PARAM], Z, A, G, G, FALSE, db)
        d = G[0]
        a_prev = x[0] if layer == 0 else region(ws, capacity, li[layer - 1, P.A_UNIT], 1, n_in)[0]
        g_prev = region(ws, capacity, there, 1, n_in)[0]
        t = params.dtype.type
        step = t(-fused_lr)
        if layer == 0 and fused and defer_first:
            for j in range(n_out):
                b[j] += step * d[j]
            continue
        for i in range(n_in):
            w = W[i]
            if layer > 0:
                s = t(0)
                for j in range(n_out):
                    s += w[j] * d[j]
                g_prev[i] = s
            ai = a_prev[i]
            if fused:
                if ai != 0 and not (defer_first and layer == 0):
                    scale = step * ai
                    for j in range(n_out):
                        w[j] += scale * d[j]
            else:
                g = dW[i]
                for j in range(n_out):
                    g[j] = ai * d[j]
        if fused:
            for j in range(n_out):
                b[j] += step * d[j]
