"""The fit loop: batching, shuffling, chunks of compiled steps, callbacks, history, progress.

Python runs once per chunk of steps (sized to about CHUNK_SECONDS of work so a progress bar stays
live), never per step: each chunk is one call of the compiled train_steps.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

import numpy as np

from fastbp import cuda as cuda_mod
from fastbp import optim as optim_mod
from fastbp._kernels.cache import will_compile
from fastbp._kernels.cpu import blas
from fastbp._kernels.cpu.train import first_call, fused_workers, loop_for, train_steps
from fastbp.callbacks import TrainingState, check_callbacks
from fastbp.threads import get_num_threads

CHUNK_SECONDS = 0.1
# Shown (verbose >= 1) when the first chunk's compiled loop is neither in memory nor in Numba's cache:
# otherwise the first fit after an install or upgrade sits at 0% for 12-14 s (the MLP of
# bench/compile_time.py on this project's 2-core machine; a minute before the entries of
# indirect.py) with no word of why.
COMPILE_NOTICE = (
    "fastbp: compiling the training kernels for {dtype} (once: later runs load them from the cache). "
    "This can take half a minute."
)


class History:
    """Per-epoch records of fit: loss, accuracy (classification losses), val_loss, val_accuracy
    (with validation data), lr, seconds, samples_per_s. `history["loss"]` is the list of one metric;
    `as_dict()` gives them all."""

    def __init__(self):
        self.epochs: list[dict] = []
        self.diverged: dict | None = None

    def append(self, logs: dict) -> None:
        self.epochs.append(dict(logs))

    def __getitem__(self, metric: str) -> list:
        return [entry[metric] for entry in self.epochs if metric in entry]

    def __len__(self) -> int:
        return len(self.epochs)

    def as_dict(self) -> dict[str, list]:
        keys: list[str] = []
        for entry in self.epochs:
            keys += [k for k in entry if k not in keys]
        return {k: self[k] for k in keys}

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
        return f"History({len(self)} epochs; last: {shown})"


def _check_int(name, value, low, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int{' or None' if allow_none else ''}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _resolve_optimizer(optimizer, lr):
    if lr is not None and (isinstance(lr, bool) or not (callable(lr) or isinstance(lr, (int, float)))):
        raise TypeError(f"lr must be a number or a schedule, got {lr!r}")
    opt = optim_mod.get(optimizer, lr=lr) if isinstance(optimizer, str) else optimizer
    if not isinstance(opt, optim_mod.Optimizer):
        raise TypeError(
            f"optimizer must be a name such as 'adam' or an fb.optim optimizer, got "
            f"{type(optimizer).__name__}"
        )
    if lr is not None and not isinstance(optimizer, str):
        opt.lr = lr
    return opt


def _split_validation(net, X, Y, weights, validation_data, validation_split):
    if (
        not isinstance(validation_split, (int, float))
        or isinstance(validation_split, bool)
        or not (0.0 <= validation_split < 1.0)
    ):
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        check_x, check_y, _ = cuda_mod.checks(net)
        Xv = check_x(validation_data[0], net.n_features, net.dtype, name="validation X")
        Yv = check_y(validation_data[1], net.loss, Xv.shape[0], net.n_outputs, net.dtype, name="validation y")
        return X, Y, weights, Xv, Yv
    if validation_split:
        # The last rows, before any shuffling (as Keras does): a time-ordered set stays honest.
        n_val = int(math.floor(X.shape[0] * validation_split))
        if n_val < 1 or n_val >= X.shape[0]:
            raise ValueError(
                f"validation_split={validation_split} of {X.shape[0]} rows leaves "
                f"{n_val} validation rows and {X.shape[0] - n_val} training rows"
            )
        train_weights = weights[:-n_val] if weights.size else weights
        if weights.size and not train_weights.any():
            raise ValueError("sample_weight is zero on every training row left by validation_split")
        # The held-out rows in the network's dtype once (a copy only when X is kept in another).
        Xv = np.ascontiguousarray(X[-n_val:], dtype=net.dtype)
        return X[:-n_val], Y[:-n_val], train_weights, Xv, Y[-n_val:]
    return X, Y, weights, None, None


class _Progress:
    """A tqdm bar per epoch (verbose=1), one line per epoch (verbose=2), or nothing (verbose=0).
    Without tqdm, or when stderr is not a terminal, verbose=1 prints the epoch lines instead."""

    def __init__(self, verbose: int, epochs: int, file=None):
        self.file = file or sys.stderr
        self.epochs = epochs
        self.mode = verbose
        self.tqdm = None
        if verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            isatty = getattr(self.file, "isatty", lambda: False)()
            if tqdm is None or not isatty:
                self.mode = 2
            else:
                self.tqdm = tqdm
        self.bar = None

    def start_epoch(self, epoch: int, total_samples: int) -> None:
        if self.tqdm is not None:
            self.bar = self.tqdm(
                total=total_samples,
                unit="sample",
                unit_scale=True,
                leave=True,
                desc=f"epoch {epoch + 1}/{self.epochs}",
                file=self.file,
                dynamic_ncols=True,
            )

    def update(self, samples: int, loss: float, rate: float) -> None:
        if self.bar is not None:
            self.bar.update(samples)
            self.bar.set_postfix(loss=f"{loss:.4f}", rate=f"{rate:,.0f}/s", refresh=False)

    def end_epoch(self, epoch: int, logs: dict) -> None:
        text = "  ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items() if k != "epoch"
        )
        if self.bar is not None:
            shown = {
                k: f"{v:.4f}"
                for k, v in logs.items()
                if k in ("loss", "val_loss", "accuracy", "val_accuracy")
            }
            shown["rate"] = f"{logs['samples_per_s']:,.0f}/s"
            self.bar.set_postfix(shown)
            self.bar.close()
            self.bar = None
        elif self.mode == 2:
            print(f"epoch {epoch + 1}/{self.epochs}  {text}", file=self.file, flush=True)

    def note(self, text: str) -> None:
        """A line above the bar (or on its own where there is none); nothing with verbose=0."""
        if self.bar is not None:
            self.tqdm.write(text, file=self.file)
        elif self.mode:
            print(text, file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def fit(
    net,
    X,
    y,
    epochs=1,
    batch_size=32,
    optimizer="adam",
    lr=None,
    shuffle=True,
    validation_data=None,
    validation_split=0.0,
    callbacks=(),
    verbose=1,
    seed=None,
    clip_grad_norm=None,
    sample_weight=None,
) -> History:
    """Train `net` by mini-batch gradient descent; see Sequential.fit."""
    # Float data stays in its own dtype: the mini-batch loop converts each batch as it gathers it
    # (float64 data for a float32 network is not copied whole).
    X, Y, weights = net._checked(X, y, sample_weight, keep_float=True)
    epochs = _check_int("epochs", epochs, 0)
    batch_size = _check_int("batch_size", batch_size, 1, allow_none=True)
    verbose = _check_int("verbose", verbose, 0)
    if seed is not None:
        seed = _check_int("seed", seed, 0)
    if clip_grad_norm is not None and not (
        isinstance(clip_grad_norm, (int, float)) and clip_grad_norm > 0 and math.isfinite(clip_grad_norm)
    ):
        raise ValueError(f"clip_grad_norm must be a positive number, got {clip_grad_norm!r}")
    X, Y, weights, Xv, Yv = _split_validation(net, X, Y, weights, validation_data, validation_split)
    callbacks = check_callbacks(callbacks)
    opt = _resolve_optimizer(optimizer, lr)
    n = X.shape[0]
    batch = n if batch_size is None else min(batch_size, n)
    kind, slots, scalars, hyper = opt.prepare(cuda_mod.host_params(net))

    rng = np.random.default_rng(seed)
    # Dropout masks come from this seed and the optimizer's step count (see fill_dropout_mask).
    dropout_seed = int(rng.integers(0, 2**62))
    state = TrainingState(net=net, optimizer=opt, history=History())
    progress = _Progress(verbose, epochs)
    n_batches = -(-n // batch)
    order = np.arange(n, dtype=np.int64)
    losses = np.zeros(n_batches, dtype=np.float64)
    correct = np.zeros(n_batches, dtype=np.int64)
    max_norm = float(clip_grad_norm or 0.0)
    gpu = net._cuda
    two_workers = gpu is None and 2 == fused_workers(
        loop_for(net._li, batch), net._li, net.params, kind, hyper, net.l1, net.l2, max_norm
    )
    if gpu is None:
        backup = _Backup(net.params, slots, scalars, opt)
        steps = train_steps
    else:
        # The same call on the GPU; host data is copied there whole, or streamed when too large.
        X, Y, weights = gpu.stage(X, Y, weights)
        backup = gpu.backup(slots, scalars, opt)
        steps = gpu.train_steps_like_cpu

    with net._lock:
        # Two rows at least: the batch-1 loop converts samples of another dtype into two of them.
        ws = net._workspace_for(max(batch, 2)) if gpu is None else None
        # The first chunk is one step, timed to size the next, unless an earlier epoch or fit of this
        # network on the same kind of run has sized it already: every chunk costs a call from Python
        # (at batch 1 on two workers a thread start too), and an epoch of 2048 samples at batch 1
        # took 3-5 chunks to reach its size, every epoch. Fits of one epoch, best of 28, against
        # probing every epoch: batch 1 0.95-1.10x, batch 16 0.97-1.00x
        # (bench/runs/2026-12-08/chunk_hint.txt).
        hint_key = (batch, type(opt), X.dtype.str, get_num_threads(), gpu is None)
        chunk = net._chunk_hints.get(hint_key, 1)
        for cb in callbacks:
            cb.on_train_begin(state)
        try:
            for epoch in range(epochs):
                state.epoch = epoch
                # One batch holds every row whatever the order: full-batch GD draws nothing.
                perm = rng.permutation(n) if shuffle and n_batches > 1 else order
                started = time.perf_counter()
                progress.start_epoch(epoch, n)
                done = 0
                while done < n_batches:
                    count = min(chunk, n_batches - done)
                    lrs = (
                        np.array([opt.lr_at(opt.state.step + k) for k in range(count)])
                        if callable(opt.lr)
                        else np.full(count, float(opt.lr))
                    )
                    lrs *= opt.lr_scale
                    backup.save()
                    tick = time.perf_counter()
                    args = (
                        net._li,
                        net._lf,
                        net._gu,
                        net.loss.code,
                        net.loss.param,
                        net.l1,
                        net.l2,
                        net.params,
                        net.grads,
                        ws,
                        X,
                        Y,
                        weights,
                        perm,
                        batch,
                        done,
                        count,
                        lrs,
                        kind,
                        slots,
                        scalars,
                        hyper,
                        opt.state.step,
                        dropout_seed,
                        max_norm,
                        losses[done : done + count],
                        correct[done : done + count],
                    )
                    # Only with verbose: typing the loop's 31 arguments to ask Numba's cache cost
                    # each fit call 0.3-1 ms (a quarter of a one-batch fit of the small net).
                    if verbose and gpu is None and epoch == 0 and done == 0:
                        if will_compile(*first_call(*args)):
                            progress.note(COMPILE_NOTICE.format(dtype=np.dtype(net.dtype).name))
                    ran = steps(*args)
                    elapsed = time.perf_counter() - tick
                    opt.advance(ran)
                    if ran < count:
                        if _diverged(state, callbacks, backup, epoch, done + ran, losses):
                            break
                    rows_done = min((done + ran) * batch, n) - done * batch
                    done += ran
                    progress.update(rows_done, float(losses[done - 1]), rows_done / max(elapsed, 1e-9))
                    # Size the next chunk to about CHUNK_SECONDS of work, and long enough that the
                    # backup copy at its start costs under 2% (it matters for huge networks).
                    per_step = elapsed / max(ran, 1)
                    target = max(CHUNK_SECONDS, 50.0 * backup.seconds)
                    chunk = max(1, min(n_batches, int(target / max(per_step, 1e-7))))
                    net._chunk_hints[hint_key] = chunk
                if state.diverged:
                    progress.close()
                    break
                logs = _epoch_logs(net, X, Y, Xv, Yv, batch, losses, correct, opt, started, two_workers)
                progress.end_epoch(epoch, logs)
                state.history.append(logs)
                for cb in callbacks:
                    cb.on_epoch_end(state, logs)
                if state.stop_training:
                    break
        finally:
            progress.close()
            if gpu is not None:
                gpu.release_optimizer()  # the optimizer's state back in its host arrays
        for cb in callbacks:
            cb.on_train_end(state)
    state.history.diverged = state.diverged
    return state.history


class _Backup:
    """Copies of the parameters and optimizer state taken at each chunk's start, into buffers
    allocated once, so a diverged run can be put back to a finite state."""

    def __init__(self, params, slots, scalars, opt):
        self.live = (params, slots, scalars)
        self.copies = tuple(np.empty_like(a) for a in self.live)
        self.opt = opt
        self.step = opt.state.step
        self.seconds = 0.0

    def save(self) -> None:
        tick = time.perf_counter()
        for live, copy in zip(self.live, self.copies):
            np.copyto(copy, live)
        self.step = self.opt.state.step
        self.seconds = time.perf_counter() - tick

    def all_finite(self) -> bool:
        return all(np.isfinite(a).all() for a in self.live)

    def restore(self) -> None:
        for live, copy in zip(self.live, self.copies):
            np.copyto(live, copy)
        self.opt.advance(self.step - self.opt.state.step)


def _diverged(state, callbacks, backup, epoch, batch_index, losses) -> bool:
    """The loss came out non-finite (that batch made no update). If the parameters or optimizer
    state hold a non-finite value, put back the chunk's starting point; then let a callback end
    training quietly, or raise."""
    if not backup.all_finite():
        backup.restore()
    info = {"epoch": epoch, "batch": batch_index, "loss": float(losses[batch_index])}
    state.diverged = info
    handled = any(cb.on_divergence(state, info) for cb in callbacks)
    if not handled:
        raise FloatingPointError(
            f"training diverged: the loss became {info['loss']} at epoch {epoch + 1}, batch "
            f"{batch_index + 1}; the parameters were restored to their last finite values. Try a "
            f"smaller learning rate, or clip_grad_norm."
        )
    return True


def _epoch_logs(net, X, Y, Xv, Yv, batch, losses, correct, opt, started, two_workers) -> dict:
    n = X.shape[0]
    sizes = np.full(losses.size, batch, dtype=np.float64)
    sizes[-1] = n - batch * (losses.size - 1)
    seconds = time.perf_counter() - started
    logs = {"loss": float(np.dot(losses, sizes) / n)}
    if net.loss.classifies:
        logs["accuracy"] = float(correct.sum() / n)
    if Xv is not None:
        # Batch 1 on two workers calls no BLAS, and its partner thread needs the second core from
        # the next epoch's first sample on: an OpenBLAS worker woken by the validation's products
        # would spin there. Six epochs of 4096 rows with validation_data of 1024, one BLAS thread
        # against the default two: 1.79x (small net, Adam), 1.50x (MLP, SGD), 1.35x (MLP, Adam),
        # 1.59x (deep, Adam); one validation of the MLP 2.2 -> 4.3 ms
        # (bench/runs/2026-12-08/validation_threads.txt).
        with blas.one_thread() if two_workers else contextlib.nullcontext():
            scores = net.evaluate(Xv, Yv if not net.loss.integer_targets else Yv[:, 0])
        logs["val_loss"] = scores["loss"]
        if "accuracy" in scores:
            logs["val_accuracy"] = scores["accuracy"]
    logs["lr"] = float(opt.lr_at(max(opt.state.step - 1, 0)) * opt.lr_scale)
    logs["seconds"] = seconds
    logs["samples_per_s"] = n / max(seconds, 1e-9)
    return logs


def train_on_batch(net, X, y, optimizer, sample_weight=None) -> float:
    """One optimizer step on the batch (X, y) (dropout active); returns the batch loss. On "cuda"
    the optimizer's state is back in its host arrays afterwards."""
    X, Y, weights = net._checked(X, y, sample_weight)
    if not isinstance(optimizer, optim_mod.Optimizer):
        raise TypeError(
            f"optimizer must be an fb.optim optimizer (its state persists between "
            f"calls), got {type(optimizer).__name__}"
        )
    kind, slots, scalars, hyper = optimizer.prepare(cuda_mod.host_params(net))
    rows = X.shape[0]
    losses = np.zeros(1)
    correct = np.zeros(1, dtype=np.int64)
    lrs = np.array([optimizer.lr_at(optimizer.state.step) * optimizer.lr_scale])
    gpu = net._cuda
    with net._lock:
        if gpu is None:
            steps, ws = train_steps, net._workspace_for(rows)
        else:
            X, Y, weights = gpu.stage(X, Y, weights)
            steps, ws = gpu.train_steps_like_cpu, None
        try:
            ran = steps(
                net._li,
                net._lf,
                net._gu,
                net.loss.code,
                net.loss.param,
                net.l1,
                net.l2,
                net.params,
                net.grads,
                ws,
                X,
                Y,
                weights,
                np.arange(rows, dtype=np.int64),
                rows,
                0,
                1,
                lrs,
                kind,
                slots,
                scalars,
                hyper,
                optimizer.state.step,
                net.seed or 0,
                0.0,
                losses,
                correct,
            )
        finally:
            if gpu is not None:
                gpu.release_optimizer()
    optimizer.advance(ran)
    if ran == 0:
        raise FloatingPointError(f"the loss on this batch is {losses[0]}; no update was made")
    return float(losses[0])
