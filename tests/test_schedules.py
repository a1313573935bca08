"""Schedules: closed forms by hand, torch.optim.lr_scheduler's numbers, ReduceLROnPlateau, bad input."""

import math

import numpy as np
import pytest

from fastbp import optim, schedules

# --- by hand (runs without torch) -----------------------------------------------------------------


def values(f, n):
    return [f(s) for s in range(n)]


def test_closed_forms_by_hand():
    assert values(schedules.constant(0.3), 3) == [0.3, 0.3, 0.3]
    assert values(schedules.step_decay(1.0, 3, 0.5), 7) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert values(schedules.multistep(1.0, [2, 4, 4], 0.5), 6) == [1, 1, 0.5, 0.5, 0.125, 0.125]
    assert values(schedules.exponential(2.0, 0.5), 4) == [2.0, 1.0, 0.5, 0.25]
    cos = schedules.cosine(1.0, T_max=4, eta_min=0.2)
    assert cos(0) == 1.0 and cos(4) == pytest.approx(0.2) and cos(2) == pytest.approx(0.6)
    assert cos(8) == pytest.approx(1.0)  # rises again past T_max, as torch's does
    warm = schedules.linear_warmup(4, then=schedules.exponential(1.0, 0.5), start_factor=0.25)
    assert values(warm, 7) == [0.25, 0.4375, 0.625, 0.8125, 1.0, 0.5, 0.25]
    assert values(schedules.linear_warmup(0, then=0.1), 2) == [0.1, 0.1]
    one = schedules.one_cycle(1.0, total_steps=10, pct_start=0.3, anneal_strategy="linear")
    assert one(0) == 1.0 / 25 and one(2) == 1.0
    assert one(9) == pytest.approx(1.0 / 25 / 1e4)


def test_schedule_as_optimizer_lr():
    opt = optim.SGD(lr=schedules.step_decay(0.1, 2, 0.1))
    assert [opt.lr_at(s) for s in range(4)] == [0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1]
    x = np.ones(3)
    for _ in range(3):
        opt.step(x, np.ones(3))
    np.testing.assert_allclose(x, 1.0 - 0.1 - 0.1 - 0.01, rtol=1e-15)
    assert "step_decay(0.1, step_size=2, gamma=0.1)" in repr(opt)


# --- torch.optim.lr_scheduler ---------------------------------------------------------------------


