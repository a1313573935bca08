"""The fused batch-1 loop on two workers or one (fastbp/_kernels/cpu/online_pair.py), and the meetings
its two workers run on."""

import contextlib
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest
from conftest import fit_and_replay

import fastbp as fb
from fastbp._kernels.cpu import blas, online_pair, sync

pytestmark = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the two workers run compiled code only")


class Fused:
    """What the `fused` fixture controls: how many workers every plain-SGD or Adam batch-1 fit gets
    (2, 1, or 0 for online.py's loop), small nets and one core included; and the runs taken, one
    entry per train_pair (2) or train_alone (1) call."""

    def __init__(self):
        self.workers = 2
        self.runs = []


@pytest.fixture
def fused(monkeypatch):
    state = Fused()

    def counting(real, count):
        def counted(*args):
            state.runs.append(count)
            return real(*args)

        return counted

    monkeypatch.setattr(online_pair, "train_pair", counting(online_pair.train_pair, 2))
    monkeypatch.setattr(online_pair, "train_alone", counting(online_pair.train_alone, 1))
    monkeypatch.setattr(online_pair, "workers", lambda li, params, adam=False: state.workers)
    return state


def _net(act, widths=(6, 9, 7, 3), dtype=np.float64, seed=2):
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [fb.Dense(n_in, n_out), act]
    return fb.Sequential(*layers[:-1], loss="cross_entropy", dtype=dtype, seed=seed)


def _data(n=40, n_in=6, classes=3, seed=5):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, n_in)), rng.integers(0, classes, size=n)
    X[X < -0.5] = 0.0  # zero inputs: rows the sweeps skip
    return X, y, rng.uniform(0.5, 2.0, size=n)


def sgd():
    return fb.optim.SGD(lr=0.05)


@pytest.mark.parametrize(
    "act, widths, weighted, make_opt",
    [
        (fb.ReLU(), (6, 9, 7, 3), False, sgd),
        (fb.GELU(), (6, 9, 7, 3), True, sgd),
        (fb.Tanh(), (6, 5, 3), False, sgd),  # two layers: the fewest the loop takes
        (fb.ReLU(), (6, 33, 17, 8, 3), True, sgd),  # odd widths: the halves differ by a row
        (fb.ReLU(), (6, 9, 7, 3), False, lambda: fb.optim.Adam(lr=0.01)),
        (fb.SiLU(), (6, 33, 17, 3), True, lambda: fb.optim.Adam(lr=0.01, weight_decay=0.05, maximize=True)),
        (fb.Tanh(), (6, 5, 3), False, lambda: fb.optim.AdamW(lr=0.01, weight_decay=0.1, betas=(0.8, 0.99))),
    ],
)
@pytest.mark.parametrize("workers", [2, 1])
def test_the_workers_take_the_same_steps_as_loss_and_grad(fused, workers, act, widths, weighted, make_opt):
    """Plain SGD, and Adam stepped inside the sweeps (every row moves, zero inputs included), against
    loss_and_grad and the optimizer's own step on the same samples; on two workers and alone."""
    fused.workers = workers
    X, y, w = _data()
    a, b = fit_and_replay(lambda: _net(act, widths), make_opt, X, y, w if weighted else None, batch_size=1)
    assert fused.runs and set(fused.runs) == {workers}
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-13)


def test_adam_state_carries_over_between_fits(fused):
    """The moments and the step count live in the optimizer: a second fit continues the first, as a
    replay of both epochs with one optimizer does."""
    X, y, _ = _data(30)
    opt = fb.optim.Adam(lr=0.01)
    net = _net(fb.ReLU())
    for seed in (1, 2):
        net.fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0, seed=seed)
    twin, replay = _net(fb.ReLU()), fb.optim.Adam(lr=0.01)
    for seed in (1, 2):
        order_rng = np.random.default_rng(seed)
        order_rng.integers(0, 2**62)
        for i in order_rng.permutation(30):
            twin.loss_and_grad(X[i : i + 1], y[i : i + 1])
            replay.step(twin.params, twin.grads)
    assert opt.state.step == 60
    np.testing.assert_allclose(net.params, twin.params, rtol=1e-12, atol=1e-13)
    for mine, theirs in zip(opt.state[1:3], replay.state[1:3]):  # exp_avg, exp_avg_sq
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15)


