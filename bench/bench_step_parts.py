"""Seven parts of a training step, each before and after its change, timed side by side in one
process (interleaved rounds, best of --rounds; one thread for Numba and the BLAS):

- relu: bias + ReLU right after the layer's GEMM. Before: the bias pass, then `a = a if a > 0
  else 0` in place (LLVM compiles that to AVX masked stores); after: activations.bias_activation_forward
  (the bias added inside the ReLU loop, plain stores).
- width1: the three products of a layer with one output unit (forward, dW, dX) at 200 x 100.
  Before: the same calls into the BLAS; after: blas.gemm_nn / gemm_tn / gemm_nt (plain loops there).
- sgdfold: net.fit of 784-256-128-10 with plain SGD, one epoch of 4096 rows. Before: dW written by
  the BLAS, then the SGD pass (blas.accumulates() switched off); after: the step folded into the
  dW product.
- thin: the forward product and the weight gradient of a layer with 3, 5, 7 or 8 outputs (a few
  classes; 8 stays in the BLAS) at 200 rows x 100 inputs, float32 and float64. Before: the BLAS;
  after: blas.gemm_nn / gemm_tn (loops over a transposed copy in a stack buffer).
- gather: one epoch of batch gathers from a shuffled X larger than the caches (45,000 x 100 at batch
  200, the scikit-learn drop-in's; 60,000 x 784 at 64 and 256), and from digits-sized data. Before:
  the plain copy loop; after: batch.gather_rows (rows prefetched PREFETCH_AHEAD ahead).
- sweeps: the batch-1 kernels' passes over one layer's W (float32, the 64-128-64-10 net's layers and
  the MLP's first), each call with a new input drawn ahead (a repeated one lets the branch predictor
  learn its zeros). Forward, z += a @ W: before, a branch per row on a[i] != 0 and a pass over z per
  row; after, online.accumulate_rows (nonzero rows gathered branch-free, four per pass). Backward
  with plain SGD, the delta W @ d and W += step * outer(a, d): before, a dot product per row, then
  the update where a[i] != 0; after, online.delta_and_update_rows (one branchless pass per row).
- calls: what calling an activation through the address in the plan (indirect.py) costs. Before,
  ReLU's forward (bias added, in place) and its derivative called directly, as the switch on the
  activation code did (inlined); after, the same work through the entry's address; at 1 x 64 (a
  batch-1 layer of the small net, where a call is most of the work) and 32 x 256. Here "after" is
  the slower: the ratio is below 1 and the line gives the nanoseconds a call adds.

    .venv/bin/python bench/bench_step_parts.py [--rounds 7] [--parts relu,sweeps,calls,...]

Prints microseconds (or samples/s) before and after and the ratio before / after.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastbp as fb
from fastbp._kernels.cpu import activations, blas, indirect, online
from fastbp._kernels.cpu import batch as batch_mod
from fastbp._kernels.jit import njit


@njit
def _relu_before(Z, bias):
    zero = Z.dtype.type(0)
    for i in range(Z.shape[0]):
        z = Z[i]
        for j in range(Z.shape[1]):
            z[j] += bias[j]
    for i in range(Z.shape[0]):
        a = Z[i]
        for j in range(Z.shape[1]):
            a[j] = a[j] if a[j] > zero else zero


@njit
def _relu_loop(after, n, X, W, Z, bias, relu_fn):
    for _ in range(n):
        blas.gemm_nn(X, W, Z)
        if after:
            activations.bias_activation_forward(relu_fn, 0.0, Z, bias, Z)
        else:
            _relu_before(Z, bias)


@njit
def _output_layer_loop(after, n, H, w, out, g, dw, dH):
    """The output layer's products: forward and dW, and dX where dH is not empty."""
    m, k = H.shape
    width = w.shape[1]
    for _ in range(n):
        if after:
            blas.gemm_nn(H, w, out)
            blas.gemm_tn(H, g, dw)
            if dH.size:
                blas.gemm_nt(g, w, dH)
        else:
            blas._cblas_gemm(blas.NO_TRANS, blas.NO_TRANS, m, width, k, 1.0, H, k, w, width, 0.0, out, width)
            blas._cblas_gemm(blas.TRANS, blas.NO_TRANS, k, width, m, 1.0, H, k, g, width, 0.0, dw, width)
            if dH.size:
                blas._cblas_gemm(blas.NO_TRANS, blas.TRANS, m, k, width, 1.0, g, width, w, width, 0.0, dH, k)


@njit
def _gather_before(src, index, lo, hi, dst):
    cols = src.shape[1]
    for i in range(hi - lo):
        source = index[lo + i]
        for j in range(cols):
            dst[i, j] = src[source, j]


