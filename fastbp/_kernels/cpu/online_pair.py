"""Batch 1 with plain SGD or Adam on two cores: the online kernels (online.py) with each layer's W
split by rows between two workers (or, for Adam on one thread, all rows on one: ALONE).

At batch 1 a step is a few passes over W, bound by memory traffic: the MLP's first layer (784 x 256,
800 KB in float32) does not fit a core's 512 KB L2 cache and is read and written once a step; a half
of it does. Worker w owns rows [r0, r1) of every layer's W, a contiguous block of memory: the sweep
over the first layer so split ran 1.97x one core's speed. Split by columns instead (each worker its
own cache lines of every row), it ran 0.61x at best and 0.15x at worst, the cores' prefetchers
fetching each other's lines (bench/runs/2026-12-01c/pair_split.txt). Per sample:

- forward, layer by layer: each worker sums its rows' share of z = a @ W (after applying its rows'
  deferred first-layer update, as online.py does) into its own exchange buffer; they meet; each adds
  the two shares, in the same order, into its own workspace and applies bias and activation there.
  Both workers therefore hold the same activations, the loss and the output delta, computed twice
  (per unit, not per weight: cheap), and take the same branches.
- backward: each worker computes the previous layer's delta for its rows of W, W @ d with W as it
  was, and updates those rows (delta_and_update_rows); they meet; each copies the whole delta.
  Worker 0 alone updates the biases, after the meeting that follows the layer's sweep (layer 0's at
  once: nobody reads it until the next sample's meetings).

Adam (and AdamW; not amsgrad) is folded into the same sweeps: each worker steps its rows of W and
of the two moments with the per-element arithmetic of optim.py (the row kernels at the end), the
gradient a[i] * d[j] formed on the way and never stored; worker 0 steps the biases. The pass over
the moments, most of an Adam step at batch 1, splits with W.

Meetings per sample: 2 L - 1 for L layers (sync.py; ~20 ns each). Every buffer one worker writes and
the other reads is read between two meetings and next written only after another, which is why the
net needs two layers at least. Worker 0 runs in the calling thread, worker 1 in a helper thread;
both release the GIL. The sums of the two shares round differently from one worker's sum, so a fit
here and on one thread agree to rounding, not bit for bit; two fits here agree bit for bit.
"""

import contextlib
import ctypes
import os
import threading

import numba
import numpy as np

from fastbp import threads
from fastbp._kernels import plan as P
from fastbp._kernels.cpu import sync
from fastbp._kernels.cpu.activations import activation_backward, bias_activation_forward
from fastbp._kernels.cpu.batch import prefetch_row
from fastbp._kernels.cpu.losses import count_correct, loss_and_output_grad_at
from fastbp._kernels.cpu.online import (
    accumulate_rows,
    delta_and_update_rows,
    sample_row,
    update_and_accumulate_rows,
    update_rows,
)
from fastbp._kernels.cpu.optim import ADAMW, SGD, _adam_factors, adam_constants, adam_moments, adam_param
from fastbp._kernels.cpu.steps import output_delta, region
from fastbp._kernels.cpu.views import raw_view
from fastbp._kernels.jit import FALSE, is_finite, njit

# Two workers, with two threads or more (fastbp.set_num_threads), from this many parameters per layer
# on (the mean over the layers: each layer's sweep is what the two split, and each layer costs two
# meetings); plain SGD, then Adam. With one thread, Adam from MIN_ALONE_ADAM_PARAMETERS parameters on
# runs these sweeps on one worker (ALONE). Whatever the length of the run (a helper thread starts per
# run, ~0.1 ms): fit sizes its runs by the clock, and a choice by length would make a fit's result
# (to rounding) depend on the machine's load. Measured at batch 1 against online.py's loop (whose
# Adam writes dW, then takes optim's pass), bench/runs/2026-12-01c/fused_workers.txt, parameters per
# layer in brackets: SGD on two workers 1.46x on the MLP of bench/peers.py (78,382), 1.62x on
# 300-300-10 (46,655); 1.03x, 1.05x on its small net (5,742) and 100-100-50-10 (5,220); 0.85x on its
# deep net (3,841), 0.70x on 64-64-10 (2,405). Adam on two workers 2.30x, 1.65x, 1.38x, 1.30x, 1.33x,
# and 0.92x on 64-64-10. Adam alone 1.26x on the MLP (1.22-1.30x in other runs), 0.93-1.15x on the rest.
MIN_LAYER_PARAMETERS = 20_000
MIN_ADAM_LAYER_PARAMETERS = 3_000
MIN_ALONE_ADAM_PARAMETERS = 90_000

