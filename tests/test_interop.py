"""fastbp.interop: torch-named state dicts, and nn.Sequential <-> Sequential with the same outputs."""

import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp import interop


def _net(dtype=np.float32):
    return fb.Sequential(
        fb.Dense(4, 6),
        fb.Tanh(),
        fb.Dropout(0.2),
        fb.Dense(6, 5),
        fb.ReLU(),
        fb.Dense(5, 3),
        loss=fb.SoftmaxCrossEntropy(),
        dtype=dtype,
        seed=0,
    )


# --- state dicts (NumPy only) ---------------------------------------------------------------------


def test_state_dict_uses_torch_names_and_shapes():
    net = _net()
    state = interop.state_dict(net)
    assert list(state) == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    assert state["0.weight"].shape == (6, 4) and state["5.bias"].shape == (3,)
    np.testing.assert_array_equal(state["3.weight"], net.layers[3].W.T)
    assert state["0.weight"].flags.c_contiguous and state["0.weight"].dtype == np.float32
    state["0.bias"][:] = 7.0  # copies, not views
    assert not (net.layers[0].b == 7.0).any()


def test_load_state_dict_round_trip_and_casts():
    source, target = _net(np.float64), _net(np.float32)
    target.reset_parameters(seed=5)
    result = interop.load_state_dict(target, interop.state_dict(source))
    assert result == interop.IncompatibleKeys([], [])
    np.testing.assert_allclose(target.params, source.params.astype(np.float32))
    X = np.random.default_rng(0).normal(size=(7, 4))
    np.testing.assert_allclose(target.forward(X), source.forward(X), rtol=1e-5, atol=1e-6)


def test_load_state_dict_errors_name_the_key_and_write_nothing():
    net = _net()
    before = net.params.copy()
    state = interop.state_dict(net)
    state["0.bias"] = state["0.bias"] + 1.0
    state["3.weight"] = state["3.weight"].T
    with pytest.raises(ValueError, match=r"'3.weight' has shape \(6, 5\).*needs \(5, 6\)"):
        interop.load_state_dict(net, state)
    np.testing.assert_array_equal(net.params, before)

    with pytest.raises(KeyError, match=r"missing keys \['5.bias'\].*unexpected keys \['9.bias'\]"):
        interop.load_state_dict(
            net,
            {**{k: v for k, v in interop.state_dict(net).items() if k != "5.bias"}, "9.bias": np.zeros(3)},
        )
    partial = {"5.bias": np.ones(3), "extra": np.zeros(1)}
    result = interop.load_state_dict(net, partial, strict=False)
    assert result.unexpected_keys == ["extra"] and "0.weight" in result.missing_keys
    np.testing.assert_array_equal(net.layers[5].b, np.ones(3))

    bad = interop.state_dict(net)
    bad["0.weight"] = bad["0.weight"].astype(object)
    with pytest.raises(TypeError, match="'0.weight'"):
        interop.load_state_dict(net, bad)
    bad = interop.state_dict(net)
    bad["0.bias"][1] = np.nan
    with pytest.raises(ValueError, match="'0.bias' holds a non-finite"):
        interop.load_state_dict(net, bad)
    with pytest.raises(TypeError, match="mapping"):
        interop.load_state_dict(net, [1, 2])


# --- torch --------------------------------------------------------------------------------------


torch = pytest.importorskip("torch")
nn = torch.nn

ACTIVATION_PAIRS = [
    (nn.ReLU(), fb.ReLU),
    (nn.LeakyReLU(0.2), fb.LeakyReLU),
    (nn.LeakyReLU(-0.3), fb.LeakyReLU),
    (nn.ELU(0.7), fb.ELU),
    (nn.GELU(), fb.GELU),
    (nn.SiLU(), fb.SiLU),
    (nn.Sigmoid(), fb.Sigmoid),
    (nn.Tanh(), fb.Tanh),
    (nn.Softplus(), fb.Softplus),
    (nn.Identity(), fb.Identity),
]