@njit
def _gather_epoch(after, n, X, perm, dst):
    batch = dst.shape[0]
    for _ in range(n):
        for lo in range(0, perm.size - batch + 1, batch):
            if after:
                batch_mod.gather_rows(X, perm, lo, lo + batch, dst)
            else:
                _gather_before(X, perm, lo, lo + batch, dst)


@njit
def _accumulate_before(a, W, z):
    for i in range(W.shape[0]):
        ai = a[i]
        if ai != 0:
            w = W[i]
            for j in range(W.shape[1]):
                z[j] += ai * w[j]


@njit
def _delta_update_before(W, d, step, a, g_prev):
    t = W.dtype.type
    for i in range(W.shape[0]):
        w = W[i]
        s = t(0)
        for j in range(W.shape[1]):
            s += w[j] * d[j]
        g_prev[i] = s
        if a[i] != 0:
            scale = step * a[i]
            for j in range(W.shape[1]):
                w[j] += scale * d[j]


@njit
def _sweep_calls(after, backward, n, inputs, deltas, W, z, g_prev):
    step = W.dtype.type(-1e-9)
    for k in range(n):
        a, d = inputs[k % inputs.shape[0]], deltas[k % deltas.shape[0]]
        if backward and after:
            online.delta_and_update_rows(W, d, step, a, g_prev)
        elif backward:
            _delta_update_before(W, d, step, a, g_prev)
        elif after:
            online.accumulate_rows(a, W, z)
        else:
            _accumulate_before(a, W, z)


@njit
def _activation_calls(after, backward, n, fns, Z, bias, G):
    """n ReLU forwards (in place) or derivatives of the (rows, cols) Z, directly or through the
    entry addresses fns (forward, backward)."""
    rows, cols = Z.shape
    for _ in range(n):
        if backward and after:
            indirect.call(fns[1], (0.0, Z, Z, G, rows, cols))
        elif backward:
            activations.relu_backward(Z, G)
        elif after:
            indirect.call(fns[0], (0.0, Z, bias, Z, rows, cols, True))
        else:
            activations.relu_forward(bias, Z)


def _best(run, rounds, n):
    """Best microseconds per call of run(n) for each of its two settings, interleaved."""
    best = [float("inf"), float("inf")]
    for setting in (0, 1):
        run(setting, 3)
    for _ in range(rounds):
        for setting in (0, 1):
            start = time.perf_counter()
            run(setting, n)
            best[setting] = min(best[setting], (time.perf_counter() - start) / n * 1e6)
    return best


def relu(rounds):
    rng = np.random.default_rng(0)
    for rows, n_in, n_out in ((200, 100, 100), (64, 784, 256)):
        X = rng.standard_normal((rows, n_in)).astype(np.float32)
        W = (rng.standard_normal((n_in, n_out)) * 0.1).astype(np.float32)
        Z = np.empty((rows, n_out), np.float32)
        bias = rng.standard_normal(n_out).astype(np.float32) * 0.1
        args = (X, W, Z, bias, activations.entry_addresses(activations.RELU, np.float32)[0])
        before, after = _best(lambda s, n, a=args: _relu_loop(s == 1, n, *a), rounds, 300)
        print(
            f"relu {rows}x{n_in}x{n_out}: GEMM + bias/ReLU {before:.1f} -> {after:.1f} us "
            f"({before / after:.2f}x, {before - after:.1f} us saved)"
        )


def width1(rounds):
    rng = np.random.default_rng(0)
    H = rng.standard_normal((200, 100)).astype(np.float32)
    w = rng.standard_normal((100, 1)).astype(np.float32)
    out = np.empty((200, 1), np.float32)
    g = rng.standard_normal((200, 1)).astype(np.float32)
    dw = np.empty((100, 1), np.float32)
    dH = np.empty((200, 100), np.float32)
    before, after = _best(lambda s, n: _output_layer_loop(s == 1, n, H, w, out, g, dw, dH), rounds, 2000)
    print(
        f"width1 200x100x1, forward + dW + dX: BLAS {before:.2f} -> loops {after:.2f} us "
        f"({before / after:.2f}x)"
    )


def sgdfold(rounds):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4096, 784)).astype(np.float32)
    y = rng.integers(0, 10, 4096)
    for batch in (16, 64, 256):
        layers = (fb.Dense(784, 256), fb.ReLU(), fb.Dense(256, 128), fb.ReLU(), fb.Dense(128, 10))
        net = fb.Sequential(*layers, loss="cross_entropy")
        opt = fb.optim.SGD(lr=0.01)

        def epoch(folded, n, net=net, opt=opt, batch=batch):
            blas._accumulates_flag.value = int(folded and blas.backend().startswith("numpy"))
            for _ in range(n):
                net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0)

        try:
            before, after = _best(epoch, rounds, 1)
        finally:
            blas._accumulates_flag.value = int(blas.backend().startswith("numpy"))
        rate = 4096 / (np.array([before, after]) * 1e-6)
        print(f"sgdfold batch {batch}: {rate[0]:,.0f} -> {rate[1]:,.0f} samples/s ({rate[1] / rate[0]:.2f}x)")


