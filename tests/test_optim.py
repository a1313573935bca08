"""Optimizers: every rule against a plain NumPy transcription of its docstring and against
torch.optim; loss goes down on a parabola and on Rosenbrock; state round trips; bad inputs."""

import math

import numba
import numpy as np
import pytest

from fastbp import optim
from fastbp._kernels.cpu import optim as K

N = 37  # odd: the vectorized body and its scalar remainder both run


# --- problems -------------------------------------------------------------------------------------


def parabola(x):
    a = np.linspace(0.5, 3.0, x.size)
    return 0.5 * float(np.sum(a * x * x)), a * x


def rosenbrock(x):
    d = x[1:] - x[:-1] ** 2
    f = float(np.sum(100.0 * d * d + (1.0 - x[:-1]) ** 2))
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * d - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * d
    return f, g


def start(n=N, dtype=np.float64):
    x = np.linspace(-1.2, 1.1, n)
    return x.astype(dtype)


# --- the documented rules, transcribed into NumPy (one step, state in a dict) ---------------------


def numpy_step(name, hp, st, p, grad, t, lr):
    """One step of the rule written in each optimizer's docstring; mutates p and st."""
    g = -grad if hp.get("maximize") else grad.copy()
    wd = hp.get("weight_decay", 1e-2 if name == "adamw" else 0.0)
    decoupled = name == "adamw" or hp.get("decoupled_weight_decay", False)
    if wd and decoupled:
        p *= 1.0 - lr * wd
    elif wd:
        g = g + wd * p
    if name == "sgd":
        mom = hp.get("momentum", 0.0)
        if mom:
            if t == 1:
                st["b"] = g.copy()
            else:
                st["b"] = mom * st["b"] + (1.0 - hp.get("dampening", 0.0)) * g
            g = g + mom * st["b"] if hp.get("nesterov") else st["b"]
        p -= lr * g
    elif name in ("adam", "adamw"):
        b1, b2 = hp.get("betas", (0.9, 0.999))
        eps = hp.get("eps", 1e-8)
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        v = st["v"]
        if hp.get("amsgrad"):
            st["vmax"] = np.maximum(st["vmax"], st["v"])
            v = st["vmax"]
        p -= (lr / (1 - b1**t)) * st["m"] / (np.sqrt(v) / math.sqrt(1 - b2**t) + eps)
    elif name == "rmsprop":
        alpha, eps, mom = hp.get("alpha", 0.99), hp.get("eps", 1e-8), hp.get("momentum", 0.0)
        st["s"] = alpha * st["s"] + (1 - alpha) * g * g
        if hp.get("centered"):
            st["a"] = alpha * st["a"] + (1 - alpha) * g
            d = np.sqrt(st["s"] - st["a"] ** 2) + eps
        else:
            d = np.sqrt(st["s"]) + eps
        if mom > 0:
            st["b"] = mom * st["b"] + g / d
            p -= lr * st["b"]
        else:
            p -= lr * g / d
    elif name == "adagrad":
        st["s"] = st["s"] + g * g
        clr = lr / (1 + (t - 1) * hp.get("lr_decay", 0.0))
        p -= clr * g / (np.sqrt(st["s"]) + hp.get("eps", 1e-10))
    elif name == "adadelta":
        rho, eps = hp.get("rho", 0.9), hp.get("eps", 1e-6)
        st["s"] = rho * st["s"] + (1 - rho) * g * g
        d = np.sqrt(st["u"] + eps) / np.sqrt(st["s"] + eps) * g
        st["u"] = rho * st["u"] + (1 - rho) * d * d
        p -= lr * d
    elif name == "adamax":
        b1, b2 = hp.get("betas", (0.9, 0.999))
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["u"] = np.maximum(b2 * st["u"], np.abs(g) + hp.get("eps", 1e-8))
        p -= (lr / (1 - b1**t)) * st["m"] / st["u"]
    elif name == "nadam":
        b1, b2 = hp.get("betas", (0.9, 0.999))
        eps, psi = hp.get("eps", 1e-8), hp.get("momentum_decay", 4e-3)
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        st["P"] = st.get("P", 1.0) * mu
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        d = np.sqrt(st["v"] / (1 - b2**t)) + eps
        p -= lr * (1 - mu) / (1 - st["P"]) * g / d
        p -= lr * mu_next / (1 - st["P"] * mu_next) * st["m"] / d
    else:
        raise AssertionError(name)