def test_two_workers_agree_with_one_and_with_themselves(fused):
    """Against online.py's loop and the loop alone: the same to rounding (the two halves of each sum
    are added at the end). Two runs on two workers: bit for bit."""
    X, y, _ = _data(60)
    X32 = X.astype(np.float32)  # converted row by row into each worker's workspace
    fits = []
    for workers in (2, 0, 1, 2):
        fused.workers = workers
        net = _net(fb.ReLU())
        hist = net.fit(X32, y, epochs=3, batch_size=1, optimizer=fb.optim.SGD(lr=0.05), verbose=0, seed=1)
        fits.append((net.params.copy(), hist["loss"]))
    (pair, pair_loss), (one, one_loss), (alone, _), (again, _) = fits
    for other in (one, alone):
        np.testing.assert_allclose(pair, other, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(pair_loss, one_loss, rtol=1e-12)
    np.testing.assert_array_equal(pair, again)
    assert fused.runs.count(2) >= 2 and 1 in fused.runs


@pytest.mark.parametrize("workers", [2, 1])
def test_a_non_finite_loss_stops_before_its_step(fused, workers):
    """fit's divergence handling is told the same batch, and finds the same parameters."""
    X, y, _ = _data(30)
    params = {}
    for count in (workers, 0):
        fused.workers = count
        net = _net(fb.ReLU())
        opt = fb.optim.SGD(lr=1e150)  # the second step's loss overflows
        with pytest.raises(FloatingPointError, match="at epoch 1, batch 2;"):
            net.fit(X, y, epochs=1, batch_size=1, shuffle=False, optimizer=opt, verbose=0)
        params[count] = net.params.copy()
    np.testing.assert_allclose(params[workers], params[0], rtol=1e-12, atol=1e-13)
    assert fused.runs


def test_how_many_workers_a_network_gets():
    rule = online_pair.workers_for  # (layers, parameters, adam, threads)
    sgd_size, adam_size = online_pair.MIN_LAYER_PARAMETERS, online_pair.MIN_ADAM_LAYER_PARAMETERS
    assert rule(3, 3 * sgd_size, False, 2) == 2
    assert rule(3, 3 * sgd_size - 1, False, 2) == 0  # below the layer size where it pays
    assert rule(3, 3 * adam_size, True, 2) == 2
    assert rule(3, 3 * adam_size - 1, True, 2) == 0
    assert rule(1, 10**9, False, 2) == 0  # one layer: too few meetings to order its buffers
    alone_size = online_pair.MIN_ALONE_ADAM_PARAMETERS
    assert rule(3, 10**9, False, 1) == 0  # SGD on one thread: online.py's loop is as fast
    assert rule(3, alone_size, True, 1) == 1 and rule(3, alone_size - 1, True, 1) == 0
    # workers() applies it to a network and fastbp's thread count.
    li = _net(fb.ReLU())._li
    params = np.zeros(max(2 * sgd_size, alone_size))
    before = fb.get_num_threads()
    try:
        for threads in (1, 2):
            fb.set_num_threads(threads)
            for adam in (False, True):
                assert online_pair.workers(li, params, adam) == rule(li.shape[0], params.size, adam, threads)
    finally:
        fb.set_num_threads(before)


def test_only_rules_it_folds_in_take_it(fused):
    X, y, _ = _data(20)
    others = (
        fb.optim.SGD(lr=0.05, momentum=0.9),
        fb.optim.Adam(lr=0.01, amsgrad=True),
        fb.optim.RMSprop(lr=0.01),
    )
    for opt in others:
        _net(fb.ReLU()).fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
    for opt in (sgd(), fb.optim.Adam(lr=0.01)):
        _net(fb.ReLU()).fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0, clip_grad_norm=1.0)
        _net(fb.ReLU()).fit(X, y, epochs=1, batch_size=2, optimizer=opt, verbose=0)
        penalized = _net(fb.ReLU())
        penalized.l2 = 0.01
        penalized.fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
    assert fused.runs == []
    for opt in (sgd(), fb.optim.Adam(lr=0.01), fb.optim.AdamW(lr=0.01)):
        _net(fb.ReLU()).fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
    assert len(fused.runs) >= 3


