"""Transcendental functions that vectorize: exp, expm1, tanh, sigmoid, log1p, erfc for float32.

Since numba 0.62 (LLVM 20, no SVML) np.exp / np.tanh in an @njit loop are scalar libm calls: a 64K
float32 tanh took 950 us against numpy's 24 us (shared/NUMBA_NOTES.md). The float32 versions here
are branch-free polynomials and selects that LLVM turns into SIMD, accurate to a few float32 ulps
(tests/test_fastmath.py bounds each against float64 NumPy over the whole range, extremes included).

float64 keeps libm: each public function dispatches on the argument's type at compile time
(numba.extending.overload), so float64 networks keep double precision. Called without Numba
(NUMBA_DISABLE_JIT=1, or from Python), the plain NumPy bodies run instead.
"""

import math
import warnings

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import intrinsic, overload

from fastbp._kernels.jit import njit

# --- the Python-level definitions: exact, used without the JIT -----------------------------------


def fast_exp(x):
    return np.exp(x)


def fast_expm1(x):
    return np.expm1(x)


def fast_tanh(x):
    return np.tanh(x)


def fast_sigmoid(x):
    x = np.asarray(x)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))[()]


def fast_log1p(x):
    return np.log1p(x)


def fast_erfc(x):
    from scipy.special import erfc

    return erfc(x)


# --- float32 kernels -----------------------------------------------------------------------------


