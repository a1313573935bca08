"""Peak memory of fit: issue 5 bounds it by the data + 4x the parameters + one batch's workspace +
60 MB, measured as resident memory (bench/peak_memory.py, which this uses; Linux only)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
ROWS = 30_000  # 94 MB of float32 MNIST-sized rows: a copy of the data alone would exceed the bound

# Linux: /proc/self/status, and /proc/self/clear_refs writable by the process itself (kernel >= 4.0).
MEASURABLE = Path("/proc/self/status").exists() and os.access("/proc/self/clear_refs", os.W_OK)
pytestmark = pytest.mark.skipif(not MEASURABLE, reason="needs Linux's /proc/self/clear_refs")


def _in_fresh_process(code: str) -> list[int]:
    """Run code (with bench/ importable) in a new interpreter, so that no memory freed earlier is
    handed out again unmeasured; returns the integers it prints."""
    prelude = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import peak_memory as pm\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return [int(word) for word in result.stdout.split()]


def test_the_measure_sees_a_copy_of_the_data():
    data, peak = _in_fresh_process(f"""
        import numpy as np
        X = np.ones(({ROWS}, 784), np.float32)
        print(X.nbytes, pm.peak_over(lambda: X.copy()))
    """)
    assert peak >= 0.95 * data


@pytest.mark.parametrize(
    "optimizer, batch, case",
    [
        ("adam", 64, "plain"),
        ("adam", 64, "validation_split"),
        ("adam", 64, "float64 data"),  # fit converts each batch as it gathers it
        ("sgd", 1, "float64 data"),  # and each sample at batch 1
    ],
)
def test_fit_stays_within_the_bound(optimizer, batch, case):
    measure = f"pm.measure_case('mlp', {optimizer!r}, {batch}, {case!r}, {ROWS})"
    data, peak, bound = _in_fresh_process(f"print(*{measure})")
    assert data > bound  # so that a copy of the data inside fit cannot pass
    assert peak <= bound, f"fit's peak {peak / 1e6:.1f} MB over the data, bound {bound / 1e6:.1f} MB"


def test_predict_reads_float64_data_block_by_block():
    """predict on float64 data for a float32 network converts one 1024-row block at a time: its peak
    is the output and a block, far under the 94 MB a converted copy of the data would take."""
    data, peak = _in_fresh_process(f"""
        import numpy as np
        net = pm.make_net((784, 256, 128, 10))
        X = np.random.default_rng(0).standard_normal(({ROWS}, 784))
        net.predict(X[:8])  # kernels loaded, workspace sized
        print(X.nbytes, pm.peak_over(lambda: net.predict(X)))
    """)
    assert peak < 20e6, f"predict's peak {peak / 1e6:.1f} MB over {data / 1e6:.0f} MB of data"


def test_full_batch_fit_reads_its_data_in_place():
    """One batch of every row, in order: fit reads X where it lies. Copying it into the workspace's
    input region, as fit did, made the peak the data's size and more (95 MB over 63 MB of data)."""
    data, peak = _in_fresh_process("""
        import numpy as np
        import fastbp as fb
        X = np.random.default_rng(0).standard_normal((20_000, 784), dtype=np.float32)
        y = np.arange(20_000) % 10
        net = fb.Sequential(fb.Dense(784, 16), fb.ReLU(), fb.Dense(16, 10), loss="cross_entropy", seed=0)
        net.fit(X[:64], y[:64], epochs=1, batch_size=64, verbose=0)  # kernels loaded
        print(X.nbytes, pm.peak_over(lambda: net.fit(X, y, epochs=1, batch_size=len(X), verbose=0)))
    """)
    assert peak < 0.75 * data, f"fit's peak {peak / 1e6:.1f} MB over {data / 1e6:.0f} MB of data"
