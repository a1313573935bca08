"""Callbacks run by fit at epoch boundaries. Each sees a TrainingState and the epoch's logs.

A callback stops training by setting `state.stop_training = True`. An exception a callback raises
propagates out of fit; the parameters are those of the last completed epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TrainingState:
    """What callbacks can see and change during fit."""

    net: object
    optimizer: object
    epoch: int = 0
    stop_training: bool = False
    history: object = None
    diverged: dict | None = field(default=None)


class Callback:
    """Base class: override any of these."""

    def on_train_begin(self, state: TrainingState) -> None:
        pass

    def on_epoch_end(self, state: TrainingState, logs: dict) -> None:
        pass

    def on_train_end(self, state: TrainingState) -> None:
        pass

    def on_divergence(self, state: TrainingState, info: dict) -> bool:
        """Called when the loss turns non-finite, after the parameters were restored. Return True to
        end training quietly instead of raising FloatingPointError."""
        return False


def _mode_for(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


class _Monitor:
    """Tracks the best value of one logged metric."""

    def __init__(self, monitor: str, mode: str, min_delta: float):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name, got {monitor!r}")
        if not (min_delta >= 0):
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.monitor = monitor
        self.mode = _mode_for(monitor, mode)
        self.min_delta = min_delta
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise ValueError(
                f"{type(self).__name__} monitors {self.monitor!r}, which fit does not "
                f"log; available: {sorted(logs)} (val_* needs validation data)"
            )
        return logs[self.monitor]

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback, _Monitor):
    """Stop when `monitor` has not improved by min_delta for `patience` epochs; with restore_best,
    put back the parameters of the best epoch."""

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
        mode: str = "auto",
    ):
        _Monitor.__init__(self, monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a non-negative int, got {patience!r}")
        self.patience = patience
        self.restore_best = restore_best
        self.best_params = None
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None

    def on_train_begin(self, state):
        _Monitor.__init__(self, self.monitor, self.mode, self.min_delta)
        self.wait, self.best_params, self.best_epoch, self.stopped_epoch = 0, None, None, None

    def on_epoch_end(self, state, logs):
        value = self.value(logs)
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best:
                self.best_params = state.net.get_params()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = state.epoch
            state.stop_training = True

    def on_train_end(self, state):
        if self.restore_best and self.best_params is not None:
            state.net.set_params(self.best_params)


class ModelCheckpoint(Callback, _Monitor):
    """Save the network (and optimizer state) to `path` after each epoch, or only when `monitor`
    improved with save_best_only. `path` may hold {epoch} and any logged metric, e.g.
    "model-{epoch:03d}-{val_loss:.3f}.npz"."""

    def __init__(
        self,
        path,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        with_optimizer: bool = True,
    ):
        _Monitor.__init__(self, monitor, mode, 0.0)
        self.path = str(path)
        self.save_best_only = save_best_only
        self.with_optimizer = with_optimizer
        self.saved: list[str] = []

    def on_epoch_end(self, state, logs):
        if self.save_best_only:
            value = self.value(logs)
            if not self.improved(value):
                return
            self.best = value
        path = self.path.format(epoch=state.epoch, **logs)
        state.net.save(path, optimizer=state.optimizer if self.with_optimizer else None)
        self.saved.append(path)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` stalls for `patience` epochs
    (torch.optim.lr_scheduler.ReduceLROnPlateau's rule, stepped once per epoch)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
        mode: str = "auto",
    ):
        self.monitor = monitor
        self.mode = _mode_for(monitor, mode)
        self.settings = dict(
            mode=self.mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )
        from fastbp.schedules import ReduceLROnPlateau as Scheduler

        Scheduler(_Probe(), **self.settings)  # validate the settings now, not mid-training
        self.scheduler = None

    def on_train_begin(self, state):
        from fastbp.schedules import ReduceLROnPlateau as Scheduler

        self.scheduler = Scheduler(state.optimizer, **self.settings)

    def on_epoch_end(self, state, logs):
        if self.monitor not in logs:
            raise ValueError(
                f"ReduceLROnPlateau monitors {self.monitor!r}, which fit does not log;"
                f" available: {sorted(logs)}"
            )
        self.scheduler.step(logs[self.monitor])


class _Probe:
    """A stand-in optimizer for validating scheduler settings."""

    lr = 1.0
    lr_scale = 1.0


class LambdaCallback(Callback):
    """Call on_epoch_end(epoch, logs) (and optionally on_train_begin() / on_train_end()) from fit.
    on_epoch_end returning True stops training after that epoch (as xgboost's callbacks do)."""

    def __init__(self, on_epoch_end=None, on_train_begin=None, on_train_end=None):
        for name, fn in (
            ("on_epoch_end", on_epoch_end),
            ("on_train_begin", on_train_begin),
            ("on_train_end", on_train_end),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"LambdaCallback {name} must be callable, got {fn!r}")
        self._epoch_end, self._begin, self._end = on_epoch_end, on_train_begin, on_train_end

    def on_train_begin(self, state):
        if self._begin:
            self._begin()

    def on_epoch_end(self, state, logs):
        if self._epoch_end and self._epoch_end(state.epoch, logs) is True:
            state.stop_training = True

    def on_train_end(self, state):
        if self._end:
            self._end()


class TerminateOnNaN(Callback):
    """End training quietly (no FloatingPointError) when the loss turns non-finite."""

    def on_divergence(self, state, info):
        return True


def check_callbacks(callbacks) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    out = list(callbacks)
    for index, cb in enumerate(out):
        if not isinstance(cb, Callback):
            raise TypeError(
                f"callbacks[{index}] is a {type(cb).__name__}, not a fastbp Callback "
                f"(wrap a function in LambdaCallback)"
            )
    return out


__all__ = [
    "Callback",
    "EarlyStopping",
    "LambdaCallback",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "TrainingState",
]
