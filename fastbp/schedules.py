"""Learning-rate schedules: plain callables step -> lr, with torch.optim.lr_scheduler's numbers.

`step` is the 0-based count of optimizer steps already taken, so `f(step)` is the rate torch's
scheduler gives after `step` calls of scheduler.step() (one after each optimizer step). Pass a
schedule as an optimizer's lr: `fb.optim.SGD(lr=fb.schedules.cosine(0.1, T_max=1000))`.

Unlike torch, where a scheduler reads the base rate from the optimizer, each schedule takes its
base rate as its first argument (`lr`, or `max_lr` for one_cycle); schedules are closed forms,
which torch's recursive updates equal up to rounding.

ReduceLROnPlateau is the exception: it watches a metric and changes an optimizer (see its doc).
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Callable, Iterable

__all__ = [
    "Schedule",
    "constant",
    "step_decay",
    "multistep",
    "exponential",
    "cosine",
    "linear_warmup",
    "one_cycle",
    "ReduceLROnPlateau",
]


class Schedule:
    """A callable step -> lr with a readable repr. `step` must be an int >= 0."""

    def __init__(self, fn: Callable[[int], float], text: str):
        self._fn = fn
        self._text = text

    def __call__(self, step: int) -> float:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"{self._text}: step must be an int >= 0, got {step!r}")
        return self._fn(int(step))

    def __repr__(self) -> str:
        return self._text


def _real(
    owner: str,
    name: str,
    value,
    low: float = -math.inf,
    low_open: bool = False,
    high: float = math.inf,
    high_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    value = float(value)
    ok = (
        math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{owner}: invalid {name} {value!r}: must be finite and in {lo}{low}, {high}{hi}")
    return value


def _int(owner: str, name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{owner}: invalid {name} {value!r}: must be >= {low}")
    return int(value)


def _lr(owner: str, value, name: str = "lr") -> float:
    return _real(owner, name, value, low=0.0)


def constant(lr: float) -> Schedule:
    """lr at every step."""
    lr = _lr("constant", lr)
    return Schedule(lambda step: lr, f"constant({lr!r})")


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """lr * gamma ** (step // step_size) (torch StepLR)."""
    owner = "step_decay"
    lr, step_size = _lr(owner, lr), _int(owner, "step_size", step_size, 1)
    gamma = _real(owner, "gamma", gamma, low=0.0)
    return Schedule(
        lambda step: lr * gamma ** (step // step_size),
        f"step_decay({lr!r}, step_size={step_size}, gamma={gamma!r})",
    )


def multistep(lr: float, milestones: Iterable[int], gamma: float = 0.1) -> Schedule:
    """lr * gamma ** (number of milestones <= step); a repeated milestone counts each time
    (torch MultiStepLR)."""
    owner = "multistep"
    lr, gamma = _lr(owner, lr), _real(owner, "gamma", gamma, low=0.0)
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
        raise TypeError(f"{owner}: milestones must be a list of ints, got {milestones!r}")
    marks = sorted(_int(owner, "milestones[i]", m, 0) for m in milestones)
    return Schedule(
        lambda step: lr * gamma ** bisect.bisect_right(marks, step),
        f"multistep({lr!r}, milestones={marks}, gamma={gamma!r})",
    )


def exponential(lr: float, gamma: float) -> Schedule:
    """lr * gamma ** step (torch ExponentialLR)."""
    owner = "exponential"
    lr, gamma = _lr(owner, lr), _real(owner, "gamma", gamma, low=0.0)
    return Schedule(lambda step: lr * gamma**step, f"exponential({lr!r}, gamma={gamma!r})")


def cosine(lr: float, T_max: int, eta_min: float = 0.0) -> Schedule:
    """eta_min + (lr - eta_min) * (1 + cos(pi * step / T_max)) / 2 (torch CosineAnnealingLR; past
    T_max it rises again, as torch's does)."""
    owner = "cosine"
    lr, T_max = _lr(owner, lr), _int(owner, "T_max", T_max, 1)
    eta_min = _lr(owner, eta_min, "eta_min")

    def fn(step):
        return eta_min + (lr - eta_min) * (1.0 + math.cos(math.pi * step / T_max)) / 2.0

    return Schedule(fn, f"cosine({lr!r}, T_max={T_max}, eta_min={eta_min!r})")


def linear_warmup(
    warmup_steps: int, then: float | Callable[[int], float], start_factor: float = 1.0 / 3
) -> Schedule:
    """Ramp linearly from start_factor * base to base over warmup_steps, then follow `then` (a rate
    or a schedule, restarted at 0), where base = then(0).

    step < warmup_steps: base * (start_factor + (1 - start_factor) * step / warmup_steps)
    otherwise:           then(step - warmup_steps)

    torch: SequentialLR([LinearLR(start_factor, 1.0, warmup_steps), <then>], [warmup_steps]).
    """
    owner = "linear_warmup"
    warmup_steps = _int(owner, "warmup_steps", warmup_steps, 0)
    start_factor = _real(owner, "start_factor", start_factor, low=0.0, low_open=True, high=1.0)
    if callable(then):
        after = then
    else:
        rate = _lr(owner, then, "then")
        after = lambda step: rate  # noqa: E731
    base = float(after(0))

    def fn(step):
        if step < warmup_steps:
            return base * (start_factor + (1.0 - start_factor) * step / warmup_steps)
        return after(step - warmup_steps)

    return Schedule(fn, f"linear_warmup({warmup_steps}, then={then!r}, start_factor={start_factor!r})")


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """The 1cycle policy (torch OneCycleLR, learning rate only: momentum is not cycled).

    Rises from max_lr / div_factor to max_lr over pct_start of total_steps, then anneals to
    max_lr / div_factor / final_div_factor at step total_steps - 1 (with three_phase: back down to
    max_lr / div_factor symmetrically, then to the minimum). Steps beyond total_steps are an error,
    as in torch.
    """
    owner = "one_cycle"
    max_lr = _lr(owner, max_lr, "max_lr")
    total_steps = _int(owner, "total_steps", total_steps, 1)
    pct_start = _real(owner, "pct_start", pct_start, low=0.0, high=1.0)
    div_factor = _real(owner, "div_factor", div_factor, low=0.0, low_open=True)
    final_div_factor = _real(owner, "final_div_factor", final_div_factor, low=0.0, low_open=True)
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(f"{owner}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
    initial = max_lr / div_factor
    minimum = initial / final_div_factor
    if three_phase:
        phases = [
            (float(pct_start * total_steps) - 1, initial, max_lr),
            (float(2 * pct_start * total_steps) - 2, max_lr, initial),
            (total_steps - 1, initial, minimum),
        ]
    else:
        phases = [(float(pct_start * total_steps) - 1, initial, max_lr), (total_steps - 1, max_lr, minimum)]
    start = 0.0
    for end, _, _ in phases:
        if not end > start:
            raise ValueError(
                f"{owner}: total_steps={total_steps} with pct_start={pct_start} "
                f"leaves a phase with no steps (torch divides by zero here)"
            )
        start = end

    def anneal(a, b, pct):
        if anneal_strategy == "cos":
            return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (b - a) * pct + a

    def fn(step):
        if step > total_steps:
            raise ValueError(f"{owner}: step {step} is past total_steps={total_steps}")
        start = 0.0
        for i, (end, a, b) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                return anneal(a, b, (step - start) / (end - start))
            start = end
        raise AssertionError("unreachable")

    return Schedule(
        fn,
        f"one_cycle({max_lr!r}, total_steps={total_steps}, pct_start={pct_start}"
        f", anneal_strategy={anneal_strategy!r}, div_factor={div_factor!r}, "
        f"final_div_factor={final_div_factor!r}, three_phase={three_phase})",
    )


class ReduceLROnPlateau:
    """Lower an optimizer's learning rate when a metric stops improving (torch's rule).

    Call `step(metric)` once per epoch (the training loop's callback does). After more than
    `patience` calls without improvement (better than best by `threshold`, relative or absolute),
    the rate becomes max(rate * factor, min_lr), unless that changes it by eps or less; then
    `cooldown` calls pass before bad epochs count again.

    With a float lr it sets optimizer.lr, as torch sets the group's lr. With a schedule it scales
    optimizer.lr_scale so that the rate at the current step, lr_at(step) * lr_scale, becomes
    max(rate * factor, min_lr); the schedule keeps its shape below that.
    """

    def __init__(
        self,
        optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ):
        owner = "ReduceLROnPlateau"
        if not (hasattr(optimizer, "lr") and hasattr(optimizer, "lr_scale")):
            raise TypeError(
                f"{owner}: optimizer must be an fb.optim optimizer, got {type(optimizer).__name__}"
            )
        if mode not in ("min", "max"):
            raise ValueError(f"{owner}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{owner}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.optimizer = optimizer
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _real(owner, "factor", factor, low=0.0, high=1.0, high_open=True)
        self.patience = _int(owner, "patience", patience, 0)
        self.threshold = _real(owner, "threshold", threshold, low=0.0)
        self.cooldown = _int(owner, "cooldown", cooldown, 0)
        self.min_lr = _lr(owner, min_lr, "min_lr")
        self.eps = _real(owner, "eps", eps, low=0.0)
        self.last_epoch = 0
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            return (
                a < best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else a < best - self.threshold
            )
        return (
            a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold
        )

    def step(self, metric: float) -> None:
        """Record one epoch's metric; lower the rate when it has stalled."""
        current = float(metric)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def _reduce_lr(self) -> None:
        opt = self.optimizer
        if not callable(opt.lr):
            old = float(opt.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                opt.lr = new
            return
        step = getattr(opt, "step_count", 0)
        old = float(opt.lr_at(step)) * opt.lr_scale
        new = max(old * self.factor, self.min_lr)
        if old - new > self.eps:
            opt.lr_scale = opt.lr_scale * (new / old)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def state_dict(self) -> dict:
        """The counters, to resume: best, num_bad_epochs, cooldown_counter, last_epoch."""
        return {
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
            "last_epoch": self.last_epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.last_epoch = int(state["last_epoch"])

    def __repr__(self) -> str:
        return (
            f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor!r}, "
            f"patience={self.patience}, threshold={self.threshold!r}, "
            f"threshold_mode={self.threshold_mode!r}, cooldown={self.cooldown}, "
            f"min_lr={self.min_lr!r}, eps={self.eps!r})"
        )