# Exchange buffer pieces per layer (columns of the offsets array).
_SHARE0, _SHARE1, _SCRATCH0, _SCRATCH1, _DELTA = range(5)
ALONE = -1  # pair_worker's worker index for one worker doing all the rows, meeting nobody
_NO_FACTORS = (0.0,) * 10  # _adam_factors' place in an SGD run
_ALIGN = 16  # elements: every piece starts on a 64-byte line in float32 (two lines apart in float64)


_forced = None  # a worker count that every run this loop can take gets instead of the rule's (forcing)


def workers(li, params, adam=False) -> int:
    """How many workers run this network's batch-1 steps with plain SGD (adam: with Adam, AdamW) in
    the loop here: 2, 1 (ALONE) or 0 (none: online.py's loop runs them)."""
    if numba.config.DISABLE_JIT:
        return 0
    if _forced is not None and li.shape[0] >= 2:
        return _forced
    return workers_for(li.shape[0], params.size, adam, threads.get_num_threads())


@contextlib.contextmanager
def forcing(count: int):
    """Within it, every plain-SGD or Adam batch-1 run of a network of two layers or more takes
    `count` workers (0, 1 or 2), whatever its size: for fastbp.precompile, which compiles this loop
    on a tiny network. Process-wide: fits in other threads meanwhile are forced too."""
    global _forced
    previous, _forced = _forced, count
    try:
        yield
    finally:
        _forced = previous


def workers_for(n_layers: int, n_params: int, adam: bool, n_threads: int) -> int:
    """workers' rule, from the counts alone."""
    if n_layers < 2:  # one layer: too few meetings to order the workers' shared buffers
        return 0
    if n_threads >= 2:
        least = MIN_ADAM_LAYER_PARAMETERS if adam else MIN_LAYER_PARAMETERS
        return 2 if n_params / n_layers >= least else 0
    return 1 if adam and n_params >= MIN_ALONE_ADAM_PARAMETERS else 0


