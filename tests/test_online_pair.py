"""The two-worker batch-1 loop (fastbp/_kernels/cpu/online_pair.py) and the meetings it runs on."""

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
from fastbp._kernels.cpu import online_pair, sync

pytestmark = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the two workers run compiled code only")


@pytest.fixture
def pair_runs(monkeypatch):
    """Every plain-SGD batch-1 fit takes the two-worker loop (small nets included, one core or
    more); yields the list of the runs it took, one entry per train_pair call."""
    runs = []
    real = online_pair.train_pair

    def counted(*args):
        runs.append(args[0].shape[0])
        return real(*args)

    monkeypatch.setattr(online_pair, "MIN_PARAMETERS", 0)
    monkeypatch.setattr(online_pair, "MIN_ADAM_PARAMETERS", 0)
    monkeypatch.setattr(online_pair.threads, "get_num_threads", lambda: 2)
    monkeypatch.setattr(online_pair, "train_pair", counted)
    return runs


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
def test_two_workers_take_the_same_steps_as_loss_and_grad(pair_runs, act, widths, weighted, make_opt):
    """Plain SGD, and Adam stepped inside the sweeps (every row moves, zero inputs included), against
    loss_and_grad and the optimizer's own step on the same samples."""
    X, y, w = _data()
    a, b = fit_and_replay(lambda: _net(act, widths), make_opt, X, y, w if weighted else None, batch_size=1)
    assert pair_runs, "the two-worker loop did not run"
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-13)


def test_adam_state_carries_over_between_fits(pair_runs):
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


def test_two_workers_agree_with_one_and_with_themselves(pair_runs, monkeypatch):
    """Against the one-worker loop: the same to rounding (the two halves of each sum are added at
    the end). Two runs of it: bit for bit, whatever the chunks fit cuts the epoch into."""
    X, y, _ = _data(60)
    X32 = X.astype(np.float32)  # converted row by row into each worker's workspace
    fits = []
    for threshold in (0, 10**12, 0):
        monkeypatch.setattr(online_pair, "MIN_PARAMETERS", threshold)
        net = _net(fb.ReLU())
        hist = net.fit(X32, y, epochs=3, batch_size=1, optimizer=fb.optim.SGD(lr=0.05), verbose=0, seed=1)
        fits.append((net.params.copy(), hist["loss"]))
    (pair, pair_loss), (one, one_loss), (again, _) = fits
    np.testing.assert_allclose(pair, one, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(pair_loss, one_loss, rtol=1e-12)
    np.testing.assert_array_equal(pair, again)


def test_a_non_finite_loss_stops_before_its_step(pair_runs):
    """fit's divergence handling is told the same batch, and finds the same parameters."""
    X, y, _ = _data(30)
    params = {}
    for name in ("pair", "one"):
        net = _net(fb.ReLU())
        online_pair.MIN_PARAMETERS = 0 if name == "pair" else 10**12
        opt = fb.optim.SGD(lr=1e150)  # the second step's loss overflows
        with pytest.raises(FloatingPointError, match="at epoch 1, batch 2;"):
            net.fit(X, y, epochs=1, batch_size=1, shuffle=False, optimizer=opt, verbose=0)
        params[name] = net.params.copy()
    np.testing.assert_allclose(params["pair"], params["one"], rtol=1e-12, atol=1e-13)
    assert pair_runs


def test_when_the_loop_is_used():
    li = _net(fb.ReLU())._li
    params = np.zeros(online_pair.MIN_PARAMETERS)
    two = fb.get_num_threads() >= 2
    assert online_pair.wanted(li, params) == two
    assert not online_pair.wanted(li, params[:-1])  # below the size where it pays
    assert online_pair.wanted(li, params[: online_pair.MIN_ADAM_PARAMETERS], adam=True) == two
    assert not online_pair.wanted(li, params[: online_pair.MIN_ADAM_PARAMETERS - 1], adam=True)
    assert not online_pair.wanted(li[:1], params)  # one layer: too few meetings to order its buffers
    before = fb.get_num_threads()
    fb.set_num_threads(1)
    try:
        assert not online_pair.wanted(li, params)
    finally:
        fb.set_num_threads(before)


def test_only_rules_it_folds_in_take_it(pair_runs):
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
    assert pair_runs == []
    for opt in (sgd(), fb.optim.Adam(lr=0.01), fb.optim.AdamW(lr=0.01)):
        _net(fb.ReLU()).fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
    assert len(pair_runs) >= 3


def test_fits_from_several_threads_at_once(pair_runs):
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
        online_pair.MIN_PARAMETERS = 0
        online_pair.threads.get_num_threads = lambda: 2
        compiled = online_pair.pair_worker

        def worker(*args):
            if args[0] == 1:
                raise RuntimeError("worker 1 failed")
            return compiled(*args)

        online_pair.pair_worker = worker
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
def test_a_process_forked_after_a_two_worker_fit_trains_the_same(pair_runs):
    """The workers are plain threads, joined at the end of each run: nothing like OpenMP's pool is
    left for a forked child to trip on."""
    expected = _two_worker_fit()
    assert pair_runs
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_two_worker_fit, args=(queue,))
    child.start()
    result = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("make_opt", [sgd, lambda: fb.optim.Adam(lr=0.01)])
def test_the_result_does_not_depend_on_how_fit_cuts_the_epoch(pair_runs, monkeypatch, make_opt):
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
        before = len(pair_runs)
        net.fit(X, y, epochs=2, batch_size=1, optimizer=make_opt(), verbose=0, seed=4)
        fits.append(net.params.copy())
        runs.append(len(pair_runs) - before)
    assert runs == [120, 4]  # a run per step; a step, then the rest of the epoch, twice
    np.testing.assert_array_equal(fits[0], fits[1])
