"""Optimizers that update a flat parameter buffer in place, with torch.optim's rules.

An optimizer holds hyper-parameters and flat state arrays of the buffer's length; `opt.step(params,
grads)` runs one fused compiled pass (fastbp._kernels.cpu.optim) over params, grads and the state.
Names, keyword names, defaults and update rules are torch.optim's (torch 2.x, single-tensor path):
a torch script ported to fastbp follows the same trajectory. Each class docstring writes its rule,
with g the gradient, p the parameters and t the 1-based step number.

The learning rate is a float or a schedule (a callable step -> lr, see fastbp.schedules). The rate
of the step whose 0-based index is i is `lr_at(i) * lr_scale`: `lr_at` evaluates the float or the
schedule, `lr_scale` (1.0 unless ReduceLROnPlateau lowered a schedule) multiplies it.

For the compiled training loop: `prepare(params)` returns (kind, slots, scalars, hyper), the arrays
`optimizer_step` takes (slots and scalars are the live state), and `advance(n)` records n steps
taken there.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from fastbp._kernels.cpu import optim as _k

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "Optimizer",
    "get",
]

Schedule = Callable[[int], float]
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --- state: a named tuple of flat arrays (views of the live state) plus the step count -----------


class SGDState(NamedTuple):
    step: int
    momentum_buffer: np.ndarray | None


class AdamState(NamedTuple):
    step: int
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    max_exp_avg_sq: np.ndarray | None


class RMSpropState(NamedTuple):
    step: int
    square_avg: np.ndarray
    momentum_buffer: np.ndarray | None
    grad_avg: np.ndarray | None


class AdagradState(NamedTuple):
    step: int
    sum: np.ndarray


class AdadeltaState(NamedTuple):
    step: int
    square_avg: np.ndarray
    acc_delta: np.ndarray


class AdamaxState(NamedTuple):
    step: int
    exp_avg: np.ndarray
    exp_inf: np.ndarray


class NAdamState(NamedTuple):
    step: int
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    mu_product: np.ndarray  # 1 element


# --- hyper-parameter checks: one table per optimizer, checked at construction ---------------------


def _number(owner: str, name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: invalid {name} {value!r}: must be finite")
    return value


def _nonneg(owner, name, value):
    value = _number(owner, name, value)
    if not value >= 0.0:
        raise ValueError(f"{owner}: invalid {name} {value!r}: must be >= 0")
    return value


def _beta(owner, name, value):
    value = _number(owner, name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: invalid {name} {value!r}: must lie in [0, 1)")
    return value


def _unit(owner, name, value):
    value = _number(owner, name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: invalid {name} {value!r}: must lie in [0, 1]")
    return value


def _betas(owner, name, value):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{owner}: {name} must be a pair (beta1, beta2), got {value!r}")
    return (_beta(owner, f"{name}[0]", value[0]), _beta(owner, f"{name}[1]", value[1]))


def _flag(owner, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


_CHECKS = {"real": _number, "nonneg": _nonneg, "beta": _beta, "unit": _unit, "betas": _betas, "flag": _flag}


def _check_lr(owner: str, lr):
    if callable(lr):
        return lr
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise TypeError(f"{owner}: lr must be a float or a schedule (a callable step -> lr), got {lr!r}")
    return _nonneg(owner, "lr", lr)


def _check_buffer(name: str, array) -> None:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat 1-D buffer, got shape {array.shape}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be contiguous (a flat buffer, not a strided view)")


class Optimizer:
    """Base class: hyper-parameters, flat state and the step that calls the compiled kernel.

    Subclasses declare `kind` (the kernel's code), `_spec` (name, check, default) in torch's order,
    the state tuple and which slots their options use. Hyper-parameters are read-only attributes.
    """

    kind: int = -1
    #: Buffers at least this long are stepped by the prange kernel (optimizer_step_parallel).
    #: None (the default) keeps every step serial: on 2 cores the parallel step paid only when no
    #: multithreaded BLAS ran just before it, which in training it always does.
    parallel_min_size: int | None = None
    _spec: tuple = ()
    _extra: tuple = ()  # keyword-only extras (torch's maximize, ...), shown in repr when not default
    _State: type = tuple
    _scalar_init: dict = {}

    def __init__(self, lr, **hyper):
        owner = type(self).__name__
        checked = {}
        for name, check, _default in self._spec + self._extra:
            checked[name] = _CHECKS[check](owner, name, hyper.pop(name))
        assert not hyper, hyper
        object.__setattr__(self, "_hp", checked)
        self._validate(checked)
        self._names = tuple(self._slot_names())
        self.lr = lr
        self.lr_scale = 1.0
        self._hyper = np.array(self._pack(checked), dtype=np.float64)
        self._slots: np.ndarray | None = None
        self._scalars: np.ndarray | None = None
        self._step = 0

    # subclasses: cross-parameter checks, the kernel's hyper layout, the live slot names
    def _validate(self, hp: dict) -> None:
        pass

    def _pack(self, hp: dict) -> list[float]:
        raise NotImplementedError

    def _slot_names(self) -> list[str]:
        raise NotImplementedError  # the live slots' names, in kernel order, given the options

    def _slot_init(self, name: str) -> float:
        return 0.0

    # --- attributes ---------------------------------------------------------------------------

    def __getattr__(self, name: str):
        hp = self.__dict__.get("_hp", {})
        if name in hp:
            return hp[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in self.__dict__.get("_hp", {}):
            raise AttributeError(
                f"{type(self).__name__}.{name} is fixed at construction; make a new optimizer to change it"
            )
        object.__setattr__(self, name, value)

    @property
    def lr(self) -> float | Schedule:
        """The learning rate: a float, or a schedule step -> lr. Settable."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _check_lr(type(self).__name__, value)

    @property
    def lr_scale(self) -> float:
        """Factor applied to lr_at(i); ReduceLROnPlateau lowers it when lr is a schedule."""
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value) -> None:
        self._lr_scale = _nonneg(type(self).__name__, "lr_scale", value)

    @property
    def state(self):
        """Named tuple of the live state arrays and `step` (steps taken); None before the first
        step (or init)."""
        if self._slots is None:
            return None
        names = self._names
        fields = {f: None for f in self._State._fields}
        fields.update({name: self._slots[i] for i, name in enumerate(names)})
        fields.update({name: self._scalars[j : j + 1] for j, name in enumerate(self._scalar_init)})
        fields["step"] = self._step
        return self._State(**fields)

    @property
    def step_count(self) -> int:
        """Steps taken so far (0 before the first)."""
        return self._step

    def __repr__(self) -> str:
        parts = [f"lr={self._lr!r}"]
        parts += [f"{name}={self._hp[name]!r}" for name, _, _ in self._spec]
        parts += [
            f"{name}={self._hp[name]!r}" for name, _, default in self._extra if self._hp[name] != default
        ]
        return f"{type(self).__name__}({', '.join(parts)})"

    # --- state --------------------------------------------------------------------------------

    def init(self, n: int, dtype=np.float32) -> None:
        """Allocate fresh state (step 0) for a flat buffer of n elements of float32 or float64."""
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        if dt not in _FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        self._allocate(int(n), dt)
        self._step = 0

    def _allocate(self, n: int, dtype: np.dtype) -> None:
        names = self._names
        # A kind without per-element state still gets a (1, 0) array: one kernel signature.
        self._slots = np.zeros((max(1, len(names)), n if names else 0), dtype=dtype)
        self._scalars = np.zeros(max(1, len(self._scalar_init)), dtype=np.float64)
        self._fill_initial()

    def _fill_initial(self) -> None:
        for i, name in enumerate(self._names):
            self._slots[i].fill(self._slot_init(name))
        for j, value in enumerate(self._scalar_init.values()):
            self._scalars[j] = value

    def reset(self) -> None:
        """Back to the state before the first step: step 0 and initial buffers, in place (the
        arrays prepare() returned stay valid). lr and lr_scale are left as they are."""
        if self._slots is not None:
            self._fill_initial()
        self._step = 0

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state as plain numpy arrays (copies): kind, step, lr_scale, lr (when a float), and
        one array per state buffer under torch's names. load_state_dict resumes bit for bit."""
        d = {
            "kind": np.array(self.kind, dtype=np.int64),
            "step": np.array(self._step, np.int64),
            "lr_scale": np.array(self._lr_scale, dtype=np.float64),
        }
        if not callable(self._lr):
            d["lr"] = np.array(self._lr, dtype=np.float64)
        if self._slots is not None:
            for i, name in enumerate(self._names):
                d[name] = self._slots[i].copy()
            for j, name in enumerate(self._scalar_init):
                d[name] = np.array(self._scalars[j], dtype=np.float64)
        return d

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what state_dict returned. Everything is checked before anything changes; when
        the buffers match the current state's shape and dtype they are copied in place."""
        owner = type(self).__name__
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping from state_dict(), got {type(state).__name__}")
        for key in ("kind", "step", "lr_scale"):
            if key not in state:
                raise ValueError(f"{owner}.load_state_dict: missing key {key!r}")
        kind = int(np.asarray(state["kind"]))
        if kind != self.kind:
            other = _k.KIND_NAMES[kind] if 0 <= kind < len(_k.KIND_NAMES) else str(kind)
            raise ValueError(f"{owner}.load_state_dict: the state is of a {other!r} optimizer")
        step = np.asarray(state["step"])
        if step.dtype.kind not in "iu" or step.ndim != 0 or int(step) < 0:
            raise ValueError(
                f"{owner}.load_state_dict: step must be a non-negative int, got {state['step']!r}"
            )
        lr_scale = _nonneg(owner, "lr_scale", float(np.asarray(state["lr_scale"])))
        lr = _nonneg(owner, "lr", float(np.asarray(state["lr"]))) if "lr" in state else None
        names = self._names
        expected = [*names, *self._scalar_init]
        unexpected = sorted(set(state) - {"kind", "step", "lr_scale", "lr", *expected})
        if unexpected:
            raise ValueError(f"{owner}.load_state_dict: unexpected keys {unexpected} for {self!r}")
        present = [name for name in expected if name in state]
        if present and len(present) != len(expected):
            missing = [name for name in expected if name not in state]
            raise ValueError(f"{owner}.load_state_dict: missing keys {missing}")
        if expected and not present and int(step) != 0:
            raise ValueError(f"{owner}.load_state_dict: step {int(step)} but no state buffers")
        buffers = [np.asarray(state[name]) for name in names] if present else []
        for name, b in zip(names, buffers):
            if b.ndim != 1 or b.dtype not in _FLOAT_DTYPES:
                raise ValueError(
                    f"{owner}.load_state_dict: {name} must be a 1-D float32 or "
                    f"float64 array, got {b.dtype} of shape {b.shape}"
                )
        if len({(b.shape, b.dtype) for b in buffers}) > 1:
            raise ValueError(f"{owner}.load_state_dict: the state buffers differ in length or dtype")
        scalars = [float(np.asarray(state[name])) for name in self._scalar_init] if present else []
        # All checked: commit.
        if lr is not None and not callable(self._lr):
            self._lr = lr
        self._lr_scale = lr_scale
        self._step = int(step)
        if not expected:  # plain SGD: the step count is the whole state
            if self._slots is None:
                self._allocate(0, np.dtype(np.float64))  # re-typed by the first step if need be
            return
        if not present:
            self._slots = self._scalars = None
            return
        n, dt = buffers[0].shape[0], buffers[0].dtype
        if self._slots is None or self._slots.shape != (len(names), n) or self._slots.dtype != dt:
            self._allocate(n, dt)
        for i, b in enumerate(buffers):
            self._slots[i] = b
        for j, value in enumerate(scalars):
            self._scalars[j] = value

    # --- stepping -----------------------------------------------------------------------------

    def lr_at(self, step_index: int) -> float:
        """The float lr, or the schedule's value, for the step whose 0-based index is step_index
        (the number of steps taken before it). lr_scale is not included: the step uses
        lr_at(i) * lr_scale."""
        lr = self._lr
        if not callable(lr):
            return lr
        value = lr(step_index)
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Real)
            or not (math.isfinite(value) and value >= 0.0)
        ):
            raise ValueError(
                f"{type(self).__name__}: the lr schedule {lr!r} gave {value!r} at "
                f"step {step_index}; a learning rate must be finite and >= 0"
            )
        return float(value)

    def _ensure_state(self, params: np.ndarray) -> None:
        """Allocate state for params on first use; re-type the empty slots of a kind that keeps
        no per-element state (nothing is lost)."""
        if self._slots is None:
            self._allocate(params.shape[0], params.dtype)
        elif not self._names and self._slots.dtype != params.dtype:
            self._allocate(0, params.dtype)

    def _check_state_fits(self, params: np.ndarray) -> None:
        slots = self._slots
        if slots is None or not self._names:
            return
        if slots.dtype != params.dtype or slots.shape[1] != params.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: its state was made for {slots.shape[1]} elements of "
                f"{slots.dtype}, params has {params.shape[0]} of {params.dtype}; call "
                f"init(n, dtype) or use a new optimizer"
            )

    def _check_params(self, params) -> None:
        _check_buffer("params", params)
        if not params.flags.writeable:
            raise ValueError("params must be writable (the step updates it in place)")

    def _check_pair(self, params, grads) -> None:
        if isinstance(params, np.ndarray) and isinstance(grads, np.ndarray):
            pf, dt = params.flags, params.dtype
            if (
                dt in _FLOAT_DTYPES
                and grads.dtype == dt
                and params.ndim == 1
                and grads.shape == params.shape
                and pf.c_contiguous
                and pf.writeable
                and grads.flags.c_contiguous
            ):
                return  # the common case, checked in one go
        self._check_params(params)
        _check_buffer("grads", grads)
        if grads.dtype != params.dtype:
            raise TypeError(f"grads dtype {grads.dtype} differs from params dtype {params.dtype}")
        raise ValueError(f"grads has {grads.shape[0]} elements, params {params.shape[0]}")

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        """One step in place on `params` (1-D, contiguous, writable, float32 or float64) from
        `grads` (same shape and dtype, read only). State is allocated on the first step."""
        self._check_pair(params, grads)
        self._check_state_fits(params)
        lr = self.lr_at(self._step) * self._lr_scale
        self._ensure_state(params)
        big = self.parallel_min_size is not None and params.shape[0] >= self.parallel_min_size
        kernel = _k.optimizer_step_parallel if big else _k.optimizer_step
        kernel(self.kind, params, grads, self._slots, self._scalars, self._hyper, self._step + 1, lr)
        self._step += 1

    def prepare(self, params: np.ndarray):
        """Check params, allocate state on first use, and return (kind, slots, scalars, hyper) for
        `optimizer_step` in a compiled loop; slots and scalars are the live state."""
        self._check_params(params)
        self._check_state_fits(params)
        self._ensure_state(params)
        return self.kind, self._slots, self._scalars, self._hyper

    def advance(self, n_steps: int) -> None:
        """Record that a compiled loop ran n_steps steps on the prepared state (negative to
        rewind, after restoring the state arrays)."""
        if isinstance(n_steps, (bool, np.bool_)) or not isinstance(n_steps, numbers.Integral):
            raise TypeError(f"n_steps must be an int, got {n_steps!r}")
        if self._slots is None:
            raise ValueError("advance() before prepare(): the optimizer has no state yet")
        if self._step + n_steps < 0:
            raise ValueError(f"advance({n_steps}) would take the step count below 0 (it is {self._step})")
        self._step += int(n_steps)


