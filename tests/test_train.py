"""fit, train_on_batch, callbacks, divergence, reproducibility."""

import inspect
import threading

import numpy as np
import pytest
from conftest import fit_and_replay

import fastbp as fb
from fastbp import callbacks as cb
from fastbp import reference


def spirals(n=300, seed=0):
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 2, size=n)
    t = rng.uniform(0.1, 1.0, size=n) * 2 * np.pi  # one turn: learnable in a few hundred steps
    X = np.stack([t * np.cos(t + np.pi * k), t * np.sin(t + np.pi * k)], axis=1) / 3
    return X + rng.normal(scale=0.02, size=X.shape), k


def small_net(seed=0, dtype=np.float32, dropout=0.0):
    layers = [fb.Dense(2, 32), fb.Tanh()]
    if dropout:
        layers.append(fb.Dropout(dropout))
    layers += [fb.Dense(32, 32), fb.Tanh(), fb.Dense(32, 2)]
    return fb.Sequential(*layers, loss="cross_entropy", dtype=dtype, seed=seed)


@pytest.mark.parametrize("batch_size, epochs, lr", [(None, 400, 0.05), (1, 15, 0.005), (16, 60, 0.01)])
def test_three_gradient_descent_modes_learn_spirals(batch_size, epochs, lr):
    X, y = spirals()
    net = small_net()
    hist = net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, verbose=0, seed=0)
    assert hist["loss"][-1] < 0.25 * hist["loss"][0]
    assert net.evaluate(X, y)["accuracy"] > 0.9
    assert len(hist) == epochs


def test_sgd_fit_equals_reference_training_loop():
    """Full-batch SGD through the compiled loop is the textbook algorithm, step for step."""
    X, y = spirals(64)
    net = small_net(dtype=np.float64)
    Ws = [layer.W.copy() for layer in net.dense_layers]
    bs = [layer.b.copy() for layer in net.dense_layers]
    net.fit(X, y, epochs=5, batch_size=20, optimizer=fb.optim.SGD(lr=0.1), shuffle=False, verbose=0)
    reference.train(
        list(net.specs),
        net.loss,
        Ws,
        bs,
        X,
        y,
        epochs=5,
        batch_size=20,
        lr=0.1,
        optimizer="sgd",
        shuffle=False,
    )
    for layer, W, b in zip(net.dense_layers, Ws, bs):
        np.testing.assert_allclose(layer.W, W, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.b, b, rtol=1e-12, atol=1e-14)


def test_adam_fit_equals_manual_steps():
    X, y = spirals(50)
    a, b = small_net(dtype=np.float64), small_net(dtype=np.float64)
    opt = fb.optim.Adam(lr=0.01)
    a.fit(X, y, epochs=3, batch_size=16, optimizer=fb.optim.Adam(lr=0.01), shuffle=False, verbose=0)
    for _ in range(3):
        for start in range(0, 50, 16):
            b.loss_and_grad(X[start : start + 16], y[start : start + 16])
            opt.step(b.params, b.grads)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-14)


def test_same_seed_gives_identical_parameters_and_dropout_is_seeded():
    X, y = spirals(200)
    runs = []
    for seed in (3, 3, 4):
        net = small_net(dropout=0.2)
        net.fit(X, y, epochs=3, batch_size=8, verbose=0, seed=seed)
        runs.append(net.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_dropout_is_inverted_and_off_at_inference():
    net = fb.Sequential(
        fb.Dense(1, 2000, init="zeros"), fb.Dropout(0.3), fb.Dense(2000, 1), dtype=np.float64, seed=0
    )
    net.layers[0].b[:] = 1.0
    net.layers[2].W[:] = 1.0 / 2000
    X = np.zeros((1, 1))
    assert net.forward(X)[0, 0] == pytest.approx(1.0)  # identity at inference
    # One training step with lr=0 leaves params but the loss shows the dropped-out output:
    # E[mask] = 1, fraction zeroed ~ 0.3.
    opt = fb.optim.SGD(lr=0.0)
    loss = net.train_on_batch(X, np.zeros((1, 1)), opt)
    assert np.sqrt(loss) == pytest.approx(1.0, abs=0.05)
    mask_region = net._workspace[: 2000 * 4]
    assert np.isclose(mask_region, 1 / 0.7).sum() > 1200


def test_validation_metrics_history_and_lr_schedule():
    X, y = spirals(200)
    net = small_net()
    sched = fb.schedules.step_decay(0.1, step_size=10, gamma=0.5)
    opt = fb.optim.SGD(lr=sched)
    hist = net.fit(X, y, epochs=4, batch_size=50, optimizer=opt, validation_split=0.25, verbose=0)
    d = hist.as_dict()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "samples_per_s"):
        assert len(d[key]) == 4, key
    # 150 training rows / 50 = 3 steps per epoch; the lr halves every 10 steps.
    assert d["lr"] == [sched(2), sched(5), sched(8), sched(11)]
    assert opt.state.step == 12


