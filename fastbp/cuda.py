"""fastbp on a CUDA GPU: device copies of a network's buffers and the kernels that train them.

`CudaBackend(net)` holds, on the GPU, the plan, `params`, `grads`, the optimizer's per-element state
and the training workspace (the CPU's layout, in the same row units), and runs the kernels of
fastbp._kernels.cuda: `loss_and_grad`, `forward` and `train_steps` mean what the CPU ones mean.
Sequential(..., device="cuda") / net.to("cuda") route to it.

This module imports without numba-cuda and without a GPU: `available()` says whether the backend
can run and, if not, which of the two is missing; numba.cuda is imported only once it can.
Under the simulator (NUMBA_ENABLE_CUDASIM=1) it runs anywhere, slowly: the tests use that.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
import time

import numpy as np

from fastbp._kernels import plan as P

# Inference runs in blocks of this many rows (as on the CPU): a bounded workspace for any X.
INFERENCE_BLOCK = 1024
# Host training data is copied whole to the GPU when it takes at most this fraction of the free
# device memory (or MAX_RESIDENT_BYTES when set), else streamed to it chunk by chunk (stage()).
RESIDENT_FRACTION = 0.25
MAX_RESIDENT_BYTES: float | None = None
# Streaming moves about this many bytes of batches per copy.
STREAM_BYTES = 8 << 20

_MISSING_NUMBA_CUDA = "numba-cuda is not installed: pip install fastbp[cuda]"
_NO_GPU = "no CUDA GPU found (numba.cuda.is_available() is False: no device, or no driver)"


def available() -> tuple[bool, str]:
    """(True, "") when device="cuda" can run here; else (False, what is missing: numba-cuda, or a
    GPU). The CUDA simulator (NUMBA_ENABLE_CUDASIM=1) counts as a GPU.

    numba's own numba.cuda (deprecated since NVIDIA's numba-cuda took it over) is not used: its
    simulator swaps the `cuda` module of a device function's globals without a reference count, so
    a thread leaving a device function takes cuda.threadIdx away from the threads still inside
    (AttributeError, seen with numba 0.68.1); numba-cuda's simulator counts the entries."""
    if importlib.util.find_spec("numba_cuda") is None:
        return False, _MISSING_NUMBA_CUDA
    try:
        from numba import cuda
    except Exception as exc:  # an import that fails for any reason means no CUDA here
        return False, f"numba.cuda cannot be imported ({type(exc).__name__}: {exc}); pip install fastbp[cuda]"
    try:
        found = cuda.is_available()
    except Exception:  # a broken driver install reads as no GPU
        found = False
    if not found:
        return False, _NO_GPU
    return True, ""


def require() -> None:
    """Raise RuntimeError saying what is missing unless the CUDA backend can run here."""
    ok, why = available()
    if not ok:
        raise RuntimeError(f'device="cuda" is not available: {why}')


def is_device_array(x) -> bool:
    """Whether x lives on the GPU: a numba device array, or any object with
    __cuda_array_interface__ (CuPy, torch.cuda tensors, ...)."""
    return hasattr(x, "__cuda_array_interface__") or (
        not isinstance(x, np.ndarray) and hasattr(x, "copy_to_host")
    )


