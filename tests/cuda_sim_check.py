"""Every CUDA kernel against its CPU twin, under the CUDA simulator; tests/test_cuda.py runs this.

    python tests/cuda_sim_check.py [kernels|passes|train|fit ...]   (default: kernels passes train)
    python tests/cuda_sim_check.py ptx     (compile every kernel to PTX for sm_90, float32 and float64,
                                            no GPU needed: needs NVVM, e.g. pip install nvidia-nvvm
                                            nvidia-cuda-nvrtc, their lib/ on LD_LIBRARY_PATH)

It sets NUMBA_ENABLE_CUDASIM=1 before numba.cuda is imported (hence a script, run in its own process:
the pytest process keeps the real numba.cuda). One line per check, "ok NAME max-error" or
"FAIL NAME ..."; the exit status is the number of failures. The simulator runs one Python thread
per GPU thread, so shapes are tiny (3-5-2 networks, batches of 4) and TILE is 4 there: 3-, 5- and
6-wide layers cross tile edges.
"""

import os
import sys
import time
import traceback
import warnings

if "ptx" not in sys.argv[1:]:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
# The simulator's thread barriers are polled by a thread holding the GIL: a short switch interval
# makes a barrier ~3x cheaper.
sys.setswitchinterval(2e-4)

import numpy as np  # noqa: E402
from conftest import ALL_ACTIVATIONS, ALL_LOSSES  # noqa: E402  (tests/ is on this script's path)
from numba import cuda, float64  # noqa: E402  (module-level: the simulator swaps this name inside kernels)

import fastbp as fb  # noqa: E402
from fastbp._kernels.cpu import activations as cpu_act  # noqa: E402
from fastbp._kernels.cpu import losses as cpu_losses  # noqa: E402
from fastbp._kernels.cpu import optim as cpu_optim  # noqa: E402
from fastbp._kernels.cpu import steps as cpu_steps  # noqa: E402
from fastbp._kernels.cpu import train as cpu_train  # noqa: E402
from fastbp._validation import check_targets  # noqa: E402

GROUPS: dict[str, list] = {"kernels": [], "passes": [], "train": [], "fit": []}
FAILURES: list[str] = []


def check(group):
    def register(fn):
        GROUPS[group].append(fn)
        return fn

    return register


def tol(dtype):
    return 1e-12 if np.dtype(dtype) == np.float64 else 2e-5


def compare(name, got, want, rtol, atol=None):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    atol = rtol if atol is None else atol
    with np.errstate(invalid="ignore"):
        err = float(np.max(np.abs(got - want))) if got.size else 0.0
    if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
        FAILURES.append(name)
        print(
            f"FAIL {name}: max |diff| {err:.3g} (rtol {rtol:g})\n  got  {got.ravel()[:8]}\n"
            f"  want {want.ravel()[:8]}",
            flush=True,
        )
    else:
        print(f"ok {name} {err:.2g}", flush=True)


def cuda_modules():
    from fastbp._kernels.cuda import activations, gemm, jit, losses, optim

    return activations, gemm, jit, losses, optim


_WRAPPERS = {}


