"""fastbp against its peers: samples/s of whole training epochs of the same MLPs, on the CPU.

    .venv/bin/python bench/peers.py --quick                # the main MLP, 3 batch sizes (< 1 minute)
    .venv/bin/python bench/peers.py --json out.json --plot out.png     # everything (several minutes)
    fastbp bench --nets small,deep --batches 1,64 --peers fastbp,torch

Peers, each only where installed:
  fastbp      net.fit(X, y, epochs=1, batch_size=B, optimizer=<fb.optim object>, verbose=0)
  reference   fastbp.reference.train: textbook NumPy backprop (its Adam restarts each call)
  torch       eager CPU: a Python loop over mini-batches of a tensor shuffled once per epoch
              (torch.randperm), optimizer.zero_grad(); loss.backward(); optimizer.step(), with
              torch.optim's fused implementation (--torch-impl: fused, foreach, default)
  jax-step    a jax.jit step (value_and_grad + optax), fed NumPy mini-batches of a shuffled copy
  jax-scan    the whole epoch in one jax.jit: shuffle with jax.random.permutation, lax.scan the steps
  jax         the faster of jax-step and jax-scan
  GEMM limit  (not a peer) bench/limit.py: the step's matrix products alone through NumPy's BLAS

Every peer trains the same network from the same initial weights on the same data: Dense layers
with ReLU between them, softmax cross-entropy on integer labels, float32. SGD is plain (lr 1e-2, no
momentum), Adam is torch's (lr 1e-3, betas (0.9, 0.999), eps 1e-8), for every peer. The data are
synthetic: standard normal features, labels from a random linear teacher; ROWS rows (8192) for
batch >= 16, ROWS / 4 for batch 1 so that one epoch stays short (always a whole number of batches,
so every peer and jax's compiled shapes see only full batches).

Timing: each (net, optimizer, batch) row builds every peer and runs one untimed warm-up epoch
(compilation: Numba's cache load, jax.jit; the reference warms up on two batches), then times
`repeats` epochs per peer, round-robin (the starting peer rotates each repetition, so drift on a
shared machine hits every peer alike), and keeps the best epoch. Shuffling is inside the epoch for
every peer. --threads (default: the cores this process may use) goes to fb.set_num_threads (Numba
and both OpenBLAS pools, so the reference and the GEMM limit too) and torch.set_num_threads; jax
uses XLA:CPU's own thread pool (all cores), which has no equivalent knob.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

NETS = {
    "mlp": (784, 256, 128, 10),
    "small": (64, 128, 64, 10),
    "deep": (64,) + (64,) * 10 + (10,),  # 10 hidden layers of 64: 11 Dense layers
}
BATCHES = (1, 16, 64, 256, 1024)
OPTIMIZERS = ("sgd", "adam")
LR = {"sgd": 1e-2, "adam": 1e-3}
PEERS = ("fastbp", "reference", "torch", "jax")
ROWS = 8192
REPEATS = 5
QUICK = {"nets": ("mlp",), "batches": (1, 64, 1024), "repeats": 2, "rows": 1024}
# Columns of the table, in order; "jax" is derived from the two jax variants.
COLUMNS = ("fastbp", "reference", "torch", "jax-step", "jax-scan", "jax")
RUNNERS = ("fastbp", "reference", "torch", "jax-step", "jax-scan")
# torch.optim implementations: "fused" (one kernel for all parameters) is the fastest on CPU here;
# torch's own default on CPU is the per-tensor loop, several times slower for small networks.
TORCH_IMPLS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "default": {}}


def rows_for(batch: int, rows: int = ROWS) -> int:
    """Data rows for one epoch at `batch`: `rows` (rows // 4 at batch 1), at least 4 batches, and a
    whole number of batches."""
    n = max(rows // 4 if batch == 1 else rows, 4 * batch)
    return n - n % batch


def make_data(widths, rows: int, seed: int = 0):
    """X (rows, widths[0]) float32 standard normal; y (rows,) int64 labels in [0, widths[-1]) from
    a random linear teacher, so that the loss has something to learn."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, widths[0]), dtype=np.float32)
    teacher = rng.standard_normal((widths[0], widths[-1]), dtype=np.float32)
    y = np.argmax(X @ teacher, axis=1).astype(np.int64)
    return X, y


def layer_specs(widths):
    import fastbp as fb

    specs = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        specs.append(fb.Dense(n_in, n_out))
        if i < len(widths) - 2:
            specs.append(fb.ReLU())
    return specs


def initial_weights(widths, seed: int = 0):
    """fastbp's initial weights for the net (He for ReLU layers): [(W (in, out), b (out,))]."""
    import fastbp as fb

    net = fb.Sequential(*layer_specs(widths), loss=fb.SoftmaxCrossEntropy(), dtype=np.float32, seed=seed)
    return [(layer.W.copy(), layer.b.copy()) for layer in net.dense_layers]


# --- the peers: prepare(...) once, warmup() untimed, epoch(seed) timed ----------------------------


class FastbpPeer:
    def __init__(self, widths, optimizer, lr, batch, X, y, init, **options):
        import fastbp as fb

        self.net = fb.Sequential(*layer_specs(widths), loss=fb.SoftmaxCrossEntropy(), dtype=np.float32)
        for layer, (W, b) in zip(self.net.dense_layers, init):
            layer.W[...], layer.b[...] = W, b
        self.opt = {"sgd": fb.optim.SGD, "adam": fb.optim.Adam}[optimizer](lr=lr)
        self.batch, self.X, self.y = batch, X, y

    def warmup(self):
        self.epoch(0)

    def epoch(self, seed):
        self.net.fit(
            self.X, self.y, epochs=1, batch_size=self.batch, optimizer=self.opt, verbose=0, seed=seed
        )


class ReferencePeer:
    def __init__(self, widths, optimizer, lr, batch, X, y, init, **options):
        import fastbp as fb
        from fastbp import reference

        self.train = partial(
            reference.train,
            layer_specs(widths),
            fb.SoftmaxCrossEntropy(),
            [W.copy() for W, _ in init],
            [b.copy() for _, b in init],
            batch_size=batch,
            lr=lr,
            optimizer=optimizer,
            shuffle=True,
            epochs=1,
        )
        self.batch, self.X, self.y = batch, X, y

    def warmup(self):
        rows = 2 * self.batch
        self.train(self.X[:rows], self.y[:rows], seed=0)

    def epoch(self, seed):
        self.train(self.X, self.y, seed=seed)


class TorchPeer:
    def __init__(self, widths, optimizer, lr, batch, X, y, init, **options):
        import torch

        self.torch = torch
        modules = []
        for i, (W, b) in enumerate(init):
            linear = torch.nn.Linear(*W.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W.T.copy()))  # torch keeps (out, in)
                linear.bias.copy_(torch.from_numpy(b))
            modules.append(linear)
            if i < len(init) - 1:
                modules.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*modules)
        impl = TORCH_IMPLS[options.get("torch_impl", "fused")]
        self.opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer](
            self.model.parameters(), lr=lr, **impl
        )
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.batch = batch
        self.generator = torch.Generator().manual_seed(0)

    def warmup(self):
        self.epoch(0)

    def epoch(self, seed):
        torch, model, opt, batch = self.torch, self.model, self.opt, self.batch
        n = self.X.shape[0]
        perm = torch.randperm(n, generator=self.generator)
        X, y = self.X[perm], self.y[perm]
        cross_entropy = torch.nn.functional.cross_entropy
        for start in range(0, n, batch):
            opt.zero_grad()
            loss = cross_entropy(model(X[start : start + batch]), y[start : start + batch])
            loss.backward()
            opt.step()


