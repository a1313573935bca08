"""One sample at a time (batch size 1): matrix-vector products without BLAS.

At batch 1 a BLAS call costs microseconds whatever its size, and a step needs several. Here the
forward pass accumulates rows, z += a[i] * W[i, :] (four rows per pass over z, vectorized over the
outputs; rows with a[i] == 0 skipped: ReLU zeros and sparse inputs cost nothing), and the backward
pass walks W once per layer, computing the previous layer's delta from row i before touching that
row. For plain SGD the update is fused into that walk, W[i, :] -= lr * a[i] * d, so the gradient is
never stored; the first layer's is deferred into the next sample's forward sweep.
"""

from numba.extending import overload

from fastbp._kernels import plan as P
from fastbp._kernels.cpu.activations import activation_backward, bias_activation_forward
from fastbp._kernels.cpu.steps import region, weights
from fastbp._kernels.cpu.views import index_scratch, raw_view
from fastbp._kernels.jit import FALSE, njit


def sample_row(X_flat, source, n_in, ws, spare_at):
    """Sample `source` of X (flattened, n_in features per row) as a (1, n_in) array of the
    workspace's dtype: a view of X where X has that dtype; otherwise converted into the workspace
    row that starts at ws[spare_at] (callers alternate two rows, so that the previous sample, which
    plain SGD's deferred update still reads, is kept)."""
    row = X_flat[source * n_in : (source + 1) * n_in]
    if row.dtype == ws.dtype:
        return row.reshape(1, n_in)
    spare = ws[spare_at : spare_at + n_in].reshape(1, n_in)
    spare[0] = row
    return spare


@overload(sample_row, inline="always")
def _sample_row_compiled(X_flat, source, n_in, ws, spare_at):
    if X_flat.dtype == ws.dtype:
        return lambda X_flat, source, n_in, ws, spare_at: raw_view(X_flat, source * n_in, (1, n_in))

    def converted(X_flat, source, n_in, ws, spare_at):
        start = source * n_in
        spare = raw_view(ws, spare_at, (1, n_in))
        row = spare[0]
        for j in range(n_in):
            row[j] = X_flat[start + j]
        return spare

    return converted