def numpy_state(name, hp, n):
    z = np.zeros(n)
    st = {
        "m": z.copy(),
        "v": z.copy(),
        "vmax": z.copy(),
        "s": z.copy(),
        "a": z.copy(),
        "b": z.copy(),
        "u": z.copy(),
    }
    if name == "adagrad":
        st["s"] += hp.get("initial_accumulator_value", 0.0)
    return st


# (name, hyper-parameters, lr on the parabola, lr on Rosenbrock)
CASES = [
    ("sgd", {}, 0.3, 3e-4),
    ("sgd", {"momentum": 0.9}, 0.03, 1e-4),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, 0.03, 1e-4),
    ("sgd", {"momentum": 0.5, "dampening": 0.3, "maximize": True}, 0.1, 1e-4),
    ("adam", {}, 0.1, 0.03),
    ("adam", {"amsgrad": True, "weight_decay": 1e-2, "betas": (0.8, 0.99)}, 0.1, 0.03),
    ("adam", {"decoupled_weight_decay": True, "weight_decay": 0.1}, 0.1, 0.03),
    ("adamw", {}, 0.1, 0.03),
    ("adamw", {"amsgrad": True, "weight_decay": 0.3, "eps": 1e-6}, 0.1, 0.03),
    ("rmsprop", {}, 0.03, 0.01),
    ("rmsprop", {"centered": True, "momentum": 0.5, "weight_decay": 1e-3}, 0.01, 3e-3),
    ("rmsprop", {"momentum": 0.9, "alpha": 0.9, "maximize": True}, 3e-3, 3e-3),
    ("adagrad", {}, 1.0, 0.3),
    ("adagrad", {"lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 1e-3}, 1.0, 0.3),
    ("adadelta", {}, 3.0, 3.0),
    ("adadelta", {"rho": 0.5, "eps": 1e-4, "weight_decay": 1e-3}, 0.3, 0.3),
    ("adamax", {}, 0.1, 0.03),
    ("adamax", {"betas": (0.5, 0.9), "weight_decay": 1e-3}, 0.1, 0.03),
    ("nadam", {}, 0.1, 0.03),
    ("nadam", {"momentum_decay": 0.01, "weight_decay": 1e-2}, 0.1, 0.03),
    ("nadam", {"decoupled_weight_decay": True, "weight_decay": 0.1}, 0.1, 0.03),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in hp.items()) or 'default'}" for name, hp, _, _ in CASES]
PROBLEMS = {"parabola": (parabola, 2), "rosenbrock": (rosenbrock, 3)}


def make(name, hp, lr):
    return optim.OPTIMIZERS[name](lr, **hp)


def run(opt, fn, x, steps, sign=1.0):
    """`steps` steps of opt on fn from x (in place); the loss after each."""
    losses = []
    for _ in range(steps):
        _, g = fn(x.astype(np.float64))
        opt.step(x, (sign * g).astype(x.dtype))
        losses.append(fn(x.astype(np.float64))[0])
    return losses


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize(("name", "hp", "lr_parabola", "lr_rosen"), CASES, ids=IDS)
def test_loss_goes_down(name, hp, lr_parabola, lr_rosen, problem):
    fn, _ = PROBLEMS[problem]
    lr = lr_parabola if problem == "parabola" else lr_rosen
    x = start()
    initial = fn(x)[0]
    # maximize=True climbs: give it the negated gradient so that it too descends the loss.
    sign = -1.0 if hp.get("maximize") else 1.0
    losses = run(make(name, hp, lr), fn, x, 200, sign)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.2 * initial, (initial, losses[::20])


def lockstep(name, hp, lr, other_step, steps=50, dtype=np.float64):
    """Run fastbp's optimizer on Rosenbrock and feed the same gradient stream (taken at fastbp's
    iterate) to `other_step(grad, t)`, which returns the other implementation's parameters; yield
    both after each step. A shared stream keeps the problem's own sensitivity out of the
    comparison: what is compared is the update rule."""
    x = start(dtype=dtype)
    opt = make(name, hp, lr)
    sign = -1.0 if hp.get("maximize") else 1.0  # maximize climbs: descend all the same
    for t in range(1, steps + 1):
        g = (sign * rosenbrock(x.astype(np.float64))[1]).astype(dtype)
        grads = g.copy()
        opt.step(x, grads)
        assert np.array_equal(grads, g), "step wrote grads"
        yield t, x, other_step(g, t)
    assert opt.state.step == steps


