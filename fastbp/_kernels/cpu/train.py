"""Compiled runs of training steps: gather a batch, forward, loss, backward, optimizer update.

Python calls train_steps once per chunk (about a tenth of a second of work), so per-step cost is
arithmetic only: no dispatch, no allocation, no Python.

train_steps itself is plain Python: it picks one of two compiled loops, mini-batch or online (batch
1, see online.py), so that a first fit compiles only the one it runs. As one compiled function with
both paths, every fit compiled both: a cold first fit at batch 32 took 81 s, and 71 s with the
split (one run each, machine under load; the online kernels share most of their callees).
"""

import numpy as np

from fastbp._kernels import plan as P
from fastbp._kernels.cpu import blas, losses, online_pair, optim
from fastbp._kernels.cpu.batch import prefetch_row
from fastbp._kernels.cpu.losses import count_correct, loss_and_output_grad_at
from fastbp._kernels.cpu.online import flush_first_layer, sample_backward, sample_forward, sample_row
from fastbp._kernels.cpu.optim import SGD, grad_norm, optimizer_step_at
from fastbp._kernels.cpu.steps import (
    backward,
    backward_sgd_address,
    backward_sgd_at,
    forward,
    gather_batch,
    output_delta,
    penalty_address,
    penalty_at,
)
from fastbp._kernels.cpu.views import raw_view
from fastbp._kernels.jit import TRUE, is_finite, njit


def train_steps(
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
    perm,
    batch_size,
    first_batch,
    n_batches,
    lrs,
    kind,
    slots,
    scalars,
    hyper,
    step0,
    seed,
    max_norm,
    batch_losses,
    batch_correct,
):
    """Run batches first_batch .. first_batch + n_batches - 1 of the epoch ordered by `perm`.

    Batch k takes rows perm[k*batch_size : (k+1)*batch_size] (the last may be short), uses learning
    rate lrs[k - first_batch], and is optimizer step step0 + k - first_batch (0-based). max_norm > 0
    clips the gradient's global L2 norm first. sample_weight (n,) weighs rows; empty: unweighted.
    Writes each batch's loss and count of correct rows.
    Returns the number of batches done: fewer than n_batches when a loss came out non-finite, in which
    case that batch made no update."""
    loop = loop_for(li, batch_size)
    if loop is online_steps and X.dtype != params.dtype and ws.size // gu[P.TOTAL_UNITS] < 2:
        # It converts each sample into one of two rows of the input region (see online_steps).
        raise ValueError("the batch-1 loop on data of another dtype needs a workspace of two rows or more")
    workers = fused_workers(loop, li, params, kind, hyper, l1, l2, max_norm)
    if workers:
        run = online_pair.train_pair if workers == 2 else online_pair.train_alone
        loss_fn = losses.entry_address(loss_code, params.dtype)
        return run(
            li, lf, gu, loss_code, loss_param, params, ws, X, Y, sample_weight, perm, first_batch, n_batches,
            lrs, kind, slots, hyper, step0, batch_losses, batch_correct, loss_fn,
        )  # fmt: skip
    return loop(
        li, lf, gu, loss_code, loss_param, l1, l2, params, grads, ws, X, Y, sample_weight, perm,
        batch_size, first_batch, n_batches, lrs, kind, slots, scalars, hyper, step0, seed, max_norm,
        batch_losses, batch_correct,
        *entry_addresses(loop, loss_code, kind, hyper, l1, l2, max_norm, params.dtype),
    )  # fmt: skip


def fused_workers(loop, li, params, kind, hyper, l1, l2, max_norm) -> int:
    """How many workers of online_pair.py's loop train_steps hands `loop`'s run to (0: none): plain
    SGD, or Adam / AdamW without amsgrad, penalty or clipping (each folded into its sweeps)."""
    plain_adam = (kind == optim.ADAM or kind == optim.ADAMW) and hyper[4] == 0.0
    plain_adam = bool(plain_adam and l1 == 0.0 and l2 == 0.0 and max_norm == 0.0)
    if loop is not online_steps or not (plain_step(kind, hyper, l1, l2, max_norm) or plain_adam):
        return 0
    return online_pair.workers(li, params, plain_adam)