def test_early_stopping_restores_best_weights():
    X, y = spirals(200)
    net = small_net()
    seen = []

    def record(epoch, logs):
        seen.append((logs["val_loss"], net.params.copy()))

    stop = cb.EarlyStopping(monitor="val_loss", patience=2)
    # Validation labels flipped: the better the net learns the training set, the worse val_loss
    # gets, so early stopping triggers whatever the shuffling, with a best epoch before the last.
    hist = net.fit(
        X,
        y,
        epochs=40,
        batch_size=10,
        lr=0.05,
        optimizer="sgd",
        seed=0,
        validation_data=(X[:50], 1 - y[:50]),
        callbacks=[cb.LambdaCallback(record), stop],
        verbose=0,
    )
    assert stop.stopped_epoch is not None and len(hist) < 40
    assert stop.best_epoch < len(hist) - 1
    best = min(range(len(seen)), key=lambda i: seen[i][0])
    np.testing.assert_array_equal(net.params, seen[best][1])


def test_lambda_callback_returning_true_stops_training():
    X, y = spirals(40)
    net = small_net()
    hist = net.fit(X, y, epochs=10, verbose=0, callbacks=[cb.LambdaCallback(lambda epoch, logs: epoch == 2)])
    assert len(hist) == 3
    # Any other return value (None, a number) leaves training running.
    hist = net.fit(X, y, epochs=4, verbose=0, callbacks=[cb.LambdaCallback(lambda e, logs: 1)])
    assert len(hist) == 4


def test_divergence_raises_and_restores_finite_state():
    X, y = spirals(100)
    net = fb.Sequential(fb.Dense(2, 8), fb.Dense(8, 1), loss="mse", seed=0)
    with pytest.raises(FloatingPointError, match="diverged"):
        net.fit(X, y * 1e6, epochs=50, batch_size=10, lr=1e6, optimizer="sgd", verbose=0)
    assert np.isfinite(net.params).all()
    net2 = fb.Sequential(fb.Dense(2, 8), fb.Dense(8, 1), loss="mse", seed=0)
    hist = net2.fit(
        X,
        y * 1e6,
        epochs=50,
        batch_size=10,
        lr=1e6,
        optimizer="sgd",
        verbose=0,
        callbacks=[cb.TerminateOnNaN()],
    )
    assert hist.diverged is not None and np.isfinite(net2.params).all()


def test_callback_can_stop_and_errors_surface():
    X, y = spirals(100)
    net = small_net()

    def stopper(epoch, logs):
        if epoch == 1:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        net.fit(X, y, epochs=5, verbose=0, callbacks=[cb.LambdaCallback(stopper)])
    assert np.isfinite(net.params).all()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(batch_size=-3), ValueError, "batch_size"),
        (dict(epochs=-1), ValueError, "epochs must be >= 0"),
        (dict(optimizer="adagrad2"), ValueError, "adagrad2"),
        (dict(optimizer=3), TypeError, "optimizer"),
        (dict(validation_split=1.0), ValueError, r"validation_split must be in \[0, 1\)"),
        (dict(validation_data=(np.ones((3, 5)), np.ones(3))), ValueError, "validation X has 5"),
        (dict(validation_data=np.ones(3)), ValueError, "pair"),
        (dict(callbacks=[print]), TypeError, "LambdaCallback"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(clip_grad_norm=-1.0), ValueError, "clip_grad_norm"),
    ],
)
def test_bad_fit_arguments_leave_params_untouched(kwargs, error, match):
    X, y = spirals(40)
    net = small_net()
    before = net.params.copy()
    with pytest.raises(error, match=match):
        net.fit(X, y, verbose=0, **kwargs)
    np.testing.assert_array_equal(net.params, before)