def _jax_step_function(optimizer, lr):
    """(tx, step): an optax transformation and an un-jitted training step on one batch."""
    import jax
    import optax

    tx = optax.sgd(lr) if optimizer == "sgd" else optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)

    def loss_fn(params, x, y):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = params[-1]
        return optax.softmax_cross_entropy_with_integer_labels(x @ W + b, y).mean()

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return tx, step


class JaxStepPeer:
    def __init__(self, widths, optimizer, lr, batch, X, y, init, **options):
        import jax
        import jax.numpy as jnp

        tx, step = _jax_step_function(optimizer, lr)
        self.jax = jax
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in init]
        self.opt_state = tx.init(self.params)
        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.X, self.y = X, y.astype(np.int32)
        self.batch = batch

    def warmup(self):
        self.epoch(0)

    def epoch(self, seed):
        n, batch, step = self.X.shape[0], self.batch, self.step
        order = np.random.default_rng(seed).permutation(n)
        X, y = self.X[order], self.y[order]
        params, opt_state = self.params, self.opt_state
        for start in range(0, n, batch):
            params, opt_state, _ = step(params, opt_state, X[start : start + batch], y[start : start + batch])
        self.params, self.opt_state = self.jax.block_until_ready((params, opt_state))


class JaxScanPeer:
    def __init__(self, widths, optimizer, lr, batch, X, y, init, **options):
        import jax
        import jax.numpy as jnp

        tx, step = _jax_step_function(optimizer, lr)
        n = X.shape[0]
        steps = n // batch

        def epoch(params, opt_state, X, y, key):
            order = jax.random.permutation(key, n)
            Xb = X[order].reshape(steps, batch, X.shape[1])
            yb = y[order].reshape(steps, batch)

            def body(carry, xy):
                params, opt_state, loss = step(*carry, *xy)
                return (params, opt_state), loss

            (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (Xb, yb))
            return params, opt_state, losses

        self.jax = jax
        self.run = jax.jit(epoch, donate_argnums=(0, 1))
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in init]
        self.opt_state = tx.init(self.params)
        self.X, self.y = jnp.asarray(X), jnp.asarray(y.astype(np.int32))

    def warmup(self):
        self.epoch(0)

    def epoch(self, seed):
        key = self.jax.random.PRNGKey(seed)
        params, opt_state, losses = self.run(self.params, self.opt_state, self.X, self.y, key)
        self.params, self.opt_state, _ = self.jax.block_until_ready((params, opt_state, losses))


