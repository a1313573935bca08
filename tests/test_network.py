"""Sequential and its kernels against the NumPy reference, finite differences and (if installed) torch."""

import numpy as np
import pytest
from conftest import ALL_ACTIVATIONS, ALL_LOSSES, make_targets

import fastbp as fb
from fastbp import reference


def weights_of(net):
    return [layer.W.copy() for layer in net.dense_layers], [layer.b.copy() for layer in net.dense_layers]


def reference_loss_and_grad(net, X, y):
    Ws, bs = weights_of(net)
    return reference.loss_and_grad(list(net.specs), net.loss, Ws, bs, X, y, l1=net.l1, l2=net.l2)


def build(act, loss, dtype=np.float64, seed=0, l1=0.0, l2=0.0, widths=(5, 7, 4)):
    layers = []
    for n_in, n_out in zip(widths[:-2], widths[1:-1]):
        layers += [fb.Dense(n_in, n_out), act]
    layers.append(fb.Dense(widths[-2], widths[-1]))
    return fb.Sequential(*layers, loss=loss, dtype=dtype, seed=seed, l1=l1, l2=l2)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda l: l.name)
@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=lambda a: f"{a.name}{a.param:g}")
def test_gradient_equals_reference_and_finite_differences(act, loss, rng):
    net = build(act, loss, l1=0.01, l2=0.1)
    X = rng.normal(size=(9, 5))
    y = make_targets(loss, 9, 4, rng)
    value = net.loss_and_grad(X, y)
    ref_value, dWs, dbs = reference_loss_and_grad(net, X, y)
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-12)
    for layer, dW, db in zip(net.dense_layers, dWs, dbs):
        np.testing.assert_allclose(layer.dW, dW, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.db, db, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        net.forward(X), reference.forward(list(net.specs), *weights_of(net), X), rtol=1e-12, atol=1e-12
    )
    if act.name not in ("relu", "leaky_relu") and loss.name not in ("l1", "huber"):
        # Finite differences are meaningless at kinks; the smooth pairs are checked tightly.
        assert fb.gradcheck(net, X, y) < 1e-6


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("rows", [1, 2, 7, 33])
def test_depth_and_batch_sizes(depth, rows, rng):
    widths = [6] + [int(w) for w in rng.integers(2, 9, size=depth - 1)] + [3]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(fb.Dense(n_in, n_out))
        if i < depth - 1:
            layers.append(ALL_ACTIVATIONS[(i * 3 + depth) % len(ALL_ACTIVATIONS)])
    net = fb.Sequential(*layers, loss=fb.SoftmaxCrossEntropy(), dtype=np.float64, seed=depth)
    X = rng.normal(size=(rows, 6))
    y = rng.integers(0, 3, size=rows)
    value = net.loss_and_grad(X, y)
    ref_value, dWs, dbs = reference_loss_and_grad(net, X, y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(
        net.grads,
        np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in zip(dWs, dbs)]),
        rtol=1e-10,
        atol=1e-13,
    )


def test_workspace_shrinking_batch_reuses_buffers(rng):
    """A big batch, then a small one: the small one must not read stale rows of the big one."""
    net = build(fb.Tanh(), fb.MSE())
    big_X, big_y = rng.normal(size=(40, 5)), rng.normal(size=(40, 4))
    X, y = rng.normal(size=(3, 5)), rng.normal(size=(3, 4))
    net.loss_and_grad(big_X, big_y)
    after_big = (net.loss_and_grad(X, y), net.grads.copy())
    fresh = build(fb.Tanh(), fb.MSE())
    assert fresh.loss_and_grad(X, y) == after_big[0]
    np.testing.assert_array_equal(fresh.grads, after_big[1])


@pytest.mark.parametrize("loss", [fb.MSE(), fb.SoftmaxCrossEntropy()], ids=lambda l: l.name)
def test_float32_agrees_with_float64(loss, rng):
    net64 = build(fb.GELU(), loss, dtype=np.float64, widths=(8, 16, 16, 5))
    net32 = build(fb.GELU(), loss, dtype=np.float32, widths=(8, 16, 16, 5))
    assert net32.params.dtype == np.float32 and net32.grads.dtype == np.float32
    np.testing.assert_allclose(net32.params, net64.params, rtol=1e-6)  # same seed, same start
    X = rng.normal(size=(17, 8))
    y = make_targets(loss, 17, 5, rng)
    l64, l32 = net64.loss_and_grad(X, y), net32.loss_and_grad(X.astype(np.float32), y)
    assert l32 == pytest.approx(l64, rel=1e-5)
    scale = np.abs(net64.grads).max()
    np.testing.assert_allclose(net32.grads, net64.grads, atol=2e-6 * scale)
    assert net32.forward(X).dtype == np.float32