@intrinsic
def _bits_to_float32(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (how 2**n is built without libm).
    Numba widens int32 arithmetic to int64, so any integer is taken and truncated here."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


_f = np.float32
_LOG2E = _f(1.4426950408889634)
# Cody-Waite split of ln 2: n * LN2_HI is exact for the n that occur, so the reduction loses nothing.
_LN2_HI = _f(0.693359375)
_LN2_LO = _f(-2.12194440e-4)
# Minimax polynomial for (exp(r) - 1 - r) / r^2 on |r| <= ln2 / 2 (Cephes' expf).
_EXP_P = (
    _f(1.9875691500e-4),
    _f(1.3981999507e-3),
    _f(8.3334519073e-3),
    _f(4.1665795894e-2),
    _f(1.6666665459e-1),
    _f(5.0000001201e-1),
)


@njit(inline="always")
def _exp32(x):
    # Past these bounds exp underflows to 0 / overflows to inf in float32; clamping keeps n in the
    # range the scale factor below can build.
    # Written as selects, not min/max, so that NaN stays NaN (divergence detection relies on it).
    x = _f(-104.0) if x < _f(-104.0) else x
    x = _f(89.0) if x > _f(89.0) else x
    n = np.floor(x * _LOG2E + _f(0.5))
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _EXP_P[0]
    p = p * r + _EXP_P[1]
    p = p * r + _EXP_P[2]
    p = p * r + _EXP_P[3]
    p = p * r + _EXP_P[4]
    p = p * r + _EXP_P[5]
    e = p * r * r + r + _f(1.0)
    # One scale factor 2**k, built from its bits (two factors would be refolded by `reassoc`). k runs
    # from -151 to 128: k = 128 borrows a factor 2 into e; below -126, 2**k is a denormal whose bit
    # pattern is 1 << (k + 149), and 0 under that.
    k = np.int32(n)
    over = k > 127
    e = e + e if over else e
    k = 127 if over else k
    shift = k + 149
    denormal = (1 << (shift if shift > 0 else 0)) if shift >= 0 else 0
    bits = (k + 127) << 23 if k >= -126 else denormal
    return e * _bits_to_float32(bits)


@njit(inline="always")
def _expm1_32(x):
    # exp(x) - 1 cancels for small |x|: there a Taylor polynomial (error < 2e-8 relative for
    # |x| < 0.35) is used instead; both sides are computed and one is selected, which vectorizes.
    big = _exp32(x) - _f(1.0)
    small = x * (
        _f(1.0)
        + x
        * (
            _f(0.5)
            + x
            * (
                _f(1.0 / 6)
                + x * (_f(1.0 / 24) + x * (_f(1.0 / 120) + x * (_f(1.0 / 720) + x * _f(1.0 / 5040))))
            )
        )
    )
    return small if abs(x) < _f(0.35) else big


@njit(inline="always")
def _tanh32(x):
    a = abs(x)
    # Large |x|: 1 - 2 / (exp(2|x|) + 1), exact to float32 and 1.0 beyond ~9. Small |x|: Cephes'
    # odd polynomial, which keeps relative accuracy where the other form cancels.
    large = _f(1.0) - _f(2.0) / (_exp32(a + a) + _f(1.0))
    z = x * x
    p = _f(-5.70498872745e-3)
    p = p * z + _f(2.06390887954e-2)
    p = p * z + _f(-5.37397155531e-2)
    p = p * z + _f(1.33314422036e-1)
    p = p * z + _f(-3.33332819422e-1)
    small = x + x * z * p
    signed = large if x >= _f(0.0) else -large
    return small if a < _f(0.625) else signed


@njit(inline="always")
def _sigmoid32(x):
    # exp(-x) is accurate relative to itself for every x, so 1 / (1 + exp(-x)) keeps relative
    # accuracy even deep in the negative tail; exp overflowing to inf gives exactly 0.
    return _f(1.0) / (_f(1.0) + _exp32(-x))


@njit(inline="always")
def _log1p32(x):
    # log1p(x) = 2 atanh(s), s = x / (2 + x); for 0 <= x <= 1, s <= 1/3 and the odd series to s^13
    # is accurate to ~1e-8 relative. Used only there (softplus's log1p(exp(-|x|))).
    s = x / (_f(2.0) + x)
    z = s * s
    p = _f(1.0 / 13)
    p = p * z + _f(1.0 / 11)
    p = p * z + _f(1.0 / 9)
    p = p * z + _f(1.0 / 7)
    p = p * z + _f(1.0 / 5)
    p = p * z + _f(1.0 / 3)
    return _f(2.0) * s * (_f(1.0) + z * p)


@njit(inline="always")
def _erfc32(x):
    # Chebyshev fit with relative error below 1.2e-7 everywhere (Numerical Recipes' erfcc): relative
    # accuracy in the tail is what GELU(x) = 0.5 x erfc(-x / sqrt 2) needs for negative x.
    z = abs(x)
    t = _f(1.0) / (_f(1.0) + _f(0.5) * z)
    p = _f(0.17087277)
    p = p * t + _f(-0.82215223)
    p = p * t + _f(1.48851587)
    p = p * t + _f(-1.13520398)
    p = p * t + _f(0.27886807)
    p = p * t + _f(-0.18628806)
    p = p * t + _f(0.09678418)
    p = p * t + _f(0.37409196)
    p = p * t + _f(1.00002368)
    p = p * t + _f(-1.26551223)
    r = t * _exp32(-z * z + p)
    return r if x >= _f(0.0) else _f(2.0) - r


# --- dispatch: float32 gets the polynomials, anything else libm ----------------------------------

# Inlining these at Numba's level is what lets LLVM vectorize the loops that call them (a call left
# in a loop body blocks it; measured: tanh loop 0 packed ops without, 44 with). Numba's internal
# SSA check then warns about the inlined selects' variables; the code is correct (tested), so that
# one warning is silenced for these variables only.
warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning, message=r".*_dispatch__locals___typed")


def _dispatch(python_impl, float32_impl, float64_impl):
    @overload(python_impl, inline="always")
    def _typed(x):
        if x == types.float32:
            return lambda x: float32_impl(x)
        return lambda x: float64_impl(x)


@njit
def _exp64(x):
    return np.exp(x)


@njit
def _expm1_64(x):
    return np.expm1(x)


@njit
def _tanh64(x):
    return np.tanh(x)


@njit
def _sigmoid64(x):
    if x >= 0:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x)
    return e / (1.0 + e)


@njit
def _log1p64(x):
    return np.log1p(x)


@njit
def _erfc64(x):
    return math.erfc(x)


_dispatch(fast_exp, _exp32, _exp64)
_dispatch(fast_expm1, _expm1_32, _expm1_64)
_dispatch(fast_tanh, _tanh32, _tanh64)
_dispatch(fast_sigmoid, _sigmoid32, _sigmoid64)
_dispatch(fast_log1p, _log1p32, _log1p64)
_dispatch(fast_erfc, _erfc32, _erfc64)