PEER_CLASSES = {
    "fastbp": FastbpPeer,
    "reference": ReferencePeer,
    "torch": TorchPeer,
    "jax-step": JaxStepPeer,
    "jax-scan": JaxScanPeer,
}


# --- which peers, how many threads ------------------------------------------------------------------


def _installed(*modules) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def available_runners(peers=PEERS) -> tuple[list[str], dict[str, str]]:
    """The runners for the asked-for peers ("jax" means both jax variants), and {peer: why not}
    for those that are not installed. An unknown name raises ValueError."""
    unknown = [p for p in peers if p not in PEERS + ("jax-step", "jax-scan")]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; choose from {', '.join(PEERS)} (or jax-step, jax-scan)")
    needs = {
        "fastbp": (),
        "reference": ("scipy",),
        "torch": ("torch",),
        "jax": ("jax", "optax"),
        "jax-step": ("jax", "optax"),
        "jax-scan": ("jax", "optax"),
    }
    runners, missing = [], {}
    for peer in peers:
        if not _installed(*needs[peer]):
            missing[peer] = f"{' and '.join(needs[peer])} not installed"
            continue
        for runner in ("jax-step", "jax-scan") if peer == "jax" else (peer,):
            if runner not in runners:
                runners.append(runner)
    return [r for r in RUNNERS if r in runners], missing


def set_threads(threads: int, runners) -> dict:
    """Give `threads` to fastbp (Numba and both OpenBLAS pools) and torch; returns what each uses."""
    import fastbp as fb

    fb.set_num_threads(threads)
    used = {"fastbp": fb.get_num_threads(), "numpy_blas": threads}
    if "torch" in runners:
        import torch

        torch.set_num_threads(threads)
        used["torch"] = torch.get_num_threads()
    if any(r.startswith("jax") for r in runners):
        os.environ.setdefault("JAX_PLATFORMS", "cpu")  # a CPU comparison, even on a GPU machine
        import jax

        used["jax"] = f"XLA:CPU default thread pool ({jax.device_count()} device, all cores)"
    return used


