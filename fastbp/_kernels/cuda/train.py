"""The compiled training step on the GPU: a run of steps (gather, forward, loss, backward, penalty,
clipping, optimizer update) in one cooperative kernel launch.

Mirror of fastbp._kernels.cpu.train.train_steps: Python launches one kernel per chunk of steps, so
per-step cost is arithmetic and grid barriers only: no launch, no allocation, no Python. The phases of
a step are separated by grid_sync(); a non-finite loss stops the run on every thread at once (they
all read the same total), with no update for that batch, as on the CPU.
"""

import math

from numba import cuda, float64

from fastbp._kernels import plan as P
from fastbp._kernels.cuda.jit import BLOCK, THREADS, grid_rank, grid_size, grid_sync, kernel, partial_sum
from fastbp._kernels.cuda.optim import grad_norm, optimizer_step
from fastbp._kernels.cuda.steps import RED_NORM, loss_and_grad, region

# status[DONE]: batches done so far in this chunk; status[HALTED]: 1 once a loss came out non-finite
# (later launches of the same chunk then return at once).
DONE, HALTED = 0, 1
N_STATUS = 2


@kernel
def train_steps_kernel(
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
    X,
    Y,
    sample_weight,
    weighted,
    perm,
    gathered,
    batch_size,
    n_batches,
    factors,
    kind,
    slots,
    base,
    step0,
    seed,
    max_norm,
    batch_losses,
    batch_correct,
    red,
    status,
):
    """Run n_batches batches; batch k takes rows perm[k*batch_size : (k+1)*batch_size] of X, Y and
    sample_weight (the last may be short), or with `gathered` rows k*batch_size ... of X itself (the
    host already put them in order). Batch k is batch base + k of the chunk: it uses factor row
    base + k (optim.factor_table), is optimizer step step0 + base + k (0-based; dropout draws from
    it), and writes batch_losses / batch_correct at base + k. max_norm > 0 clips the gradient's
    global L2 norm first. status[DONE] ends as base + the batches done; a non-finite loss sets
    status[HALTED] (that batch made no update)."""
    if status[HALTED] != 0:
        return
    tile_a = cuda.shared.array(BLOCK, dtype=params.dtype)
    tile_b = cuda.shared.array(BLOCK, dtype=params.dtype)
    sums = cuda.shared.array(THREADS, dtype=float64)
    sh = (tile_a, tile_b, sums)
    nb = cuda.gridDim.x
    capacity = ws.size // gu[P.TOTAL_UNITS]
    n = X.shape[0] if gathered else perm.shape[0]
    n_in = li[0, P.N_IN]
    ky = Y.shape[1]
    x_off = region(capacity, gu[P.IN_UNIT])
    y_off = region(capacity, gu[P.Y_UNIT])
    w_off = region(capacity, gu[P.SW_UNIT])
    for k in range(n_batches):
        start = k * batch_size
        rows = min(batch_size, n - start)
        index = base + k
        step = step0 + index
        for e in range(grid_rank(), rows * n_in, grid_size()):
            i = e // n_in
            source = start + i if gathered else perm[start + i]
            ws[x_off + e] = X[source, e - i * n_in]
        for e in range(grid_rank(), rows * ky, grid_size()):
            i = e // ky
            source = start + i if gathered else perm[start + i]
            ws[y_off + e] = Y[source, e - i * ky]
        if weighted:
            for i in range(grid_rank(), rows, grid_size()):
                ws[w_off + i] = sample_weight[start + i if gathered else perm[start + i]]
        grid_sync()
        loss, penalty, correct = loss_and_grad(
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
            True,
            seed,
            step,
            red,
            sh,
        )
        total = loss + penalty
        if grid_rank() == 0:
            batch_losses[index] = total
            batch_correct[index] = int(correct)
        if math.isnan(total) or math.isinf(total):
            if grid_rank() == 0:
                status[HALTED] = 1
                status[DONE] = index
            return
        clip = 0.0
        if max_norm > 0.0:
            grad_norm(grads, red, RED_NORM * nb, sh)
            grid_sync()
            norm = math.sqrt(partial_sum(red, RED_NORM * nb))
            if norm > max_norm:
                clip = max_norm / (norm + 1e-6)
        optimizer_step(kind, params, grads, slots, factors, index, clip)
        grid_sync()
    if grid_rank() == 0:
        status[DONE] = base + n_batches