def first_call(
    li, lf, gu, loss_code, loss_param, l1, l2, params, grads, ws, X, Y, sample_weight, perm, batch_size,
    first_batch, n_batches, lrs, kind, slots, scalars, hyper, step0, seed, max_norm, batch_losses,
    batch_correct,
):  # fmt: skip
    """The compiled function train_steps calls with these arguments, and what it passes: for a
    notice before a call that compiles (fastbp._kernels.cache.will_compile)."""
    loop = loop_for(li, batch_size)
    if fused_workers(loop, li, params, kind, hyper, l1, l2, max_norm):
        loss_fn = losses.entry_address(loss_code, params.dtype)
        first, _, _, worker = online_pair.worker_arguments(
            li, lf, gu, loss_code, loss_param, params, ws, X, Y, sample_weight, perm, first_batch, n_batches,
            lrs, kind, slots, hyper, step0, batch_losses, batch_correct, loss_fn, partner=False,
        )  # fmt: skip
        return worker, first
    args = (
        li, lf, gu, loss_code, loss_param, l1, l2, params, grads, ws, X, Y, sample_weight, perm, batch_size,
        first_batch, n_batches, lrs, kind, slots, scalars, hyper, step0, seed, max_norm, batch_losses,
        batch_correct,
    )  # fmt: skip
    return loop, args + entry_addresses(loop, loss_code, kind, hyper, l1, l2, max_norm, params.dtype)


def loop_for(li, batch_size):
    """The compiled loop train_steps runs for this plan and batch size."""
    online = batch_size == 1 and not bool(np.any(li[:, P.MASK_UNIT] >= 0))
    return online_steps if online else batch_steps


def entry_addresses(loop, loss_code, kind, hyper, l1, l2, max_norm, dtype) -> tuple[int, int, int, int]:
    """The arguments `loop` (loop_for's) takes after train_steps' own, addresses of entries for
    `dtype` (indirect.py), each compiled on first use: the loss's, the optimizer step's, the fused
    SGD backward pass's (steps.backward_sgd: the mini-batch loop with plain SGD where the BLAS
    accumulates, else 0; the batch-1 loop fuses SGD in its own sweeps) and the weight penalty's (0
    without one). Through them the loops hold none of that code, and a first fit compiles only what
    it runs."""
    plain = loop is batch_steps and plain_step(kind, hyper, l1, l2, max_norm) and blas.accumulates()
    sgd_fn = backward_sgd_address(dtype) if plain else 0
    penalty_fn = penalty_address(dtype) if l1 != 0.0 or l2 != 0.0 else 0
    return losses.entry_address(loss_code, dtype), optim.step_address(kind, dtype), sgd_fn, penalty_fn


@njit
def batch_steps(
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
    perm,
    batch_size,
    first_batch,
    n_batches,
    lrs,
    kind,
    slots,
    scalars,
    hyper,
    step0,
    seed,
    max_norm,
    batch_losses,
    batch_correct,
    loss_fn,
    step_fn,
    sgd_fn,
    penalty_fn,
):
    """train_steps for mini-batches (and batch 1 with dropout): each batch gathered into the workspace."""
    n = perm.size
    # Plain SGD folds its step into the weight-gradient GEMM (steps.backward_sgd) where the BLAS can.
    fusable = sgd_fn != 0
    for k in range(n_batches):
        start = (first_batch + k) * batch_size
        rows = min(batch_size, n - start)
        Xb, Yb, Wb = gather_batch(li, gu, ws, X, Y, sample_weight, perm, start, rows)
        out = forward(li, lf, gu, params, ws, Xb, rows, TRUE, seed, step0 + k)
        loss = loss_and_output_grad_at(loss_fn, loss_param, out, Yb, Wb, output_delta(li, gu, ws, rows))
        batch_correct[k] = count_correct(loss_code, out, Yb)
        if fusable and lrs[k] > 0.0:
            batch_losses[k] = loss
            if not is_finite(loss):
                return k
            backward_sgd_at(sgd_fn, li, lf, gu, params, grads, ws, Xb, rows, lrs[k])
            continue
        backward(li, lf, gu, params, grads, ws, Xb, rows, TRUE)
        batch_losses[k] = penalized_step(
            li, penalty_fn, l1, l2, params, grads, step_fn, slots, scalars, hyper, step0 + k + 1, lrs[k],
            max_norm, loss,
        )  # fmt: skip
        if not is_finite(batch_losses[k]):
            return k
    return n_batches