def wrappers():
    """Small kernels that run one phase each (no grid barrier: any number of blocks)."""
    if _WRAPPERS:
        return _WRAPPERS
    act, gemm, jit, losses, optim = cuda_modules()
    from fastbp._kernels.cuda import dropout

    @cuda.jit
    def bias_act(code, param, ws, z_off, bias, b_off, a_off, rows, cols):
        act.bias_activation_forward(code, param, ws, z_off, bias, b_off, a_off, rows, cols)

    @cuda.jit
    def act_back(code, param, ws, z_off, a_off, g_off, mask_off, use_mask, grads, db_off, rows, cols):
        tile = cuda.shared.array(jit.BLOCK, dtype=ws.dtype)
        act.activation_backward(
            code,
            param,
            ws,
            z_off,
            a_off,
            g_off,
            mask_off,
            use_mask,
            grads,
            db_off,
            rows,
            cols,
            (tile, tile, tile),
        )

    @cuda.jit
    def loss(code, param, ws, out_off, y_off, w_off, weighted, w_sum, g_off, rows, cols, red):
        sums = cuda.shared.array(jit.THREADS, dtype=float64)
        losses.loss_and_output_grad(
            code,
            param,
            ws,
            out_off,
            y_off,
            w_off,
            weighted,
            w_sum,
            g_off,
            rows,
            cols,
            red,
            0,
            cuda.gridDim.x,
            (sums, sums, sums),
        )

    @cuda.jit
    def opt_step(kind, params, grads, slots, c, k, clip):
        optim.optimizer_step(kind, params, grads, slots, c, k, clip)

    @cuda.jit
    def norm(grads, red):
        sums = cuda.shared.array(jit.THREADS, dtype=float64)
        optim.grad_norm(grads, red, 0, (sums, sums, sums))

    @cuda.jit
    def uniform(seed, step, layer, out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            out[i] = dropout._dropout_uniform_u64(seed, step, layer, i)

    _WRAPPERS.update(
        bias_act=bias_act,
        act_back=act_back,
        loss=loss,
        opt_step=opt_step,
        norm=norm,
        uniform=uniform,
        gemm=gemm.gemm_kernel,
    )
    return _WRAPPERS


def launch(kernel, blocks=2):
    from fastbp._kernels.cuda.jit import BLOCK

    return kernel[blocks, BLOCK]


# --- kernels -------------------------------------------------------------------------------------


@check("kernels")
def gemm_all_transposes():
    w = wrappers()
    rng = np.random.default_rng(0)
    M, N, K = 5, 6, 7
    for dtype in (np.float64, np.float32):
        for ta in (False, True):
            for tb in (False, True):
                a = rng.normal(size=(K, M) if ta else (M, K)).astype(dtype)
                b = rng.normal(size=(N, K) if tb else (K, N)).astype(dtype)
                want = (a.T if ta else a) @ (b.T if tb else b)
                # Operands at offsets inside larger flat buffers, as in the workspace.
                A = cuda.to_device(np.concatenate([np.ones(3, dtype), a.ravel()]))
                B = cuda.to_device(np.concatenate([np.ones(2, dtype), b.ravel()]))
                C = cuda.to_device(np.full(4 + M * N, 7.0, dtype))
                launch(w["gemm"], 3)(A, 3, ta, B, 2, tb, C, 4, M, N, K)
                got = C.copy_to_host()
                compare(
                    f"gemm ta={ta} tb={tb} {np.dtype(dtype).name}",
                    got[4:].reshape(M, N),
                    want,
                    tol(dtype) * 10,
                )
                compare(f"gemm leaves the rest {np.dtype(dtype).name}", got[:4], np.full(4, 7.0), 0.0)


@check("kernels")
def activations_forward_and_backward():
    w = wrappers()
    rng = np.random.default_rng(1)
    rows, cols = 5, 6
    n = rows * cols
    for dtype in (np.float64, np.float32):
        for spec in ALL_ACTIVATIONS:
            code, param = spec.code, float(spec.param)
            name = f"{type(spec).__name__}({param:g}) {np.dtype(dtype).name}"
            Z = (rng.normal(size=(rows, cols)) * 3).astype(dtype)
            Z[0, :3] = [25.0, -25.0, 0.0]  # Softplus threshold, saturation, the kink
            bias = rng.normal(size=cols).astype(dtype)
            G = rng.normal(size=(rows, cols)).astype(dtype)
            mask = (rng.uniform(size=(rows, cols)) > 0.3).astype(dtype) / dtype(0.7)
            separate = cpu_act.needs_preactivation(code, param)
            # CPU: Z += b, A = f(Z) (in place unless it needs z); then the backward with a mask.
            z_cpu = Z.copy()
            a_cpu = np.empty_like(Z) if separate else z_cpu
            forward_fn, backward_fn = cpu_act.entry_addresses(code, dtype)
            cpu_act.bias_activation_forward(forward_fn, param, z_cpu, bias, a_cpu)
            g_cpu, db_cpu = G.copy(), np.zeros(cols, dtype)
            cpu_act.activation_backward(backward_fn, param, z_cpu, a_cpu, g_cpu, mask, True, db_cpu)
            # GPU: the same regions in one flat workspace: z, a (or z again), g, mask.
            z_off, a_off, g_off, m_off = 0, (n if separate else 0), 2 * n, 3 * n
            ws_host = np.zeros(4 * n, dtype)
            ws_host[:n], ws_host[g_off : g_off + n], ws_host[m_off:] = Z.ravel(), G.ravel(), mask.ravel()
            ws = cuda.to_device(ws_host)
            b = cuda.to_device(np.concatenate([np.zeros(1, dtype), bias]))
            launch(w["bias_act"])(code, param, ws, z_off, b, 1, a_off, rows, cols)
            grads = cuda.to_device(np.zeros(cols + 2, dtype))
            launch(w["act_back"])(code, param, ws, z_off, a_off, g_off, m_off, True, grads, 2, rows, cols)
            out = ws.copy_to_host()
            t = tol(dtype) * (10 if dtype == np.float64 else 5)
            compare(f"forward {name}", out[a_off : a_off + n].reshape(rows, cols), a_cpu, t)
            compare(f"backward {name}", out[g_off : g_off + n].reshape(rows, cols), g_cpu, t)
            compare(f"bias grad {name}", grads.copy_to_host()[2:], db_cpu, t)


@check("kernels")
def losses_with_gradients():
    w = wrappers()
    rng = np.random.default_rng(2)
    rows, cols = 5, 3
    for dtype in (np.float64, np.float32):
        for spec in ALL_LOSSES:
            for weighting in ("none", "weights", "zero"):
                out = (rng.normal(size=(rows, cols)) * 2).astype(dtype)
                out[0, 0] = 30.0  # a large logit: the stable forms must not overflow
                if spec.integer_targets:
                    y = rng.integers(0, cols, size=rows)
                elif isinstance(spec, fb.BinaryCrossEntropy):
                    y = rng.uniform(size=(rows, cols))
                else:
                    y = rng.normal(size=(rows, cols)) * 2
                Y = check_targets(y, spec, rows, cols, np.dtype(dtype))
                weights = {
                    "none": np.zeros(0, dtype),
                    "weights": rng.uniform(0.2, 2.0, size=rows).astype(dtype),
                    "zero": np.zeros(rows, dtype),
                }[weighting]
                G = np.zeros_like(out)
                want = cpu_losses.loss_and_output_grad(spec.code, spec.param, out, Y, weights, G)
                want_correct = cpu_train.count_correct(spec.code, out, Y)
                ky = Y.shape[1]
                weighted = weights.size > 0
                ws_host = np.concatenate(
                    [
                        out.ravel(),
                        Y.ravel(),
                        weights if weighted else np.zeros(rows, dtype),
                        np.full(rows * cols, 9.0, dtype),
                    ]
                ).astype(dtype)
                y_off, w_off, g_off = rows * cols, rows * cols + rows * ky, rows * cols + rows * ky + rows
                ws = cuda.to_device(ws_host)
                red = cuda.to_device(np.zeros(4))
                w_sum = float(weights.astype(np.float64).sum()) if weighted else float(rows)
                launch(w["loss"])(
                    spec.code, float(spec.param), ws, 0, y_off, w_off, weighted, w_sum, g_off, rows, cols, red
                )
                partial = red.copy_to_host()
                from fastbp._kernels.cuda.losses import finish_loss

                got = finish_loss(spec.code, partial[0] + partial[1], w_sum, cols)
                name = f"{type(spec).__name__} {weighting} {np.dtype(dtype).name}"
                t = tol(dtype) * 10
                compare(f"loss {name}", got, want, t)
                compare(f"loss grad {name}", ws.copy_to_host()[g_off:].reshape(rows, cols), G, t)
                compare(f"correct rows {name}", partial[2] + partial[3], want_correct, 0.0)


OPTIMIZERS = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.01}),
    ("AdamW", {}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.01}),
    ("Adagrad", {"lr_decay": 0.01, "weight_decay": 0.01}),
    ("Adadelta", {"weight_decay": 0.01}),
    ("Adamax", {"weight_decay": 0.01}),
    ("NAdam", {}),
    ("NAdam", {"weight_decay": 0.01, "decoupled_weight_decay": True}),
]


