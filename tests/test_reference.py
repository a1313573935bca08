"""fastbp.reference, the NumPy oracle: checked against finite differences, hand-worked values and,
where it is installed, torch (float64, to 1e-10)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fastbp import reference as ref
from fastbp.layers import (
    ELU,
    GELU,
    Activation,
    Dense,
    Dropout,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from fastbp.losses import L1, MSE, BinaryCrossEntropy, Huber, SoftmaxCrossEntropy

# Non-default settings where there is one, so that a dropped parameter shows.
ACTIVATIONS = [
    Identity(),
    ReLU(),
    LeakyReLU(negative_slope=0.1),
    ELU(alpha=0.7),
    GELU(),
    SiLU(),
    Sigmoid(),
    Tanh(),
    Softplus(),
]
LOSSES = [MSE(), L1(), Huber(delta=0.5), BinaryCrossEntropy(), SoftmaxCrossEntropy()]
# Where the derivative of an activation jumps: finite differences must stay away from it.
KINKED = {"relu", "leaky_relu", "elu"}


def architecture(name, act):
    """Layer specs of a small network; every architecture ends in 4 outputs but "one_output"."""
    return {
        "two": [Dense(5, 7), act, Dense(7, 4)],
        "three": [Dense(5, 7), act, Dense(7, 6), act, Dropout(0.3), Dense(6, 4)],
        "output_activation": [Dense(5, 7), act, Dropout(0.2), Dense(7, 4), act],
        "one_output": [Dense(5, 7), act, Dense(7, 1)],
    }[name]


ARCHITECTURES = ["two", "three", "output_activation", "one_output"]
REGULARIZATION = [(0.0, 0.0), (0.03, 0.02)]


def pre_activations(specs, weights, biases, X):
    """The input z of every activation layer, in order."""
    return [
        ref.forward(specs[:i], weights, biases, X)
        for i, layer in enumerate(specs)
        if isinstance(layer, Activation)
    ]


def make_problem(specs, loss, n=6, dtype=np.float64, seed=0):
    """Random parameters, inputs and targets for `specs`, away from every kink.

    Seeds are tried in turn until no pre-activation of ReLU/LeakyReLU/ELU lies within 1e-3 of 0.
    L1 and Huber targets sit a residual of 0.1 or more from the output, and Huber's residuals fall
    on both sides of delta (but not within 0.1 of it), so both of its branches are exercised.
    """
    dense = [layer for layer in specs if isinstance(layer, Dense)]
    for s in itertools.count(seed):
        rng = np.random.default_rng(s)
        weights = [
            rng.normal(0.0, 1.5 / math.sqrt(d.in_features), (d.in_features, d.out_features)) for d in dense
        ]
        biases = [rng.normal(0.0, 0.5, d.out_features) for d in dense]
        X = rng.normal(size=(n, dense[0].in_features))
        zs = [
            z
            for layer, z in zip(
                [la for la in specs if isinstance(la, Activation)],
                pre_activations(specs, weights, biases, X),
                strict=True,
            )
            if layer.name in KINKED
        ]
        if all(np.min(np.abs(z)) > 1e-3 for z in zs):
            break
    out = ref.forward(specs, weights, biases, X)
    k = out.shape[1]
    sign = rng.choice([-1.0, 1.0], size=out.shape)
    if loss.name == "mse":
        y = rng.normal(size=out.shape)
    elif loss.name == "l1":
        y = out - sign * rng.uniform(0.1, 1.0, out.shape)
    elif loss.name == "huber":
        below = rng.uniform(0.1, loss.delta - 0.1, out.shape)
        above = rng.uniform(loss.delta + 0.1, 3 * loss.delta, out.shape)
        y = out - sign * np.where(np.arange(out.size).reshape(out.shape) % 2 == 0, below, above)
    elif loss.name == "binary_cross_entropy":
        y = rng.uniform(0.0, 1.0, out.shape)
        y[0] = rng.integers(0, 2, k)  # hard labels too
    else:
        y = rng.integers(0, k, n)
    if k == 1 and not loss.integer_targets:
        y = y.reshape(n)  # (n,) targets for a single output
    cast = [np.asarray(a, dtype=dtype) for a in (*weights, *biases, X)]
    weights, biases, X = cast[: len(dense)], cast[len(dense) : -1], cast[-1]
    return weights, biases, X, y


def numerical_gradient(f, arrays, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of every array.

    Each entry is nudged in place and restored."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + eps
            up = f()
            a[idx] = old - eps
            down = f()
            a[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def relative_error(got, expected):
    return np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-300)


def cases():
    for arch, act, loss, reg in itertools.product(ARCHITECTURES, ACTIVATIONS, LOSSES, REGULARIZATION):
        if arch == "one_output" and loss.integer_targets:
            continue  # softmax over one class is constant: nothing to check
        yield pytest.param(arch, act, loss, reg, id=f"{arch}-{act.name}-{loss.name}-reg{reg[0]}")


# ----------------------------------------------------------------------------------------------
# (a) Gradients against finite differences.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "act", "loss", "reg"), list(cases()))
def test_gradient_matches_finite_differences(arch, act, loss, reg):
    specs = architecture(arch, act)
    weights, biases, X, y = make_problem(specs, loss)
    l1, l2 = reg
    value, dweights, dbiases = ref.loss_and_grad(specs, loss, weights, biases, X, y, l1, l2)
    assert isinstance(value, float) and np.isfinite(value)

    def f():
        return ref.loss_and_grad(specs, loss, weights, biases, X, y, l1, l2)[0]

    numeric = numerical_gradient(f, weights + biases)
    for got, expected in zip(dweights + dbiases, numeric, strict=True):
        assert got.shape == expected.shape
        assert np.max(np.abs(expected)) > 1e-6  # a vanishing gradient would check nothing
        assert relative_error(got, expected) < 1e-6


# ----------------------------------------------------------------------------------------------
# Hand-worked values and the conventions at kinks and thresholds (no torch needed).
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "out", "y", "value", "grad"),
    [
        (MSE(), [[0.0, 2.0]], [[1.0, 0.0]], 2.5, [[-1.0, 2.0]]),
        (L1(), [[-2.0, 0.5, 1.0]], [[0.0, 0.5, 0.0]], 1.0, [[-1 / 3, 0.0, 1 / 3]]),
        (
            Huber(delta=1.0),
            [[0.5, 3.0, -1.0]],
            [[0.0, 0.0, 0.0]],
            (0.125 + 2.5 + 0.5) / 3,
            [[0.5 / 3, 1 / 3, -1 / 3]],
        ),
        (Huber(delta=2.0), [[3.0, 1.0]], [[0.0, 0.0]], (2.0 * (3.0 - 1.0) + 0.5) / 2, [[1.0, 0.5]]),
        (BinaryCrossEntropy(), [[0.0, 100.0]], [[1.0, 1.0]], math.log(2) / 2, [[-0.25, 0.0]]),
        (BinaryCrossEntropy(), [[-800.0]], [[1.0]], 800.0, [[-1.0]]),
        (
            SoftmaxCrossEntropy(),
            [[0.0, 0.0], [1000.0, 0.0]],
            [1, 1],
            (math.log(2) + 1000.0) / 2,
            [[0.25, -0.25], [0.5, -0.5]],
        ),
    ],
)
def test_loss_values_by_hand(loss, out, y, value, grad):
    out = np.array(out)
    y = np.array(y)
    if loss.integer_targets:
        y = y.astype(np.int64)
    got_value, got_grad = ref.LOSS_FUNCTIONS[loss.name](out, y, loss.param)
    assert got_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(got_grad, grad, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(
    ("act", "z", "value", "derivative"),
    [
        (ReLU(), 0.0, 0.0, 0.0),  # the subgradient at 0 is 0
        (ReLU(), -0.0, 0.0, 0.0),
        (LeakyReLU(negative_slope=0.1), 0.0, 0.0, 0.1),  # z > 0 ? 1 : slope
        (LeakyReLU(negative_slope=0.1), -2.0, -0.2, 0.1),
        (ELU(alpha=0.7), 0.0, 0.0, 0.7),  # alpha * exp(z) for z <= 0
        (ELU(alpha=0.7), -1.0, 0.7 * (math.exp(-1) - 1), 0.7 * math.exp(-1)),
        (ELU(alpha=0.7), 800.0, 800.0, 1.0),
        (
            GELU(),
            1.0,
            0.5 * (1 + math.erf(1 / math.sqrt(2))),
            0.5 * (1 + math.erf(1 / math.sqrt(2))) + math.exp(-0.5) / math.sqrt(2 * math.pi),
        ),
        (Softplus(), 20.0, math.log1p(math.exp(20.0)), 1 / (1 + math.exp(-20.0))),  # 20 is not above
        (Softplus(), 20.5, 20.5, 1.0),  # above the threshold: the identity
        (Softplus(), -30.0, math.log1p(math.exp(-30.0)), 1 / (1 + math.exp(30.0))),
        (Sigmoid(), -800.0, 0.0, 0.0),
        (
            SiLU(),
            2.0,
            2 / (1 + math.exp(-2)),
            1 / (1 + math.exp(-2)) * (1 + 2 * (1 - 1 / (1 + math.exp(-2)))),
        ),
        (Tanh(), 0.5, math.tanh(0.5), 1 - math.tanh(0.5) ** 2),
        (Identity(), -3.0, -3.0, 1.0),
    ],
)
def test_activation_values_by_hand(act, z, value, derivative):
    z = np.array([z])
    a = ref.ACTIVATION_FUNCTIONS[act.name](z, act.param)
    d = ref.ACTIVATION_DERIVATIVES[act.name](z, a, act.param) * np.ones_like(z)
    np.testing.assert_allclose(a, [value], rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(d, [derivative], rtol=1e-13, atol=1e-300)


def test_penalty_on_weights_only():
    specs = architecture("three", Tanh())
    weights, biases, X, y = make_problem(specs, MSE())
    l1, l2 = 0.03, 0.02
    plain = ref.loss_and_grad(specs, MSE(), weights, biases, X, y)
    penalized = ref.loss_and_grad(specs, MSE(), weights, biases, X, y, l1=l1, l2=l2)
    expected = sum(l1 * np.abs(W).sum() + 0.5 * l2 * (W**2).sum() for W in weights)
    assert penalized[0] - plain[0] == pytest.approx(expected, rel=1e-12)
    for W, g, g0 in zip(weights, penalized[1], plain[1], strict=True):
        np.testing.assert_allclose(g - g0, l1 * np.sign(W) + l2 * W, rtol=1e-10, atol=1e-15)
    for g, g0 in zip(penalized[2], plain[2], strict=True):
        np.testing.assert_array_equal(g, g0)

    weights[0][0, 0] = 0.0  # sign(0) == 0: no l1 pull on a zero weight
    at_zero = ref.loss_and_grad(specs, MSE(), weights, biases, X, y, l1=l1)
    at_zero_plain = ref.loss_and_grad(specs, MSE(), weights, biases, X, y)
    assert at_zero[1][0][0, 0] == at_zero_plain[1][0][0, 0]


def test_dropout_is_the_identity():
    with_dropout = architecture("three", ReLU())
    without = [layer for layer in with_dropout if not isinstance(layer, Dropout)]
    weights, biases, X, y = make_problem(with_dropout, MSE())
    np.testing.assert_array_equal(
        ref.forward(with_dropout, weights, biases, X), ref.forward(without, weights, biases, X)
    )


def test_predict_proba_from_output():
    out = np.array([[0.0, math.log(3.0)], [1000.0, -1000.0]])
    np.testing.assert_allclose(
        ref.predict_proba_from_output(SoftmaxCrossEntropy(), out), [[0.25, 0.75], [1.0, 0.0]], rtol=1e-12
    )
    np.testing.assert_allclose(
        ref.predict_proba_from_output(BinaryCrossEntropy(), out), [[0.5, 0.75], [1.0, 0.0]], rtol=1e-12
    )
    with pytest.raises(ValueError, match="mse"):
        ref.predict_proba_from_output(MSE(), out)


# ----------------------------------------------------------------------------------------------
# (b) Against torch, float64.
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def torch_activation(torch, act):
    nn = torch.nn
    return {
        "identity": nn.Identity,
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "softplus": nn.Softplus,
        "leaky_relu": lambda: nn.LeakyReLU(negative_slope=act.negative_slope),
        "elu": lambda: nn.ELU(alpha=act.alpha),
    }[act.name]()


def torch_loss(torch, loss, out, y):
    F = torch.nn.functional
    if loss.integer_targets:
        return F.cross_entropy(out, torch.from_numpy(np.asarray(y, dtype=np.int64)))
    target = torch.from_numpy(np.asarray(y, dtype=np.float64)).reshape(out.shape)
    return {
        "mse": lambda: F.mse_loss(out, target),
        "l1": lambda: F.l1_loss(out, target),
        "huber": lambda: F.huber_loss(out, target, delta=loss.delta),
        "binary_cross_entropy": lambda: F.binary_cross_entropy_with_logits(out, target),
    }[loss.name]()


def torch_network(torch, specs, weights, biases):
    """torch.nn.Sequential equal to `specs`, in eval mode, and its Linear layers in order."""
    modules, linears = [], []
    for layer in specs:
        if isinstance(layer, Dense):
            k = len(linears)
            lin = torch.nn.Linear(layer.in_features, layer.out_features, dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(weights[k].T))
                lin.bias.copy_(torch.from_numpy(biases[k]))
            linears.append(lin)
            modules.append(lin)
        elif isinstance(layer, Activation):
            modules.append(torch_activation(torch, layer))
        else:
            modules.append(torch.nn.Dropout(layer.p))
    return torch.nn.Sequential(*modules).eval(), linears


def torch_objective(torch, loss, linears, out, y, l1, l2):
    value = torch_loss(torch, loss, out, y)
    for lin in linears:
        value = value + l1 * lin.weight.abs().sum() + 0.5 * l2 * (lin.weight**2).sum()
    return value


@pytest.mark.parametrize(("arch", "act", "loss", "reg"), list(cases()))
def test_matches_torch(torch, arch, act, loss, reg):
    specs = architecture(arch, act)
    weights, biases, X, y = make_problem(specs, loss, seed=100)
    l1, l2 = reg
    model, linears = torch_network(torch, specs, weights, biases)
    out = model(torch.from_numpy(X))
    value = torch_objective(torch, loss, linears, out, y, l1, l2)
    value.backward()

    np.testing.assert_allclose(
        ref.forward(specs, weights, biases, X), out.detach().numpy(), rtol=1e-12, atol=1e-14
    )
    got_value, dweights, dbiases = ref.loss_and_grad(specs, loss, weights, biases, X, y, l1, l2)
    assert got_value == pytest.approx(value.item(), rel=1e-12)
    for lin, dW, db in zip(linears, dweights, dbiases, strict=True):
        np.testing.assert_allclose(dW, lin.weight.grad.numpy().T, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(db, lin.bias.grad.numpy(), rtol=1e-10, atol=1e-14)


KINK_POINTS = np.array(
    [-800.0, -25.0, -3.0, -1.0, -1e-3, -0.0, 0.0, 1e-3, 0.5, 1.0, 3.0, 19.999, 20.0, 20.001, 25.0, 800.0]
)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.name)
def test_activation_matches_torch_at_kinks_and_thresholds(torch, act):
    z = torch.tensor(KINK_POINTS, requires_grad=True)
    a = torch_activation(torch, act)(z)
    a.sum().backward()
    zn = KINK_POINTS.copy()
    got = ref.ACTIVATION_FUNCTIONS[act.name](zn, act.param)
    derivative = ref.ACTIVATION_DERIVATIVES[act.name](zn, got, act.param) * np.ones_like(zn)
    np.testing.assert_allclose(got, a.detach().numpy(), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(derivative, z.grad.numpy(), rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize(
    "loss",
    [L1(), Huber(delta=0.5), Huber(delta=2.0), MSE()],
    ids=lambda loss: f"{loss.name}{loss.param or ''}",
)
def test_loss_matches_torch_at_kinks(torch, loss):
    # residuals exactly at 0 (L1's kink) and at +-delta (where Huber changes branch)
    d = np.array([[0.0, 0.5, -0.5, 2.0], [-2.0, 1e-3, -7.0, 0.25]])
    y = np.linspace(-1.0, 1.0, d.size).reshape(d.shape)
    out_np = y + d
    out = torch.tensor(out_np, requires_grad=True)
    value = torch_loss(torch, loss, out, y)
    value.backward()
    got_value, got_grad = ref.LOSS_FUNCTIONS[loss.name](out_np, y, loss.param)
    assert got_value == pytest.approx(value.item(), rel=1e-14)
    np.testing.assert_allclose(got_grad, out.grad.numpy(), rtol=1e-14, atol=1e-300)


# ----------------------------------------------------------------------------------------------
# (c) float32 in, float32 out.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("act", "loss"), list(itertools.product(ACTIVATIONS, LOSSES)), ids=lambda x: x.name)
def test_float32_stays_float32(act, loss):
    specs = architecture("three", act)
    w64, b64, X64, y = make_problem(specs, loss)
    w32, b32 = ([a.astype(np.float32) for a in arrays] for arrays in (w64, b64))
    X32 = X64.astype(np.float32)

    out = ref.forward(specs, w32, b32, X32)
    assert out.dtype == np.float32
    value, dweights, dbiases = ref.loss_and_grad(specs, loss, w32, b32, X32, y, 0.03, 0.02)
    assert isinstance(value, float)
    assert all(g.dtype == np.float32 for g in dweights + dbiases)
    if loss.classifies:
        assert ref.predict_proba_from_output(loss, out).dtype == np.float32

    # the same numbers as in float64, to float32's precision
    value64, dw64, db64 = ref.loss_and_grad(specs, loss, w64, b64, X64, y, 0.03, 0.02)
    assert value == pytest.approx(value64, rel=1e-5)
    for g32, g64 in zip(dweights + dbiases, dw64 + db64, strict=True):
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-5 * np.max(np.abs(g64)))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_keeps_float32(optimizer):
    specs = architecture("two", Tanh())
    weights, biases, X, y = make_problem(specs, MSE(), n=10, dtype=np.float32)
    ref.train(specs, MSE(), weights, biases, X, y, epochs=2, batch_size=4, optimizer=optimizer)
    assert all(p.dtype == np.float32 for p in weights + biases)


# ----------------------------------------------------------------------------------------------
# (d) Training.
# ----------------------------------------------------------------------------------------------


def blobs(n=64, seed=0):
    """Two well separated Gaussian blobs in 2-D; labels 0 and 1."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    X = rng.normal(0.0, 0.5, (n, 2)) + np.where(labels[:, None] == 1, 1.5, -1.5)
    return X, labels


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.5), ("adam", 0.05)])
@pytest.mark.parametrize("loss", [SoftmaxCrossEntropy(), BinaryCrossEntropy()], ids=lambda x: x.name)
def test_train_learns_separable_problem(optimizer, lr, loss):
    X, labels = blobs()
    k = 2 if loss.integer_targets else 1
    specs = [Dense(2, 8), Tanh(), Dense(8, k)]
    rng = np.random.default_rng(1)
    weights = [rng.normal(0.0, 0.5, (2, 8)), rng.normal(0.0, 0.5, (8, k))]
    biases = [np.zeros(8), np.zeros(k)]
    y = labels if loss.integer_targets else labels.astype(np.float64)
    history = ref.train(
        specs, loss, weights, biases, X, y, epochs=15, batch_size=10, lr=lr, optimizer=optimizer, seed=3
    )
    assert len(history) == 15
    assert history[-1] < 0.2 * history[0]
    proba = ref.predict_proba_from_output(loss, ref.forward(specs, weights, biases, X))
    predicted = proba.argmax(axis=1) if k == 2 else (proba[:, 0] > 0.5).astype(int)
    assert np.mean(predicted == labels) == 1.0


