"""Jittor 1.3.11 under NumPy 2: arrays in and out through ``Var.data``.

Jittor 1.3.11 reads NumPy arrays with its own copy of NumPy 1.x's C structures
(``jittor/src/pyjt/numpy.h``). Under NumPy 2, whose array descriptor changed layout, the two copying
paths silently move wrong bytes: ``jt.array(ndarray)`` (and lists, NumPy scalars) and
``Var.numpy()``; a non-contiguous array can crash the process. ``Var.data``, a NumPy view of the
Var's own memory made with ``PyArray_New``, is still right under NumPy 2, as is ``Var.item()``.

So where NumPy 2 is installed, :func:`install` (called by :mod:`jsegnext.runtime` right after
Jittor loads) reroutes ``jt.array`` and ``Var.numpy`` through that view: an array goes in by
allocating a Var of its shape and dtype and copying into ``Var.data`` with NumPy, and comes out as
a copy of ``Var.data``. Jittor's own conventions are kept: 64-bit arrays become 32-bit
(``jt.flags.auto_convert_64_to_32``) unless a dtype is given, and a 0-d array becomes shape (1,).
Under NumPy 1 nothing is changed. Every other Jittor entry that takes NumPy input (``jt.Var(ndarray)``,
indexing a Var with an ndarray) is not rerouted; jsegnext converts with ``jt.array`` first.
"""

import numpy as np

NUMPY_2 = int(np.__version__.split(".")[0]) >= 2

_TO_32 = {np.dtype("float64"): np.float32, np.dtype("int64"): np.int32, np.dtype("uint64"): np.uint32}


def _dtype_name(dtype):
    if isinstance(dtype, str):
        return dtype
    return getattr(dtype, "__name__", None) or str(dtype)  # jt.float32 (a function), a NanoString


def array_via_data(jt, data, dtype=None):
    """``jt.array(data, dtype)`` for NumPy or Python data, without Jittor's NumPy C paths."""
    if dtype is not None:
        values = np.array(data, dtype=_dtype_name(dtype))
    else:
        values = np.asarray(data)
        if jt.flags.auto_convert_64_to_32 or not isinstance(data, np.ndarray):
            values = values.astype(_TO_32.get(values.dtype, values.dtype), copy=False)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"jt.array: {values.dtype} arrays are not supported by Jittor")
    var = jt.empty(values.shape or (1,), values.dtype.name)
    var.data[...] = values.reshape(var.shape)  # .data runs the allocation and returns its NumPy view
    return var


def numpy_via_data(var):
    """``var.numpy()``: a copy of the Var's memory, read through its NumPy view."""
    return np.array(var.data, copy=True)


def install(jt):
    """Reroute ``jt.array`` and ``Var.numpy`` under NumPy 2 (see the module docstring); idempotent."""
    if not NUMPY_2 or getattr(jt.array, "_jsegnext_numpy2", False):
        return
    jittor_array = jt.array

    def array(data, dtype=None):
        if isinstance(data, jt.Var) or (dtype is None and type(data) in (bool, int, float)):
            return jittor_array(data, dtype)  # these never touch NumPy
        return array_via_data(jt, data, dtype)

    array.__doc__ = jittor_array.__doc__
    array._jsegnext_numpy2 = True
    jt.array = array
    jt.Var.numpy = numpy_via_data
    jt.Var.__array__ = lambda var, dtype=None, copy=None: (
        numpy_via_data(var) if dtype is None else numpy_via_data(var).astype(dtype)
    )