def test_fits_from_several_threads_at_once(fused):
    """Four workers on however many cores: each waiting worker yields its core, so all finish, and
    each fit is the one it would be alone."""
    X, y, _ = _data(80)
    expected = []
    for s in range(2):
        net = _net(fb.ReLU(), seed=s)
        net.fit(X, y, epochs=2, batch_size=1, optimizer=fb.optim.SGD(lr=0.05), verbose=0, seed=s)
        expected.append(net.params.copy())
    nets = [_net(fb.ReLU(), seed=s) for s in range(2)]
    kwargs = [
        dict(epochs=2, batch_size=1, optimizer=fb.optim.SGD(lr=0.05), verbose=0, seed=s) for s in range(2)
    ]
    workers = [threading.Thread(target=n.fit, args=(X, y), kwargs=k) for n, k in zip(nets, kwargs)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in workers)
    for net, params in zip(nets, expected):
        np.testing.assert_array_equal(net.params, params)


def test_meetings_count_up_and_an_abort_releases_a_waiting_worker():
    flags = np.zeros(sync.FLAG_WORDS, np.int64)
    results = []
    partner = threading.Thread(target=lambda: results.append([sync.meet(flags, 1, k) for k in (1, 2)]))
    partner.start()
    assert sync.meet(flags, 0, 1) and sync.meet(flags, 0, 2)
    partner.join(timeout=30)
    assert results == [[True, True]]
    assert flags[0] == 2 and flags[sync.STRIDE] == 2
    flags[sync.ABORT] = 1
    assert not sync.meet(flags, 0, 3)  # the partner never comes: the abort flag releases the wait