def exchange_buffers(li, dtype):
    """The buffer the workers exchange through, and the (n_layers, 5) offsets of its pieces: each
    worker's share of z, each worker's scratch for the bias gradient, the previous layer's delta."""
    offsets = np.zeros((li.shape[0], 5), np.int64)
    size = 0
    for layer in range(li.shape[0]):
        n_in, n_out = int(li[layer, P.N_IN]), int(li[layer, P.N_OUT])
        for piece, n in enumerate((n_out, n_out, n_out, n_out, n_in)):
            offsets[layer, piece] = size
            size += -(-n // _ALIGN) * _ALIGN
    return aligned_zeros(size, dtype), offsets


def aligned_zeros(size, dtype):
    """np.zeros(size, dtype) starting on a 64-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(size + 64 // itemsize, dtype)
    skip = (-raw.ctypes.data % 64) // itemsize
    return raw[skip : skip + size]


def worker_arguments(li, lf, gu, loss_code, loss_param, params, ws, X, Y, sample_weight, perm,
                     first_batch, n_batches, lrs, kind, slots, hyper, step0, batch_losses, batch_correct,
                     loss_fn, partner=True):  # fmt: skip
    """pair_worker's arguments for worker 0 (in ws) and worker 1 (in a workspace of its own; None
    without a partner), the flags they meet through, and the pair_worker for the rule (worker_for)."""
    exchange, offsets = exchange_buffers(li, params.dtype)
    flags = np.zeros(sync.FLAG_WORDS, np.int64)
    shared = (
        li, lf, gu, loss_code, loss_param, params, exchange, offsets, flags, X, Y, sample_weight, perm,
        first_batch, n_batches, lrs, kind, slots, hyper, step0, batch_losses, batch_correct, loss_fn,
    )  # fmt: skip
    second = (1, aligned_zeros(ws.size, ws.dtype)) + shared if partner else None
    return (0, ws) + shared, second, flags, worker_for(kind)


def train_pair(*args):
    """online_steps' run on two workers, for plain SGD or Adam (fusable: see train.fused_workers):
    online_steps' arguments up to batch_correct less l1, l2, grads, batch_size, scalars, seed and
    max_norm, then the loss's entry; the same return value. Raises what a worker raised (the other
    is stopped through sync.ABORT, so that neither waits forever)."""
    first, second, flags, pair_worker = worker_arguments(*args)
    failures = []
    here = current_cpu()

    def partner():
        try:
            move_off(here)
            pair_worker(*second)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failures.append(exc)
            flags[sync.ABORT] = 1

    helper = threading.Thread(target=partner, name="fastbp-batch1-partner", daemon=True)
    try:
        helper.start()
    except RuntimeError:  # no thread to be had (a process at its limit): the same sweeps, alone
        return pair_worker(ALONE, *first[1:])
    try:
        done = pair_worker(*first)
    except BaseException:
        flags[sync.ABORT] = 1
        raise
    finally:
        helper.join()
    if failures:
        raise failures[0]
    return done


# A new thread often starts on its parent's CPU (seen after the process idled, or after work on one
# core), and Linux's load balancer moves it to the idle core only milliseconds later; meanwhile the
# two workers share one core, meeting through sched_yield. So the partner first moves itself off the
# calling thread's CPU, then gives the scheduler back the whole of the process's CPU set. The first
# fit of an epoch at batch 1 after 0.5 s idle, median of 10, before / after: small net with Adam
# 74 / 14 ms (hot: 12-13 ms), MLP with SGD 64 / 25 ms, deep net with Adam 68 / 37 ms, MLP with Adam
# 136 / 111 ms; right after a NumPy product 1.24-3.25x faster, the rest of the gap there being
# OpenBLAS's idle thread, which spins on the other core for a while after each call
# (bench/runs/2026-12-08/placement.txt).
try:
    _sched_getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu
    _sched_getcpu.restype = ctypes.c_int
    _sched_getcpu.argtypes = ()
except (OSError, AttributeError, TypeError):  # not glibc, not Linux (Windows: no CDLL(None))
    _sched_getcpu = None


def current_cpu() -> int | None:
    """The CPU the calling thread runs on, or None where that cannot be asked."""
    if _sched_getcpu is None:
        return None
    cpu = _sched_getcpu()
    return cpu if cpu >= 0 else None


CPU_TOPOLOGY = "/sys/devices/system/cpu"  # where Linux describes each CPU


def core_of(cpu: int) -> set[int]:
    """The logical CPUs that share `cpu`'s core (its SMT siblings and itself), as Linux lists them;
    {cpu} where that cannot be read."""
    try:
        with open(f"{CPU_TOPOLOGY}/cpu{cpu}/topology/thread_siblings_list") as listing:
            return cpu_list(listing.read()) | {cpu}
    except (OSError, ValueError):
        return {cpu}


def cpu_list(text: str) -> set[int]:
    """The CPUs of a Linux CPU list such as "0-3,8,10-11"."""
    cpus = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def move_off(cpu: int | None) -> None:
    """Move the calling thread to another core of its affinity set than `cpu`'s, or failing that to
    another CPU (an SMT sibling shares the core's L2, which each worker's rows are sized to have to
    themselves), then restore that set, so that only this start is placed, never the rest of the run."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    try:
        allowed = os.sched_getaffinity(0)
        others = (allowed - core_of(cpu)) or (allowed - {cpu})
        if others and cpu in allowed:
            os.sched_setaffinity(0, others)  # migrates this thread before it returns
            os.sched_setaffinity(0, allowed)
    except OSError:  # a CPU set changed meanwhile, or a sandbox refuses: leave it to the scheduler
        pass