@pytest.mark.parametrize(("name", "hp", "lr_parabola", "lr_rosen"), CASES, ids=IDS)
def test_trajectory_equals_numpy_transcription(name, hp, lr_parabola, lr_rosen):
    ref, st = start(), numpy_state(name, hp, N)

    def numpy_rule(g, t):
        numpy_step(name, hp, st, ref, g, t, lr_rosen)
        return ref

    for t, x, expected in lockstep(name, hp, lr_rosen, numpy_rule):
        np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-15, err_msg=f"step {t}")


TORCH_NAMES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adamax": "Adamax",
    "nadam": "NAdam",
}


def torch_rule(torch, name, hp, lr, dtype):
    p = torch.tensor(start(dtype=dtype))
    opt = getattr(torch.optim, TORCH_NAMES[name])([p], lr=lr, foreach=False, **hp)

    def step(g, t):
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        return p.numpy()

    return step


@pytest.mark.parametrize(("name", "hp", "lr_parabola", "lr_rosen"), CASES, ids=IDS)
def test_trajectory_equals_torch(name, hp, lr_parabola, lr_rosen):
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch keeps step and mu_product in the default dtype
    try:
        other = torch_rule(torch, name, hp, lr_rosen, np.float64)
        for t, x, expected in lockstep(name, hp, lr_rosen, other):
            np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-15, err_msg=f"step {t}")
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize(("name", "hp", "lr_parabola", "lr_rosen"), CASES[::2], ids=IDS[::2])
def test_float32_follows_torch_float32(name, hp, lr_parabola, lr_rosen):
    torch = pytest.importorskip("torch")
    other = torch_rule(torch, name, hp, lr_rosen, np.float32)
    for t, x, expected in lockstep(name, hp, lr_rosen, other, steps=20, dtype=np.float32):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6, err_msg=f"step {t}")


