"""Views into the flat buffers (params, grads, the workspace) that carry no reference count.

A view Numba makes by slicing holds the buffer's meminfo, and every view passed to or returned from
another compiled function is an atomic increment and decrement of that count. Per sample (batch 1)
the kernels make a few dozen such views: perf on the 64-128-64-10 net at batch 1 put NRT_incref and
NRT_decref at 23% of the time and the views' construction at 9% more. raw_view builds the same view
with no meminfo: no count to keep, the reshape's checks skipped.

Only for views that live inside one call of a compiled kernel, while the caller holds the buffer:
returned to Python, such a view would not keep its buffer alive (steps.forward returns a counted one).

The intrinsics import Numba's array code generation (numba.np.arrayobj, which pulls in its string
support) when they generate code, not at import: 55-105 ms of `import fastbp`, paid by the first
compile or cache load instead, which loads it anyway.
"""

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def raw_view(typingctx, flat, start, shape):
    """The C-ordered view of `shape` (a tuple of ints) starting at element `start` of the 1-D
    contiguous array `flat`. No bounds check: callers compute offsets from the plan."""
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None
    if not isinstance(start, types.Integer) or not isinstance(shape, types.UniTuple):
        return None
    ndim = shape.count
    view_type = types.Array(flat.dtype, ndim, "C")

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array, populate_array  # lazily: see the module's docstring

        flat_value, start_value, shape_value = args
        source = make_array(signature.args[0])(context, builder, flat_value)
        data = builder.gep(source.data, [context.cast(builder, start_value, signature.args[1], types.intp)])
        dims = [
            context.cast(builder, builder.extract_value(shape_value, k), shape.dtype, types.intp)
            for k in range(ndim)
        ]
        strides = [source.itemsize] * ndim
        for k in range(ndim - 2, -1, -1):
            strides[k] = builder.mul(strides[k + 1], dims[k + 1])
        view = make_array(view_type)(context, builder)
        populate_array(view, data=data, shape=dims, strides=strides, itemsize=source.itemsize, meminfo=None)
        return view._getvalue()

    return view_type(flat, start, shape), codegen


INDEX_SCRATCH = 512  # entries of index_scratch(): 4 KB of stack


@intrinsic
def index_scratch(typingctx):
    """A 1-D intp array of INDEX_SCRATCH entries on the calling function's stack (uninitialised, no
    meminfo): scratch for row indices, where the flat buffers hold only floats. It lives as long as
    the compiled function that calls this; never return it or keep it."""
    view_type = types.Array(types.intp, 1, "C")

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array, populate_array  # lazily: see the module's docstring

        entry = context.get_value_type(types.intp)
        data = cgutils.alloca_once(builder, entry, size=INDEX_SCRATCH)  # in the entry block: once per call
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(entry))
        view = make_array(view_type)(context, builder)
        length = context.get_constant(types.intp, INDEX_SCRATCH)
        populate_array(view, data=data, shape=[length], strides=[itemsize], itemsize=itemsize, meminfo=None)
        return view._getvalue()

    return view_type(), codegen


if numba.config.DISABLE_JIT:  # plain Python: an ordinary slice (the same elements), a heap array

    def raw_view(flat, start, shape):  # noqa: F811
        size = 1
        for n in shape:
            size *= n
        return flat[start : start + size].reshape(shape)

    def index_scratch():  # noqa: F811
        return np.empty(INDEX_SCRATCH, np.intp)
