"""The weight penalty kernel and the mini-batch gather helpers against NumPy, and through the network."""

import os
import re

import numpy as np
import pytest
from conftest import fit_and_replay, fresh_asm

import fastbp as fb
from fastbp import reference
from fastbp._kernels.cpu.batch import PREFETCH_MIN_BYTES, gather_rows, gather_values
from fastbp._kernels.cpu.steps import PENALTY_BLOCK, penalty_address, penalty_at, weight_penalty

# (penalty relative tolerance, gradient rtol, gradient atol) per dtype: float32 sums run in float32
# blocks of PENALTY_BLOCK, then float64.
TOLERANCE = {np.float64: (1e-12, 1e-14, 1e-15), np.float32: (1e-6, 1e-6, 1e-7)}
PENALTIES = [(0.01, 0.0), (0.0, 0.1), (0.01, 0.1)]


def penalty_net(dtype, l1=0.0, l2=0.0, widths=(40, 60, 5)):
    """40 x 60 = 2400 weights: more than two PENALTY_BLOCKs, the last one partial."""
    assert widths[0] * widths[1] > 2 * PENALTY_BLOCK
    return fb.Sequential(
        fb.Dense(widths[0], widths[1]),
        fb.Tanh(),
        fb.Dense(widths[1], widths[2]),
        loss=fb.MSE(),
        dtype=dtype,
        seed=3,
        l1=l1,
        l2=l2,
    )