@njit
def online_steps(
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
    perm,
    batch_size,
    first_batch,
    n_batches,
    lrs,
    kind,
    slots,
    scalars,
    hyper,
    step0,
    seed,
    max_norm,
    batch_losses,
    batch_correct,
    loss_fn,
    step_fn,
    sgd_fn,
    penalty_fn,
):
    """train_steps at batch 1 without dropout: each sample read where it is, through the online
    kernels (online.py), which also fold plain SGD's step into their backward sweep. X of another
    dtype than params: each sample is converted into one of two workspace rows (which needs a
    workspace of at least two rows)."""
    weighted = sample_weight.size > 0
    fusable = is_plain_step(kind, hyper, l1, l2, max_norm)
    # Each sample's rows are uncounted views (views.py), as the workspace's: a counted one costs an
    # atomic increment and decrement per kernel it is passed to, several per sample.
    X_flat, Y_flat = X.reshape(-1), Y.reshape(-1)
    n_in, n_y = X.shape[1], Y.shape[1]
    spares = (ws.size // gu[P.TOTAL_UNITS]) * gu[P.IN_UNIT]  # the input region's first row
    # Plain SGD defers each step's first-layer update into the next forward sweep.
    pending_x = sample_row(X_flat, 0, n_in, ws, spares + n_in)
    pending_lr = 0.0
    for k in range(n_batches):
        source = perm[first_batch + k]
        if k + 1 < n_batches:
            # The next sample's row, fetched while this step runs: samples come in random order, and
            # each step waited for its row. Fitting 2048 rows with it: SGD 1.07-1.35x, Adam
            # 1.01-1.17x (MLP, small and deep nets; bench/runs/2026-12-01b/batch1_prefetch.txt).
            prefetch_row(X, perm[first_batch + k + 1])
        Xb = sample_row(X_flat, source, n_in, ws, spares + (k % 2) * n_in)
        Yb = raw_view(Y_flat, source * n_y, (1, n_y))
        Wb = raw_view(sample_weight, source, (1,)) if weighted else sample_weight
        out = sample_forward(li, lf, gu, params, ws, Xb, pending_x, pending_lr)
        pending_lr = 0.0
        loss = loss_and_output_grad_at(loss_fn, loss_param, out, Yb, Wb, output_delta(li, gu, ws, 1))
        batch_correct[k] = count_correct(loss_code, out, Yb)
        if fusable and lrs[k] > 0.0:
            batch_losses[k] = loss
            if not is_finite(loss):
                return k
            sample_backward(li, lf, gu, params, grads, ws, Xb, lrs[k])
            if k + 1 < n_batches:
                pending_x, pending_lr = Xb, lrs[k]
            else:
                flush_first_layer(li, gu, params, ws, Xb, lrs[k])
            continue
        sample_backward(li, lf, gu, params, grads, ws, Xb, 0.0)
        batch_losses[k] = penalized_step(
            li, penalty_fn, l1, l2, params, grads, step_fn, slots, scalars, hyper, step0 + k + 1, lrs[k],
            max_norm, loss,
        )  # fmt: skip
        if not is_finite(batch_losses[k]):
            return k
    return n_batches


@njit(inline="always")
def penalized_step(
    li, penalty_fn, l1, l2, params, grads, step_fn, slots, scalars, hyper, step, lr, max_norm, loss
):
    """Add the L1/L2 penalty (through the entry at penalty_fn, when not 0) to the batch's loss and
    its gradient, then take optimizer step `step` (1-based, through the entry at step_fn:
    optim.step_address) on the gradient clipped to max_norm (> 0). Returns the loss with the
    penalty; when that is not finite, nothing is updated."""
    if penalty_fn != 0:
        loss += penalty_at(penalty_fn, li, params, grads, l1, l2)
    if not is_finite(loss):
        return loss
    # Clipping folds its factor into the optimizer's single pass over the buffers.
    clip = 1.0
    if max_norm > 0.0:
        norm = grad_norm(grads)
        if norm > max_norm:
            clip = max_norm / (norm + 1e-6)
    optimizer_step_at(step_fn, params, grads, slots, scalars, hyper, step, lr, clip)
    return loss


def plain_step(kind, hyper, l1, l2, max_norm):
    """SGD without momentum, weight decay, maximize, penalty or clipping: p -= lr * g, nothing else."""
    return bool(
        kind == SGD
        and hyper[0] == 0.0
        and hyper[2] == 0.0
        and hyper[4] == 0.0
        and l1 == 0.0
        and l2 == 0.0
        and max_norm == 0.0
    )


is_plain_step = njit(plain_step)  # the same test inside the batch-1 loop
