"""The vectorized float32 transcendental functions: accuracy over the whole range, specials, SIMD,
and the pure-Python path used without the JIT."""

import math
import os
import re
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from conftest import fresh_asm
from scipy.special import erfc, expit

from fastbp import config
from fastbp._kernels.cpu import activations as act
from fastbp._kernels.cpu import fastmath as fm
from fastbp._kernels.jit import njit

FUNCTIONS = {
    "exp": (0, np.exp),
    "expm1": (1, np.expm1),
    "tanh": (2, np.tanh),
    "sigmoid": (3, expit),
    "log1p": (4, np.log1p),
    "erfc": (5, erfc),
}


@njit
def _apply(code, x, out):
    for i in range(x.size):
        v = x[i]
        if code == 0:
            out[i] = fm.fast_exp(v)
        elif code == 1:
            out[i] = fm.fast_expm1(v)
        elif code == 2:
            out[i] = fm.fast_tanh(v)
        elif code == 3:
            out[i] = fm.fast_sigmoid(v)
        elif code == 4:
            out[i] = fm.fast_log1p(v)
        else:
            out[i] = fm.fast_erfc(v)


@njit
def _exp_loop(x, out):
    for i in range(x.size):
        out[i] = fm.fast_exp(x[i])


@njit
def _tanh_loop(x, out):
    for i in range(x.size):
        out[i] = fm.fast_tanh(x[i])


def _grid():
    tiny = np.geomspace(1e-30, 1.0, 3000)
    return np.concatenate([np.linspace(-110, 110, 220_001), tiny, -tiny, [0.0, -0.0]])


# Max relative error against float64 (where the true value is a normal float32): a few ulps
# (float32 eps is 1.19e-7). erfc's bound is looser in its far tail, where float32 rounding of
# -x^2 (|x| near 9: x^2 ~ 80) is amplified by the exponential; for |x| <= 4 it is 2e-6.
BOUNDS = {"exp": 4e-7, "expm1": 4e-7, "tanh": 2.5e-7, "sigmoid": 4e-7, "log1p": 3e-7, "erfc": 1e-5}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_float32_accuracy_over_the_whole_range(name):
    code, reference = FUNCTIONS[name]
    x = _grid()
    if name == "log1p":
        x = np.abs(x[np.abs(x) <= 1.0])  # used on (0, 1] only (softplus's log1p(exp(-|z|)))
    x32 = x.astype(np.float32)
    out = np.empty_like(x32)
    _apply(code, x32, out)
    with np.errstate(all="ignore"):
        expected = reference(x32.astype(np.float64)).astype(np.float32).astype(np.float64)
    normal = np.isfinite(expected) & (np.abs(expected) >= np.finfo(np.float32).tiny)
    rel = np.abs(out[normal] - expected[normal]) / np.abs(expected[normal])
    assert rel.max() <= BOUNDS[name], f"{name}: {rel.max():.3g} at x={x32[normal][rel.argmax()]}"
    assert np.array_equal(np.isfinite(out), np.isfinite(expected))  # overflow exactly where due
    if name == "erfc":
        core = np.abs(x32[normal]) <= 4
        assert rel[core].max() <= 2e-6


def test_special_values():
    special = np.array([np.nan, np.inf, -np.inf, 200.0, -200.0, 0.0], dtype=np.float32)
    expected = {
        "exp": [np.nan, np.inf, 0.0, np.inf, 0.0, 1.0],
        "expm1": [np.nan, np.inf, -1.0, np.inf, -1.0, 0.0],
        "tanh": [np.nan, 1.0, -1.0, 1.0, -1.0, 0.0],
        "sigmoid": [np.nan, 1.0, 0.0, 1.0, 0.0, 0.5],
        "erfc": [np.nan, 0.0, 2.0, 0.0, 2.0, 1.0],
    }
    for name, values in expected.items():
        out = np.empty_like(special)
        _apply(FUNCTIONS[name][0], special, out)
        np.testing.assert_array_equal(out, np.array(values, dtype=np.float32), err_msg=name)
    denormal = np.array([-100.0, -103.0], dtype=np.float32)
    out = np.empty_like(denormal)
    _exp_loop(denormal, out)
    # Denormal results, within one denormal step (1.4e-45) of the correctly rounded value.
    np.testing.assert_allclose(out, np.exp(denormal.astype(np.float64)), rtol=0, atol=1.5e-45)
    assert out[1] > 0


def test_float64_keeps_libm():
    """float64 goes to libm (math.exp / math.tanh are the same C library), not the polynomials."""
    x = np.linspace(-50, 50, 1001)
    out = np.empty_like(x)
    _exp_loop(x, out)
    np.testing.assert_allclose(out, [math.exp(v) for v in x], rtol=2e-16)
    _tanh_loop(x, out)
    np.testing.assert_allclose(out, [math.tanh(v) for v in x], rtol=2e-16, atol=1e-300)


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
@pytest.mark.parametrize("loop", [_exp_loop, _tanh_loop], ids=["exp", "tanh"])
def test_float32_loops_compile_to_simd(loop):
    """Packed single-precision arithmetic in the machine code, and no scalar libm call left."""
    asm = fresh_asm(loop.py_func, np.ones(64, np.float32), np.empty(64, np.float32))
    assert_simd_without_libm(asm)


