"""Settings read once, at import, from FASTBP_* environment variables.

FASTBP_NUM_THREADS  threads for fastbp's kernels and its BLAS (default: all cores)
FASTBP_FASTMATH     "1" (default) uses the LLVM fast-math flags below, "0" strict IEEE
FASTBP_CACHE        "1" (default) caches compiled kernels on disk, "0" compiles every process
"""

import os


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _positive_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


NUM_THREADS = _positive_int("FASTBP_NUM_THREADS")
CACHE = _flag("FASTBP_CACHE", True)
# Not plain fastmath=True: that also assumes no NaN/Inf, which turns np.isnan into False and would hide
# divergence. These flags keep NaN/Inf semantics and still let reductions vectorize (NUMBA_NOTES.md).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"} if _flag("FASTBP_FASTMATH", True) else False