@check("kernels")
def optimizer_steps():
    from fastbp._kernels.cuda.optim import factor_table, new_factor_table

    w = wrappers()
    rng = np.random.default_rng(3)
    n, steps = 37, 3
    for dtype in (np.float64, np.float32):
        for cls_name, kwargs in OPTIMIZERS:
            cls = getattr(fb.optim, cls_name)
            start = rng.normal(size=n).astype(dtype)
            grads = [rng.normal(size=n).astype(dtype) for _ in range(steps)]
            lrs = np.array([0.05, 0.04, 0.03])
            clip = 0.7  # the last step also scales the gradient in place first
            cpu_opt, gpu_opt = cls(lr=0.05, **kwargs), cls(lr=0.05, **kwargs)
            p_cpu = start.copy()
            kind, slots, scalars, hyper = cpu_opt.prepare(p_cpu)
            g_last = None
            for k in range(steps):
                g = grads[k].copy()
                if k == steps - 1:
                    cpu_optim.scale_(g, clip)
                cpu_optim.optimizer_step(kind, p_cpu, g, slots, scalars, hyper, k + 1, lrs[k])
                g_last = g
            p_gpu = cuda.to_device(start.copy())
            _, slots_g, scalars_g, hyper_g = gpu_opt.prepare(start.copy())
            table = new_factor_table(steps)
            factor_table(kind, hyper_g, scalars_g, 0, lrs, table)
            slots_d = cuda.to_device(slots_g)
            c = cuda.to_device(table)
            g_dev = None
            for k in range(steps):
                g_dev = cuda.to_device(grads[k].copy())
                launch(w["opt_step"])(kind, p_gpu, g_dev, slots_d, c, k, clip if k == steps - 1 else 0.0)
            name = f"{cls_name}{kwargs} {np.dtype(dtype).name}"
            t = tol(dtype) * 10
            compare(f"step params {name}", p_gpu.copy_to_host(), p_cpu, t)
            compare(f"step state {name}", slots_d.copy_to_host(), slots, t)
            compare(f"step clipped grads {name}", g_dev.copy_to_host(), g_last, t)
            if cls_name == "NAdam":
                compare(f"mu_product {name}", table[steps - 1, 10], scalars[0], 1e-15)