def test_fit_from_several_threads():
    X, y = spirals(200)
    nets = [small_net(seed=s) for s in range(3)]
    expected = []
    for s in range(3):
        twin = small_net(seed=s)
        twin.fit(X, y, epochs=2, batch_size=8, verbose=0, seed=s)
        expected.append(twin.params.copy())
    threads = [
        threading.Thread(target=n.fit, args=(X, y), kwargs=dict(epochs=2, batch_size=8, verbose=0, seed=s))
        for s, n in enumerate(nets)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for net, params in zip(nets, expected):
        np.testing.assert_array_equal(net.params, params)


def test_verbose_two_prints_a_line_per_epoch(capsys):
    X, y = spirals(50)
    small_net().fit(X, y, epochs=2, verbose=2)
    err = capsys.readouterr().err
    assert err.count("epoch ") == 2 and "loss=" in err


@pytest.mark.parametrize("compiles", [True, False])
def test_a_fit_that_must_compile_says_so_first(compiles, capsys, monkeypatch):
    """The notice comes once, before the first chunk, only when the compiled loop is neither in
    memory nor in the cache (fastbp._kernels.cache.will_compile), and never with verbose=0."""
    from fastbp import train
    from fastbp._kernels.cpu.train import loop_for

    asked = []

    def will_compile(dispatcher, args):
        asked.append((dispatcher, len(args)))
        return compiles

    monkeypatch.setattr(train, "will_compile", will_compile)
    X, y = spirals(50)
    small_net().fit(X, y, epochs=2, batch_size=8, verbose=2)
    err = capsys.readouterr().err
    loop = loop_for(small_net()._li, 8)
    # Asked with every argument the loop takes (train_steps' and the entries' addresses after them).
    assert asked == [(loop, len(inspect.signature(loop.py_func).parameters))]
    assert err.count("compiling the training kernels for float32") == (1 if compiles else 0)
    if compiles:
        assert err.index("compiling") < err.index("epoch 1/2")
    small_net().fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert capsys.readouterr().err == ""
    assert len(asked) == 1  # verbose=0 does not even ask (typing the arguments costs ~0.5 ms)


def test_clip_grad_norm_limits_the_update():
    X, y = spirals(40)
    a, b = small_net(dtype=np.float64), small_net(dtype=np.float64)
    start = a.params.copy()
    a.fit(X, y, epochs=1, batch_size=None, optimizer=fb.optim.SGD(lr=1.0), clip_grad_norm=1e-3, verbose=0)
    assert np.linalg.norm(a.params - start) == pytest.approx(1e-3, rel=1e-3)
    b.fit(X, y, epochs=1, batch_size=None, optimizer=fb.optim.SGD(lr=1.0), verbose=0)
    assert np.linalg.norm(b.params - start) > 1e-2


@pytest.mark.parametrize(
    "make_opt, l2, weighted, act",
    [
        (lambda: fb.optim.SGD(lr=0.05), 0.0, False, fb.ReLU()),  # fused update in the backward walk
        (lambda: fb.optim.SGD(lr=0.05), 0.0, True, fb.GELU()),
        (lambda: fb.optim.SGD(lr=0.05), 0.01, False, fb.Tanh()),  # penalty: not fusable
        (lambda: fb.optim.SGD(lr=0.05, momentum=0.9), 0.0, False, fb.ReLU()),
        (lambda: fb.optim.Adam(lr=0.01), 0.0, False, fb.SiLU()),
        (lambda: fb.optim.Adam(lr=0.01), 0.001, True, fb.ReLU()),
    ],
)
def test_batch_one_path_equals_manual_steps(make_opt, l2, weighted, act):
    """Batch size 1 runs its own BLAS-free kernel; it must be the same algorithm."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(30, 6)), rng.integers(0, 3, size=30)
    X[X < -0.5] = 0.0  # zero inputs take the skip branch
    w = rng.uniform(0.5, 2.0, size=30) if weighted else None

    def make():
        return fb.Sequential(
            fb.Dense(6, 9),
            act,
            fb.Dense(9, 7),
            act,
            fb.Dense(7, 3),
            loss="cross_entropy",
            dtype=np.float64,
            seed=2,
            l2=l2,
        )

    a, b = fit_and_replay(make, make_opt, X, y, w, batch_size=1)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-13)


def test_batch_one_path_float32_and_clipping():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(20, 4)).astype(np.float32), rng.normal(size=(20, 2))
    a = fb.Sequential(fb.Dense(4, 8), fb.Tanh(), fb.Dense(8, 2), seed=0)
    b = fb.Sequential(fb.Dense(4, 8), fb.Tanh(), fb.Dense(8, 2), seed=0)
    a.fit(
        X,
        y,
        epochs=1,
        batch_size=1,
        optimizer=fb.optim.SGD(lr=0.1),
        shuffle=False,
        clip_grad_norm=0.05,
        verbose=0,
    )
    opt = fb.optim.SGD(lr=0.1)
    for i in range(20):
        b.loss_and_grad(X[i : i + 1], y[i : i + 1])
        fb.clip_grad_norm(b.grads, 0.05)
        opt.step(b.params, b.grads)
    assert a.params.dtype == np.float32
    np.testing.assert_allclose(a.params, b.params, rtol=2e-6, atol=2e-7)


def test_full_batch_fit_does_not_depend_on_shuffle():
    # One batch holds every row: shuffling would only reorder a sum, so fit does not draw an order.
    X, y = spirals(60)
    a, b = small_net(), small_net()
    a.fit(X, y, epochs=3, batch_size=None, shuffle=True, seed=1, verbose=0)
    b.fit(X, y, epochs=3, batch_size=None, shuffle=False, verbose=0)
    np.testing.assert_array_equal(a.params, b.params)


def _minibatch_net(act=None, dropout=0.0, l2=0.0, dtype=np.float64):
    layers = [fb.Dense(6, 9), act or fb.ReLU()]
    if dropout:
        layers.append(fb.Dropout(dropout))
    layers += [fb.Dense(9, 7), fb.Tanh(), fb.Dense(7, 3)]
    return fb.Sequential(*layers, loss="cross_entropy", dtype=dtype, seed=2, l2=l2)


@pytest.mark.parametrize(
    "make_opt, l2, weighted, act",
    [
        (lambda: fb.optim.SGD(lr=0.05), 0.0, False, fb.ReLU()),  # folded into the dW GEMM
        (lambda: fb.optim.SGD(lr=0.05), 0.0, True, fb.GELU()),
        (lambda: fb.optim.SGD(lr=0.05), 0.01, False, fb.ELU()),  # penalty: not folded
        (lambda: fb.optim.SGD(lr=0.05, momentum=0.9), 0.0, False, fb.ReLU()),
        (lambda: fb.optim.Adam(lr=0.01), 0.0, True, fb.LeakyReLU(-0.1)),
    ],
)
def test_minibatch_fit_equals_manual_steps(make_opt, l2, weighted, act):
    """Mini-batches through train_steps (plain SGD folded into the weight-gradient GEMM, the rest
    through the optimizer's own step) are loss_and_grad then opt.step, batch for batch."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(45, 6)), rng.integers(0, 3, size=45)
    w = rng.uniform(0.5, 2.0, size=45) if weighted else None
    a, b = fit_and_replay(lambda: _minibatch_net(act, l2=l2), make_opt, X, y, w, batch_size=8)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-13)


def _set_folding(monkeypatch, on):
    """Let train_steps fold plain SGD into the GEMM (on) or make it take the separate step."""
    from fastbp._kernels.cpu import blas

    monkeypatch.setattr(blas._accumulates_flag, "value", int(on))


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_plain_sgd_folded_into_the_gemm_is_the_separate_step(dtype, rtol, monkeypatch):
    """With the fold, fit never writes dW (the BLAS adds -lr * A.T @ D straight into W) and still
    ends where the separate SGD step ends; with momentum there is no fold."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(50, 6)).astype(dtype), rng.integers(0, 3, size=50)

    def fit(fold, opt):
        _set_folding(monkeypatch, fold)
        net = _minibatch_net(dropout=0.2, dtype=dtype)
        net.grads[:] = np.nan
        net.fit(X, y, epochs=3, batch_size=16, optimizer=opt, seed=4, verbose=0)
        return net

    folded = fit(True, fb.optim.SGD(lr=0.1))
    separate = fit(False, fb.optim.SGD(lr=0.1))
    for layer in folded.dense_layers:
        assert np.isnan(layer.dW).all() and np.isfinite(layer.db).all()
    assert np.isfinite(separate.grads).all()
    np.testing.assert_allclose(folded.params, separate.params, rtol=rtol, atol=rtol * 1e-2)
    assert np.isfinite(fit(True, fb.optim.SGD(lr=0.1, momentum=0.9)).grads).all()


@pytest.mark.parametrize("batch_size", [32, 1, None])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("net_dtype, data_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_fit_on_data_of_the_other_float_dtype_equals_fit_on_converted_data(
    batch_size, optimizer, net_dtype, data_dtype
):
    """fit keeps float data in its dtype and converts each batch as it gathers it (at batch 1, each
    sample into one of two workspace rows: plain SGD's deferred first-layer update still reads the
    previous one): the same numbers as converting the whole array first, which it no longer does
    (for memory: tests/test_memory.py). With real-valued targets (converted, as before), and
    validation_split's held-out rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    Y = rng.normal(size=(200, 3))

    def trained(X, Y, **kwargs):
        net = fb.Sequential(fb.Dense(5, 8), fb.Tanh(), fb.Dense(8, 3), loss="mse", dtype=net_dtype, seed=0)
        options = dict(epochs=2, batch_size=batch_size, optimizer=optimizer, seed=1, verbose=0)
        fitted = net.fit(X, Y, **options, **kwargs)
        return net.params, [fitted[metric] for metric in ("loss", "val_loss")]

    X, Y = X.astype(data_dtype), Y.astype(data_dtype)
    for kwargs in ({}, {"validation_split": 0.25}):
        params, history = trained(X, Y, **kwargs)
        expected_params, expected_history = trained(X.astype(net_dtype), Y.astype(net_dtype), **kwargs)
        np.testing.assert_array_equal(params, expected_params)
        assert history == expected_history


def test_batch_one_loop_refuses_a_workspace_without_its_conversion_rows():
    """The batch-1 loop converts samples of another dtype into two workspace rows; given one (a
    caller sizing the workspace by the batch alone), it says so instead of writing past the input
    region. fit sizes it for two."""
    from fastbp._kernels.cpu.train import train_steps

    net = fb.Sequential(fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 2), loss="cross_entropy", seed=0)
    X = np.random.default_rng(0).normal(size=(4, 3))  # float64 for the float32 network
    Y = np.zeros((4, 1), np.float32)
    kind, slots, scalars, hyper = fb.optim.SGD(lr=0.1).prepare(net.params)
    ws, before = net._workspace_for(1), net.params.copy()
    with pytest.raises(ValueError, match="two rows"):
        train_steps(net._li, net._lf, net._gu, net.loss.code, 0.0, 0.0, 0.0, net.params, net.grads, ws, X, Y,
                    np.zeros(0, np.float32), np.arange(4), 1, 0, 4, np.full(4, 0.1), kind, slots, scalars,
                    hyper, 0, 0, 0.0, np.zeros(4), np.zeros(4, np.int64))  # fmt: skip
    np.testing.assert_array_equal(net.params, before)