def to_numpy(x) -> np.ndarray:
    """A host NumPy array for x: host arrays pass through as they are, device arrays are copied."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    if hasattr(x, "__cuda_array_interface__"):
        from numba import cuda

        return cuda.as_cuda_array(x).copy_to_host()
    return np.asarray(x)


def check_features(X, n_features: int, dtype, name: str = "X"):
    """fastbp._validation.check_features for host or device X. A device array is checked for its
    shape, dtype and layout and used where it is (its values are not scanned for NaN: that would
    read it back to the host); a host array is checked and converted as on the CPU."""
    from fastbp import _validation

    if not is_device_array(X):
        return _validation.check_features(X, n_features, dtype, name)
    X = _as_device(X)
    if len(X.shape) != 2 or X.shape[0] == 0 or X.shape[1] != n_features:
        raise ValueError(
            f"{name} must have shape (rows, {n_features}) with rows > 0, got a device "
            f"array of shape {tuple(X.shape)}"
        )
    if np.dtype(X.dtype) != np.dtype(dtype):
        raise TypeError(
            f"{name} is a device array of {np.dtype(X.dtype)}; the network runs in "
            f"{np.dtype(dtype)}: convert it on the device first"
        )
    if not X.is_c_contiguous():
        raise ValueError(f"{name} must be a C-contiguous device array")
    return X


def check_targets(y, loss, n_rows: int, n_outputs: int, dtype, name: str = "y") -> np.ndarray:
    """fastbp._validation.check_targets for host or device y (a device y is small next to X: it is
    copied to the host and checked there)."""
    from fastbp import _validation

    return _validation.check_targets(to_numpy(y), loss, n_rows, n_outputs, dtype, name)


def check_sample_weight(sample_weight, n_rows: int, dtype, name: str = "sample_weight"):
    """fastbp._validation.check_sample_weight for host or device weights (copied to the host)."""
    from fastbp import _validation

    if sample_weight is not None:
        sample_weight = to_numpy(sample_weight)
    return _validation.check_sample_weight(sample_weight, n_rows, dtype, name)


def checks(net):
    """(check_features, check_targets, check_sample_weight) for `net`'s device: fastbp._validation's
    on the CPU; on "cuda" the ones above, which keep device arrays on the GPU."""
    from fastbp import _validation

    if getattr(net, "_cuda", None) is None:
        return _validation.check_features, _validation.check_targets, _validation.check_sample_weight
    return check_features, check_targets, check_sample_weight


def host_params(net) -> np.ndarray:
    """net.params on the CPU; on "cuda" a host array of the same shape and dtype (never written),
    for host-side APIs that only look at those, as optimizer.prepare."""
    backend = getattr(net, "_cuda", None)
    return net.params if backend is None else backend.host_params


def move(net, device: str):
    """Sequential.to(device): run every pass of `net` on "cpu" or "cuda"; returns net.

    On "cuda", net.params and net.grads are device arrays (fb.to_numpy copies them to the host) and
    the layers' W, b, dW, db views into them; fit keeps the optimizer state on the GPU while it runs
    and takes host or device arrays. Without numba-cuda or without a GPU, RuntimeError says which."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    with net._lock:
        if device == getattr(net, "device", "cpu"):
            return net
        if device == "cuda":
            backend = CudaBackend(net)
            net.params, net.grads = backend.params, backend.grads
            net._cuda = backend
        else:
            net.params, net.grads = net._cuda.to_host()
            net._cuda = None
        net.layers = net._bind_layers()
        net.device = device
    return net


def _as_device(x):
    """x as a numba device array (no copy), for any object on the GPU."""
    if hasattr(x, "copy_to_host") and hasattr(x, "copy_to_device"):
        return x
    from numba import cuda

    return cuda.as_cuda_array(x)