@check("kernels")
def gradient_norm():
    w = wrappers()
    rng = np.random.default_rng(4)
    for dtype in (np.float64, np.float32):
        g = rng.normal(size=101).astype(dtype)
        red = cuda.to_device(np.zeros(3))
        launch(w["norm"], 3)(cuda.to_device(g), red)
        compare(
            f"grad_norm {np.dtype(dtype).name}",
            np.sqrt(red.copy_to_host().sum()),
            cpu_optim.grad_norm(g),
            tol(dtype),
        )


@check("kernels")
def dropout_draws():
    w = wrappers()
    out = cuda.to_device(np.zeros(40))
    with warnings.catch_warnings():
        # numpy's uint64 scalars warn on the wrap-around the hash is made of.
        warnings.simplefilter("ignore", RuntimeWarning)
        w["uniform"][2, 20](123456789, 17, 2, out)
    want = [cpu_steps.dropout_uniform(123456789, 17, 2, i) for i in range(40)]
    compare("dropout_uniform uint64 == CPU", out.copy_to_host(), want, 0.0)


# --- whole passes through the backend ------------------------------------------------------------


def nets(dtype, l1=0.0, l2=0.0, dropout=0.0):
    yield (
        "mse",
        fb.Sequential(
            fb.Dense(3, 5),
            fb.GELU(),
            fb.Dense(5, 4),
            fb.LeakyReLU(-0.3),
            *([fb.Dropout(dropout)] if dropout else []),
            fb.Dense(4, 2),
            loss=fb.MSE(),
            dtype=dtype,
            seed=0,
            l1=l1,
            l2=l2,
        ),
    )
    yield (
        "softmax",
        fb.Sequential(
            fb.Dense(3, 5),
            fb.Tanh(),
            *([fb.Dropout(dropout)] if dropout else []),
            fb.Dense(5, 3),
            loss=fb.SoftmaxCrossEntropy(),
            dtype=dtype,
            seed=1,
            l1=l1,
            l2=l2,
        ),
    )