def _maximize(hp) -> float:
    return 1.0 if hp.get("maximize") else 0.0


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay
    (torch.optim.SGD).

        g <- grad + weight_decay * p                      (the second term when weight_decay != 0)
        if momentum != 0:
            b <- g                                        at the first step (torch's fresh buffer)
            b <- momentum * b + (1 - dampening) * g       afterwards
            g <- g + momentum * b   if nesterov, else  g <- b
        p <- p - lr * g

    maximize=True uses -grad. State: momentum_buffer (only with momentum).
    """

    kind = _k.SGD
    _State = SGDState
    _spec = (
        ("momentum", "nonneg", 0.0),
        ("dampening", "real", 0.0),
        ("weight_decay", "nonneg", 0.0),
        ("nesterov", "flag", False),
    )
    _extra = (("maximize", "flag", False),)

    def __init__(
        self,
        lr: float | Schedule = 1e-3,
        *,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
    ):
        super().__init__(
            lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )

    def _validate(self, hp):
        if hp["nesterov"] and (hp["momentum"] <= 0.0 or hp["dampening"] != 0.0):
            raise ValueError("SGD: nesterov=True requires momentum > 0 and dampening = 0")

    def _pack(self, hp):
        return [hp["momentum"], hp["dampening"], hp["weight_decay"], float(hp["nesterov"]), _maximize(hp)]

    def _slot_names(self):
        return ["momentum_buffer"] if self._hp["momentum"] != 0.0 else []


class Adam(Optimizer):
    """Adam (torch.optim.Adam); with decoupled_weight_decay=True it is AdamW.

        t <- t + 1
        g <- grad + weight_decay * p                      (coupled weight decay, when != 0)
        m <- m + (1 - beta1) * (g - m)                    (torch's lerp: beta1 m + (1 - beta1) g)
        v <- beta2 * v + (1 - beta2) * g * g
        v_max <- max(v_max, v); use v_max for v below     (amsgrad)
        p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    maximize=True uses -grad. State: exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad).
    """

    kind = _k.ADAM
    _State = AdamState
    _spec = (
        ("betas", "betas", (0.9, 0.999)),
        ("eps", "nonneg", 1e-8),
        ("weight_decay", "nonneg", 0.0),
        ("amsgrad", "flag", False),
    )
    _extra = (("maximize", "flag", False), ("decoupled_weight_decay", "flag", False))

    def __init__(
        self,
        lr: float | Schedule = 1e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ):
        super().__init__(
            lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        if self._hp["decoupled_weight_decay"]:
            object.__setattr__(self, "kind", _k.ADAMW)

    def _pack(self, hp):
        b1, b2 = hp["betas"]
        return [b1, b2, hp["eps"], hp["weight_decay"], float(hp["amsgrad"]), _maximize(hp)]

    def _slot_names(self):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if self._hp["amsgrad"] else [])


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): Adam whose weight decay shrinks p directly instead of entering g.

        t <- t + 1
        p <- p * (1 - lr * weight_decay)
        m, v, v_max and the update of p: as Adam, with g = grad

    maximize=True uses -grad. State: exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad).
    """

    _spec = (
        ("betas", "betas", (0.9, 0.999)),
        ("eps", "nonneg", 1e-8),
        ("weight_decay", "nonneg", 1e-2),
        ("amsgrad", "flag", False),
    )
    _extra = (("maximize", "flag", False),)

    def __init__(
        self,
        lr: float | Schedule = 1e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ):
        Optimizer.__init__(
            self, lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize
        )
        object.__setattr__(self, "kind", _k.ADAMW)


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop), optionally centered and with momentum.

        g <- grad + weight_decay * p                      (when weight_decay != 0)
        s <- alpha * s + (1 - alpha) * g * g
        centered:  a <- a + (1 - alpha) * (g - a);  d <- sqrt(s - a * a) + eps
        otherwise: d <- sqrt(s) + eps
        momentum > 0: b <- momentum * b + g / d;  p <- p - lr * b
        otherwise:    p <- p - lr * g / d

    maximize=True uses -grad. State: square_avg, momentum_buffer (momentum > 0), grad_avg
    (centered).
    """

    kind = _k.RMSPROP
    _State = RMSpropState
    _spec = (
        ("alpha", "nonneg", 0.99),
        ("eps", "nonneg", 1e-8),
        ("weight_decay", "nonneg", 0.0),
        ("momentum", "nonneg", 0.0),
        ("centered", "flag", False),
    )
    _extra = (("maximize", "flag", False),)

    def __init__(
        self,
        lr: float | Schedule = 1e-2,
        *,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
    ):
        super().__init__(
            lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )

    def _pack(self, hp):
        return [
            hp["alpha"],
            hp["eps"],
            hp["weight_decay"],
            hp["momentum"],
            float(hp["centered"]),
            _maximize(hp),
        ]

    def _slot_names(self):
        names = ["square_avg"]
        if self._hp["momentum"] > 0.0:
            names.append("momentum_buffer")
        if self._hp["centered"]:
            names.append("grad_avg")
        return names


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad).

        g <- grad + weight_decay * p                      (when weight_decay != 0)
        s <- s + g * g                                    (s starts at initial_accumulator_value)
        p <- p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)

    maximize=True uses -grad. State: sum.
    """

    kind = _k.ADAGRAD
    _State = AdagradState
    _spec = (
        ("lr_decay", "nonneg", 0.0),
        ("weight_decay", "nonneg", 0.0),
        ("initial_accumulator_value", "nonneg", 0.0),
        ("eps", "nonneg", 1e-10),
    )
    _extra = (("maximize", "flag", False),)

    def __init__(
        self,
        lr: float | Schedule = 1e-2,
        *,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
    ):
        super().__init__(
            lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )

    def _pack(self, hp):
        return [hp["lr_decay"], hp["weight_decay"], hp["eps"], _maximize(hp)]

    def _slot_names(self):
        return ["sum"]

    def _slot_init(self, name):
        return self._hp["initial_accumulator_value"]