@njit
def sample_forward(li, lf, gu, params, ws, x, pending_x, pending_lr):
    """Forward pass of one sample x (1, n_in) through every layer; returns the output (1, n_out).

    pending_lr > 0: first apply the previous sample's deferred first-layer SGD update,
    W[i, :] -= pending_lr * pending_x[i] * d (d still in the first layer's delta buffer), in the same
    sweep over W that computes z: the largest matrix is read and written once per step, not twice."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    a = x
    for layer in range(li.shape[0]):
        n_out = li[layer, P.N_OUT]
        W, b = weights(params, li, layer)
        Z = region(ws, capacity, li[layer, P.Z_UNIT], 1, n_out)
        A = region(ws, capacity, li[layer, P.A_UNIT], 1, n_out)
        z = Z[0]
        z[:] = 0
        if layer == 0 and pending_lr > 0.0:
            d = region(ws, capacity, gu[P.DELTA0_UNIT], 1, n_out)[0]
            update_and_accumulate_rows(W, d, params.dtype.type(-pending_lr), pending_x[0], a[0], z)
        else:
            accumulate_rows(a[0], W, z)
        bias_activation_forward(li[layer, P.FORWARD_FN], lf[layer, P.ACT_PARAM], Z, b, A)
        a = A
    return a


# The forward sweeps take four rows of W per pass over z: one load and store of z[j] serves four
# multiply-adds, where a pass per row is bound by z's loads and stores. Rows whose coefficient is 0
# (ReLU's zeros, sparse inputs) are skipped, but not by a branch per row: the zero pattern changes
# every sample, so that branch mispredicts about half the time on ReLU outputs. The nonzero rows'
# indices are first gathered without branches into a small stack buffer. Measured per layer with a
# new input every call: bench/bench_step_parts.py --parts sweeps.


@njit
def nonzero_rows(u, start, stop, rows):
    """Write the indices i in [start, stop) with u[i] != 0 to rows[0 : count]; returns count
    (stop - start <= len(rows))."""
    count = 0
    for i in range(start, stop):
        rows[count] = i
        count += u[i] != 0
    return count


@njit
def either_nonzero_rows(u, v, start, stop, rows):
    """nonzero_rows for u[i] != 0 or v[i] != 0 (one array to test is ~1.6x faster: its own loop)."""
    count = 0
    for i in range(start, stop):
        rows[count] = i
        count += (u[i] != 0) | (v[i] != 0)
    return count


@njit
def accumulate_rows(a, W, z):
    """z += a @ W, skipping the rows where a is 0."""
    n_out = W.shape[1]
    rows = index_scratch()
    for start in range(0, a.shape[0], rows.shape[0]):
        count = nonzero_rows(a, start, min(start + rows.shape[0], a.shape[0]), rows)
        k = 0
        while k + 4 <= count:
            i0, i1, i2, i3 = rows[k], rows[k + 1], rows[k + 2], rows[k + 3]
            a0, a1, a2, a3 = a[i0], a[i1], a[i2], a[i3]
            w0, w1, w2, w3 = W[i0], W[i1], W[i2], W[i3]
            for j in range(n_out):
                z[j] += (a0 * w0[j] + a1 * w1[j]) + (a2 * w2[j] + a3 * w3[j])
            k += 4
        for i in rows[k:count]:  # fewer than four left
            ai, w = a[i], W[i]
            for j in range(n_out):
                z[j] += ai * w[j]


@njit
def update_and_accumulate_rows(W, d, step, u, a, z):
    """W[i, :] += step * u[i] * d, then z += a @ W (the updated W), in one sweep; rows where u and
    a are both 0 are skipped."""
    n_out = W.shape[1]
    rows = index_scratch()
    for start in range(0, a.shape[0], rows.shape[0]):
        count = either_nonzero_rows(u, a, start, min(start + rows.shape[0], a.shape[0]), rows)
        k = 0
        while k + 4 <= count:
            i0, i1, i2, i3 = rows[k], rows[k + 1], rows[k + 2], rows[k + 3]
            a0, a1, a2, a3 = a[i0], a[i1], a[i2], a[i3]
            c0, c1, c2, c3 = step * u[i0], step * u[i1], step * u[i2], step * u[i3]
            w0, w1, w2, w3 = W[i0], W[i1], W[i2], W[i3]
            for j in range(n_out):
                dj = d[j]
                x0 = w0[j] + c0 * dj
                x1 = w1[j] + c1 * dj
                x2 = w2[j] + c2 * dj
                x3 = w3[j] + c3 * dj
                w0[j] = x0
                w1[j] = x1
                w2[j] = x2
                w3[j] = x3
                z[j] += (a0 * x0 + a1 * x1) + (a2 * x2 + a3 * x3)
            k += 4
        for i in rows[k:count]:
            ai, c, w = a[i], step * u[i], W[i]
            for j in range(n_out):
                x = w[j] + c * d[j]
                w[j] = x
                z[j] += ai * x


@njit
def flush_first_layer(li, gu, params, ws, pending_x, pending_lr):
    """Apply a deferred first-layer update now (at the end of a run of steps)."""
    capacity = ws.size // gu[P.TOTAL_UNITS]
    W, _ = weights(params, li, 0)
    d = region(ws, capacity, gu[P.DELTA0_UNIT], 1, li[0, P.N_OUT])[0]
    update_rows(W, d, params.dtype.type(-pending_lr), pending_x[0])


@njit
def update_rows(W, d, step, u):
    """W[i, :] += step * u[i] * d, rows where u[i] == 0 skipped."""
    for i in range(W.shape[0]):
        scale = step * u[i]
        if scale != 0:
            w = W[i]
            for j in range(W.shape[1]):
                w[j] += scale * d[j]


@njit
def sample_backward(li, lf, gu, params, grads, ws, x, fused_lr):
    """Backpropagate the output delta of one sample. fused_lr > 0: apply plain SGD to W and b as the
    walk goes (grads then holds only db), all but the first layer's W, whose update is left to the
    next sample_forward (or flush_first_layer) with its delta kept in the first layer's delta buffer
    until then; otherwise write dW and db into grads."""
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
        activation_backward(li[layer, P.BACKWARD_FN], lf[layer, P.ACT_PARAM], Z, A, G, G, FALSE, db)
        d = G[0]
        t = params.dtype.type
        step = t(-fused_lr)
        if fused:
            for j in range(n_out):
                b[j] += step * d[j]
        if layer == 0:  # no delta to pass back; fused: W's update is deferred (above)
            if not fused:
                for i in range(n_in):
                    g, xi = dW[i], x[0, i]
                    for j in range(n_out):
                        g[j] = xi * d[j]
            continue
        a_prev = region(ws, capacity, li[layer - 1, P.A_UNIT], 1, n_in)[0]
        g_prev = region(ws, capacity, there, 1, n_in)[0]
        if fused:
            delta_and_update_rows(W, d, step, a_prev, g_prev)
        else:
            delta_and_gradient_rows(W, d, a_prev, g_prev, dW)


# The backward sweeps take one pass per row with no branch on a[i] (a 0 adds 0): on ReLU's zeros
# such a branch mispredicts about half the time, which cost more than the work it skipped
# (bench/bench_step_parts.py --parts sweeps).


@njit
def delta_and_update_rows(W, d, step, a, g_prev):
    """g_prev = W @ d with W as it was, and W[i, :] += step * a[i] * d, in one pass over W."""
    t = W.dtype.type
    for i in range(W.shape[0]):
        w, scale = W[i], step * a[i]
        s = t(0)
        for j in range(W.shape[1]):
            old = w[j]
            s += old * d[j]
            w[j] = old + scale * d[j]
        g_prev[i] = s


@njit
def delta_and_gradient_rows(W, d, a, g_prev, dW):
    """g_prev = W @ d and dW = outer(a, d), in one pass over W."""
    t = W.dtype.type
    for i in range(W.shape[0]):
        w, g, ai = W[i], dW[i], a[i]
        s = t(0)
        for j in range(W.shape[1]):
            s += w[j] * d[j]
            g[j] = ai * d[j]
        g_prev[i] = s