def assert_simd_without_libm(asm):
    packed = re.findall(r"\bv?(?:mul|add|fmadd\d*|div|sub)ps\b", asm)
    assert len(packed) > 10
    assert not re.search(r"call\w*\s+.*\b(expf|tanhf|exp|tanh|erff|erfcf|log1pf)\b", asm)


def entry_asm(code, dtype, direction):
    """Assembly of activation `code`'s forward or backward entry (activations.ENTRIES), compiled
    afresh as the C function the plan calls, with fastbp's flags."""
    entry = act.ENTRIES[code][direction == "backward"]
    signature = act.signatures(dtype)[direction == "backward"]
    compiled = numba.cfunc(signature, cache=False, fastmath=config.FASTMATH, error_model="numpy")(entry)
    return compiled._library.get_asm_str()


# The entry points that evaluate exp, expm1, erfc, log1p, sigmoid or tanh (the other backward
# entries take the derivative from the output, with no transcendental function).
TRANSCENDENTAL = [
    (code, "forward") for code in (act.ELU, act.GELU, act.SILU, act.SIGMOID, act.TANH, act.SOFTPLUS)
]
TRANSCENDENTAL += [(code, "backward") for code in (act.GELU, act.SILU, act.SOFTPLUS)]


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
@pytest.mark.parametrize("code, direction", TRANSCENDENTAL)
def test_float32_activation_entries_compile_to_simd(code, direction):
    """Each activation entry point (the function the plan calls) in float32: SIMD, no libm."""
    assert_simd_without_libm(entry_asm(code, np.float32, direction))


def _relu_storing_what_it_loaded(A):
    """The loop activations.py's note warns of: on the positive side it stores the value it loaded."""
    zero = A.dtype.type(0)
    for i in range(A.shape[0]):
        a = A[i]
        for j in range(A.shape[1]):
            a[j] = a[j] if a[j] > zero else zero


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_activations_compile_without_masked_stores(dtype):
    """No activation's forward entry has an AVX masked store; the control loop shows that this
    check finds them where the CPU has them."""

    Z = np.ones((4, 40), dtype=dtype)
    if "vmaskmov" not in fresh_asm(_relu_storing_what_it_loaded, Z):
        pytest.skip("this CPU's vector code has no AVX masked stores (no AVX, or AVX-512 masks)")
    for code in range(len(act.ENTRIES)):
        assert "vmaskmov" not in entry_asm(code, dtype, "forward"), code


@pytest.mark.parametrize("code", [act.ELU, act.GELU, act.SILU, act.SIGMOID, act.TANH, act.SOFTPLUS])
def test_float32_activations_agree_with_float64_at_extremes(code):
    z = np.concatenate(
        [np.linspace(-100, 100, 4001), np.geomspace(1e-8, 1, 200), -np.geomspace(1e-8, 1, 200)]
    )[None, :]
    # Both precisions start from the same float32-rounded inputs: rounding z itself by 6e-8 would
    # move exp(-67) by 4e-6, which is not the approximation's error.
    z = z.astype(np.float32).astype(np.float64)
    outs, grads = {}, {}
    for dtype in (np.float32, np.float64):
        Z = z.astype(dtype)
        A = np.empty_like(Z)
        forward_fn, backward_fn = act.entry_addresses(code, dtype)
        act.bias_activation_forward(forward_fn, 1.0, Z, np.zeros(z.shape[1], dtype), A)
        G = np.ones_like(Z)
        act.activation_backward(backward_fn, 1.0, Z, A, G, G, False, np.empty(z.shape[1], dtype))
        outs[dtype], grads[dtype] = A.astype(np.float64), G.astype(np.float64)
    # Relative 1e-6, except GELU's far negative tail (erfc's bound, 1e-5 there), and values under
    # 1e-36, which may flush to zero (sigmoid(-91) is a float32 denormal, 1e-40).
    rtol = 1e-5 if code == act.GELU else 1e-6
    err = np.abs(outs[np.float32] - outs[np.float64])
    assert (err <= rtol * np.abs(outs[np.float64]) + 1e-36).all(), err.max()
    assert np.abs(grads[np.float32] - grads[np.float64]).max() < 1e-6


def test_without_the_jit_the_python_path_gives_the_same_training():
    code = """
        import numpy as np, fastbp as fb
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(8, 3)).astype(np.float32), rng.integers(0, 2, 8)
        net = fb.Sequential(fb.Dense(3, 5), fb.GELU(), fb.Dropout(0.2), fb.Dense(5, 4), fb.Tanh(),
                            fb.Dense(4, 2), loss="cross_entropy", seed=0)
        net.fit(X, y, epochs=2, batch_size=4, verbose=0, seed=1)
        net.fit(X, y, epochs=1, batch_size=1, optimizer="sgd", verbose=0, seed=1)
        print(" ".join(repr(float(v)) for v in net.params))
    """
    runs = []
    for disable in ("1", "0"):
        result = subprocess.run(
            [sys.executable, "-W", "error::RuntimeWarning", "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NUMBA_DISABLE_JIT": disable},
        )
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(np.array([float(v) for v in result.stdout.split()]))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5, atol=1e-6)