@pytest.mark.parametrize("act,fb_cls", ACTIVATION_PAIRS, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_torch_gives_the_same_outputs(act, fb_cls, dtype):
    torch.manual_seed(0)
    module = (
        nn.Sequential(nn.Linear(5, 8), act, nn.Dropout(0.3), nn.Linear(8, 8), act, nn.Linear(8, 2))
        .to(dtype)
        .eval()
    )
    net = interop.from_torch(module)
    assert net.dtype == (np.float64 if dtype == torch.float64 else np.float32)
    assert isinstance(net.specs[1], fb_cls) and net.specs[2] == fb.Dropout(0.3)
    X = torch.randn(33, 5, dtype=dtype) * 3
    with torch.no_grad():
        expected = module(X).numpy()
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}
    np.testing.assert_allclose(net.forward(X.numpy()), expected, **tol)
    assert list(interop.state_dict(net)) == list(module.state_dict())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_torch_gives_the_same_outputs_and_round_trips(dtype):
    net = fb.Sequential(
        fb.Dense(4, 7),
        fb.GELU(),
        fb.Dropout(0.1),
        fb.Dense(7, 6),
        fb.ELU(0.5),
        fb.Dense(6, 6),
        fb.LeakyReLU(0.05),
        fb.Dense(6, 6),
        fb.Softplus(),
        fb.Dense(6, 6),
        fb.SiLU(),
        fb.Dense(6, 2),
        fb.Sigmoid(),
        dtype=dtype,
        seed=1,
    )
    module = interop.to_torch(net)
    assert module.training  # a new torch module, in torch's default mode
    module.eval()
    assert [type(m).__name__ for m in module] == [
        "Linear",
        "GELU",
        "Dropout",
        "Linear",
        "ELU",
        "Linear",
        "LeakyReLU",
        "Linear",
        "Softplus",
        "Linear",
        "SiLU",
        "Linear",
        "Sigmoid",
    ]
    X = np.random.default_rng(2).normal(size=(9, 4)).astype(dtype)
    with torch.no_grad():
        out = module(torch.from_numpy(X)).numpy()
    assert out.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(out, net.forward(X), rtol=tol, atol=tol)
    back = interop.from_torch(module)
    np.testing.assert_array_equal(back.params, net.params)
    assert back.specs == net.specs
    # The weights are copies: training one leaves the other alone.
    with torch.no_grad():
        module[0].weight.add_(1.0)
    np.testing.assert_array_equal(back.params, net.params)


def test_torch_state_dict_loads_into_fastbp_and_back():
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    net = fb.Sequential(fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 2), seed=9)
    interop.load_state_dict(net, module.state_dict())  # tensors are accepted
    other = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    other.load_state_dict({k: torch.from_numpy(v) for k, v in interop.state_dict(net).items()})
    for a, b in zip(module.parameters(), other.parameters()):
        torch.testing.assert_close(a, b)


def test_gradients_agree_with_autograd():
    torch.manual_seed(2)
    module = nn.Sequential(nn.Linear(5, 6), nn.SiLU(), nn.Linear(6, 3)).double()
    net = interop.from_torch(module, loss="cross_entropy")
    X = torch.randn(10, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    loss = nn.functional.cross_entropy(module(X), y)
    loss.backward()
    assert net.loss_and_grad(X.numpy(), y.numpy()) == pytest.approx(loss.item(), rel=1e-12)
    for key, param in module.named_parameters():
        index, kind = key.split(".")
        layer = net.layers[int(index)]
        mine = layer.dW.T if kind == "weight" else layer.db
        np.testing.assert_allclose(mine, param.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_linear_without_bias_and_lower_precision():
    module = nn.Sequential(nn.Linear(3, 2, bias=False)).half()
    net = interop.from_torch(module)
    assert net.dtype == np.float32
    np.testing.assert_array_equal(net.layers[0].b, 0.0)
    np.testing.assert_array_equal(net.layers[0].W, module[0].weight.detach().float().numpy().T)
    assert interop.from_torch(nn.Sequential(nn.Linear(2, 2)), dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize(
    "bad,index,name",
    [
        (nn.Conv1d(1, 1, 1), 1, "Conv1d"),
        (nn.GELU(approximate="tanh"), 1, "GELU"),
        (nn.Softplus(beta=2.0), 1, "Softplus"),
        (nn.ReLU6(), 1, "ReLU6"),
        (nn.BatchNorm1d(4), 1, "BatchNorm1d"),
        (nn.Sequential(nn.ReLU()), 1, "Sequential"),
    ],
)
def test_unsupported_modules_are_named_with_their_index(bad, index, name):
    module = nn.Sequential(nn.Linear(3, 4), bad, nn.Linear(4, 1))
    with pytest.raises(ValueError, match=rf"module {index} \({name}"):
        interop.from_torch(module)


def test_structures_fastbp_cannot_hold():
    with pytest.raises(ValueError, match=r"layer 2 \(Tanh\)"):
        interop.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 1)))
    with pytest.raises(ValueError, match=r"layer 0 \(Dropout\)"):
        interop.from_torch(nn.Sequential(nn.Dropout(0.1), nn.Linear(3, 1)))
    with pytest.raises(TypeError, match="nn.Sequential"):
        interop.from_torch(nn.Linear(3, 1))


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"fastbp\[torch\]"):
        interop.to_torch(_net())
    with pytest.raises(ImportError, match=r"fastbp\[torch\]"):
        interop.from_torch(object())
    interop.state_dict(_net())  # NumPy only: still works