@pytest.mark.parametrize(("name", "hp", "lr_parabola", "lr_rosen"), CASES, ids=IDS)
def test_state_dict_round_trip_continues_identically(name, hp, lr_parabola, lr_rosen):
    x = start()
    opt = make(name, hp, lr_rosen)
    run(opt, rosenbrock, x, 7)
    saved = {k: v.copy() for k, v in opt.state_dict().items()}
    y = x.copy()
    run(opt, rosenbrock, x, 8)

    fresh = make(name, hp, 123.0)  # the saved float lr replaces this one
    fresh.load_state_dict(saved)
    assert fresh.state.step == 7 and fresh.lr == lr_rosen
    run(fresh, rosenbrock, y, 8)
    assert np.array_equal(x, y)
    for a, b in zip(opt.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert np.array_equal(a, b)


def test_state_dict_is_plain_arrays_and_load_copies_in_place():
    opt = optim.NAdam(1e-3)
    x = start()
    kind, slots, scalars, hyper = opt.prepare(x)
    run(opt, rosenbrock, x, 3)
    d = opt.state_dict()
    assert set(d) == {"kind", "step", "lr_scale", "lr", "exp_avg", "exp_avg_sq", "mu_product"}
    assert all(isinstance(v, np.ndarray) for v in d.values())
    d["exp_avg"][:] = 0.0  # a copy: the live state is untouched
    assert np.any(opt.state.exp_avg != 0.0)
    opt.load_state_dict(d)
    assert opt.state.exp_avg is not None and np.all(slots[0] == 0.0)  # same live arrays
    assert scalars[0] == float(d["mu_product"])


def test_reset_repeats_the_trajectory():
    opt = optim.Adam(1e-2, amsgrad=True)
    x = start()
    first = run(opt, rosenbrock, x.copy(), 5)
    opt.reset()
    assert opt.state.step == 0 and not opt.state.exp_avg.any()
    assert run(opt, rosenbrock, x.copy(), 5) == first
    ada = optim.Adagrad(initial_accumulator_value=0.25)
    run(ada, parabola, start(), 2)
    ada.reset()
    assert np.all(ada.state.sum == 0.25)


@numba.njit(cache=False)
def _compiled_loop(kind, params, grads, slots, scalars, hyper, first_step, lrs):
    for i in range(lrs.shape[0]):
        K.optimizer_step(kind, params, grads, slots, scalars, hyper, first_step + i, lrs[i])


def test_compiled_kernel_matches_step_and_runs_inside_njit():
    g = parabola(start())[1]
    a, b = start(), start()
    one = optim.NAdam(lr=lambda s: 0.01 / (1 + s))
    for _ in range(6):
        one.step(a, g)
    other = optim.NAdam(lr=lambda s: 0.01 / (1 + s))
    kind, slots, scalars, hyper = other.prepare(b)
    lrs = np.array([other.lr_at(s) * other.lr_scale for s in range(6)])
    _compiled_loop(kind, b, g, slots, scalars, hyper, other.state.step + 1, lrs)
    other.advance(6)
    assert np.array_equal(a, b)
    assert other.state.step == 6
    assert float(other.state.mu_product[0]) == float(one.state.mu_product[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "hp", "lr_parabola", "lr_rosen"), CASES, ids=IDS)
def test_scaled_step_equals_clip_then_step(name, hp, lr_parabola, lr_rosen, dtype):
    a, b = start(dtype=dtype), start(dtype=dtype)
    one, other = make(name, hp, lr_rosen), make(name, hp, lr_rosen)
    kind, slots, scalars, hyper = other.prepare(b)
    for t in range(1, 4):
        g = rosenbrock(a.astype(np.float64))[1].astype(dtype)
        coef = 0.5 / (K.grad_norm(g) + 1e-6)
        clipped = g.copy()
        K.scale_(clipped, coef)
        one.step(a, clipped)
        before = g.copy()
        K.optimizer_step_scaled(kind, b, g, slots, scalars, hyper, t, lr_rosen, coef)
        assert np.array_equal(g, before)
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "hp", "lr_parabola", "lr_rosen"), CASES, ids=IDS)
def test_step_entry_through_its_address_equals_the_switch(name, hp, lr_parabola, lr_rosen, dtype):
    """The compiled training loops step through the rule's entry (K.step_address): the switch's
    step, in params, every state slot and NAdam's mu_product, clipping factor included, up to the
    multiply-adds fast-math fuses differently in two compilations of the same loop (1 ulp seen,
    float32 SGD with momentum; bit for bit in most builds, so the tolerance is a few ulps)."""
    eps = float(np.finfo(dtype).eps)

    def close(x, y):
        np.testing.assert_allclose(x, y, rtol=8 * eps, atol=8 * eps * float(np.abs(y).max(initial=1.0)))

    a, b = start(dtype=dtype), start(dtype=dtype)
    one, other = make(name, hp, lr_rosen), make(name, hp, lr_rosen)
    kind, slots_a, scalars_a, hyper = one.prepare(a)
    _, slots_b, scalars_b, _ = other.prepare(b)
    step_fn = K.step_address(kind, dtype)
    for t in range(1, 5):
        g = rosenbrock(a.astype(np.float64))[1].astype(dtype)
        coef = 0.5 / (K.grad_norm(g) + 1e-6) if t % 2 else 1.0
        K.optimizer_step_scaled(kind, a, g, slots_a, scalars_a, hyper, t, lr_rosen, coef)
        K.optimizer_step_at(step_fn, b, g, slots_b, scalars_b, hyper, t, lr_rosen, coef)
        close(b, a)
        close(slots_b, slots_a)
        close(scalars_b, scalars_a)
    assert not np.array_equal(a, start(dtype=dtype))


@pytest.mark.parametrize(("name", "hp", "lr_parabola", "lr_rosen"), CASES, ids=IDS)
def test_kernel_allocates_nothing_per_step(name, hp, lr_parabola, lr_rosen):
    nrt = pytest.importorskip("numba.core.runtime._nrt_python")
    if not hasattr(nrt, "memsys_enable_stats"):
        pytest.skip("this numba has no NRT allocation statistics")
    opt = make(name, hp, 1e-3)
    x, g = start(), parabola(start())[1]
    kind, slots, scalars, hyper = opt.prepare(x)
    counts = []
    nrt.memsys_enable_stats()
    try:
        for k in (1, 1, 25):  # the first call may allocate while it warms up
            before = nrt.memsys_get_stats_alloc()
            _compiled_loop(kind, x, g, slots, scalars, hyper, 1, np.full(k, 1e-3))
            counts.append(nrt.memsys_get_stats_alloc() - before)
    finally:
        nrt.memsys_disable_stats()
    # Only the arguments crossing into the compiled call are wrapped; 25 steps cost what 1 does.
    assert counts[1] == counts[2], counts