def test_later_epochs_and_fits_start_with_the_chunk_size_already_found(monkeypatch):
    """fit's first chunk is one step, timed to size the rest; the next epoch, and the next fit of the
    same network on the same kind of run, start at the size found. Another batch size (or
    optimizer, data dtype, thread count) probes again."""
    from fastbp import train

    counts = []
    real_steps = train.train_steps

    def counted(*args):
        counts.append(args[16])  # n_batches: the steps of this chunk
        return real_steps(*args)

    real_save = train._Backup.save

    def save_untimed(backup):  # chunks sized by CHUNK_SECONDS alone, not by the backup's copy time
        real_save(backup)
        backup.seconds = 0.0

    monkeypatch.setattr(train, "train_steps", counted)
    monkeypatch.setattr(train._Backup, "save", save_untimed)
    monkeypatch.setattr(train, "CHUNK_SECONDS", 60.0)
    X, y = spirals(64)
    net = small_net()
    net.fit(X, y, epochs=2, batch_size=8, optimizer=fb.optim.SGD(lr=0.1), verbose=0)
    assert counts == [1, 7, 8]  # probe, the rest of epoch 1; epoch 2 whole
    counts.clear()
    net.fit(X, y, epochs=1, batch_size=8, optimizer=fb.optim.SGD(lr=0.1), verbose=0)
    assert counts == [8]
    counts.clear()
    net.fit(X, y, epochs=1, batch_size=16, optimizer=fb.optim.SGD(lr=0.1), verbose=0)
    net.fit(X, y, epochs=1, batch_size=8, optimizer=fb.optim.Adam(lr=0.01), verbose=0)
    assert counts == [1, 3, 1, 7]
    counts.clear()
    monkeypatch.setattr(train, "CHUNK_SECONDS", 1e-9)  # a slower run shrinks the size it hands on
    net.fit(X, y, epochs=1, batch_size=8, optimizer=fb.optim.SGD(lr=0.1), verbose=0)
    net.fit(X, y, epochs=1, batch_size=8, optimizer=fb.optim.SGD(lr=0.1), verbose=0)
    assert counts == [8] + [1] * 8
