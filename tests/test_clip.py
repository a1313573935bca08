"""Gradient clipping: torch's formula by hand and against torch.nn.utils; the kernels from @njit."""

import math

import numba
import numpy as np
import pytest

from fastbp import clip
from fastbp._kernels.cpu import optim as K


def grads(n=1001, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.0, 1.0, 10.0, 1e3])
def test_clip_grad_norm_formula(dtype, max_norm):
    g = grads(dtype=dtype)
    total = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
    coef = min(max_norm / (total + 1e-6), 1.0)
    expected = g.astype(np.float64) * coef
    before = g.copy()
    got = clip.clip_grad_norm(g, max_norm)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    assert got == pytest.approx(total, rel=rtol)
    assert isinstance(got, float) and g.dtype == dtype
    np.testing.assert_allclose(g, expected, rtol=rtol, atol=0)
    if coef == 1.0:
        assert np.array_equal(g, before)  # under the limit: untouched


@pytest.mark.parametrize("p", [1.0, 3.0, math.inf, "inf", 0.5])
def test_other_norms(p):
    g = grads()
    q = float(p)
    total = np.max(np.abs(g)) if math.isinf(q) else np.sum(np.abs(g) ** q) ** (1 / q)
    assert clip.clip_grad_norm(g, 1.0, norm_type=p) == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(np.linalg.norm(g, q), min(1.0, 1.0 / (total + 1e-6)) * total, rtol=1e-12)


def test_float32_norm_keeps_its_accuracy_on_long_buffers():
    g = grads(n=2_000_003, dtype=np.float32, seed=1)
    exact = math.sqrt(float(np.sum(g.astype(np.float64) ** 2)))
    assert abs(K.grad_norm(g) - exact) / exact < 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [2.0, 1.0, math.inf])
def test_clip_grad_norm_equals_torch(dtype, p):
    torch = pytest.importorskip("torch")
    g = grads(dtype=np.dtype(dtype)) * 3.0
    t = torch.nn.Parameter(torch.zeros(g.size, dtype=getattr(torch, dtype)))
    t.grad = torch.from_numpy(g.copy())
    expected_total = float(torch.nn.utils.clip_grad_norm_([t], 5.0, norm_type=p))
    total = clip.clip_grad_norm(g, 5.0, norm_type=p)
    rtol = 1e-6 if dtype == "float32" else 1e-13
    assert total == pytest.approx(expected_total, rel=rtol)
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol, atol=1e-7 if dtype == "float32" else 0)


def test_clip_grad_value_equals_torch_and_keeps_nan():
    g = grads() * 3.0
    g[5] = np.nan
    expected = np.clip(g, -1.5, 1.5)
    clip.clip_grad_value(g, 1.5)
    np.testing.assert_array_equal(g, expected)
    assert np.isnan(g[5])
    torch = pytest.importorskip("torch")
    t = torch.nn.Parameter(torch.zeros(g.size, dtype=torch.float64))
    t.grad = torch.from_numpy(grads() * 3.0)
    torch.nn.utils.clip_grad_value_([t], 1.5)
    h = grads() * 3.0
    clip.clip_grad_value(h, 1.5)
    np.testing.assert_array_equal(h, t.grad.numpy())


def test_nonfinite_norm():
    g = grads(n=10)
    g[3] = np.inf
    g[4] = np.nan
    before = g.copy()
    with pytest.raises(RuntimeError, match="non-finite|cannot be clipped"):
        clip.clip_grad_norm(g, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(g, before)
    assert math.isnan(clip.clip_grad_norm(g, 1.0))
    assert np.isnan(g).all()  # scaled by NaN, as torch does


def test_kernels_run_inside_njit():
    @numba.njit(cache=False)
    def clip_inside(g, max_norm):
        total = K.grad_norm(g)
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            K.scale_(g, coef)
        K.clip_value_(g, 0.1)
        return total

    g, h = grads(), grads()
    total = clip_inside(g, 1.0)
    assert total == clip.clip_grad_norm(h, 1.0)
    clip.clip_grad_value(h, 0.1)
    np.testing.assert_array_equal(g, h)


def _bad():
    ro = grads()
    ro.flags.writeable = False
    return [
        ((list(grads()), 1.0), {}, TypeError, "numpy array"),
        ((np.arange(5), 1.0), {}, TypeError, "float32 or float64"),
        ((grads().reshape(7, 143), 1.0), {}, ValueError, "1-D"),
        ((grads()[::2], 1.0), {}, ValueError, "contiguous"),
        ((ro, 1.0), {}, ValueError, "writable"),
        ((grads(), -1.0), {}, ValueError, "max_norm"),
        ((grads(), float("nan")), {}, ValueError, "max_norm"),
        ((grads(), "1"), {}, TypeError, "max_norm"),
        ((grads(), 1.0), {"norm_type": 0}, ValueError, "norm_type"),
        ((grads(), 1.0), {"norm_type": -2.0}, ValueError, "norm_type"),
        ((grads(), 1.0), {"norm_type": "l2"}, TypeError, "norm_type"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_clip_grad_norm_bad_input_changes_nothing(case):
    args, kwargs, error, message = _bad()[case]
    before = np.array(args[0], copy=True)
    with pytest.raises(error, match=message):
        clip.clip_grad_norm(*args, **kwargs)
    np.testing.assert_array_equal(np.asarray(args[0]), before)


@pytest.mark.parametrize(
    ("value", "error"), [(-0.5, ValueError), (float("nan"), ValueError), (None, TypeError)]
)
def test_clip_grad_value_bad_input(value, error):
    g = grads()
    before = g.copy()
    with pytest.raises(error, match="clip_value"):
        clip.clip_grad_value(g, value)
    np.testing.assert_array_equal(g, before)