def train_alone(*args):
    """train_pair's run on one worker, in the calling thread: the same sweeps, nobody to meet."""
    first, _, _, pair_worker = worker_arguments(*args, partner=False)
    return pair_worker(ALONE, *first[1:])


@njit(inline="always")
def _rows(worker, n):
    """The rows of an n-row W that `worker` owns (ALONE: all of them)."""
    half = n // 2
    if worker == ALONE:
        return (0, n)
    return (0, half) if worker == 0 else (half, n)


@njit(inline="always")
def _block(flat, li, layer, r0, r1):
    """Rows [r0, r1) of the layer's W in `flat` (params, or one of the optimizer's slots)."""
    n_out = li[layer, P.N_OUT]
    return raw_view(flat, li[layer, P.W_OFF] + r0 * n_out, (r1 - r0, n_out))


@njit(inline="always")
def _bias(flat, li, layer):
    return raw_view(flat, li[layer, P.B_OFF], (li[layer, P.N_OUT],))


@njit(inline="always")
def _adam_step(kind, hyper, step, lr, t):
    """optim.adam_constants of Adam's (or AdamW's) step `step` (1-based), in the scalar type t."""
    return adam_constants(_adam_factors(kind == ADAMW, hyper, step, lr, 1.0), t)


def _compile_worker(adam_rule: bool):
    """pair_worker for plain SGD (False) or Adam and AdamW (True). Numba takes the captured flag as a
    constant and compiles that rule's sweeps only: as one function for both, a cold first SGD fit
    compiled Adam's row kernels too, 9.6-10.7 s for this loop against 6.6-6.8 s now (Adam's own:
    6.1-7.4 s; alternating processes, after the kernels shared with online.py were compiled). Numba
    caches each closure under its flag."""

    def pair_worker(worker, ws, li, lf, gu, loss_code, loss_param, params, exchange, offsets, flags, X, Y,
                    sample_weight, perm, first_batch, n_batches, lrs, kind, slots, hyper, step0,
                    batch_losses, batch_correct, loss_fn):  # fmt: skip
        """One of train_pair's two workers, in its own workspace ws. kind: SGD (plain), ADAM or ADAMW
        (no amsgrad), stepping params and slots (the moments) as optimizer steps step0 + 1, ...
        Returns the number of steps done (fewer at a non-finite loss, with that step not taken), or -1
        when stopped through sync.ABORT."""
        t = params.dtype.type
        own = max(worker, 0)  # whose exchange pieces; ALONE writes worker 0's, and worker 1's stay 0
        adam = adam_rule  # a constant here: only this rule's code is compiled
        M, V = slots[0], slots[1 if adam else 0]  # the moments (SGD's slots are empty, unused)
        capacity = ws.size // gu[P.TOTAL_UNITS]
        n_layers = li.shape[0]
        X_flat, Y_flat = X.reshape(-1), Y.reshape(-1)
        n_in, n_y = X.shape[1], Y.shape[1]
        spares = capacity * gu[P.IN_UNIT]  # samples of another dtype are converted here (online_steps)
        weighted = sample_weight.size > 0
        meeting = 0
        pending_x = sample_row(X_flat, 0, n_in, ws, spares + n_in)
        pending_step = t(0)
        pending_k = adam_constants(_NO_FACTORS, t)
        for k in range(n_batches):
            source = perm[first_batch + k]
            if k + 1 < n_batches:
                prefetch_row(X, perm[first_batch + k + 1])
            x = sample_row(X_flat, source, n_in, ws, spares + (k % 2) * n_in)
            Yb = raw_view(Y_flat, source * n_y, (1, n_y))
            Wb = raw_view(sample_weight, source, (1,)) if weighted else sample_weight
            a = x[0]
            for layer in range(n_layers):
                n_out = li[layer, P.N_OUT]
                r0, r1 = _rows(worker, li[layer, P.N_IN])
                W = _block(params, li, layer, r0, r1)
                share = raw_view(exchange, offsets[layer, _SHARE0 + own], (n_out,))
                share[:] = 0
                if layer == 0 and k > 0:
                    d = region(ws, capacity, gu[P.DELTA0_UNIT], 1, n_out)[0]
                    u = pending_x[0, r0:r1]
                    if adam:
                        Mb, Vb = _block(M, li, 0, r0, r1), _block(V, li, 0, r0, r1)
                        adam_and_accumulate_rows(W, Mb, Vb, d, pending_k, u, a[r0:r1], share)
                    else:
                        update_and_accumulate_rows(W, d, pending_step, u, a[r0:r1], share)
                else:
                    accumulate_rows(a[r0:r1], W, share)
                meeting += 1
                if worker != ALONE and not sync.meet(flags, worker, meeting):
                    return -1
                Z = region(ws, capacity, li[layer, P.Z_UNIT], 1, n_out)
                A = region(ws, capacity, li[layer, P.A_UNIT], 1, n_out)
                first = raw_view(exchange, offsets[layer, _SHARE0], (n_out,))
                second = raw_view(exchange, offsets[layer, _SHARE1], (n_out,))
                z = Z[0]
                for j in range(n_out):
                    z[j] = first[j] + second[j]
                b = _bias(params, li, layer)
                bias_activation_forward(li[layer, P.FORWARD_FN], lf[layer, P.ACT_PARAM], Z, b, A)
                a = A[0]
            out = region(ws, capacity, li[n_layers - 1, P.A_UNIT], 1, li[n_layers - 1, P.N_OUT])
            loss = loss_and_output_grad_at(loss_fn, loss_param, out, Yb, Wb, output_delta(li, gu, ws, 1))
            if own == 0:
                batch_losses[k] = loss
                batch_correct[k] = count_correct(loss_code, out, Yb)
            if not is_finite(loss):  # both workers see the same loss
                return k
            step = t(-lrs[k])
            adam_k = _adam_step(kind, hyper, step0 + k + 1, lrs[k], t) if adam else pending_k
            for layer in range(n_layers - 1, -1, -1):
                rows_in, n_out = li[layer, P.N_IN], li[layer, P.N_OUT]
                here = gu[P.DELTA0_UNIT] if layer % 2 == 0 else gu[P.DELTA1_UNIT]
                there = gu[P.DELTA1_UNIT] if layer % 2 == 0 else gu[P.DELTA0_UNIT]
                G = region(ws, capacity, here, 1, n_out)
                Z = region(ws, capacity, li[layer, P.Z_UNIT], 1, n_out)
                A = region(ws, capacity, li[layer, P.A_UNIT], 1, n_out)
                scratch = raw_view(exchange, offsets[layer, _SCRATCH0 + own], (n_out,))
                activation_backward(
                    li[layer, P.BACKWARD_FN], lf[layer, P.ACT_PARAM], Z, A, G, G, FALSE, scratch
                )
                d = G[0]
                if layer > 0:
                    r0, r1 = _rows(worker, rows_in)
                    W = _block(params, li, layer, r0, r1)
                    a_prev = region(ws, capacity, li[layer - 1, P.A_UNIT], 1, rows_in)[0]
                    delta = raw_view(exchange, offsets[layer, _DELTA], (rows_in,))
                    if adam:
                        Mb, Vb = _block(M, li, layer, r0, r1), _block(V, li, layer, r0, r1)
                        delta_and_adam_rows(W, Mb, Vb, d, adam_k, a_prev[r0:r1], delta[r0:r1])
                    else:
                        delta_and_update_rows(W, d, step, a_prev[r0:r1], delta[r0:r1])
                    meeting += 1
                    if worker != ALONE and not sync.meet(flags, worker, meeting):
                        return -1
                    g_prev = region(ws, capacity, there, 1, rows_in)[0]
                    g_prev[:] = delta
                if own == 0:
                    b = _bias(params, li, layer)
                    if adam:
                        adam_row(b, _bias(M, li, layer), _bias(V, li, layer), d, adam_k, t(1))
                    else:
                        for j in range(n_out):
                            b[j] += step * d[j]
            # This step's first-layer update waits for the next forward sweep (online.py), or the end.
            pending_x, pending_step, pending_k = x, step, adam_k
        if n_batches > 0:
            r0, r1 = _rows(worker, li[0, P.N_IN])
            W = _block(params, li, 0, r0, r1)
            d = region(ws, capacity, gu[P.DELTA0_UNIT], 1, li[0, P.N_OUT])[0]
            u = pending_x[0, r0:r1]
            if adam:
                adam_rows(W, _block(M, li, 0, r0, r1), _block(V, li, 0, r0, r1), d, pending_k, u)
            else:
                update_rows(W, d, pending_step, u)
        return n_batches

    return njit(pair_worker)