def torch_lrs(torch, lr, make_scheduler, n):
    """The lr each of n optimizer steps uses, with scheduler.step() after every optimizer step."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_scheduler(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros(1)
        opt.step()
        sched.step()
    return out


def _cases(S):
    return [
        (
            "step_decay",
            0.1,
            lambda o: S.StepLR(o, step_size=7, gamma=0.3),
            schedules.step_decay(0.1, 7, 0.3),
            40,
        ),
        (
            "multistep",
            0.1,
            lambda o: S.MultiStepLR(o, [3, 10, 10, 25], gamma=0.5),
            schedules.multistep(0.1, [3, 10, 10, 25], 0.5),
            40,
        ),
        ("exponential", 0.5, lambda o: S.ExponentialLR(o, gamma=0.93), schedules.exponential(0.5, 0.93), 60),
        (
            "cosine",
            0.1,
            lambda o: S.CosineAnnealingLR(o, T_max=17, eta_min=1e-3),
            schedules.cosine(0.1, 17, 1e-3),
            60,
        ),
        ("cosine-eta0", 0.3, lambda o: S.CosineAnnealingLR(o, T_max=10), schedules.cosine(0.3, 10), 25),
        (
            "warmup-cosine",
            0.2,
            lambda o: S.SequentialLR(
                o,
                [S.LinearLR(o, start_factor=0.1, total_iters=5), S.CosineAnnealingLR(o, T_max=20)],
                milestones=[5],
            ),
            schedules.linear_warmup(5, then=schedules.cosine(0.2, 20), start_factor=0.1),
            30,
        ),
        (
            "warmup-constant",
            0.2,
            lambda o: S.LinearLR(o, total_iters=6),
            schedules.linear_warmup(6, then=0.2),
            12,
        ),
        (
            "one_cycle",
            0.05,
            lambda o: S.OneCycleLR(o, max_lr=0.7, total_steps=50, cycle_momentum=False),
            schedules.one_cycle(0.7, 50),
            50,
        ),
        (
            "one_cycle-linear-3phase",
            0.05,
            lambda o: S.OneCycleLR(
                o,
                max_lr=0.7,
                total_steps=41,
                pct_start=0.25,
                anneal_strategy="linear",
                three_phase=True,
                div_factor=10.0,
                final_div_factor=100.0,
                cycle_momentum=False,
            ),
            schedules.one_cycle(
                0.7,
                41,
                pct_start=0.25,
                anneal_strategy="linear",
                three_phase=True,
                div_factor=10.0,
                final_div_factor=100.0,
            ),
            41,
        ),
    ]


@pytest.mark.parametrize("case", range(9))
def test_schedules_equal_torch(case):
    torch = pytest.importorskip("torch")
    name, lr, make, ours, n = _cases(torch.optim.lr_scheduler)[case]
    expected = torch_lrs(torch, lr, make, n)
    # torch updates most rates recursively; the closed forms agree up to rounding.
    np.testing.assert_allclose(values(ours, n), expected, rtol=1e-12, atol=1e-15, err_msg=name)


def test_one_cycle_stops_at_total_steps_like_torch():
    f = schedules.one_cycle(1.0, total_steps=10)
    f(10)
    with pytest.raises(ValueError, match="total_steps"):
        f(11)


# --- ReduceLROnPlateau ----------------------------------------------------------------------------

METRICS = [
    1.0,
    0.9,
    0.9,
    0.95,
    0.91,
    0.9,
    0.89995,
    0.8,
    0.8,
    0.8,
    0.8,
    0.8,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
]
PLATEAU = [
    {"patience": 1},
    {"patience": 2, "factor": 0.5, "cooldown": 2},
    {"patience": 0, "factor": 0.5, "min_lr": 0.02},
    {"patience": 1, "threshold": 0.05, "threshold_mode": "abs"},
    {"patience": 1, "mode": "max", "factor": 0.3},
    {"patience": 1, "mode": "max", "threshold_mode": "abs", "eps": 0.05},
]


def our_plateau_lrs(opt, settings, metrics):
    sched = schedules.ReduceLROnPlateau(opt, **settings)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.lr_at(opt.step_count) * opt.lr_scale)
    return out


@pytest.mark.parametrize("settings", PLATEAU)
def test_reduce_on_plateau_equals_torch(settings):
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([p], lr=0.1)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **settings)
    expected = []
    for m in METRICS:
        tsched.step(m)
        expected.append(topt.param_groups[0]["lr"])
    float_lr = optim.SGD(0.1)
    assert our_plateau_lrs(float_lr, settings, METRICS) == expected  # sets lr, as torch does
    assert float_lr.lr_scale == 1.0
    scheduled = optim.SGD(schedules.constant(0.1))
    np.testing.assert_allclose(our_plateau_lrs(scheduled, settings, METRICS), expected, rtol=1e-14)


def test_reduce_on_plateau_by_hand_and_with_a_schedule():
    opt = optim.Adam(lr=schedules.exponential(1.0, 0.5))
    opt.step(np.zeros(2), np.ones(2))  # one step taken: the current rate is 0.5
    sched = schedules.ReduceLROnPlateau(opt, patience=0, factor=0.1, min_lr=0.01)
    sched.step(1.0)
    assert opt.lr_scale == 1.0
    sched.step(2.0)  # worse: reduce
    assert opt.lr_scale == pytest.approx(0.1)
    assert opt.lr_at(2) * opt.lr_scale == pytest.approx(0.025)  # the schedule keeps its shape
    sched.step(3.0)  # 0.005 would fall below min_lr: clamp the current rate to 0.01
    assert opt.lr_at(1) * opt.lr_scale == pytest.approx(0.01)
    resumed = schedules.ReduceLROnPlateau(opt, patience=0)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.best == 1.0 and resumed.last_epoch == 3


# --- bad input ------------------------------------------------------------------------------------

BAD = [
    (lambda: schedules.constant(-1.0), ValueError, "lr"),
    (lambda: schedules.constant(float("nan")), ValueError, "lr"),
    (lambda: schedules.step_decay(0.1, 0), ValueError, "step_size"),
    (lambda: schedules.step_decay(0.1, 2.5), TypeError, "step_size"),
    (lambda: schedules.step_decay(0.1, 2, gamma=-0.1), ValueError, "gamma"),
    (lambda: schedules.multistep(0.1, [3, -1]), ValueError, "milestones"),
    (lambda: schedules.multistep(0.1, 5), TypeError, "milestones"),
    (lambda: schedules.exponential(0.1, float("inf")), ValueError, "gamma"),
    (lambda: schedules.cosine(0.1, 0), ValueError, "T_max"),
    (lambda: schedules.cosine(0.1, 10, eta_min=-1.0), ValueError, "eta_min"),
    (lambda: schedules.linear_warmup(-1, then=0.1), ValueError, "warmup_steps"),
    (lambda: schedules.linear_warmup(5, then=0.1, start_factor=0.0), ValueError, "start_factor"),
    (lambda: schedules.linear_warmup(5, then="x"), TypeError, "then"),
    (lambda: schedules.one_cycle(0.1, 0), ValueError, "total_steps"),
    (lambda: schedules.one_cycle(0.1, 10, pct_start=1.5), ValueError, "pct_start"),
    (lambda: schedules.one_cycle(0.1, 10, anneal_strategy="cosine"), ValueError, "anneal"),
    (lambda: schedules.one_cycle(0.1, 3, pct_start=0.3), ValueError, "phase"),
    (lambda: schedules.one_cycle(0.1, 10, div_factor=0.0), ValueError, "div_factor"),
    (lambda: schedules.ReduceLROnPlateau(optim.SGD(), factor=1.0), ValueError, "factor"),
    (lambda: schedules.ReduceLROnPlateau(optim.SGD(), mode="lower"), ValueError, "mode"),
    (lambda: schedules.ReduceLROnPlateau(optim.SGD(), threshold_mode="x"), ValueError, "threshold_mode"),
    (lambda: schedules.ReduceLROnPlateau(optim.SGD(), patience=-1), ValueError, "patience"),
    (lambda: schedules.ReduceLROnPlateau(optim.SGD(), min_lr=-1.0), ValueError, "min_lr"),
    (lambda: schedules.ReduceLROnPlateau(object()), TypeError, "optimizer"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input(case):
    make, error, message = BAD[case]
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("step", [-1, 1.5, True, "3"])
def test_bad_steps(step):
    with pytest.raises(ValueError, match="step"):
        schedules.cosine(0.1, 10)(step)


def test_plateau_accepts_any_object_with_lr_and_lr_scale():
    class Probe:
        lr = 1.0
        lr_scale = 1.0

    probe = Probe()
    sched = schedules.ReduceLROnPlateau(probe, patience=0, factor=0.5)
    sched.step(1.0)
    sched.step(math.inf)
    assert probe.lr == 0.5