def test_lr_schedule_and_lr_scale():
    x, y = start(), start()
    g = parabola(x)[1]
    opt = optim.SGD(lr=lambda s: 0.1 * (s + 1))
    opt.lr_scale = 0.5
    for s in range(3):
        opt.step(x, g)
        y -= 0.5 * 0.1 * (s + 1) * g
    np.testing.assert_allclose(x, y, rtol=1e-15)
    assert opt.lr_at(4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lr schedule"):
        optim.SGD(lr=lambda s: -1.0).step(x, g)


def test_float32_state_and_no_promotion():
    x = start(dtype=np.float32)
    opt = optim.RMSprop(1e-3, momentum=0.9, centered=True)
    opt.step(x, parabola(x.astype(np.float64))[1].astype(np.float32))
    assert x.dtype == np.float32
    assert {a.dtype for a in opt.state if isinstance(a, np.ndarray)} == {np.dtype(np.float32)}
    assert opt.state_dict()["square_avg"].dtype == np.float32


def test_plain_sgd_keeps_no_per_element_state():
    opt = optim.SGD(0.1)
    kind, slots, scalars, hyper = opt.prepare(start())
    assert kind == K.SGD and slots.shape == (1, 0) and opt.state.momentum_buffer is None
    opt.step(start(dtype=np.float32), np.ones(N, np.float32))  # re-typed: nothing to lose
    d = opt.state_dict()
    fresh = optim.SGD(0.1)
    fresh.load_state_dict(d)
    assert fresh.step_count == 1


def test_get_and_repr():
    assert isinstance(optim.get("ADAM"), optim.Adam)
    assert optim.get(" sgd ", lr=0.5).lr == 0.5
    assert optim.get("nadam").lr == 2e-3
    opt = optim.RMSprop(0.1)
    assert optim.get(opt) is opt
    assert isinstance(optim.get(optim.Adamax), optim.Adamax)
    with pytest.raises(ValueError, match="sgd, adam, adamw, rmsprop, adagrad, adadelta"):
        optim.get("adamm")
    with pytest.raises(TypeError):
        optim.get(3)
    with pytest.raises(ValueError, match="lr"):
        optim.get(opt, lr=0.1)
    assert (
        repr(optim.Adam(0.01, amsgrad=True))
        == "Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0, amsgrad=True)"
    )
    assert "maximize=True" in repr(optim.SGD(maximize=True))
    assert repr(optim.AdamW()).startswith("AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01")
    assert optim.AdamW().kind == K.ADAMW and optim.Adam(decoupled_weight_decay=True).kind == K.ADAMW


def test_defaults_match_torch():
    torch = pytest.importorskip("torch")
    import inspect

    for name, cls in optim.OPTIMIZERS.items():
        ours = inspect.signature(cls).parameters
        theirs = inspect.signature(getattr(torch.optim, TORCH_NAMES[name])).parameters
        for key, param in ours.items():
            assert key in theirs, (name, key)
            assert param.default == theirs[key].default, (name, key)


# --- bad input ------------------------------------------------------------------------------------

BAD_HYPER = [
    (optim.SGD, {"lr": -0.1}, "lr"),
    (optim.SGD, {"lr": float("nan")}, "lr"),
    (optim.SGD, {"momentum": -0.5}, "momentum"),
    (optim.SGD, {"weight_decay": -1e-4}, "weight_decay"),
    (optim.SGD, {"nesterov": True}, "nesterov"),
    (optim.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
    (optim.Adam, {"betas": (1.0, 0.999)}, r"betas\[0\]"),
    (optim.Adam, {"betas": (0.9, -0.1)}, r"betas\[1\]"),
    (optim.Adam, {"betas": (0.9, float("nan"))}, r"betas\[1\]"),
    (optim.Adam, {"eps": -1e-8}, "eps"),
    (optim.AdamW, {"weight_decay": -0.01}, "weight_decay"),
    (optim.RMSprop, {"alpha": -0.1}, "alpha"),
    (optim.RMSprop, {"momentum": -0.1}, "momentum"),
    (optim.Adagrad, {"lr_decay": -1.0}, "lr_decay"),
    (optim.Adagrad, {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    (optim.Adadelta, {"rho": 1.5}, "rho"),
    (optim.Adadelta, {"rho": -0.1}, "rho"),
    (optim.Adamax, {"betas": (0.9, 1.0)}, r"betas\[1\]"),
    (optim.NAdam, {"momentum_decay": -1.0}, "momentum_decay"),
]


@pytest.mark.parametrize(("cls", "kwargs", "name"), BAD_HYPER)
def test_bad_hyper_parameters(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


def test_bad_hyper_parameter_types():
    with pytest.raises(TypeError, match="lr"):
        optim.Adam(lr="0.1")
    with pytest.raises(TypeError, match="betas"):
        optim.Adam(betas=0.9)
    with pytest.raises(TypeError, match="amsgrad"):
        optim.Adam(amsgrad=1)
    with pytest.raises(AttributeError, match="fixed"):
        optim.Adam().eps = 1e-3
    opt = optim.SGD()
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    assert opt.lr == 1e-3


def _bad_pairs():
    x = start()
    ro = start()
    ro.flags.writeable = False
    return [
        ("params", start()[::2], start()[::2].copy(), ValueError, "contiguous"),
        ("params", ro, np.zeros(N), ValueError, "writable"),
        ("params", start().reshape(1, N), np.zeros((1, N)), ValueError, "1-D"),
        ("params", np.arange(N), np.zeros(N, np.int64), TypeError, "float32 or float64"),
        ("params", list(x), np.zeros(N), TypeError, "numpy array"),
        ("grads", start(), np.zeros(N + 1), ValueError, "elements"),
        ("grads", start(), np.zeros(N, np.float32), TypeError, "dtype"),
        ("grads", start(), np.zeros(2 * N)[::2], ValueError, "contiguous"),
        ("grads", start(), None, TypeError, "numpy array"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_step_rejects_bad_buffers_without_change(case):
    what, params, grads, error, message = _bad_pairs()[case]
    opt = optim.Adam(0.1)
    good = start()
    opt.step(good, parabola(good)[1])
    before = {k: v.copy() for k, v in opt.state_dict().items()}
    params_before = np.array(params, copy=True)
    with pytest.raises(error, match=message):
        opt.step(params, grads)
    assert np.array_equal(np.asarray(params), params_before)
    after = opt.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_state_made_for_another_buffer_is_refused():
    opt = optim.Adam()
    opt.step(start(), np.ones(N))
    before = opt.state.exp_avg.copy()
    with pytest.raises(ValueError, match="made for 37 elements"):
        opt.step(start(N + 1), np.ones(N + 1))
    with pytest.raises(ValueError, match="float64"):
        opt.prepare(start(dtype=np.float32))
    assert np.array_equal(opt.state.exp_avg, before) and opt.state.step == 1


def test_bad_state_dicts_are_refused_without_change():
    opt = optim.Adam(amsgrad=True)
    x = start()
    run(opt, parabola, x, 2)
    good = opt.state_dict()
    cases = [
        ({**good, "kind": np.array(K.SGD)}, "'sgd'"),
        ({k: v for k, v in good.items() if k != "max_exp_avg_sq"}, "missing keys"),
        ({**good, "sum": good["exp_avg"]}, "unexpected keys"),
        ({**good, "exp_avg": good["exp_avg"][:-1]}, "differ"),
        ({**good, "step": np.array(-1)}, "step"),
        ({**good, "exp_avg": good["exp_avg"].astype(np.int64)}, "float32 or float64"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(bad)
    now = opt.state_dict()
    assert all(np.array_equal(good[k], now[k]) for k in good)
    with pytest.raises(TypeError):
        opt.load_state_dict([1, 2])


def test_advance_and_prepare_contract():
    opt = optim.Adam()
    with pytest.raises(ValueError, match="prepare"):
        opt.advance(1)
    x = start()
    kind, slots, scalars, hyper = opt.prepare(x)
    assert kind == K.ADAM and slots.shape == (2, N) and hyper.dtype == np.float64
    opt.advance(3)
    opt.advance(-2)
    assert opt.state.step == 1
    with pytest.raises(ValueError, match="below 0"):
        opt.advance(-2)
    with pytest.raises(TypeError):
        opt.advance(1.0)
    opt.init(5, np.float32)
    assert opt.state.step == 0 and opt.state.exp_avg.dtype == np.float32
    with pytest.raises(TypeError, match="dtype"):
        opt.init(5, np.int32)


def test_parallel_kernel_equals_serial():
    n = 3 * K.CHUNK + 5  # several chunks and a short last one
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(n).astype(np.float32)
    serial, parallel = optim.NAdam(1e-2, weight_decay=0.1), optim.NAdam(1e-2, weight_decay=0.1)
    parallel.parallel_min_size = 1
    a, b = x0.copy(), x0.copy()
    for _ in range(3):
        g = rng.standard_normal(n).astype(np.float32)
        serial.step(a, g)
        parallel.step(b, g)
    assert np.array_equal(a, b)
    assert np.array_equal(serial.state.exp_avg_sq, parallel.state.exp_avg_sq)
    assert serial.state.mu_product[0] == parallel.state.mu_product[0]