def data(net, rows, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, net.n_features)).astype(net.dtype)
    y = (
        rng.integers(0, net.n_outputs, size=rows)
        if net.loss.integer_targets
        else rng.normal(size=(rows, net.n_outputs))
    )
    Y = check_targets(y, net.loss, rows, net.n_outputs, net.dtype)
    weights = rng.uniform(0.2, 2.0, size=rows).astype(net.dtype)
    return X, y, Y, weights


@check("passes")
def forward_and_loss_and_grad():
    from fastbp.cuda import CudaBackend

    for dtype in (np.float64, np.float32):
        for name, net in nets(dtype, l1=0.01, l2=0.02):
            X, y, Y, weights = data(net, 6)
            backend = CudaBackend(net)
            label = f"{name} {np.dtype(dtype).name}"
            t = tol(dtype) * 10
            compare(f"forward {label}", backend.forward(X), net.forward(X), t)
            for weighted in (False, True):
                w = weights if weighted else None
                want = net.loss_and_grad(X, y, sample_weight=w)
                got = backend.loss_and_grad(X, Y, weights if weighted else np.zeros(0, dtype))
                compare(f"loss_and_grad loss weighted={weighted} {label}", got, want, t)
                compare(
                    f"loss_and_grad grads weighted={weighted} {label}",
                    backend.grads.copy_to_host(),
                    net.grads,
                    t,
                )
            compare(f"penalty {label}", backend.penalty(), net.penalty(), t)


# --- compiled training steps ----------------------------------------------------------------------


def cpu_run(net, X, Y, weights, perm, batch, first, count, lrs, opt, step0, seed, max_norm):
    kind, slots, scalars, hyper = opt.prepare(net.params)
    losses, correct = np.zeros(count), np.zeros(count, dtype=np.int64)
    ws = net._workspace_for(batch)
    done = cpu_train.train_steps(
        net._li,
        net._lf,
        net._gu,
        net.loss.code,
        net.loss.param,
        net.l1,
        net.l2,
        net.params,
        net.grads,
        ws,
        X,
        Y,
        weights,
        perm,
        batch,
        first,
        count,
        lrs,
        kind,
        slots,
        scalars,
        hyper,
        step0,
        seed,
        max_norm,
        losses,
        correct,
    )
    return done, losses, correct


def gpu_run(backend, data_args, perm, batch, first, count, lrs, opt, step0, seed, max_norm):
    kind, slots, scalars, hyper = opt.prepare(np.zeros(backend.params.shape[0], backend.dtype))
    losses, correct = np.zeros(count), np.zeros(count, dtype=np.int64)
    done = backend.train_steps(
        *data_args,
        perm,
        batch,
        first,
        count,
        lrs,
        kind,
        slots,
        scalars,
        hyper,
        step0,
        seed,
        max_norm,
        losses,
        correct,
    )
    return done, losses, correct


TRAIN_CASES = [
    # (dtype, net, optimizer, kwargs, batch, weighted, dropout, l1/l2, max_norm, data path)
    (np.float64, "softmax", "Adam", {}, 4, True, 0.3, 0.01, 1.0, "resident"),
    (np.float64, "mse", "SGD", {"momentum": 0.9}, 4, False, 0.0, 0.0, 0.0, "streamed"),
    (np.float64, "mse", "NAdam", {}, 3, True, 0.2, 0.0, 0.5, "streamed"),
    (np.float32, "softmax", "RMSprop", {"centered": True}, 4, False, 0.0, 0.02, 0.0, "resident"),
]