class Adadelta(Optimizer):
    """Adadelta (torch.optim.Adadelta).

        g <- grad + weight_decay * p                      (when weight_decay != 0)
        s <- rho * s + (1 - rho) * g * g
        d <- sqrt(u + eps) / sqrt(s + eps) * g
        u <- rho * u + (1 - rho) * d * d
        p <- p - lr * d

    maximize=True uses -grad. State: square_avg (s), acc_delta (u).
    """

    kind = _k.ADADELTA
    _State = AdadeltaState
    _spec = (("rho", "unit", 0.9), ("eps", "nonneg", 1e-6), ("weight_decay", "nonneg", 0.0))
    _extra = (("maximize", "flag", False),)

    def __init__(
        self,
        lr: float | Schedule = 1.0,
        *,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ):
        super().__init__(lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)

    def _pack(self, hp):
        return [hp["rho"], hp["eps"], hp["weight_decay"], _maximize(hp)]

    def _slot_names(self):
        return ["square_avg", "acc_delta"]


class Adamax(Optimizer):
    """Adamax, Adam with the infinity norm (torch.optim.Adamax).

        t <- t + 1
        g <- grad + weight_decay * p                      (when weight_decay != 0)
        m <- m + (1 - beta1) * (g - m)
        u <- max(beta2 * u, |g| + eps)
        p <- p - (lr / (1 - beta1^t)) * m / u

    maximize=True uses -grad. State: exp_avg (m), exp_inf (u).
    """

    kind = _k.ADAMAX
    _State = AdamaxState
    _spec = (("betas", "betas", (0.9, 0.999)), ("eps", "nonneg", 1e-8), ("weight_decay", "nonneg", 0.0))
    _extra = (("maximize", "flag", False),)

    def __init__(
        self,
        lr: float | Schedule = 2e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)

    def _pack(self, hp):
        b1, b2 = hp["betas"]
        return [b1, b2, hp["eps"], hp["weight_decay"], _maximize(hp)]

    def _slot_names(self):
        return ["exp_avg", "exp_inf"]