SGD_WORKER, ADAM_WORKER = _compile_worker(False), _compile_worker(True)


def worker_for(kind):
    """The compiled pair_worker for optimizer rule `kind` (SGD, ADAM or ADAMW)."""
    return SGD_WORKER if kind == SGD else ADAM_WORKER


# Adam folded into the sweeps over W: the gradient of W[i, j] at batch 1 is a[i] * d[j], formed as the
# unfused path forms it (online.delta_and_gradient_rows) and stepped by the per-element arithmetic of
# optim.py, torch's rule. Every row moves (a zero gradient still decays the moments and moves the
# parameter), so no row is skipped. k: optim.adam_constants.


@njit
def delta_and_adam_rows(W, M, V, d, k, a, g_prev):
    """g_prev = W @ d with W as it was, and Adam's step on W (moments M, V) for gradient outer(a, d),
    in one pass over the three."""
    t = W.dtype.type
    for i in range(W.shape[0]):
        w, m, v, ai = W[i], M[i], V[i], a[i]
        s = t(0)
        for j in range(W.shape[1]):
            old = w[j]
            s += old * d[j]
            p, mj, vj = adam_moments(old, ai * d[j], m[j], v[j], k)
            m[j] = mj
            v[j] = vj
            w[j] = adam_param(p, mj, vj, k)
        g_prev[i] = s


@njit
def adam_and_accumulate_rows(W, M, V, d, k, u, a, z):
    """Adam's step on W (moments M, V) for gradient outer(u, d), then z += a @ W (the updated W), in
    one sweep."""
    for i in range(W.shape[0]):
        w, m, v, ui, ai = W[i], M[i], V[i], u[i], a[i]
        for j in range(W.shape[1]):
            p, mj, vj = adam_moments(w[j], ui * d[j], m[j], v[j], k)
            m[j] = mj
            v[j] = vj
            x = adam_param(p, mj, vj, k)
            w[j] = x
            z[j] += ai * x


@njit
def adam_rows(W, M, V, d, k, u):
    """Adam's step on W (moments M, V) for gradient outer(u, d)."""
    for i in range(W.shape[0]):
        adam_row(W[i], M[i], V[i], d, k, u[i])


@njit(inline="always")
def adam_row(w, m, v, d, k, scale):
    """Adam's step on the vector w (moments m, v) for gradient scale * d (a bias: scale 1)."""
    for j in range(w.shape[0]):
        p, mj, vj = adam_moments(w[j], scale * d[j], m[j], v[j], k)
        m[j] = mj
        v[j] = vj
        w[j] = adam_param(p, mj, vj, k)
