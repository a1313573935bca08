"""Dropout masks on the GPU: the CPU's counter-based draw, so both devices drop the same units.

dropout_uniform(seed, step, layer, index) is splitmix64's finaliser over the four counters (see
fastbp._kernels.cpu.steps.dropout_uniform): no state, so any thread can draw any element's number.
On the GPU it runs in uint64; the simulator runs the CPU's Python-int version (numpy's uint64
scalars warn on the wrap-around the hash relies on). tests/cuda_sim_check.py runs the uint64 body
against it.
"""

import numpy as np

from fastbp._kernels.cpu.steps import dropout_uniform as _dropout_uniform_python
from fastbp._kernels.cuda.jit import SIMULATOR, device


def _mix64(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_mix64_device = device(_mix64)


def _dropout_uniform_u64(seed, step, layer, index):
    base = _mix64_device(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(step))
    base = _mix64_device(base + np.uint64(layer) * np.uint64(0xD1B54A32D192ED03))
    h = _mix64_device(base + np.uint64(index))
    return float(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)


dropout_uniform = _dropout_uniform_python if SIMULATOR else device(_dropout_uniform_u64)