def test_views_share_memory_with_flat_buffers():
    net = fb.Sequential(fb.Dense(3, 4), fb.ReLU(), fb.Dense(4, 2), loss="mse", seed=0)
    offsets = 0
    for layer in net.dense_layers:
        assert np.shares_memory(layer.W, net.params) and np.shares_memory(layer.b, net.params)
        assert np.shares_memory(layer.dW, net.grads) and np.shares_memory(layer.db, net.grads)
        assert layer.W.shape == (layer.in_features, layer.out_features)
        assert layer.W.flags.c_contiguous
        offsets += layer.W.size + layer.b.size
    assert offsets == net.n_params == 3 * 4 + 4 + 4 * 2 + 2
    net.layers[0].W[0, 0] = 42.0
    assert net.params[0] == 42.0
    assert isinstance(net.layers[1], fb.ReLU)


def test_seed_fixes_initial_weights_and_init_schemes():
    a = fb.Sequential(fb.Dense(20, 30), fb.ReLU(), fb.Dense(30, 2), seed=7)
    b = fb.Sequential(fb.Dense(20, 30), fb.ReLU(), fb.Dense(30, 2), seed=7)
    c = fb.Sequential(fb.Dense(20, 30), fb.ReLU(), fb.Dense(30, 2), seed=8)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    assert np.all(a.layers[0].b == 0)
    # "auto": He uniform (limit sqrt(6/fan_in)) before a ReLU, Glorot uniform otherwise.
    assert np.abs(a.layers[0].W).max() <= np.sqrt(6 / 20) + 1e-6
    assert np.abs(a.layers[0].W).max() > np.sqrt(6 / 50)
    assert np.abs(a.layers[2].W).max() <= np.sqrt(6 / 32) + 1e-6
    zeros = fb.Sequential(fb.Dense(4, 3, init="zeros"), seed=0)
    assert not zeros.params.any()
    for scheme, std in [
        ("he_normal", np.sqrt(2 / 400)),
        ("glorot_normal", np.sqrt(2 / 800)),
        ("lecun_normal", np.sqrt(1 / 400)),
    ]:
        W = fb.Sequential(fb.Dense(400, 400, init=scheme), seed=1).layers[0].W
        assert W.std() == pytest.approx(std, rel=0.02)


def test_summary_repr_and_config_round_trip():
    net = fb.Sequential(
        fb.Dense(4, 8),
        fb.LeakyReLU(0.2),
        fb.Dropout(0.25),
        fb.Dense(8, 3),
        loss=fb.Huber(2.0),
        dtype=np.float64,
        l2=0.5,
        seed=0,
    )
    text = net.summary()
    assert "Dense(4 -> 8)" in text and "67 total" in text and "LeakyReLU" in text
    assert "n_params=67" in repr(net)
    twin = fb.Sequential.from_config(net.get_config())
    assert twin.get_config() == net.get_config()
    assert twin.loss == fb.Huber(2.0) and twin.dtype == np.float64


def test_predict_and_predict_proba(rng):
    net = build(fb.Tanh(), fb.SoftmaxCrossEntropy(), widths=(5, 6, 3))
    X = rng.normal(size=(10, 5))
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(net.predict(X), proba.argmax(axis=1))
    binary = build(fb.Tanh(), fb.BinaryCrossEntropy(), widths=(5, 6, 1))
    p = binary.predict_proba(X)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-binary.forward(X))), rtol=1e-12)
    np.testing.assert_array_equal(binary.predict(X), (p[:, 0] > 0.5).astype(int))
    with pytest.raises(ValueError, match="classification loss"):
        build(fb.Tanh(), fb.MSE()).predict_proba(X)


def test_forward_blocks_match_one_pass(rng):
    """Inference runs in blocks of 1024 rows; the seams must not show."""
    net = fb.Sequential(fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 2), dtype=np.float64, seed=0)
    X = rng.normal(size=(2 * 1024 + 37, 3))
    expected = reference.forward(list(net.specs), *weights_of(net), X)
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("net_dtype, data_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_inference_on_data_of_the_other_float_dtype_equals_converted_data(rng, net_dtype, data_dtype):
    """forward, predict, predict_proba and evaluate read float data where it lies, converting each
    1024-row block (tests/test_memory.py: no whole copy): the same numbers as converting first."""
    layers = (fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 2))
    net = fb.Sequential(*layers, loss="cross_entropy", dtype=net_dtype, seed=0)
    X = rng.normal(size=(2 * 1024 + 37, 3)).astype(data_dtype)
    y = rng.integers(0, 2, size=X.shape[0])
    converted = X.astype(net_dtype)
    for method in (net.forward, net.predict, net.predict_proba):
        np.testing.assert_array_equal(method(X), method(converted))
    assert net.forward(X).dtype == net_dtype
    assert net.evaluate(X, y) == net.evaluate(converted, y)