def thin(rounds):
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for width in (3, 5, 7, 8):
            H = rng.standard_normal((200, 100)).astype(dtype)
            w = rng.standard_normal((100, width)).astype(dtype)
            g = rng.standard_normal((200, width)).astype(dtype)
            args = (
                H,
                w,
                np.empty((200, width), dtype),
                g,
                np.empty((100, width), dtype),
                np.empty((0, 0), dtype),
            )
            before, after = _best(lambda s, n, a=args: _output_layer_loop(s == 1, n, *a), rounds, 1000)
            print(
                f"thin 200x100x{width} {np.dtype(dtype).name}, forward + dW: BLAS {before:.1f} -> "
                f"loops {after:.1f} us ({before / after:.2f}x)"
            )


def gather(rounds):
    rng = np.random.default_rng(0)
    for (rows, cols), batch in (
        ((45_000, 100), 200),
        ((60_000, 784), 64),
        ((60_000, 784), 256),
        ((1_347, 64), 200),
    ):
        X = rng.standard_normal((rows, cols)).astype(np.float32)
        perm = rng.permutation(rows)
        dst = np.empty((batch, cols), np.float32)
        before, after = _best(lambda s, n, a=(X, perm, dst): _gather_epoch(s == 1, n, *a), rounds, 1)
        batches = rows // batch
        print(
            f"gather {rows}x{cols} float32, batch {batch}: {before / batches:.1f} -> "
            f"{after / batches:.1f} us per batch ({before / after:.2f}x)"
        )


def sweeps(rounds):
    rng = np.random.default_rng(0)
    for n_in, n_out, relu_input in ((64, 128, False), (128, 64, True), (64, 10, True), (784, 256, False)):
        inputs = rng.standard_normal((997, n_in)).astype(np.float32)  # 997, 991: coprime cycles
        if relu_input:
            inputs[inputs < 0] = 0
        deltas = rng.standard_normal((991, n_out)).astype(np.float32)
        W = (rng.standard_normal((n_in, n_out)) * 0.1).astype(np.float32)
        z, g_prev = np.zeros(n_out, np.float32), np.zeros(n_in, np.float32)
        calls = max(100, 2_000_000 // (n_in * n_out))
        kind = "ReLU output" if relu_input else "dense"
        for backward, what in ((False, "forward"), (True, "backward")):
            args = (inputs, deltas, W, z, g_prev)
            before, after = _best(
                lambda s, n, b=backward, a=args: _sweep_calls(s == 1, b, n, *a), rounds, calls
            )
            print(
                f"sweeps {what} {n_in}x{n_out}, {kind} input: {before:.3f} -> {after:.3f} us "
                f"({before / after:.2f}x)"
            )


def calls(rounds):
    rng = np.random.default_rng(0)
    fns = activations.entry_addresses(activations.RELU, np.float32)
    for rows, cols in ((1, 64), (32, 256)):
        Z = rng.standard_normal((rows, cols)).astype(np.float32)
        bias = np.zeros(cols, np.float32)  # the forward adds it each call: zero keeps Z as it is
        G = rng.standard_normal((rows, cols)).astype(np.float32)
        n = max(1000, 20_000_000 // (rows * cols))
        args = (fns, Z, bias, G)
        for backward, what in ((False, "forward"), (True, "backward")):
            before, after = _best(
                lambda s, k, b=backward, a=args: _activation_calls(s == 1, b, k, *a), rounds, n
            )
            print(
                f"calls ReLU {what} {rows}x{cols}: direct {before * 1e3:.1f} -> through the address "
                f"{after * 1e3:.1f} ns ({before / after:.2f}x, {(after - before) * 1e3:+.1f} ns a call)"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--parts", default="relu,width1,sgdfold,thin,gather,sweeps,calls")
    args = parser.parse_args(argv)
    fb.set_num_threads(1)
    print(f"BLAS: {blas.backend()}; one thread; best of {args.rounds} interleaved rounds")
    parts = {
        "relu": relu,
        "width1": width1,
        "sgdfold": sgdfold,
        "thin": thin,
        "gather": gather,
        "sweeps": sweeps,
        "calls": calls,
    }
    for part in args.parts.split(","):
        parts[part](args.rounds)


if __name__ == "__main__":
    main()