@check("train")
def train_steps_match_cpu():
    import fastbp.cuda as fbc
    from fastbp.cuda import CudaBackend

    for dtype, which, opt_name, kwargs, batch, weighted, dropout, pen, max_norm, path in TRAIN_CASES:
        net = dict(nets(dtype, l2=pen, dropout=dropout))[which]
        X, _, Y, weights = data(net, 10, seed=5)
        weights = weights if weighted else np.zeros(0, dtype)
        backend = CudaBackend(net)
        opt_cpu = getattr(fb.optim, opt_name)(lr=0.05, **kwargs)
        opt_gpu = getattr(fb.optim, opt_name)(lr=0.05, **kwargs)
        perm = np.random.default_rng(6).permutation(10)
        n_batches = -(-10 // batch)
        label = f"{which} {opt_name} batch={batch} {path} {np.dtype(dtype).name}"
        if path == "resident":
            args = backend.stage(X, Y, weights)
        else:
            args = backend.stage(X, Y, weights, max_bytes=0)
            fbc.STREAM_BYTES = 1  # one batch per copy: several launches per chunk
        try:
            # Two chunks (first batches, then the rest, the last one short), as fit runs them.
            step = 0
            for first, count in ((0, 2), (2, n_batches - 2)):
                lrs = np.linspace(0.05, 0.03, count)
                want = cpu_run(net, X, Y, weights, perm, batch, first, count, lrs, opt_cpu, step, 7, max_norm)
                got = gpu_run(backend, args, perm, batch, first, count, lrs, opt_gpu, step, 7, max_norm)
                opt_cpu.advance(want[0])
                opt_gpu.advance(got[0])
                step += count
                t = 1e-9 if dtype == np.float64 else 1e-4
                compare(f"steps done {label}", got[0], want[0], 0.0)
                compare(f"batch losses {label}", got[1], want[1], t)
                compare(f"batch correct {label}", got[2], want[2], 0.0)
            t = 1e-9 if dtype == np.float64 else 1e-4
            compare(f"params after {label}", backend.params.copy_to_host(), net.params, t)
            backend.release_optimizer()
            compare(
                f"optimizer state after {label}",
                opt_gpu.prepare(net.params)[1],
                opt_cpu.prepare(net.params)[1],
                t,
            )
            compare(
                f"optimizer scalars after {label}",
                opt_gpu.prepare(net.params)[2],
                opt_cpu.prepare(net.params)[2],
                t,
            )
        finally:
            fbc.STREAM_BYTES = 8 << 20


@check("train")
def divergence_stops_like_cpu():
    from fastbp.cuda import CudaBackend

    net = dict(nets(np.float64))["mse"]
    X, _, Y, _ = data(net, 8, seed=8)
    X *= 10.0
    backend = CudaBackend(net)
    weights = np.zeros(0)
    perm = np.arange(8)
    lrs = np.full(4, 1e4)  # the loss grows each step and overflows at the fourth batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the overflow itself, on both devices
        want = cpu_run(net, X, Y, weights, perm, 2, 0, 4, lrs, fb.optim.SGD(lr=1e4), 0, 0, 0.0)
        got = gpu_run(
            backend, backend.stage(X, Y, weights), perm, 2, 0, 4, lrs, fb.optim.SGD(lr=1e4), 0, 0, 0.0
        )
    if not 0 < want[0] < 4:
        FAILURES.append("diverged: test setup")
        print(f"FAIL diverged: the CPU run should stop after a few steps, did {want[0]}")
    compare("diverged: steps done", got[0], want[0], 0.0)
    k = want[0]
    compare("diverged: losses up to the failing batch", got[1][: k + 1], want[1][: k + 1], 1e-9)
    compare(
        "diverged: params (no update from the failing batch)", backend.params.copy_to_host(), net.params, 1e-9
    )


# --- the public API, once Sequential has device= / to() ------------------------------------------


@check("fit")
def fit_matches_cpu():
    import fastbp.cuda as fbc

    for name, resident in (("mse", True), ("softmax", False)):
        cpu = dict(nets(np.float64, l2=0.01, dropout=0.2))[name]
        gpu = dict(nets(np.float64, l2=0.01, dropout=0.2))[name].to("cuda")
        X, y, _, weights = data(cpu, 9, seed=9)
        kwargs = dict(
            epochs=2,
            batch_size=4,
            optimizer="adam",
            lr=0.02,
            verbose=0,
            seed=3,
            clip_grad_norm=1.0,
            sample_weight=weights,
        )
        label = f"fit {name} {'resident' if resident else 'streamed'} float64"
        fbc.MAX_RESIDENT_BYTES = None if resident else 0
        try:
            h_cpu = cpu.fit(X, y, **kwargs)
            h_gpu = gpu.fit(X, y, **kwargs)
        finally:
            fbc.MAX_RESIDENT_BYTES = None
        compare(f"{label} loss history", h_gpu["loss"], h_cpu["loss"], 1e-9)
        compare(f"{label} params", fb.to_numpy(gpu.params), cpu.params, 1e-9)
        compare(f"{label} layer W view", fb.to_numpy(gpu.layers[0].W), cpu.layers[0].W, 1e-9)
        compare(f"{label} forward", gpu.forward(X), cpu.forward(X), 1e-9)
        compare(f"{label} predict", gpu.predict(X), cpu.predict(X), 1e-9)
        compare(f"{label} evaluate", gpu.evaluate(X, y)["loss"], cpu.evaluate(X, y)["loss"], 1e-9)
        compare(f"{label} loss_and_grad", gpu.loss_and_grad(X, y), cpu.loss_and_grad(X, y), 1e-9)
        compare(f"{label} grads", fb.to_numpy(gpu.grads), cpu.grads, 1e-9)
        opt_cpu, opt_gpu = fb.optim.NAdam(lr=0.01), fb.optim.NAdam(lr=0.01)
        for _ in range(2):
            want = cpu.train_on_batch(X[:4], y[:4], opt_cpu)
            got = gpu.train_on_batch(X[:4], y[:4], opt_gpu)
            compare(f"{label} train_on_batch loss", got, want, 1e-9)
        compare(
            f"{label} train_on_batch state",
            opt_gpu.state_dict()["exp_avg"],
            opt_cpu.state_dict()["exp_avg"],
            1e-9,
        )
        compare(f"{label} back on the cpu", gpu.to("cpu").params, cpu.params, 1e-9)


@check("fit")
def fit_takes_device_arrays():
    cpu = dict(nets(np.float64))["mse"]
    gpu = dict(nets(np.float64))["mse"].to("cuda")
    X, y, _, _ = data(cpu, 8, seed=10)
    kwargs = dict(epochs=2, batch_size=3, optimizer="sgd", lr=0.05, verbose=0, seed=4)
    h_cpu = cpu.fit(X, y, **kwargs)
    h_gpu = gpu.fit(cuda.to_device(X), cuda.to_device(np.asarray(y)), **kwargs)
    compare("fit on device arrays: loss history", h_gpu["loss"], h_cpu["loss"], 1e-9)
    compare("fit on device arrays: params", fb.to_numpy(gpu.params), cpu.params, 1e-9)
    compare("to_numpy(host) is the array itself", fb.to_numpy(cpu.params) is cpu.params, True, 0)


@check("fit")
def the_rest_of_the_api_on_cuda():
    """Validation data, EarlyStopping's restore, a schedule, reset_parameters, state_dict round
    trips, save/load and gradcheck work on a "cuda" network as on the CPU; bad input leaves it
    unchanged."""
    import tempfile

    cpu = dict(nets(np.float64))["softmax"]
    gpu = dict(nets(np.float64))["softmax"].to("cuda")
    X, y, _, _ = data(cpu, 10, seed=11)
    stopper = dict(monitor="val_loss", patience=0, restore_best=True)
    kwargs = dict(
        epochs=3,
        batch_size=4,
        optimizer="sgd",
        lr=fb.schedules.exponential(0.5, 0.9),
        verbose=0,
        seed=5,
        validation_data=(X[:4], y[:4]),
    )
    h_cpu = cpu.fit(X, y, callbacks=[fb.callbacks.EarlyStopping(**stopper)], **kwargs)
    h_gpu = gpu.fit(X, y, callbacks=[fb.callbacks.EarlyStopping(**stopper)], **kwargs)
    compare("fit with validation: val_loss", h_gpu["val_loss"], h_cpu["val_loss"], 1e-9)
    compare("EarlyStopping restores the best weights", gpu.get_params(), cpu.get_params(), 1e-9)
    for key, value in cpu.state_dict().items():
        compare(f"state_dict {key}", gpu.state_dict()[key], value, 1e-9)
    before = gpu.get_params()
    try:
        gpu.load_state_dict({"0.weight": np.zeros((2, 2))}, strict=False)
        compare("a bad state dict is refused", "accepted", "refused", 0)
    except ValueError:
        compare("a bad state dict leaves the weights", gpu.get_params(), before, 0)
    try:
        gpu.fit(X[:, :2], y, verbose=0)
        compare("fit with the wrong feature count is refused", "accepted", "refused", 0)
    except ValueError:
        compare("fit with the wrong feature count leaves the weights", gpu.get_params(), before, 0)
    gpu.load_state_dict({k: v * 0.5 for k, v in cpu.state_dict().items()})
    compare("load_state_dict on cuda", gpu.get_params(), cpu.get_params() * 0.5, 1e-15)
    gpu.reset_parameters(1)
    compare("reset_parameters on cuda", gpu.get_params(), dict(nets(np.float64))["softmax"].params, 0)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/net.npz"
        gpu.save(path)
        compare("save from cuda, load on the cpu", fb.load(path).params, gpu.get_params(), 0)
    compare("gradcheck of a cuda network", fb.gradcheck(gpu, X, y) < 1e-6, True, 0)
    compare("repr names the device", "device='cuda'" in repr(gpu), True, 0)


# --- PTX compilation (a compile check for real GPUs, without one) --------------------------------


def ptx():
    """Compile every launchable kernel for sm_90 in float32 and float64: what the simulator cannot
    check (typing, float32 staying float32). Needs NVVM, no GPU."""
    import types as pytypes

    import numba.cuda.dispatcher as dispatcher
    from numba import types

    from fastbp._kernels.cuda import gemm, steps, train

    # Device functions ask the (absent) GPU for its compute capability; say sm_90.
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))
    i64, f64, b1 = types.int64, types.float64, types.boolean
    for dt in (types.float32, types.float64):
        v = dt[::1]
        m = dt[:, ::1]
        ii, ff = types.int64[:, ::1], types.float64[:, ::1]
        sigs = {
            "gemm_kernel": (gemm.gemm_kernel, (v, i64, b1, v, i64, b1, v, i64, i64, i64, i64)),
            "loss_and_grad_kernel": (
                steps.loss_and_grad_kernel,
                (
                    ii,
                    ff,
                    types.int64[::1],
                    i64,
                    f64,
                    f64,
                    f64,
                    v,
                    v,
                    v,
                    i64,
                    b1,
                    types.float64[::1],
                    types.float64[::1],
                ),
            ),
            "forward_kernel": (steps.forward_kernel, (ii, ff, types.int64[::1], v, v, i64, types.int64[::1])),
            "train_steps_kernel": (
                train.train_steps_kernel,
                (
                    ii,
                    ff,
                    types.int64[::1],
                    i64,
                    f64,
                    f64,
                    f64,
                    v,
                    v,
                    v,
                    m,
                    m,
                    v,
                    b1,
                    types.int64[::1],
                    b1,
                    i64,
                    i64,
                    ff,
                    i64,
                    m,
                    i64,
                    i64,
                    i64,
                    f64,
                    types.float64[::1],
                    types.int64[::1],
                    types.float64[::1],
                    types.int64[::1],
                ),
            ),
        }
        for name, (kern, sig) in sigs.items():
            tick = time.perf_counter()
            code, _ = cuda.compile_ptx(kern.py_func, sig, cc=(9, 0))
            body = code[code.find(".entry") :]
            f64_ops = sum(body.count(op) for op in ("add.f64", "mul.f64", "fma.rn.f64"))
            print(
                f"ok ptx {name} {dt}: {len(code)} chars, {f64_ops} f64 add/mul/fma, "
                f"{time.perf_counter() - tick:.1f} s",
                flush=True,
            )


def main(argv):
    wanted = argv or ["kernels", "passes", "train"]
    if wanted == ["ptx"]:
        ptx()
        return 0
    tick = time.perf_counter()
    for group in wanted:
        for fn in GROUPS[group]:
            start = time.perf_counter()
            try:
                fn()
            except Exception:
                FAILURES.append(fn.__name__)
                print(f"FAIL {fn.__name__} raised:\n{traceback.format_exc()}", flush=True)
            print(f"# {group}.{fn.__name__}: {time.perf_counter() - start:.1f} s", flush=True)
    print(f"# {len(FAILURES)} failed, {time.perf_counter() - tick:.1f} s", flush=True)
    return min(len(FAILURES), 100)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