def test_stable_at_extreme_logits():
    net = fb.Sequential(fb.Dense(2, 3), loss="cross_entropy", dtype=np.float64, seed=0)
    net.layers[0].W[...] = [[500.0, -500.0, 0.0], [0.0, 0.0, 0.0]]
    X = np.array([[1.0, 0.0], [-1.0, 0.0]])
    loss = net.loss_and_grad(X, np.array([1, 1]))
    assert np.isfinite(loss) and loss == pytest.approx(500.0, rel=1e-9)
    assert np.all(np.isfinite(net.grads))
    bce = fb.Sequential(fb.Dense(2, 1), loss="bce", dtype=np.float64, seed=0)
    bce.layers[0].W[...] = [[800.0], [0.0]]
    loss = bce.loss_and_grad(X, np.array([[0.0], [0.0]]))
    assert loss == pytest.approx(400.0, rel=1e-9) and np.all(np.isfinite(bce.grads))


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    net = fb.Sequential(
        fb.Dense(6, 8),
        fb.GELU(),
        fb.Dense(8, 8),
        fb.Softplus(),
        fb.Dense(8, 4),
        loss=fb.SoftmaxCrossEntropy(),
        dtype=np.float64,
        seed=3,
    )
    X = rng.normal(size=(11, 6))
    y = rng.integers(0, 4, size=11)
    loss = net.loss_and_grad(X, y)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.GELU(),
        torch.nn.Linear(8, 8),
        torch.nn.Softplus(),
        torch.nn.Linear(8, 4),
    ).double()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, layer in zip(linears, net.dense_layers):
            lin.weight.copy_(torch.from_numpy(layer.W.T.copy()))
            lin.bias.copy_(torch.from_numpy(layer.b.copy()))
    t_loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(X)), torch.from_numpy(y))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for lin, layer in zip(linears, net.dense_layers):
        np.testing.assert_allclose(layer.dW, lin.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(layer.db, lin.bias.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda l: l.name)
def test_integer_sample_weights_equal_repeated_rows(loss, rng):
    """sum(w_i l_i) / sum(w_i) with integer weights is the plain mean over rows repeated w_i times."""
    net = build(fb.Tanh(), loss, widths=(5, 6, 3))
    X = rng.normal(size=(7, 5))
    y = make_targets(loss, 7, 3, rng)
    w = np.array([1, 0, 3, 2, 1, 5, 1])
    weighted = net.loss_and_grad(X, y, sample_weight=w)
    grads = net.grads.copy()
    repeated = net.loss_and_grad(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0))
    assert weighted == pytest.approx(repeated, rel=1e-12)
    np.testing.assert_allclose(grads, net.grads, rtol=1e-10, atol=1e-14)
    assert net.evaluate(X, y, sample_weight=w)["loss"] == pytest.approx(repeated, rel=1e-12)
    unit = net.loss_and_grad(X, y, sample_weight=np.ones(7))
    assert unit == pytest.approx(net.loss_and_grad(X, y), rel=1e-14)


def test_fit_with_sample_weight_equals_fit_on_repeated_rows(rng):
    net_w = build(fb.Tanh(), fb.MSE(), widths=(5, 6, 3))
    net_r = build(fb.Tanh(), fb.MSE(), widths=(5, 6, 3))
    X, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 3))
    w = np.array([2, 1, 3, 1, 1, 2])
    net_w.fit(X, y, epochs=3, batch_size=None, optimizer=fb.optim.SGD(lr=0.1), sample_weight=w, verbose=0)
    net_r.fit(
        np.repeat(X, w, axis=0),
        np.repeat(y, w, axis=0),
        epochs=3,
        batch_size=None,
        optimizer=fb.optim.SGD(lr=0.1),
        verbose=0,
    )
    np.testing.assert_allclose(net_w.params, net_r.params, rtol=1e-10, atol=1e-13)


def test_get_and_set_params_copy_on_either_side():
    net = fb.Sequential(fb.Dense(3, 4), fb.ReLU(), fb.Dense(4, 2), seed=0)
    values = net.get_params()
    values[:] = 0.5
    assert not np.any(net.params == 0.5)  # get_params is a copy, not a view
    net.set_params(values)
    np.testing.assert_array_equal(net.params, 0.5)
    np.testing.assert_array_equal(net.layers[0].W, 0.5)  # the layer views see the write


@pytest.mark.parametrize(
    "values, match",
    [
        (np.zeros(5), r"params must have shape \(26,\)"),
        (np.full(26, np.nan), "NaN or infinity"),
        (np.zeros((26, 1)), "shape"),
    ],
)
def test_set_params_refuses_bad_values_and_leaves_the_network(values, match):
    net = fb.Sequential(fb.Dense(3, 4), fb.ReLU(), fb.Dense(4, 2), seed=0)
    before = net.get_params()
    with pytest.raises(ValueError, match=match):
        net.set_params(values)
    np.testing.assert_array_equal(net.params, before)


def test_state_dict_methods_round_trip_with_torch_names():
    net = fb.Sequential(fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 2), seed=0)
    state = net.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    np.testing.assert_array_equal(state["0.weight"], net.layers[0].W.T)
    other = fb.Sequential(fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 2), seed=1)
    assert other.load_state_dict(state) == ([], [])
    np.testing.assert_array_equal(other.params, net.params)


def test_device_must_be_cpu_or_cuda():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'gpu'"):
        fb.Sequential(fb.Dense(3, 2), device="gpu")
    net = fb.Sequential(fb.Dense(3, 2), seed=0)
    assert net.to("cpu") is net and net.device == "cpu"
    assert fb.to_numpy(net.params) is net.params