@pytest.mark.parametrize("shuffle", [False, True])
def test_train_is_the_plain_minibatch_loop(shuffle):
    # 10 samples in batches of 4: the last batch has 2 and is used; history weighs by batch size
    specs = architecture("two", Sigmoid())
    loss = Huber(delta=0.5)
    weights, biases, X, y = make_problem(specs, loss, n=10)
    w, b = [a.copy() for a in weights], [a.copy() for a in biases]
    history = ref.train(
        specs,
        loss,
        weights,
        biases,
        X,
        y,
        epochs=2,
        batch_size=4,
        lr=0.3,
        shuffle=shuffle,
        seed=7,
        l1=0.01,
        l2=0.02,
    )

    rng = np.random.default_rng(7)
    expected = []
    for _ in range(2):
        order = rng.permutation(10) if shuffle else np.arange(10)
        total = 0.0
        for batch in (order[:4], order[4:8], order[8:]):
            value, dw, db = ref.loss_and_grad(specs, loss, w, b, X[batch], y[batch], 0.01, 0.02)
            for p, g in zip(w + b, dw + db, strict=True):
                p -= 0.3 * g
            total += value * len(batch)
        expected.append(total / 10)
    np.testing.assert_allclose(history, expected, rtol=1e-14)
    for p, q in zip(weights + biases, w + b, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-14)
    assert not np.allclose(weights[0], make_problem(specs, loss, n=10)[0][0])  # it moved


@pytest.mark.parametrize("loss", [MSE(), SoftmaxCrossEntropy()], ids=lambda x: x.name)
def test_adam_matches_torch(torch, loss):
    specs = architecture("three", GELU())
    weights, biases, X, y = make_problem(specs, loss, n=8)
    l1, l2, lr, steps = 0.01, 0.02, 0.05, 6
    model, linears = torch_network(torch, specs, weights, biases)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    torch_history = []
    for _ in range(steps):
        opt.zero_grad()
        value = torch_objective(torch, loss, linears, model(torch.from_numpy(X)), y, l1, l2)
        value.backward()
        opt.step()
        torch_history.append(value.item())

    history = ref.train(
        specs,
        loss,
        weights,
        biases,
        X,
        y,
        epochs=steps,
        batch_size=len(X),
        lr=lr,
        optimizer="adam",
        shuffle=False,
        l1=l1,
        l2=l2,
    )
    np.testing.assert_allclose(history, torch_history, rtol=1e-10)
    assert history[-1] < history[0]
    for lin, W, b in zip(linears, weights, biases, strict=True):
        np.testing.assert_allclose(W, lin.weight.detach().numpy().T, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), rtol=1e-10, atol=1e-13)
