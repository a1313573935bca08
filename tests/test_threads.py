"""Thread control, fork safety, and no allocation inside a training step."""

import multiprocessing
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp as fb


def _train_once(queue):
    X = np.random.default_rng(0).normal(size=(64, 4))
    y = (X[:, 0] > 0).astype(int)
    net = fb.Sequential(fb.Dense(4, 8), fb.ReLU(), fb.Dense(8, 2), loss="cross_entropy", seed=0)
    net.fit(X, y, epochs=3, batch_size=8, verbose=0, seed=0)
    queue.put(net.params.copy())


def test_set_num_threads_limits_numba_and_blas():
    before = fb.get_num_threads()
    try:
        fb.set_num_threads(1)
        assert fb.get_num_threads() == 1
        blas = fb.threads.blas_threads()
        assert blas and all(info["num_threads"] == 1 for info in blas)
    finally:
        fb.set_num_threads(before)
    with pytest.raises(ValueError, match="positive int"):
        fb.set_num_threads(0)
    with pytest.raises(ValueError, match="at most"):
        fb.set_num_threads(10_000)


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX")
def test_fit_in_a_process_forked_after_fastbp_was_used():
    parent = multiprocessing.Queue()
    _train_once(parent)  # the parent trains first: kernels loaded, BLAS pools started
    expected = parent.get()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_train_once, args=(queue,))
    child.start()
    result = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(result, expected)


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_no_numba_allocation_inside_training_steps():
    """A compiled chunk of 200 steps allocates exactly what a chunk of 1 step does: the only NRT
    allocations are the MemInfo wrappers Numba makes for array arguments at the call boundary."""
    code = """
        import numpy as np, fastbp as fb
        from numba.core.runtime import rtsys
        from fastbp._kernels.cpu import online_pair
        from fastbp._kernels.cpu.train import train_steps
        online_pair.threads.get_num_threads = lambda: 2
        rng = np.random.default_rng(0)
        X = rng.normal(size=(400, 6)).astype(np.float32)
        Y = rng.integers(0, 3, size=(400, 1)).astype(np.float32)
        one, two = 10**12, 0  # online_pair.MIN_LAYER_PARAMETERS: online.py's loop or two workers
        cases = [(32, [fb.Dense(6, 16), fb.ReLU(), fb.Dropout(0.1), fb.Dense(16, 3)], "adam", one),
                 (1, [fb.Dense(6, 16), fb.GELU(), fb.Dense(16, 3)], "sgd", one),
                 (1, [fb.Dense(6, 16), fb.Tanh(), fb.Dense(16, 3)], "adam", one),
                 (1, [fb.Dense(6, 16), fb.ReLU(), fb.Dense(16, 3)], "sgd", two)]
        for batch, layers, name, online_pair.MIN_LAYER_PARAMETERS in cases:
            net = fb.Sequential(*layers, loss="cross_entropy", seed=0)
            net.forward(X[:2])  # starts Numba's runtime, whose counters the test reads
            opt = fb.optim.get(name, lr=1e-3)
            kind, slots, scalars, hyper = opt.prepare(net.params)
            ws = net._workspace_for(batch)
            perm = np.arange(200 * batch, dtype=np.int64) % 400
            losses, correct = np.zeros(200), np.zeros(200, dtype=np.int64)
            lrs, weights = np.full(200, 1e-3), np.zeros(0, np.float32)

            def run(count):
                before = rtsys.get_allocation_stats().alloc
                train_steps(net._li, net._lf, net._gu, 4, 0.0, 0.0, 0.0, net.params, net.grads,
                            ws, X, Y, weights, perm, batch, 0, count, lrs, kind, slots, scalars,
                            hyper, 0, 1, 0.0, losses, correct)
                return rtsys.get_allocation_stats().alloc - before

            run(1)  # compile
            print(batch, name, run(1), run(200))
    """
    result = _run(code, NUMBA_NRT_STATS="1")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        _, _, one, many = line.split()
        assert one == many, f"NRT allocations grow with the number of steps: {line}"


def test_concurrent_first_runs_with_an_empty_cache(tmp_path):
    """Two processes compiling into the same empty cache at once must both succeed."""
    code = """
        import numpy as np, fastbp as fb
        X = np.random.default_rng(0).normal(size=(32, 3)); y = X[:, :1] * 2
        net = fb.Sequential(fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 1), seed=0)
        net.fit(X, y, epochs=2, verbose=0)
        print("ok", net.evaluate(X, y)["loss"])
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
        assert out.startswith("ok")