def numpy_penalty(net, l1, l2):
    """The penalty in float64, and the gradient term in the network's dtype, laid out as params."""
    t = net.dtype.type
    total = 0.0
    term = np.zeros_like(net.params)
    for layer in net.dense_layers:
        W = layer.W.astype(np.float64)
        total += l1 * np.abs(W).sum() + 0.5 * l2 * (W * W).sum()
        term[layer.w_slice] = (t(l1) * np.sign(layer.W) + t(l2) * layer.W).ravel()
    return total, term


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("l1, l2", PENALTIES)
def test_the_penalty_through_its_address_equals_numpy(dtype, l1, l2, rng):
    """The training loops add the penalty through its entry (steps.penalty_address), with its
    gradient: the same sums and gradient terms as weight_penalty."""
    net = penalty_net(dtype)
    net.params[:] = rng.normal(size=net.n_params)
    grads0 = rng.normal(size=net.n_params).astype(dtype)
    grads = grads0.copy()
    value = penalty_at(penalty_address(dtype), net._li, net.params, grads, l1, l2)
    expected, term = numpy_penalty(net, l1, l2)
    rel, rtol, atol = TOLERANCE[dtype]
    assert value == pytest.approx(expected, rel=rel)
    np.testing.assert_allclose(grads, grads0 + term, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("l1, l2", PENALTIES)
@pytest.mark.parametrize("with_grad", [True, False])
def test_weight_penalty_equals_numpy(dtype, l1, l2, with_grad, rng):
    net = penalty_net(dtype)
    net.params[:] = rng.normal(size=net.n_params)
    net.params[rng.random(net.n_params) < 0.1] = 0.0  # sign(0) = 0: no l1 gradient there
    grads0 = rng.normal(size=net.n_params).astype(dtype)
    grads = grads0.copy()
    value = weight_penalty(net._li, net.params, grads, l1, l2, with_grad)
    expected, term = numpy_penalty(net, l1, l2)
    rel, rtol, atol = TOLERANCE[dtype]
    assert value == pytest.approx(expected, rel=rel)
    assert grads.dtype == dtype
    if with_grad:
        np.testing.assert_allclose(grads, grads0 + term, rtol=rtol, atol=atol)
        # Biases are not penalised: their gradient entries are untouched, bit for bit.
        unchanged = term == 0
        np.testing.assert_array_equal(grads[unchanged], grads0[unchanged])
    else:
        np.testing.assert_array_equal(grads, grads0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
def test_weight_penalty_zero_weights_and_zero_coefficients(dtype):
    net = penalty_net(dtype)
    net.params[:] = 0.0
    grads = np.ones(net.n_params, dtype)
    assert weight_penalty(net._li, net.params, grads, 0.5, 0.0, True) == 0.0
    np.testing.assert_array_equal(grads, 1.0)  # sign(0) = 0
    net.params[:] = 1.0
    assert weight_penalty(net._li, net.params, grads, 0.0, 0.0, True) == 0.0
    np.testing.assert_array_equal(grads, 1.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
def test_network_penalty_method(dtype):
    net = penalty_net(dtype, l1=0.01, l2=0.1)
    grads = net.grads.copy()
    expected, _ = numpy_penalty(net, 0.01, 0.1)
    assert net.penalty() == pytest.approx(expected, rel=TOLERANCE[dtype][0])
    np.testing.assert_array_equal(net.grads, grads)


@pytest.mark.parametrize("l1, l2", PENALTIES)
def test_loss_and_grad_with_penalty_equals_reference_and_finite_differences(l1, l2, rng):
    net = penalty_net(np.float64, l1=l1, l2=l2)
    X, y = rng.normal(size=(9, 40)), rng.normal(size=(9, 5))
    value = net.loss_and_grad(X, y)
    Ws = [layer.W.copy() for layer in net.dense_layers]
    bs = [layer.b.copy() for layer in net.dense_layers]
    ref_value, dWs, dbs = reference.loss_and_grad(list(net.specs), net.loss, Ws, bs, X, y, l1=l1, l2=l2)
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-12)
    for layer, dW, db in zip(net.dense_layers, dWs, dbs):
        np.testing.assert_allclose(layer.dW, dW, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.db, db, rtol=1e-10, atol=1e-12)
    # The penalty term can cancel a weight's data gradient down to ~1e-7, where the finite
    # difference's rounding (~1e-11) is a 1e-5 relative error; the old scalar kernel gave the same
    # (2.4e-5 with l1, 1.4e-6 with l2, bit-identical analytic gradients). The tight check is above.
    assert fb.gradcheck(net, X, y) < 1e-4


def test_loss_and_grad_with_penalty_float32_is_close_to_reference(rng):
    net = penalty_net(np.float32, l1=0.01, l2=0.1)
    X, y = rng.normal(size=(9, 40)).astype(np.float32), rng.normal(size=(9, 5))
    value = net.loss_and_grad(X, y)
    assert net.grads.dtype == np.float32
    Ws = [layer.W.astype(np.float64) for layer in net.dense_layers]
    bs = [layer.b.astype(np.float64) for layer in net.dense_layers]
    ref_value, dWs, _ = reference.loss_and_grad(
        list(net.specs), net.loss, Ws, bs, X.astype(np.float64), y, l1=0.01, l2=0.1
    )
    assert value == pytest.approx(ref_value, rel=1e-5)
    for layer, dW in zip(net.dense_layers, dWs):
        np.testing.assert_allclose(layer.dW, dW, rtol=1e-4, atol=1e-5)


# --- gather -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cols", [1, 7])
def test_gather_rows_equals_fancy_indexing(dtype, cols, rng):
    n, batch = 50, 16
    src = rng.normal(size=(n, cols)).astype(dtype)
    perm = rng.permutation(n)
    for lo in range(0, n, batch):  # the last batch is partial (2 rows)
        hi = min(lo + batch, n)
        dst = np.full((batch, cols), -7.0, dtype)
        gather_rows(src, perm, lo, hi, dst)
        np.testing.assert_array_equal(dst[: hi - lo], src[perm[lo:hi]])
        np.testing.assert_array_equal(dst[hi - lo :], -7.0)  # rows past the batch are not written


@pytest.mark.parametrize("rows", [50, 3000])
def test_gather_rows_below_and_above_the_prefetch_size(rows, rng):
    """Both sides of PREFETCH_MIN_BYTES (3,000 x 100 float64 is 2.4 MB), batches of every length."""
    src = rng.normal(size=(rows, 100))
    assert (src.nbytes >= PREFETCH_MIN_BYTES) == (rows == 3000)
    perm = rng.permutation(rows)
    for lo, hi in ((0, 1), (1, 4), (4, 9), (9, 50)):
        dst = np.full((hi - lo + 1, 100), -7.0)
        gather_rows(src, perm, lo, hi, dst)
        np.testing.assert_array_equal(dst[:-1], src[perm[lo:hi]])
        np.testing.assert_array_equal(dst[-1], -7.0)


def test_gather_rows_from_strided_views(rng):
    """Rows that are not contiguous (a column slice of X): the prefetch hint then covers other bytes,
    which must change nothing."""
    big = rng.normal(size=(40_000, 12))
    src = big[:, ::3]  # 1.3 MB of elements: prefetched
    assert src.size * src.itemsize >= PREFETCH_MIN_BYTES
    perm = rng.permutation(40_000)
    dst = np.empty((16, 4))
    gather_rows(src, perm, 8, 24, dst)
    np.testing.assert_array_equal(dst, src[perm[8:24]])


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_gather_rows_prefetches_ahead():
    """The prefetch (batch.py: rows PREFETCH_AHEAD ahead, for an X of PREFETCH_MIN_BYTES or more)
    is in the machine code."""
    src = np.ones((64, 100), np.float32)
    asm = fresh_asm(gather_rows.py_func, src, np.arange(64), 0, 32, np.empty((32, 100), np.float32))
    assert re.search(r"\bprefetch", asm)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
def test_gather_values_equals_fancy_indexing(dtype, rng):
    n, batch = 50, 16
    src = rng.uniform(0.5, 2.0, size=n).astype(dtype)
    perm = rng.permutation(n)
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        dst = np.full(batch, -7.0, dtype)
        gather_values(src, perm, lo, hi, dst)
        np.testing.assert_array_equal(dst[: hi - lo], src[perm[lo:hi]])
        np.testing.assert_array_equal(dst[hi - lo :], -7.0)


def test_gather_of_nothing_writes_nothing():
    """Unweighted training passes an empty sample_weight; an empty range must not touch dst."""
    perm = np.arange(4)
    gather_values(np.empty(0), perm, 2, 2, np.empty(0))
    dst = np.full((3, 2), -7.0)
    gather_rows(np.ones((4, 2)), perm, 1, 1, dst)
    np.testing.assert_array_equal(dst, -7.0)


@pytest.mark.parametrize("weighted", [False, True])
def test_minibatch_fit_equals_manual_steps(weighted):
    """train_steps gathers each shuffled batch (the last one partial) into its workspace: the result
    must be that of loss_and_grad on the same rows, with the penalty, then the optimizer step."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(30, 6)), rng.integers(0, 3, size=30)
    w = rng.uniform(0.5, 2.0, size=30) if weighted else None

    def make():
        return fb.Sequential(
            fb.Dense(6, 9),
            fb.Tanh(),
            fb.Dense(9, 3),
            loss="cross_entropy",
            dtype=np.float64,
            seed=2,
            l1=1e-3,
            l2=1e-2,
        )

    a, b = fit_and_replay(make, lambda: fb.optim.SGD(lr=0.05), X, y, w, batch_size=8)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-13)


def _batch_of(net, X, perm, start, rows):
    """steps.gather_batch for a network's plan: the batch's X view and the workspace it used."""
    from fastbp._kernels.cpu.steps import gather_batch

    ws = net._workspace_for(rows)
    Y = np.zeros((len(X), 1), net.dtype)
    Xb, _, _ = gather_batch(net._li, net._gu, ws, X, Y, np.empty(0, net.dtype), perm, start, rows)
    return Xb, ws


def _address(array):
    return array.__array_interface__["data"][0]


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="views: needs the JIT")
def test_a_batch_of_consecutive_rows_is_read_where_it_lies(rng):
    """Rows in order (fit without shuffling, or one batch of every row) of an X in the network's
    dtype are a view of X, not a copy in the workspace; shuffled rows, rows of another dtype, and
    rows that only look consecutive at their ends are gathered."""
    net = fb.Sequential(fb.Dense(7, 5), fb.ReLU(), fb.Dense(5, 3), loss="cross_entropy", seed=0)
    X = rng.normal(size=(100, 7)).astype(np.float32)
    Xb, _ = _batch_of(net, X, np.arange(100), 40, 16)
    assert _address(Xb) == _address(X) + 40 * 7 * 4
    np.testing.assert_array_equal(Xb, X[40:56])
    ends_only = np.arange(100)
    ends_only[[45, 46]] = ends_only[[46, 45]]  # perm[40] + 15 == perm[55] still
    for X_, perm in ((X, rng.permutation(100)), (X.astype(np.float64), np.arange(100)), (X, ends_only)):
        Xb, ws = _batch_of(net, X_, perm, 40, 16)
        assert _address(ws) <= _address(Xb) < _address(ws) + ws.nbytes
        np.testing.assert_array_equal(Xb, X[perm[40:56]])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch", [32, 200])
def test_training_on_rows_in_place_equals_training_on_gathered_rows(optimizer, batch, rng):
    """Unshuffled float32 data (read in place) against its float64 copy (gathered, converted as it
    is copied): the same float32 values reach the step, so the same parameters, bit for bit. Also
    for read-only data (np.load with mmap_mode='r')."""
    X = rng.normal(size=(200, 7)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    read_only = X.copy()
    read_only.setflags(write=False)
    params = []
    for data in (X, X.astype(np.float64), read_only):
        net = fb.Sequential(fb.Dense(7, 16), fb.ReLU(), fb.Dense(16, 3), loss="cross_entropy", seed=0)
        net.fit(data, y, epochs=3, batch_size=batch, shuffle=False, optimizer=optimizer, verbose=0)
        params.append(net.params.copy())
    np.testing.assert_array_equal(params[0], params[1])
    np.testing.assert_array_equal(params[0], params[2])