def test_a_failing_worker_stops_its_partner_and_raises():
    """Worker 1 fails before its first meeting: worker 0, waiting there, must not wait forever (a
    subprocess, so that a regression fails the test instead of hanging the suite)."""
    code = """
        import numpy as np, fastbp as fb
        from fastbp._kernels.cpu import online_pair
        online_pair.MIN_LAYER_PARAMETERS = 0
        online_pair.threads.get_num_threads = lambda: 2
        compiled_for = online_pair.worker_for

        def worker_for(kind):
            compiled = compiled_for(kind)

            def worker(*args):
                if args[0] == 1:
                    raise RuntimeError("worker 1 failed")
                return compiled(*args)

            return worker

        online_pair.worker_for = worker_for
        X = np.random.default_rng(0).normal(size=(20, 6)); y = np.arange(20) % 3
        net = fb.Sequential(fb.Dense(6, 9), fb.ReLU(), fb.Dense(9, 3), loss="cross_entropy", seed=0)
        before = net.params.copy()
        try:
            net.fit(X, y, epochs=1, batch_size=1, optimizer=fb.optim.SGD(lr=0.1), verbose=0)
        except RuntimeError as exc:
            print("raised:", exc, "| params unchanged:", np.array_equal(net.params, before))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "raised: worker 1 failed | params unchanged: True" in result.stdout


def _two_worker_fit(queue=None):
    X, y, _ = _data(50)
    net = _net(fb.ReLU())
    net.fit(X, y, epochs=2, batch_size=1, optimizer=fb.optim.SGD(lr=0.05), verbose=0, seed=0)
    if queue is None:
        return net.params.copy()
    queue.put(net.params.copy())


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX")
def test_a_process_forked_after_a_two_worker_fit_trains_the_same(fused):
    """The workers are plain threads, joined at the end of each run: nothing like OpenMP's pool is
    left for a forked child to trip on."""
    expected = _two_worker_fit()
    assert fused.runs
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_two_worker_fit, args=(queue,))
    child.start()
    result = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("make_opt", [sgd, lambda: fb.optim.Adam(lr=0.01)])
def test_the_result_does_not_depend_on_how_fit_cuts_the_epoch(fused, monkeypatch, make_opt):
    """fit sizes its runs of steps by the clock; each run ends with the deferred first-layer update
    applied. One step per run or the whole epoch in one: the same parameters, bit for bit."""
    from fastbp import train

    real_save = train._Backup.save

    def save_untimed(backup):  # runs sized by CHUNK_SECONDS alone, not by the backup's copy time
        real_save(backup)
        backup.seconds = 0.0

    monkeypatch.setattr(train._Backup, "save", save_untimed)
    X, y, _ = _data(60)
    fits, runs = [], []
    for seconds in (1e-9, 60.0):
        monkeypatch.setattr(train, "CHUNK_SECONDS", seconds)
        net = _net(fb.ReLU())
        before = len(fused.runs)
        net.fit(X, y, epochs=2, batch_size=1, optimizer=make_opt(), verbose=0, seed=4)
        fits.append(net.params.copy())
        runs.append(len(fused.runs) - before)
    assert runs == [120, 3]  # a run per step; a step, then the rest of the epoch; then all of it
    np.testing.assert_array_equal(fits[0], fits[1])


def test_without_a_helper_thread_the_run_goes_alone(fused, monkeypatch):
    """A process that cannot start another thread still trains: the sweeps run on one worker."""
    X, y, _ = _data(30)
    expected = _net(fb.ReLU())
    fused.workers = 1
    expected.fit(X, y, epochs=1, batch_size=1, optimizer=sgd(), verbose=0, seed=3)

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    fused.workers = 2
    net = _net(fb.ReLU())
    net.fit(X, y, epochs=1, batch_size=1, optimizer=sgd(), verbose=0, seed=3)
    assert 2 in fused.runs
    np.testing.assert_array_equal(net.params, expected.params)


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or online_pair.current_cpu() is None, reason="Linux with glibc"
)
def test_the_partner_moves_off_the_calling_threads_cpu_and_keeps_its_cpu_set(monkeypatch):
    """A new thread may start on its parent's CPU; the partner moves itself elsewhere (when its CPU
    set has another), and leaves its CPU set as it found it. Where it runs is read while its set
    excludes the caller's CPU (the kernel has migrated it before sched_setaffinity returns); once
    the set is whole again the scheduler may put it anywhere."""
    allowed = os.sched_getaffinity(0)
    here = online_pair.current_cpu()
    real_setaffinity = os.sched_setaffinity
    seen = {"while placed": []}

    def setaffinity(pid, cpus):
        real_setaffinity(pid, cpus)
        if here not in cpus:
            seen["while placed"].append(online_pair.current_cpu())

    monkeypatch.setattr(os, "sched_setaffinity", setaffinity)

    def partner():
        online_pair.move_off(here)
        seen["allowed"] = os.sched_getaffinity(0)
        online_pair.move_off(max(allowed) + 1)  # a CPU outside the set: nothing to do
        online_pair.move_off(None)  # not known: nothing to do
        seen["allowed after"] = os.sched_getaffinity(0)

    helper = threading.Thread(target=partner)
    helper.start()
    helper.join()
    assert seen["allowed"] == seen["allowed after"] == allowed
    if len(allowed) > 1:
        assert len(seen["while placed"]) == 1 and seen["while placed"][0] not in (here, None)
    else:
        assert seen["while placed"] == []


def test_a_two_worker_run_moves_its_partner_off_the_callers_cpu(fused, monkeypatch):
    """train_pair's helper thread is placed away from the CPU the calling thread was on."""
    moves = []
    monkeypatch.setattr(online_pair, "current_cpu", lambda: 12345)
    monkeypatch.setattr(online_pair, "move_off", lambda cpu: moves.append((cpu, threading.get_ident())))
    X, y, _ = _data(30)
    _net(fb.ReLU()).fit(X, y, epochs=1, batch_size=1, optimizer=sgd(), verbose=0, seed=3)
    runs = fused.runs.count(2)
    assert runs >= 1 and len(moves) == runs
    assert all(cpu == 12345 and ident != threading.get_ident() for cpu, ident in moves)


