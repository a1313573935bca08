"""Kernels called through an address: a fit compiles only the ones it runs, and each of them once.

Numba links the code of every callee into each compiled caller, then optimises and compiles the
whole again: a kernel reached through a switch on a code is compiled into every caller of the
switch, used or not, and a large callee into every kernel above it, once per level. Measured on a
cold first fit of the 784-256-128-10 ReLU MLP with Adam (alternating fresh processes,
bench/compile_time.py --rev; bench/runs/2026-11-30f/ and 2026-11-30g/):
- the activations' switch held nine forward and nine backward loops, compiled into the layer
  passes, forward, backward, the batch-1 sample passes and the training loops: taking it out made
  cold first fits 1.50x faster (58.6 -> 39.0 s, then 69.0 -> 46.1 s);
- the losses' and optimizer rules' switches in the training loops: 1.28x (41.8 -> 32.6 s);
- the GEMM wrappers, compiled into forward, backward and every loop above them: 1.09x
  (30.9 -> 28.4 s);
- then the products' helpers inlined into their entries, the small glue inlined into the loops,
  and the fused SGD pass and the weight penalty behind addresses: 1.43x (27.5 -> 19.2 s);
- and each layer calling only the entries of the paths its shape takes (blas.layer_addresses):
  1.34x (17.8 -> 13.3 s, compile_ab_paths.txt);
- dropout behind an address (with the data's finiteness check left to NumPy): 1.21x
  (14.48 -> 11.95 s, bench/runs/2026-11-30h/compile_ab_finite_dropout.txt).

Instead each of these is an entry point compiled on its own, as a C function (numba.cfunc, cached
on disk like every kernel), the first time a fit needs it, and the compiled code calls it through
its address (`call`, `call_float`): one indirect call, which LLVM cannot inline, and none of the
callee's code left in the callers. The plan holds the addresses of each layer's activation entries
(activations.py), product entries (blas.py) and dropout entry (steps.py; 0 without dropout);
train_steps passes the compiled loops those of the loss (losses.py), of the optimizer's step
(optim.py), of the fused SGD backward pass and of the weight penalty (steps.py; 0 where the fit
has none).

Arguments go over as C would take them: an array as the pointer to its data (the entry rebuilds
it with `array_at`, from the shape passed beside it), a float as float64, an integer as intp, a
flag as boolean; seven arguments or so stay in registers, and a ReLU pass on a 1 x 64 row costs
6-10 ns more through its address than called directly (bench_step_parts.py --parts calls:
bench/runs/2026-11-30f/step_parts_calls.txt), ~1-2% of a batch-1 step of the nets in bench/peers.py.
A first version passed Numba's array structs: the ten-layer net ran 0.86x at batch 1.
`call` converts every argument to its canonical type, and entries are compiled for `signature`,
which maps their argument types through the same rule, so the two agree.
Under NUMBA_DISABLE_JIT an address is an index into a list of the plain Python entries, which
then get the arrays themselves.
"""

import threading

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from fastbp import config
from fastbp._kernels.jit import njit


@njit(inline="always")
def array_at(pointer, shape):
    """The C-ordered array of `shape` (a tuple) at `pointer`: how an entry gets back its arrays."""
    return numba.carray(pointer, shape)


def canonical(ty):
    """The type an argument of type `ty` is passed as, or None where `call` refuses it: a C-ordered
    array as the pointer to its data, a float as float64, a flag as boolean, an integer as intp."""
    if isinstance(ty, types.Array):
        return types.CPointer(ty.dtype) if ty.layout == "C" else None
    if isinstance(ty, types.Boolean):
        return types.boolean
    if isinstance(ty, types.Float):
        return types.float64
    if isinstance(ty, types.Integer):
        return types.intp
    return None


def signature(*arg_types, returns=types.void):
    """The C signature of an entry that `call` (returns void) or `call_float` (returns float64)
    reaches with arguments of these types."""
    passed = [canonical(ty) for ty in arg_types]
    if any(ty is None for ty in passed):
        raise TypeError(f"call cannot pass arguments of types {arg_types}")
    return returns(*passed)


def _caller(returns):
    """An intrinsic `(address, args) -> returns` that calls the function at `address` (from
    `address()`) with the tuple `args`."""

    @intrinsic
    def caller(typingctx, address, args):
        if not isinstance(address, types.Integer) or not isinstance(args, types.BaseTuple):
            return None
        passed = [canonical(ty) for ty in args.types]
        if any(ty is None for ty in passed):
            return None

        def codegen(context, builder, signature, values):
            from numba.np.arrayobj import make_array  # lazily, as in views.py

            address_value, tuple_value = values
            arguments = []
            for k, (ty, to) in enumerate(zip(args.types, passed)):
                value = builder.extract_value(tuple_value, k)
                if isinstance(ty, types.Array):
                    arguments.append(make_array(ty)(context, builder, value).data)
                else:
                    arguments.append(context.cast(builder, value, ty, to))
            result_type = ir.VoidType() if returns == types.void else context.get_value_type(returns)
            function_type = ir.FunctionType(result_type, [context.get_value_type(ty) for ty in passed])
            target = context.cast(builder, address_value, address, types.intp)
            result = builder.call(builder.inttoptr(target, function_type.as_pointer()), arguments)
            return context.get_dummy_value() if returns == types.void else result

        return returns(address, args), codegen

    return caller


call = _caller(types.void)
call_float = _caller(types.float64)


_lock = threading.Lock()
_compiled = {}  # (entry, signature) -> numba CFunc; kept for good: its machine code lives with it
_python_entries = []  # under NUMBA_DISABLE_JIT: address k is _python_entries[k - 1]


def address(entry, signature) -> int:
    """The address of the plain Python function `entry` compiled as a C function of `signature`
    (from signature() above), compiled or loaded from the cache on first use."""
    key = (entry, signature)
    with _lock:  # two threads building networks at once compile it once
        if key not in _compiled:
            if numba.config.DISABLE_JIT:
                _python_entries.append(entry)
                _compiled[key] = len(_python_entries)
            else:
                _compiled[key] = numba.cfunc(
                    signature, cache=config.CACHE, fastmath=config.FASTMATH, error_model="numpy"
                )(entry)
        compiled = _compiled[key]
    return compiled if isinstance(compiled, int) else compiled.address


def compiled_entries() -> list:
    """The (entry, signature) pairs compiled (or loaded) so far in this process, for the tests."""
    with _lock:
        return list(_compiled)


if numba.config.DISABLE_JIT:  # plain Python: the address indexes the entries

    def call(address, args):  # noqa: F811
        _python_entries[address - 1](*args)

    def call_float(address, args):  # noqa: F811
        return float(_python_entries[address - 1](*args))

    def array_at(pointer, shape):  # noqa: F811
        return pointer.reshape(shape)
