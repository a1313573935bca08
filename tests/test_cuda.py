"""The CUDA backend: availability messages here, every kernel and pass against the CPU under the
CUDA simulator in a subprocess (tests/cuda_sim_check.py).

The simulator must be switched on (NUMBA_ENABLE_CUDASIM=1) before numba.cuda is first imported, and
this pytest process keeps the real numba.cuda for everything else: so each check runs in a fresh
interpreter. No test here needs a GPU.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbp as fb

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "cuda_sim_check.py"
# A GPU on the machine would change the messages below; the simulator tests run either way.
GPU_PRESENT = os.environ.get("FASTBP_TEST_GPU", "") == "1"


def run_python(code_or_args, simulator: bool, timeout=300):
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=HERE.parent
    )


def numba_cuda_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba_cuda") is not None


def test_import_fastbp_never_needs_cuda():
    """fastbp and fastbp.cuda import without touching numba.cuda (no driver, no numba-cuda)."""
    result = run_python(
        "import sys, fastbp, fastbp.cuda; print('numba.cuda' in sys.modules, 'numba_cuda' in sys.modules)",
        simulator=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.skipif(GPU_PRESENT, reason="a GPU is present: there is nothing missing to report")
def test_available_says_what_is_missing():
    result = run_python(
        "from fastbp.cuda import available; ok, why = available(); print(ok); print(why)", simulator=False
    )
    assert result.returncode == 0, result.stderr
    ok, why = result.stdout.strip().split("\n", 1)
    assert ok == "False"
    if numba_cuda_installed():
        assert why.startswith("no CUDA GPU found")
    else:
        assert why == "numba-cuda is not installed: pip install fastbp[cuda]"


def test_available_without_numba_cuda_names_the_package():
    code = (
        "import importlib.util as u; real = u.find_spec; "
        "u.find_spec = lambda name, *a: None if name == 'numba_cuda' else real(name, *a); "
        "from fastbp.cuda import available; print(available())"
    )
    result = run_python(code, simulator=False)
    assert result.returncode == 0, result.stderr
    assert "numba-cuda is not installed: pip install fastbp[cuda]" in result.stdout


@pytest.mark.skipif(GPU_PRESENT, reason="a GPU is present")
def test_backend_refuses_clearly_without_a_gpu():
    code = (
        "import fastbp as fb; from fastbp.cuda import CudaBackend\n"
        "net = fb.Sequential(fb.Dense(3, 2), seed=0)\n"
        "try:\n    CudaBackend(net)\nexcept RuntimeError as e:\n    print(e)\n"
    )
    result = run_python(code, simulator=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('device="cuda" is not available: ')
    assert ("no CUDA GPU found" in result.stdout) or ("numba-cuda is not installed" in result.stdout)


def test_to_numpy_passes_host_arrays_through():
    from fastbp.cuda import to_numpy

    a = np.arange(3.0)
    assert to_numpy(a) is a


def _run_checks(groups, at_least):
    result = run_python([str(SCRIPT), *groups], simulator=True, timeout=600)
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert result.returncode == 0 and not failed, (
        "\n".join(failed) + "\n" + result.stdout[-4000:] + result.stderr[-4000:]
    )
    assert sum(line.startswith("ok ") for line in lines) >= at_least
    return lines


@pytest.mark.skipif(
    not numba_cuda_installed(),
    reason="the simulator tests need numba-cuda (pip install fastbp[cuda]): numba's "
    "own deprecated simulator races inside device functions",
)
def test_kernels_and_steps_match_cpu_under_the_simulator():
    """gemm (every transpose), each activation forward/backward with the bias gradient, each loss
    (weighted, unweighted, all-zero weights), each optimizer (options, clipping), the gradient norm,
    the dropout hash, forward / loss_and_grad / penalty through CudaBackend, and train_steps chunks
    (resident and streamed data, dropout, weights, clipping, l2, NAdam's scalar, divergence) against
    the CPU kernels: float64 to 1e-9 or better, float32 to 1e-4."""
    _run_checks(["kernels", "passes", "train"], at_least=300)


@pytest.mark.skipif(
    not hasattr(fb.Sequential, "to"),
    reason="Sequential has no device= / to() yet: the core integration is pending",
)
@pytest.mark.skipif(not numba_cuda_installed(), reason="the simulator tests need numba-cuda")
def test_fit_on_cuda_matches_cpu_fit_under_the_simulator():
    """Sequential(...).to("cuda").fit gives the CPU fit's losses and parameters (float64, same seed,
    to 1e-9) with host data copied whole or streamed, and with device arrays; forward, predict,
    evaluate, loss_and_grad, train_on_batch and to("cpu") agree afterwards."""
    _run_checks(["fit"], at_least=40)


@pytest.mark.skipif(
    not hasattr(fb.Sequential, "to"),
    reason="Sequential has no device= / to() yet: the core integration is pending",
)
@pytest.mark.skipif(GPU_PRESENT, reason="a GPU is present")
def test_device_cuda_raises_clearly_without_a_gpu():
    code = (
        "import fastbp as fb\n"
        "try:\n    fb.Sequential(fb.Dense(3, 2), seed=0, device='cuda')\n"
        "except RuntimeError as e:\n    print(e)\n"
    )
    result = run_python(code, simulator=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('device="cuda" is not available: ')