def _limit_module():
    """bench/limit.py, loaded by path (bench/ is not a package; peers.py also runs through runpy)."""
    name = "fastbp_bench_limit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("limit.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def environment(threads: int, used: dict) -> dict:
    """What the figures depend on: versions, CPU, thread counts, BLAS, the machine's load."""
    import numba
    from threadpoolctl import threadpool_info

    import fastbp as fb

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "fastbp": fb.__version__,
    }
    for module in ("torch", "jax", "optax"):
        if module in sys.modules:
            versions[module] = sys.modules[module].__version__
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    watched = (
        "OPENBLAS_CORETYPE",
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "FASTBP_NUM_THREADS",
        "XLA_FLAGS",
        "JAX_PLATFORMS",
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "threads_used": used,
        "platform": platform.platform(),
        "versions": versions,
        "blas": blas,
        "env": {k: os.environ[k] for k in watched if k in os.environ},
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --- measurement --------------------------------------------------------------------------------


def _time_epoch(peer, seed: int) -> float:
    gc.collect()
    tick = time.perf_counter()
    peer.epoch(seed)
    return time.perf_counter() - tick


def measure_row(
    widths,
    optimizer: str,
    batch: int,
    runners,
    repeats: int,
    rows: int,
    limit: bool,
    torch_impl: str = "fused",
) -> dict:
    """One row of the table: every runner on (widths, optimizer, batch), best of `repeats` epochs."""
    n = rows_for(batch, rows)
    X, y = make_data(widths, n)
    init = initial_weights(widths)
    peers, errors = {}, {}
    for name in runners:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
                peer = PEER_CLASSES[name](
                    widths, optimizer, LR[optimizer], batch, X, y, init, torch_impl=torch_impl
                )
                peer.warmup()
            peers[name] = peer
        except Exception as error:  # a broken peer is reported, the others still run
            errors[name] = f"{type(error).__name__}: {error}"
    runs: dict[str, list[float]] = {name: [] for name in peers}
    names = list(peers)
    for rep in range(repeats):
        shift = rep % max(len(names), 1)
        for name in names[shift:] + names[:shift]:
            runs[name].append(n / _time_epoch(peers[name], seed=rep + 1))
    best = {name: max(rates) for name, rates in runs.items()}
    jax = [best[k] for k in ("jax-step", "jax-scan") if k in best]
    if jax:
        best["jax"] = max(jax)
    others = {k: v for k, v in best.items() if k not in ("fastbp", "jax-step", "jax-scan")}
    best_peer = max(others, key=others.get) if others else None
    ratio = best["fastbp"] / others[best_peer] if best_peer and "fastbp" in best else None
    row = {
        "net": None,
        "widths": list(widths),
        "optimizer": optimizer,
        "lr": LR[optimizer],
        "batch": batch,
        "rows": n,
        "samples_per_s": best,
        "runs": runs,
        "best_peer": best_peer,
        "ratio": ratio,
        "errors": errors,
    }
    if limit:
        row["gemm_limit"] = _limit_module().limit_samples_per_s(widths, batch)
    return row


def measure(
    nets=("mlp",),
    batches=BATCHES,
    optimizers=OPTIMIZERS,
    peers=PEERS,
    repeats: int = REPEATS,
    threads: int | None = None,
    rows: int = ROWS,
    limit: bool = True,
    torch_impl: str = "fused",
    log=None,
) -> dict:
    """Samples/s of training epochs for every (net, optimizer, batch) and peer.

    nets: names from NETS, or a dict {name: widths}. Returns {"meta": {...}, "results": [row, ...]}
    where a row holds net, widths, optimizer, lr, batch, rows, samples_per_s {peer: best epoch},
    runs {runner: [every epoch]}, best_peer (fastbp excluded), ratio (fastbp / best peer),
    errors {runner: message} and, with `limit`, gemm_limit. Plain JSON types throughout.
    torch_impl: how torch.optim runs, a key of TORCH_IMPLS."""
    nets = dict(nets) if isinstance(nets, dict) else {name: NETS[name] for name in nets}
    for name in optimizers:
        if name not in LR:
            raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(LR)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if torch_impl not in TORCH_IMPLS:
        raise ValueError(f"unknown torch_impl {torch_impl!r}; choose from {', '.join(TORCH_IMPLS)}")
    threads = threads or len(os.sched_getaffinity(0))
    runners, missing = available_runners(peers)
    used = set_threads(threads, runners)
    meta = environment(threads, used)
    meta.update(
        runners=runners,
        missing=missing,
        repeats=repeats,
        rows=rows,
        lr=dict(LR),
        torch_impl=torch_impl,
        dtype="float32",
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    results = []
    tick = time.perf_counter()
    for net, widths in nets.items():
        for optimizer in optimizers:
            for batch in batches:
                row = measure_row(widths, optimizer, batch, runners, repeats, rows, limit, torch_impl)
                row["net"] = net
                results.append(row)
                if log:
                    rates = "  ".join(f"{k} {v:,.0f}" for k, v in row["samples_per_s"].items())
                    log(f"[{time.perf_counter() - tick:6.1f}s] {net} {optimizer} batch {batch}: {rates}")
                    for name, error in row["errors"].items():
                        log(f"    {name} failed: {error}")
    meta["seconds"] = time.perf_counter() - tick
    meta["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"meta": meta, "results": results}


# --- output -------------------------------------------------------------------------------------


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(result: dict) -> str:
    """The markdown table: one row per (net, optimizer, batch), samples/s per peer, the GEMM limit,
    and fastbp / best peer."""
    rows = result["results"]
    present = [c for c in COLUMNS if any(c in r["samples_per_s"] for r in rows)]
    limit = any("gemm_limit" in r for r in rows)
    headers = ["net", "optimizer", "batch", *present] + (["GEMM limit"] if limit else [])
    headers.append("fastbp / best peer")
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] * 3 + ["--:"] * (len(headers) - 3)) + "|",
    ]
    for r in rows:
        cells = [r["net"], r["optimizer"], str(r["batch"])]
        cells += [_rate(r["samples_per_s"].get(c)) for c in present]
        if limit:
            cells.append(_rate(r.get("gemm_limit")))
        cells.append("-" if r["ratio"] is None else f"{r['ratio']:.2f} ({r['best_peer']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(result: dict) -> str:
    meta = result["meta"]
    blas = "; ".join(
        f"{b['internal_api']} {b['version']} {b['architecture']} x{b['num_threads']}" for b in meta["blas"]
    )
    load = meta["loadavg_start"]
    lines = [
        f"CPU: {meta['cpu']} ({meta['cores']} cores); threads: {meta['threads']}"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
        "versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"BLAS: {blas}",
        f"threads used: {meta['threads_used']}"
        + (f"; torch.optim implementation: {meta['torch_impl']}" if "torch" in meta["runners"] else ""),
        f"samples/s of one training epoch, best of {meta['repeats']}; float32; ReLU MLPs, softmax "
        f"cross-entropy; SGD lr {LR['sgd']:g}, Adam lr {LR['adam']:g}; {meta['rows']} synthetic rows "
        f"({rows_for(1, meta['rows'])} at batch 1)",
    ]
    if meta["env"]:
        lines.append("environment: " + ", ".join(f"{k}={v}" for k, v in meta["env"].items()))
    if "OPENBLAS_CORETYPE" in meta["env"]:
        lines.append(
            "warning: OPENBLAS_CORETYPE is set: NumPy's BLAS may use slower kernels (bench/README.md)"
        )
    for peer, why in meta["missing"].items():
        lines.append(f"skipped {peer}: {why}")
    return "\n".join(line for line in lines if line)


def write_json(result: dict, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


def plot(result: dict, path) -> bool:
    """samples/s against batch size, log-log, one panel per (net, optimizer). False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = result["results"]
    panels = list(dict.fromkeys((r["net"], r["optimizer"]) for r in rows))
    optimizers = list(dict.fromkeys(r["optimizer"] for r in rows))
    ncols = len(optimizers)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.8 * nrows), squeeze=False)
    series = [c for c in COLUMNS if c != "jax"] + ["gemm_limit"]
    for ax, (net, optimizer) in zip(axes.flat, panels):
        mine = sorted(
            (r for r in rows if (r["net"], r["optimizer"]) == (net, optimizer)), key=lambda r: r["batch"]
        )
        for name in series:
            points = [
                (r["batch"], r.get("gemm_limit") if name == "gemm_limit" else r["samples_per_s"].get(name))
                for r in mine
            ]
            points = [(b, v) for b, v in points if v]
            if points:
                style = {"linestyle": "--", "color": "gray"} if name == "gemm_limit" else {"marker": "o"}
                ax.plot(*zip(*points), label="GEMM limit" if name == "gemm_limit" else name, **style)
        ax.set_xscale("log", base=2)
        ax.set_xticks([r["batch"] for r in mine], [str(r["batch"]) for r in mine])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_title(f"{net} {'-'.join(map(str, mine[0]['widths']))}, {optimizer}", fontsize=10)
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# --- command line -------------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peers.py",
        description=__doc__,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"the main MLP at batches {QUICK['batches']}, {QUICK['repeats']} repeats, "
        f"{QUICK['rows']} rows (under a minute)",
    )
    parser.add_argument("--nets", type=_names, help=f"comma-separated from {', '.join(NETS)} (default: all)")
    parser.add_argument("--batches", type=_positive_ints, help="comma-separated (default: 1,16,64,256,1024)")
    parser.add_argument("--optimizers", type=_names, help="comma-separated from sgd, adam (default: both)")
    parser.add_argument(
        "--peers",
        type=_names,
        help=f"comma-separated from {', '.join(PEERS)}, jax-step, jax-scan (default: all)",
    )
    parser.add_argument("--repeats", type=int, help=f"timed epochs per peer and row (default {REPEATS})")
    parser.add_argument(
        "--threads", type=int, help="threads for fastbp, its BLAS and torch (default: all cores)"
    )
    parser.add_argument("--rows", type=int, help=f"synthetic rows, a quarter at batch 1 (default {ROWS})")
    parser.add_argument(
        "--torch-impl",
        choices=list(TORCH_IMPLS),
        default="fused",
        help="torch.optim implementation (default fused; 'default' is torch's per-tensor loop)",
    )
    parser.add_argument("--no-limit", action="store_true", help="leave out the GEMM-limit column")
    parser.add_argument("--json", metavar="PATH", help="write every figure and the environment as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG: samples/s against batch size")
    return parser


def main(argv=None) -> int:
    """Run the benchmark with the command line `argv` (default: sys.argv[1:]); returns 0."""
    parser = make_parser()
    args = parser.parse_args(argv)
    quick = QUICK if args.quick else {}
    nets = args.nets or list(quick.get("nets", NETS))
    unknown = [n for n in nets if n not in NETS]
    if unknown:
        parser.error(f"unknown net(s) {', '.join(unknown)}; choose from {', '.join(NETS)}")
    optimizers = args.optimizers or list(OPTIMIZERS)
    if [o for o in optimizers if o not in LR]:
        parser.error(f"unknown optimizer in {optimizers}; choose from {', '.join(LR)}")
    peers = args.peers or list(PEERS)
    try:
        available_runners(peers)
    except ValueError as error:
        parser.error(str(error))
    repeats = args.repeats if args.repeats is not None else quick.get("repeats", REPEATS)
    rows = args.rows if args.rows is not None else quick.get("rows", ROWS)
    if repeats < 1 or rows < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeats, --rows and --threads must be positive")

    def log(line):
        print(line, file=sys.stderr, flush=True)

    result = measure(
        nets=nets,
        batches=args.batches or list(quick.get("batches", BATCHES)),
        optimizers=optimizers,
        peers=peers,
        repeats=repeats,
        threads=args.threads,
        rows=rows,
        limit=not args.no_limit,
        torch_impl=args.torch_impl,
        log=log,
    )
    result["meta"]["quick"] = bool(args.quick)
    print(header(result) + "\n")
    print(table(result))
    load = result["meta"]["loadavg_end"]
    print(
        f"\n{result['meta']['seconds']:.0f} s" + (f"; load average at the end {load[0]:.2f}" if load else "")
    )
    if args.json:
        write_json(result, args.json)
        print(f"json: {args.json}")
    if args.plot:
        print(
            f"plot: {args.plot}" if plot(result, args.plot) else "plot skipped: matplotlib is not installed"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