def test_validation_between_two_worker_epochs_runs_on_one_blas_thread(fused, monkeypatch):
    """An OpenBLAS worker woken by the validation's products would spin on the core the next epoch's
    partner needs: fit evaluates inside blas.one_thread when its epochs run on two workers, only then."""
    entered = []

    @contextlib.contextmanager
    def recording():
        entered.append(fused.workers)
        yield

    monkeypatch.setattr(blas, "one_thread", recording)
    X, y, _ = _data(30)
    Xv, yv, _ = _data(10, seed=6)
    for workers, batch in ((2, 1), (1, 1), (0, 1), (2, 4)):
        fused.workers = workers
        net = _net(fb.ReLU())
        net.fit(X, y, epochs=3, batch_size=batch, optimizer=sgd(), verbose=0, validation_data=(Xv, yv))
    assert entered == [2, 2, 2]


@pytest.mark.skipif(blas._thread_count is None, reason="the kernels call another BLAS than NumPy's OpenBLAS")
def test_one_blas_thread_holds_while_any_thread_is_inside_and_restores_the_count():
    get, set_ = blas._thread_count
    before = get()
    set_(2)
    try:
        inside, leave = threading.Event(), threading.Event()

        def other():
            with blas.one_thread():
                inside.set()
                leave.wait(10)

        helper = threading.Thread(target=other)
        with blas.one_thread():
            assert get() == 1
            helper.start()
            assert inside.wait(10)
            with blas.one_thread():
                assert get() == 1
        assert get() == 1  # the other thread is still inside
        leave.set()
        helper.join()
        assert get() == 2
    finally:
        set_(before)


def test_the_partner_prefers_another_core_to_an_smt_sibling(monkeypatch):
    """Each worker's rows are sized to its own core's L2: an SMT sibling of the calling thread's CPU
    is taken only where no other core is allowed."""
    calls = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(set(cpus)))
    monkeypatch.setattr(online_pair, "core_of", lambda cpu: {0, 2})
    online_pair.move_off(0)
    assert calls == [{1, 3}, {0, 1, 2, 3}]
    calls.clear()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2})
    online_pair.move_off(0)
    assert calls == [{2}, {0, 2}]


def test_cpu_lists_read_as_linux_writes_them():
    assert online_pair.cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert online_pair.cpu_list("5") == {5}
    with pytest.raises(ValueError):
        online_pair.cpu_list("")


def test_core_of_reads_linux_sibling_lists(monkeypatch, tmp_path):
    """A CPU's core from Linux's topology files; the CPU alone where its file is missing or garbled."""
    for cpu, siblings in ((0, "0,64\n"), (64, "0,64\n"), (3, "2-3\n"), (5, "five\n")):
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(siblings)
    monkeypatch.setattr(online_pair, "CPU_TOPOLOGY", str(tmp_path))
    assert online_pair.core_of(0) == online_pair.core_of(64) == {0, 64}
    assert online_pair.core_of(3) == {2, 3}
    assert online_pair.core_of(5) == {5}  # garbled
    assert online_pair.core_of(7) == {7}  # no such CPU