class NAdam(Optimizer):
    """NAdam, Adam with Nesterov momentum (torch.optim.NAdam).

        t <- t + 1
        g <- grad + weight_decay * p                      (or, decoupled_weight_decay=True:
                                                           p <- p * (1 - lr * weight_decay))
        mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)), mu_{t+1} likewise
        P <- P * mu_t                                     (mu_product, starts at 1)
        m <- m + (1 - beta1) * (g - m)
        v <- beta2 * v + (1 - beta2) * g * g
        d <- sqrt(v / (1 - beta2^t)) + eps
        p <- p - lr * (1 - mu_t) / (1 - P) * g / d
        p <- p - lr * mu_{t+1} / (1 - P * mu_{t+1}) * m / d

    maximize=True uses -grad. State: exp_avg, exp_avg_sq, mu_product.
    """

    kind = _k.NADAM
    _State = NAdamState
    _spec = (
        ("betas", "betas", (0.9, 0.999)),
        ("eps", "nonneg", 1e-8),
        ("weight_decay", "nonneg", 0.0),
        ("momentum_decay", "nonneg", 4e-3),
    )
    _extra = (("decoupled_weight_decay", "flag", False), ("maximize", "flag", False))
    _scalar_init = {"mu_product": 1.0}

    def __init__(
        self,
        lr: float | Schedule = 2e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
    ):
        super().__init__(
            lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )

    def _pack(self, hp):
        b1, b2 = hp["betas"]
        return [
            b1,
            b2,
            hp["eps"],
            hp["weight_decay"],
            hp["momentum_decay"],
            float(hp["decoupled_weight_decay"]),
            _maximize(hp),
        ]

    def _slot_names(self):
        return ["exp_avg", "exp_avg_sq"]


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "adadelta": Adadelta,
    "adamax": Adamax,
    "nadam": NAdam,
}


def get(name_or_optimizer: str | Optimizer | type[Optimizer], lr=None) -> Optimizer:
    """An optimizer from its name ("sgd", "adam", ..., case-insensitive; lr=None keeps the
    optimizer's default), a class (instantiated), or an Optimizer (returned as is; pass no lr)."""
    if isinstance(name_or_optimizer, Optimizer):
        if lr is not None:
            raise ValueError("lr applies to an optimizer given by name; set opt.lr on an optimizer instance")
        return name_or_optimizer
    if isinstance(name_or_optimizer, type) and issubclass(name_or_optimizer, Optimizer):
        cls = name_or_optimizer
    elif isinstance(name_or_optimizer, str):
        cls = OPTIMIZERS.get(name_or_optimizer.strip().lower())
        if cls is None:
            raise ValueError(
                f"unknown optimizer {name_or_optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
    else:
        raise TypeError(
            f"optimizer must be a name ({', '.join(OPTIMIZERS)}) or an Optimizer, "
            f"got {type(name_or_optimizer).__name__}"
        )
    return cls() if lr is None else cls(lr)
