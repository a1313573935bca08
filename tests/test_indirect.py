"""indirect.py: the entry points of the activations and the matrix products (through the plan), the
losses and the optimizer rules (through the training loops' arguments), compiled on first use."""

import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest
from conftest import ALL_ACTIVATIONS, ALL_LOSSES

import fastbp as fb
from fastbp._kernels import plan as P
from fastbp._kernels.cpu import activations as act
from fastbp._kernels.cpu import blas, indirect, steps
from fastbp._kernels.cpu import losses as L
from fastbp._kernels.cpu import optim as O
from fastbp._kernels.jit import njit
from fastbp.reference import ACTIVATION_DERIVATIVES, ACTIVATION_FUNCTIONS

needs_jit = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="needs the JIT")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "layer", ALL_ACTIVATIONS, ids=lambda layer: f"{type(layer).__name__}({layer.param:g})"
)
def test_each_entry_pair_through_its_address_matches_numpy(layer, dtype):
    """Forward (bias added, in place or into a separate A) and backward (mask, f'(z), db) through
    the addresses a network's plan holds, against the NumPy reference's activation."""
    rng = np.random.default_rng(layer.code)
    Z = (rng.normal(size=(5, 7)) * 3).astype(dtype)
    bias, G = rng.normal(size=7).astype(dtype), rng.normal(size=(5, 7)).astype(dtype)
    mask = (rng.uniform(size=(5, 7)) > 0.3).astype(dtype)
    forward_fn, backward_fn = act.entry_addresses(layer.code, dtype)
    z = Z.copy()
    a = np.empty_like(z) if act.needs_preactivation(layer.code, layer.param) else z
    act.bias_activation_forward(forward_fn, layer.param, z, bias, a)
    g, db = G.copy(), np.full(7, np.nan, dtype)
    act.activation_backward(backward_fn, layer.param, z, a, g, mask, True, db)

    f, derivative = ACTIVATION_FUNCTIONS[layer.name], ACTIVATION_DERIVATIVES[layer.name]
    z_ref = Z.astype(np.float64) + bias
    g_ref = G * mask * derivative(z_ref, f(z_ref, layer.param), layer.param)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    if a is not z:  # a layer that needs z keeps it, with the bias
        np.testing.assert_allclose(z, z_ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(a, f(z_ref, layer.param), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(g, g_ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(db, g_ref.sum(axis=0), rtol=rtol, atol=10 * rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda loss: loss.name)
def test_each_loss_entry_through_its_address_equals_the_switch(loss, weighted, dtype):
    """What the training loops call (loss_and_output_grad_at) gives loss_and_output_grad's value
    and gradient, up to the order in which fast-math sums a row (LLVM vectorizes the sum
    differently in the two compilations: 1 ulp apart); a batch whose weights sum to 0 gives 0 and
    a zero gradient."""
    eps = float(np.finfo(dtype).eps)
    rng = np.random.default_rng(loss.code)
    out = (rng.normal(size=(6, 4)) * 3).astype(dtype)
    if loss.code == L.SOFTMAX_CROSS_ENTROPY:
        Y = rng.integers(0, 4, size=(6, 1)).astype(dtype)
    else:
        Y = rng.uniform(size=(6, 4)).astype(dtype)
    weights = rng.uniform(0.5, 2.0, size=6).astype(dtype) if weighted else np.zeros(0, dtype)
    loss_fn = L.entry_address(loss.code, dtype)
    for w in (weights, np.zeros_like(weights)) if weighted else (weights,):
        want, got = np.full(out.shape, np.nan, dtype), np.full(out.shape, np.nan, dtype)
        value = L.loss_and_output_grad(loss.code, loss.param, out, Y, w, want)
        through = L.loss_and_output_grad_at(loss_fn, loss.param, out, Y, w, got)
        assert through == pytest.approx(value, rel=8 * eps)
        np.testing.assert_allclose(got, want, rtol=8 * eps, atol=8 * eps * np.abs(want).max())
        if w.size and not w.any():
            assert value == 0.0 and not got.any()
        else:
            assert value > 0.0


def test_the_plan_holds_each_layers_and_the_products_entries_for_the_networks_dtype():
    for dtype in (np.float32, np.float64):
        net = fb.Sequential(fb.Dense(3, 4), fb.Tanh(), fb.Dense(4, 2), dtype=dtype)
        assert tuple(net._li[0, [P.FORWARD_FN, P.BACKWARD_FN]]) == act.entry_addresses(act.TANH, dtype)
        assert tuple(net._li[1, [P.FORWARD_FN, P.BACKWARD_FN]]) == act.entry_addresses(act.IDENTITY, dtype)
        gemms = [P.GEMM_NN_FN, P.GEMM_TN_FN, P.GEMM_NT_FN]
        assert tuple(net._li[0, gemms]) == blas.layer_addresses(3, 4, dtype)
        assert tuple(net._li[1, gemms]) == blas.layer_addresses(4, 2, dtype)
    assert act.entry_addresses(act.TANH, np.float32) != act.entry_addresses(act.TANH, np.float64)


def test_only_layers_with_dropout_name_the_dropout_entry():
    for dtype in (np.float32, np.float64):
        net = fb.Sequential(fb.Dense(3, 4), fb.ReLU(), fb.Dropout(0.5), fb.Dense(4, 2), dtype=dtype)
        assert list(net._li[:, P.DROPOUT_FN]) == [steps.dropout_address(dtype), 0]
    assert steps.dropout_address(np.float32) != steps.dropout_address(np.float64)


def _halve(x, n):
    """An entry of this test's own: no other test compiles it, so the threads below race for it."""
    X = indirect.array_at(x, (n,))
    for i in range(n):
        X[i] *= 0.5


def test_threads_asking_at_once_get_one_compiled_entry():
    """Four threads released together ask for an entry this process has not compiled: one C
    function is made, and all four get its address (without the lock, each made its own)."""
    signature = indirect.signature(numba.types.Array(numba.float64, 1, "C"), numba.intp)
    start, addresses = threading.Barrier(4), []

    def ask():
        start.wait()
        addresses.append(indirect.address(_halve, signature))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(addresses) == 4 and len(set(addresses)) == 1
    assert [key for key in indirect.compiled_entries() if key[0] is _halve] == [(_halve, signature)]


@njit
def _call_with(address, Z):
    indirect.call(address, (0.0, Z, Z, Z))


@needs_jit
def test_call_refuses_arrays_that_are_not_c_ordered():
    """The C function takes C-ordered arrays: a strided view must not reach it as one."""
    backward_fn = act.entry_addresses(act.RELU, np.float64)[1]
    with pytest.raises(numba.core.errors.TypingError):
        _call_with(backward_fn, np.ones((4, 6))[:, ::2])


@needs_jit
def test_the_loss_entries_hold_their_kernels_code_inlined():
    """Compiling a loss's entry (no cache: FASTBP_CACHE=0) compiles no version of the loss kernel
    on its own: the entry holds its code inlined (jit.inlined_copy), compiled once."""
    code = """
        import numpy as np
        from fastbp._kernels.cpu import losses as L
        L.entry_address(L.MSE, np.float64)
        L.entry_address(L.SOFTMAX_CROSS_ENTROPY, np.float64)
        print(len(L.elementwise_loss_and_grad.signatures), len(L.softmax_cross_entropy_and_grad.signatures))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, FASTBP_CACHE="0"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "0"]


@needs_jit
def test_a_fit_compiles_only_the_entries_it_uses():
    """In a fresh process (the kernels loaded from the cache this run filled): a ReLU network's
    fit (Adam, softmax cross-entropy) and predict bring in ReLU's and Identity's entries, those of
    the paths its products take (thin layers: the thin loops for the forward product and the
    weight gradient, the BLAS for the input gradient), the loss's and Adam's step for float32, and
    nothing else (not the fused SGD pass, not the penalty). `import fastbp` alone left Numba's array
    code generation (55-105 ms of import) to that first fit."""
    act.entry_addresses(act.RELU, np.float32)  # in the cache before the child looks
    act.entry_addresses(act.IDENTITY, np.float32)
    L.entry_address(L.SOFTMAX_CROSS_ENTROPY, np.float32)
    O.step_address(O.ADAM, np.float32)
    blas.layer_addresses(3, 4, np.float32)
    blas.layer_addresses(4, 2, np.float32)
    code = """
        import sys, numpy as np, fastbp as fb
        from fastbp._kernels.cpu import indirect
        print("numba.np.arrayobj" in sys.modules)  # Numba's array codegen: imported by the first fit
        X, y = np.ones((8, 3), np.float32), np.arange(8) % 2
        net = fb.Sequential(fb.Dense(3, 4), fb.ReLU(), fb.Dense(4, 2), loss="cross_entropy")
        net.fit(X, y, epochs=1, batch_size=4, optimizer="adam", verbose=0)
        net.predict(X)
        print(sorted(f"{entry.__name__} {sig.args[1].dtype}" for entry, sig in indirect.compiled_entries()))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[0] == "False"
    assert result.stdout.split("\n")[-2] == str(
        sorted(
            f"{name} float32"
            for name in (
                "backward_identity",
                "backward_relu",
                "forward_identity",
                "forward_relu",
                "gemm_nn_thin_entry",
                "gemm_nt_blas_entry",
                "gemm_tn_thin_entry",
                "softmax_cross_entropy_entry",
                "step_adam",
            )
        )
    )


def test_entry_signatures_take_what_call_passes():
    """An array goes over as its data pointer, a float as float64, an integer as intp, a flag as a
    boolean; what call would refuse, no entry can be compiled for."""
    matrix = numba.types.Array(numba.float32, 2, "C")
    assert indirect.signature(matrix, numba.float32, numba.int32, numba.boolean) == numba.types.void(
        numba.types.CPointer(numba.float32), numba.float64, numba.intp, numba.boolean
    )
    for refused in (numba.types.Array(numba.float32, 2, "A"), numba.types.unicode_type):
        with pytest.raises(TypeError, match="cannot pass"):
            indirect.signature(refused)


def test_only_the_mini_batch_loop_with_plain_sgd_gets_the_fused_pass():
    """The fused SGD pass's entry is compiled for the mini-batch loop alone (the batch-1 loop fuses
    SGD in its own sweeps), and only for plain SGD; the penalty's only with l1 or l2."""
    from fastbp._kernels.cpu import train

    params = np.zeros(4, np.float32)
    kind, _, _, plain = fb.optim.SGD(lr=0.1).prepare(params)
    _, _, _, momentum = fb.optim.SGD(lr=0.1, momentum=0.9).prepare(params)

    def addresses(loop, hyper, l2=0.0):
        return train.entry_addresses(loop, L.SOFTMAX_CROSS_ENTROPY, kind, hyper, 0.0, l2, 0.0, np.float32)

    assert addresses(train.online_steps, plain)[2:] == (0, 0)
    assert addresses(train.batch_steps, momentum)[2:] == (0, 0)
    fused = addresses(train.batch_steps, plain)[2]
    assert (fused != 0) == blas.accumulates()
    assert addresses(train.batch_steps, plain, l2=0.1)[2] == 0
    assert addresses(train.batch_steps, plain, l2=0.1)[3] != 0