def _locked(method):
    """Run the method under the backend's lock: one stream and one workspace, one pass at a time."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return run


class CudaBackend:
    """A network's buffers on the GPU and the passes that use them.

    params / grads: 1-D device arrays of the network's dtype, in the CPU layout. The optimizer's
    slots are uploaded on a fit's first chunk and live on the device until release_optimizer()
    copies them back into the optimizer's own (host) arrays."""

    def __init__(self, net):
        require()
        from numba import cuda

        from fastbp._kernels.cuda import jit, optim, steps, train

        self._cuda, self._jit, self._optim, self._steps, self._train = cuda, jit, optim, steps, train
        self.dtype = np.dtype(net.dtype)
        self._li_host = np.ascontiguousarray(net._li, dtype=np.int64)
        self._gu_host = np.ascontiguousarray(net._gu, dtype=np.int64)
        self.li = cuda.to_device(self._li_host)
        self.lf = cuda.to_device(np.ascontiguousarray(net._lf, dtype=np.float64))
        self.gu = cuda.to_device(self._gu_host)
        self.loss_code = int(net.loss.code)
        self.loss_param = float(net.loss.param)
        self.l1, self.l2 = float(net.l1), float(net.l2)
        self.params = cuda.to_device(np.ascontiguousarray(to_numpy(net.params), dtype=self.dtype))
        self.grads = cuda.to_device(np.ascontiguousarray(to_numpy(net.grads), dtype=self.dtype))
        self.n_features = int(self._li_host[0, P.N_IN])
        self.n_outputs = int(self._li_host[-1, P.N_OUT])
        self._units = int(self._gu_host[P.TOTAL_UNITS])
        self.stream = cuda.stream()
        self._ws = cuda.device_array(0, dtype=self.dtype)
        self._capacity = 0
        self._blocks: dict[str, int] = {}
        self._red = cuda.device_array(0, dtype=np.float64)
        self._result = cuda.device_array(1, dtype=np.float64)
        self._result_index = cuda.device_array(1, dtype=np.int64)
        self._status = cuda.device_array(train.N_STATUS, dtype=np.int64)
        self._status_zero = cuda.pinned_array(train.N_STATUS, dtype=np.int64)
        self._status_zero[:] = 0
        self._dummy_index = cuda.to_device(np.zeros(1, dtype=np.int64))
        self._dummy_weights = cuda.to_device(np.zeros(1, dtype=self.dtype))
        # Per-chunk buffers, grown when a longer chunk comes (never inside a chunk).
        self._factors_host = optim.new_factor_table(0)
        self._factors = cuda.device_array(self._factors_host.shape, dtype=np.float64)
        self._losses = cuda.device_array(1, dtype=np.float64)
        self._correct = cuda.device_array(1, dtype=np.int64)
        self._perm = cuda.device_array(1, dtype=np.int64)
        self._stage: dict = {}
        self._opt_host = None  # the host slots whose device copy is self._slots
        self._slots = None
        self._host_params = None
        self._lock = threading.RLock()

    # -- buffers ------------------------------------------------------------------------------

    def workspace_for(self, rows: int):
        """The device workspace, holding at least `rows` rows (reallocated only to grow)."""
        if self._capacity < rows:
            self._ws = self._cuda.to_device(np.zeros(rows * self._units, dtype=self.dtype))
            self._capacity = rows
            self._blocks.clear()
        return self._ws

    def _offset(self, unit: int) -> int:
        return self._capacity * int(unit)

    def _put(self, unit: int, array) -> None:
        """Copy a (rows, k) host or device array into the workspace region at `unit`."""
        start = self._offset(unit)
        size = int(np.prod(array.shape))
        target = self._ws[start : start + size]
        if is_device_array(array):
            target.copy_to_device(_as_device(array).reshape(size), stream=self.stream)
        else:
            host = np.ascontiguousarray(array, dtype=self.dtype).reshape(size)
            target.copy_to_device(host, stream=self.stream)

    _red_placeholder = object()

    def _with_red(self, args):
        return tuple(self._red if a is CudaBackend._red_placeholder else a for a in args)

    # -- passes -------------------------------------------------------------------------------

    @_locked
    def loss_and_grad(self, X, Y, weights) -> float:
        """One forward and backward pass on (X, Y) (host or device arrays, already checked and of
        the network's dtype; Y as the CPU kernels take it, (rows, k)); `weights` (rows,) or empty.
        Fills grads on the device; returns the mean loss plus the weight penalty."""
        rows = int(X.shape[0])
        self.workspace_for(rows)
        weighted = int(np.prod(weights.shape)) > 0
        self._put(self._gu_host[P.IN_UNIT], X)
        self._put(self._gu_host[P.Y_UNIT], Y)
        if weighted:
            self._put(self._gu_host[P.SW_UNIT], weights.reshape(rows, 1))
        self._run(
            "loss_and_grad",
            self._steps.loss_and_grad_kernel,
            self.li,
            self.lf,
            self.gu,
            self.loss_code,
            self.loss_param,
            self.l1,
            self.l2,
            self.params,
            self.grads,
            self._ws,
            rows,
            weighted,
            CudaBackend._red_placeholder,
            self._result,
        )
        return self._read_result()

    @_locked
    def forward(self, X) -> np.ndarray:
        """The network's output (rows, n_outputs) for X (host or device, checked), as a host array."""
        rows = int(X.shape[0])
        out = np.empty((rows, self.n_outputs), dtype=self.dtype)
        if rows == 0:
            return out
        self.workspace_for(min(rows, INFERENCE_BLOCK))
        for start in range(0, rows, self._capacity):
            block = X[start : start + self._capacity]
            n = int(block.shape[0])
            self._put(self._gu_host[P.IN_UNIT], block)
            self._run(
                "forward",
                self._steps.forward_kernel,
                self.li,
                self.lf,
                self.gu,
                self.params,
                self._ws,
                n,
                self._result_index,
            )
            # Outside training the output is the last layer's activation region.
            at = self._offset(self._li_host[-1, P.A_UNIT])
            self._ws[at : at + n * self.n_outputs].copy_to_host(
                out[start : start + n].reshape(-1), stream=self.stream
            )
        self.stream.synchronize()
        return out

    @_locked
    def penalty(self) -> float:
        """The weight penalty l1 * sum|W| + l2/2 * sum W^2 at the current parameters."""
        if self.l1 == 0.0 and self.l2 == 0.0:
            return 0.0
        self._run(
            "penalty",
            self._steps.weight_penalty_kernel,
            self.li,
            self.params,
            self.grads,
            self.l1,
            self.l2,
            False,
            CudaBackend._red_placeholder,
            self._result,
        )
        return self._read_result()

    def _read_result(self) -> float:
        value = self._result.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        return float(value[0])

    def _run(self, name, dispatcher, *args) -> None:
        if self._red.shape[0] == 0:
            self._red = self._cuda.device_array(self._steps.RED_REGIONS, dtype=np.float64)
        blocks = self._blocks.get(name)
        if blocks is None:
            blocks = self._jit.cooperative_blocks(dispatcher, self._with_red(args), self._wanted_blocks())
            self._blocks[name] = blocks
        need = self._steps.RED_REGIONS * blocks
        if self._red.shape[0] < need:
            self._red = self._cuda.device_array(need, dtype=np.float64)
        dispatcher[blocks, self._jit.BLOCK, self.stream](*self._with_red(args))

    def _wanted_blocks(self) -> int:
        """Blocks the largest phase can keep busy: the widest GEMM's tiles, or the optimizer's pass
        at four elements per thread."""
        tile, threads = self._jit.TILE, self._jit.THREADS
        cap = max(self._capacity, 1)

        def up(m):
            return -(-int(m) // tile)

        tiles = 1
        for n_in, n_out in self._li_host[:, [P.N_IN, P.N_OUT]]:
            tiles = max(tiles, up(cap) * up(n_out), up(n_in) * up(n_out) + up(cap) * up(n_in))
        return max(tiles, -(-int(self.params.shape[0]) // (4 * threads)))

    # -- training -----------------------------------------------------------------------------

    def stage(self, X, Y, weights, max_bytes: float | None = None):
        """The training data as fit should pass it to train_steps: device arrays as they are; host
        arrays copied whole to the GPU (through pinned memory, asynchronously) when they take at
        most RESIDENT_FRACTION of the free device memory (or max_bytes), else left on the host to
        be streamed chunk by chunk."""
        arrays = (X, Y, weights)
        if all(is_device_array(a) or int(np.prod(a.shape)) == 0 for a in arrays):
            return arrays
        if any(is_device_array(a) for a in arrays):
            # Some already on the device: bring the rest (targets, weights) beside them.
            return tuple(
                a if is_device_array(a) or int(np.prod(a.shape)) == 0 else self.upload(a) for a in arrays
            )
        nbytes = sum(int(np.prod(a.shape)) * self.dtype.itemsize for a in arrays if not is_device_array(a))
        if max_bytes is None:
            max_bytes = MAX_RESIDENT_BYTES
        if max_bytes is None:
            free = self._cuda.current_context().get_memory_info()[0]
            max_bytes = RESIDENT_FRACTION * free
        if nbytes > max_bytes:
            return arrays
        return tuple(a if is_device_array(a) else self.upload(a) for a in arrays)

    def upload(self, host: np.ndarray):
        """A device copy of a host array, moved through a reused pinned buffer in slabs of about
        STREAM_BYTES with asynchronous copies (the host fills one slab while the last one moves)."""
        cuda = self._cuda
        host = np.ascontiguousarray(host, dtype=self.dtype)
        target = cuda.device_array(host.shape, dtype=self.dtype)
        flat_host, flat_target = host.reshape(-1), target.reshape(-1)
        slab = max(1, STREAM_BYTES // self.dtype.itemsize)
        pinned = [cuda.pinned_array(min(slab, max(flat_host.size, 1)), dtype=self.dtype) for _ in range(2)]
        moved = [None, None]
        for n, start in enumerate(range(0, flat_host.size, slab)):
            stop = min(start + slab, flat_host.size)
            buf = pinned[n % 2]
            if moved[n % 2] is not None:
                moved[n % 2].synchronize()  # the copy that last read this buffer is done
            buf[: stop - start] = flat_host[start:stop]
            flat_target[start:stop].copy_to_device(buf[: stop - start], stream=self.stream)
            event = cuda.event()
            event.record(self.stream)
            moved[n % 2] = event
        self.stream.synchronize()
        return target

    @property
    def host_params(self) -> np.ndarray:
        """An uninitialised host array shaped like params (never written: the OS maps no pages for
        it), for host-side APIs that only look at the shape and dtype, as optimizer.prepare."""
        if self._host_params is None:
            self._host_params = np.empty(self.params.shape[0], dtype=self.dtype)
        return self._host_params

    def optimizer_slots(self, slots: np.ndarray):
        """The device copy of an optimizer's slots (uploaded on first use after a release)."""
        if self._opt_host is not slots:
            self._slots = self._cuda.to_device(np.ascontiguousarray(slots))
            self._opt_host = slots
        return self._slots

    @_locked
    def release_optimizer(self) -> None:
        """Copy the optimizer state back into its host arrays (the ones train_steps was given) and
        forget the device copy: the next fit uploads the state again, whatever happened to it."""
        if self._opt_host is not None:
            self._slots.copy_to_host(self._opt_host, stream=self.stream)
            self.stream.synchronize()
        self._opt_host = None
        self._slots = None

    def _grow(self, name: str, n: int, dtype):
        current = getattr(self, name)
        if current.shape[0] < n:
            current = self._cuda.device_array(n, dtype=dtype)
            setattr(self, name, current)
        return current

    @_locked
    def train_steps(
        self,
        X,
        Y,
        sample_weight,
        perm,
        batch_size,
        first_batch,
        n_batches,
        lrs,
        kind,
        slots,
        scalars,
        hyper,
        step0,
        seed,
        max_norm,
        batch_losses,
        batch_correct,
    ) -> int:
        """fastbp._kernels.cpu.train.train_steps on the GPU, with the same arguments (X, Y,
        sample_weight as stage() returned them; slots, scalars, hyper as optimizer.prepare gives
        them): runs batches first_batch .. first_batch + n_batches - 1 of the epoch ordered by perm,
        writes batch_losses / batch_correct, advances scalars (NAdam), and returns the batches done
        (fewer when a loss came out non-finite; that batch made no update)."""
        cuda, optim, train = self._cuda, self._optim, self._train
        count = int(n_batches)
        if count <= 0:
            return 0
        batch_size = int(batch_size)
        self.workspace_for(batch_size)
        if self._factors_host.shape[0] < count:
            self._factors_host = optim.new_factor_table(count)
            self._factors = cuda.device_array(self._factors_host.shape, dtype=np.float64)
        table = self._factors_host
        optim.factor_table(int(kind), hyper, scalars, int(step0), np.asarray(lrs, np.float64), table[:count])
        self._factors.copy_to_device(table, stream=self.stream)
        dev_slots = self.optimizer_slots(slots)
        self._status.copy_to_device(self._status_zero, stream=self.stream)
        losses = self._grow("_losses", count, np.float64)
        correct = self._grow("_correct", count, np.int64)
        perm = np.asarray(perm)
        n = int(perm.shape[0])
        lo = int(first_batch) * batch_size
        hi = min((int(first_batch) + count) * batch_size, n)
        weighted = int(np.prod(sample_weight.shape)) > 0
        common = (int(kind), dev_slots)
        if is_device_array(X):
            Xd, Yd = _as_device(X), _as_device(Y)
            Wd = _as_device(sample_weight) if weighted else self._dummy_weights
            index = self._grow("_perm", hi - lo, np.int64)
            index[: hi - lo].copy_to_device(
                np.ascontiguousarray(perm[lo:hi], dtype=np.int64), stream=self.stream
            )
            self._launch_steps(
                Xd,
                Yd,
                Wd,
                weighted,
                index[: hi - lo],
                False,
                batch_size,
                count,
                0,
                step0,
                seed,
                max_norm,
                common,
            )
        else:
            self._stream_steps(
                X, Y, sample_weight, weighted, perm[lo:hi], batch_size, count, step0, seed, max_norm, common
            )
        status = self._status.copy_to_host(stream=self.stream)
        losses_host = losses[:count].copy_to_host(stream=self.stream)
        correct_host = correct[:count].copy_to_host(stream=self.stream)
        self.stream.synchronize()
        done = int(status[train.DONE])
        shown = min(count, done + 1)  # the failing batch's loss is written too
        batch_losses[:shown] = losses_host[:shown]
        batch_correct[:shown] = correct_host[:shown]
        if done > 0:
            scalars[0] = table[done - 1, optim.MU]
        return done

    def train_steps_like_cpu(
        self, li, lf, gu, loss_code, loss_param, l1, l2, params, grads, ws, *args
    ) -> int:
        """train_steps called with the CPU kernel's whole argument list (the plan, buffers and
        workspace given first are the backend's own copies, and ignored): the fit loop then calls
        either kernel the same way."""
        return self.train_steps(*args)

    def _launch_steps(
        self,
        Xd,
        Yd,
        Wd,
        weighted,
        index,
        gathered,
        batch_size,
        n_batches,
        base,
        step0,
        seed,
        max_norm,
        common,
    ):
        kind, dev_slots = common
        self._run(
            "train_steps",
            self._train.train_steps_kernel,
            self.li,
            self.lf,
            self.gu,
            self.loss_code,
            self.loss_param,
            self.l1,
            self.l2,
            self.params,
            self.grads,
            self._ws,
            Xd,
            Yd,
            Wd,
            weighted,
            index,
            gathered,
            batch_size,
            n_batches,
            self._factors,
            kind,
            dev_slots,
            int(base),
            int(step0),
            int(seed),
            float(max_norm),
            self._losses,
            self._correct,
            CudaBackend._red_placeholder,
            self._status,
        )

    def _stream_steps(
        self, X, Y, sample_weight, weighted, rows_idx, batch_size, count, step0, seed, max_norm, common
    ):
        """Host data: gather each slice of batches on the host into pinned memory (while the GPU
        works on the previous slice), copy it asynchronously, and launch the steps on it."""
        cuda = self._cuda
        row_bytes = (X.shape[1] + Y.shape[1] + (1 if weighted else 0)) * self.dtype.itemsize
        per = max(1, min(count, STREAM_BYTES // max(1, row_bytes * batch_size)))
        rows_max = per * batch_size
        key = (rows_max, X.shape[1], Y.shape[1], weighted)
        if self._stage.get("key") != key:
            pinned = [
                (
                    cuda.pinned_array((rows_max, X.shape[1]), dtype=self.dtype),
                    cuda.pinned_array((rows_max, Y.shape[1]), dtype=self.dtype),
                    cuda.pinned_array(rows_max if weighted else 1, dtype=self.dtype),
                )
                for _ in range(2)
            ]
            device = (
                cuda.device_array((rows_max, X.shape[1]), dtype=self.dtype),
                cuda.device_array((rows_max, Y.shape[1]), dtype=self.dtype),
                cuda.device_array(rows_max if weighted else 1, dtype=self.dtype),
            )
            self._stage = {"key": key, "pinned": pinned, "device": device, "events": [None, None]}
        pinned, device, events = self._stage["pinned"], self._stage["device"], self._stage["events"]
        for n, base in enumerate(range(0, count, per)):
            batches = min(per, count - base)
            idx = rows_idx[base * batch_size : (base + batches) * batch_size]
            m = idx.shape[0]
            px, py, pw = pinned[n % 2]
            if events[n % 2] is not None:
                events[n % 2].synchronize()  # the copy that last read these buffers is done
            np.take(X, idx, axis=0, out=px[:m])
            np.take(Y, idx, axis=0, out=py[:m])
            dx, dy, dw = device
            dx[:m].copy_to_device(px[:m], stream=self.stream)
            dy[:m].copy_to_device(py[:m], stream=self.stream)
            if weighted:
                np.take(sample_weight, idx, out=pw[:m])
                dw[:m].copy_to_device(pw[:m], stream=self.stream)
            event = cuda.event()
            event.record(self.stream)
            events[n % 2] = event
            self._launch_steps(
                dx[:m],
                dy[:m],
                dw[:m] if weighted else dw,
                weighted,
                self._dummy_index,
                True,
                batch_size,
                batches,
                base,
                step0,
                seed,
                max_norm,
                common,
            )

    # -- state --------------------------------------------------------------------------------

    def backup(self, slots, scalars, opt) -> CudaBackup:
        """The fit loop's per-chunk backup (fastbp.train._Backup's interface) on the device."""
        return CudaBackup(self, slots, scalars, opt)

    def to_host(self) -> tuple[np.ndarray, np.ndarray]:
        """Host copies of (params, grads)."""
        params = self.params.copy_to_host(stream=self.stream)
        grads = self.grads.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        return params, grads


class CudaBackup:
    """Copies of params, the device slots and the scalars taken at each chunk's start (device to
    device, into buffers allocated once), so a diverged run can be put back to a finite state."""

    def __init__(self, backend: CudaBackend, slots, scalars, opt):
        cuda = backend._cuda
        self.backend = backend
        self.dev_slots = backend.optimizer_slots(slots)
        self.scalars = scalars
        self.copies = (
            cuda.device_array_like(backend.params),
            cuda.device_array_like(self.dev_slots),
            np.empty_like(scalars),
        )
        self.opt = opt
        self.step = opt.state.step
        self.seconds = 0.0

    def save(self) -> None:
        tick = time.perf_counter()
        stream = self.backend.stream
        self.copies[0].copy_to_device(self.backend.params, stream=stream)
        if self.dev_slots.size:
            self.copies[1].copy_to_device(self.dev_slots, stream=stream)
        np.copyto(self.copies[2], self.scalars)
        self.step = self.opt.state.step
        stream.synchronize()
        self.seconds = time.perf_counter() - tick

    def all_finite(self) -> bool:
        return bool(
            np.isfinite(to_numpy(self.backend.params)).all()
            and np.isfinite(to_numpy(self.dev_slots)).all()
            and np.isfinite(self.scalars).all()
        )

    def restore(self) -> None:
        stream = self.backend.stream
        self.backend.params.copy_to_device(self.copies[0], stream=stream)
        if self.dev_slots.size:
            self.dev_slots.copy_to_device(self.copies[1], stream=stream)
        np.copyto(self.scalars, self.copies[2])
        stream.synchronize()
        self.opt.advance(self.step - self.opt.state.step)
