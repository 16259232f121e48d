"""Depthwise strip convolutions (1×k and k×1) and the fused MSCA strip sum.

A strip convolution is a depthwise convolution with a 1×k ("h", along W) or k×1 ("v", along H)
kernel, odd k, "same" zero padding (k//2), stride 1 and a per-channel bias — the six strip convs of
every MSCA block of SegNeXt. Three implementations compute it (names and the ``'auto'`` choice:
:mod:`jsegnext.ops.dispatch`):

* ``'kernel'`` — hand-written kernels: C++/OpenMP on the CPU (``csrc/strip_conv.h``), CUDA on the
  GPU (``csrc/strip_conv.cuh``; compiled with nvcc but never run on a GPU, so experimental).
* ``'meta'`` — Jittor meta-operators (``reindex`` → broadcast multiply → ``sum``), fused by
  Jittor's JIT into one loop per op; portable to every device Jittor supports.
* ``'conv2d'`` — Jittor's own depthwise convolution, exactly what ``nn.Conv2d(C, C, (1, k),
  groups=C)`` does (oneDNN on the CPU, Jittor's DepthwiseConv on CUDA); the baseline.

:func:`msca_strips` computes MSCA's ``a + Σ_i v_i(h_i(a))`` over the three branch pairs in one
op (``'fused'``); on the CPU its kernel works plane by plane (``a``, the output and the output
gradient are read/written once per plane, the intermediates ``h_i(a)`` stay in cache; they are kept
for the backward pass only while gradients are recorded).
"""

import math

from ..runtime import jt
from . import dispatch
from ._source import NCHW, call, source
from .depthwise_conv import jittor_depthwise_conv

__all__ = ["strip_conv", "StripConv", "msca_strips", "AUTO_IMPL", "resolve_impl"]

#: What ``impl='auto'`` runs on each device for float32 (no override, no opt-in).
AUTO_IMPL = dispatch.auto_impls("strip_conv")


def resolve_impl(impl="auto", dtype="float32"):
    """The implementation (``'kernel'``, ``'meta'`` or ``'conv2d'``) :func:`strip_conv` runs for
    ``impl`` on the current device and ``dtype``."""
    return dispatch.resolve("strip_conv", impl, dtype)


def _check(x, weight, bias, orientation):
    if orientation not in ("h", "v"):
        raise ValueError(f"orientation must be 'h' (1×k) or 'v' (k×1), got {orientation!r}")
    if x.ndim != 4:
        raise ValueError(f"strip_conv expects NCHW input, got shape {list(x.shape)}")
    C = x.shape[1]
    wshape = list(weight.shape)
    if len(wshape) != 4 or wshape[0] != C or wshape[1] != 1:
        raise ValueError(f"weight must be [C,1,1,k] or [C,1,k,1] with C={C}, got {wshape}")
    k = wshape[3] if orientation == "h" else wshape[2]
    other = wshape[2] if orientation == "h" else wshape[3]
    if other != 1:
        raise ValueError(
            f"orientation {orientation!r} needs weight [C,1,{'1,k' if orientation == 'h' else 'k,1'}], got {wshape}"
        )
    if k % 2 != 1:
        raise ValueError(f"strip_conv needs an odd kernel size, got {k}")
    if bias is not None and list(bias.shape) != [C]:
        raise ValueError(f"bias must have shape [{C}], got {list(bias.shape)}")
    return k


# ----------------------------------------------------------------------------------------------
# meta-operator implementation
# ----------------------------------------------------------------------------------------------


def _meta_corr(x, w2, k, orientation, flip=False):
    """Σ_j w2[c, j] · x[..., i + j − p] along W ('h') or H ('v'); zero outside (``flip``: i − j + p)."""
    N, C, H, W = x.shape
    p = k // 2
    shift = f"-i4+{p}" if flip else f"+i4-{p}"
    if orientation == "h":
        idx = ["i0", "i1", "i2", f"i3{shift}"]
    else:
        idx = ["i0", "i1", f"i2{shift}", "i3"]
    shape = [N, C, H, W, k]
    xx = x.reindex(shape, idx)
    ww = w2.broadcast(shape, [0, 2, 3])
    return (xx * ww).sum(4)


def _meta_forward(x, w2, b, k, orientation):
    y = _meta_corr(x, w2, k, orientation)
    return y + b.broadcast(y.shape, [0, 2, 3])


def _meta_backward(x, w2, g, k, orientation):
    N, C, H, W = x.shape
    p = k // 2
    dx = _meta_corr(g, w2, k, orientation, flip=True)
    shape = [N, C, H, W, k]
    if orientation == "h":
        idx = ["i0", "i1", "i2", f"i3+i4-{p}"]
    else:
        idx = ["i0", "i1", f"i2+i4-{p}", "i3"]
    xx = x.reindex(shape, idx)
    dw = (xx * g.broadcast(shape, [4])).sum([0, 2, 3])
    db = g.sum([0, 2, 3])
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# hand-written kernels (csrc/strip_conv.h, csrc/strip_conv.cuh)
# ----------------------------------------------------------------------------------------------


def kernel_source(function, k, orientation, n_inputs, n_outputs, cuda):
    """(header, body) of the ``jt.code`` op running ``jsn_strip[_cuda]::function<k, V>(inputs...,
    outputs..., N, C, H, W)`` (V: the k×1 strip), N, C, H, W being input 0's sizes."""
    args = [f"in{i}_p" for i in range(n_inputs)] + [f"out{i}_p" for i in range(n_outputs)] + list(NCHW)
    namespace, header = ("jsn_strip_cuda", "strip_conv.cuh") if cuda else ("jsn_strip", "strip_conv.h")
    return source(header), call(f"{namespace}::{function}", args, (k, orientation == "v"))


def _kernel_code(shapes, dtypes, inputs, function, k, orientation):
    header, body = kernel_source(function, k, orientation, len(inputs), len(shapes), jt.flags.use_cuda)
    if jt.flags.use_cuda:
        return jt.code(shapes, dtypes, inputs, cuda_header=header, cuda_src=body)
    return jt.code(shapes, dtypes, inputs, cpu_header=header, cpu_src=body)


def _kernel_forward(x, w2, b, k, orientation):
    return _kernel_code([x.shape], [x.dtype], [x, w2, b], "forward", k, orientation)[0]


def _kernel_backward(x, w2, g, k, orientation):
    # the CUDA kernels sum the weight and bias gradients in float32 (float64 for float64 data)
    acc = x.dtype if not jt.flags.use_cuda or str(x.dtype) == "float64" else "float32"
    C = x.shape[1]
    return _kernel_code([x.shape, [C, k], [C]], [x.dtype, acc, acc], [x, w2, g], "backward", k, orientation)


class _StripConvFunction(jt.Function):
    """Forward and backward of one strip conv for the 'meta' and 'kernel' implementations."""

    def __init__(self, k, orientation, impl):
        self.k, self.orientation, self.impl = k, orientation, impl

    def execute(self, x, w2, b):
        self.saved = (x, w2)
        if self.impl == "kernel":
            return _kernel_forward(x, w2, b, self.k, self.orientation)
        return _meta_forward(x, w2, b, self.k, self.orientation)

    def grad(self, g):
        x, w2 = self.saved
        if g is None:
            return None, None, None
        g = g.cast(x.dtype)
        if self.impl == "kernel":
            dx, dw, db = _kernel_backward(x, w2, g, self.k, self.orientation)
        else:
            dx, dw, db = _meta_backward(x, w2, g, self.k, self.orientation)
        return dx, dw.cast(w2.dtype), db.cast(w2.dtype)


def strip_conv(x, weight, bias=None, orientation="h", impl="auto"):
    """Depthwise 1×k (``'h'``, weight [C,1,1,k]) or k×1 (``'v'``, weight [C,1,k,1]) convolution.

    Odd k, zero "same" padding k//2, stride 1, optional bias [C]; NCHW. Same result as
    ``nn.Conv2d(C, C, (1, k) or (k, 1), padding=(0, k//2) or (k//2, 0), groups=C)``.
    Differentiable in ``x``, ``weight`` and ``bias``.
    """
    k = _check(x, weight, bias, orientation)
    impl = resolve_impl(impl, x.dtype)
    if impl == "conv2d":
        pad = (0, k // 2) if orientation == "h" else (k // 2, 0)
        return jittor_depthwise_conv(x, weight.cast(x.dtype), None if bias is None else bias.cast(x.dtype), pad)
    C = x.shape[1]
    w2 = weight.cast(x.dtype).reshape([C, k])
    if bias is None:
        b = jt.zeros([C], dtype=x.dtype).stop_grad()
    else:
        b = bias.cast(x.dtype)
    return _StripConvFunction(k, orientation, impl)(x, w2, b)


class StripConv(jt.nn.Module):
    """Drop-in for ``nn.Conv2d(C, C, (1, k), padding=(0, k//2), groups=C)`` (``'h'``) or the
    ``(k, 1)`` version (``'v'``): parameters ``weight`` [C,1,1,k] / [C,1,k,1] and ``bias`` [C],
    initialised as Jittor's Conv2d does, so reference checkpoints load one to one."""

    def __init__(self, channels, kernel_size, orientation="h", impl="auto", bias=True):
        super().__init__()
        if orientation not in ("h", "v"):
            raise ValueError(f"orientation must be 'h' or 'v', got {orientation!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        dispatch.check_impl("strip_conv", impl)
        self.channels, self.kernel_size, self.orientation, self.impl = channels, kernel_size, orientation, impl
        shape = [channels, 1, 1, kernel_size] if orientation == "h" else [channels, 1, kernel_size, 1]
        self.weight = jt.init.invariant_uniform(shape, dtype="float")
        if bias:
            bound = 1 / math.sqrt(kernel_size)  # fan = in_channels/groups · kh · kw
            self.bias = jt.init.uniform([channels], dtype="float", low=-bound, high=bound)
        else:
            self.bias = None

    def execute(self, x):
        return strip_conv(x, self.weight, self.bias, self.orientation, self.impl)

    def extra_repr(self):
        k = self.kernel_size
        ks = (1, k) if self.orientation == "h" else (k, 1)
        return f"{self.channels}, kernel_size={ks}, impl={self.impl!r}"


# ----------------------------------------------------------------------------------------------
# fused MSCA strips: a + Σ_i v_i(h_i(a))
# ----------------------------------------------------------------------------------------------


def _pointer_array(name, const, pointers):
    """A C++ array of ``jt.code`` pointers (``in3_p``, ...), or a null pointer when there are none."""
    kind = f"{'const ' if const else ''}in0_type*"
    if not pointers:
        return f"{kind}* {name} = nullptr;"
    return f"{kind} {name}[] = {{{', '.join(pointers)}}};"


def _msca_code(shapes, inputs, function, ks, arrays, args):
    """``jt.code`` of the fused CPU kernel ``jsn_strip::function<ks...>``: ``arrays`` declares its
    pointer arrays, ``args`` its arguments."""
    src = "\n".join(arrays + [call("jsn_strip::" + function, args + list(NCHW), ks)])
    dtype = inputs[0].dtype
    return jt.code(shapes, [dtype] * len(shapes), inputs, cpu_header=source("strip_conv.h"), cpu_src=src)


def _msca_forward(a, params, ks, save):
    """inputs: a, then wh_i, bh_i, wv_i, bv_i per branch; outputs: a + Σ v_i(h_i(a)) and, with
    ``save``, t_i = h_i(a)."""
    n = len(ks)
    arrays = [
        _pointer_array("params", True, [f"in{1 + i}_p" for i in range(4 * n)]),
        _pointer_array("saved", False, [f"out{1 + i}_p" for i in range(n)] if save else []),
    ]
    shapes = [a.shape] * (1 + (n if save else 0))
    return _msca_code(shapes, [a, *params], "msca_forward", ks, arrays, ["in0_p", "params", "saved", "out0_p"])


def _msca_backward(a, params, ts, g, ks):
    """inputs: a, the parameters, the t_i, g; outputs: da and the parameters' gradients."""
    n = len(ks)
    arrays = [
        _pointer_array("params", True, [f"in{1 + i}_p" for i in range(4 * n)]),
        _pointer_array("saved", True, [f"in{1 + 4 * n + i}_p" for i in range(n)]),
        _pointer_array("grads", False, [f"out{1 + i}_p" for i in range(4 * n)]),
    ]
    shapes = [a.shape] + [p.shape for p in params]
    return _msca_code(
        shapes,
        [a, *params, *ts, g],
        "msca_backward",
        ks,
        arrays,
        ["in0_p", "params", "saved", f"in{1 + 5 * n}_p", "out0_p", "grads"],
    )


class _MscaStripsFunction(jt.Function):
    """Fused ``a + Σ_i v_i(h_i(a))`` (CPU kernels). When gradients are being recorded the forward
    also returns the intermediates ``t_i = h_i(a)`` (as the separate strips would keep them) so the
    backward pass need not recompute them."""

    def __init__(self, ks):
        self.ks = tuple(ks)

    def execute(self, a, *params):
        if jt.flags.no_grad:
            return _msca_forward(a, params, self.ks, save=False)[0]
        outs = _msca_forward(a, params, self.ks, save=True)
        for t in outs[1:]:
            t.stop_grad()
        self.saved = (a, params, outs[1:])
        return outs[0]

    def grad(self, g):
        a, params, ts = self.saved
        if g is None:
            return (None,) * (1 + len(params))
        return tuple(_msca_backward(a, params, ts, g.cast(a.dtype), self.ks))


def _normalise_msca_params(params, biases):
    """Accept ``[(wh, bh, wv, bv), ...]`` or (weights [h0, v0, h1, v1, ...], biases [same order])."""
    if biases is not None:
        weights = list(params)
        biases = list(biases)
        if len(weights) % 2 or len(weights) != len(biases):
            raise ValueError("msca_strips(a, weights, biases) needs matching lists [h0, v0, h1, v1, ...]")
        return [
            (weights[2 * i], biases[2 * i], weights[2 * i + 1], biases[2 * i + 1]) for i in range(len(weights) // 2)
        ]
    return [tuple(p) for p in params]


def msca_strips(a, params, biases=None, impl="auto"):
    """MSCA's strip sum ``a + Σ_i v_i(h_i(a))`` (the ``attn`` before ``conv3``).

    ``params``: one ``(wh, bh, wv, bv)`` per branch (weights [C,1,1,k] and [C,1,k,1], biases [C]),
    or, with ``biases`` given, the weights ``[h0, v0, h1, v1, ...]`` and the biases in the same order.
    ``impl``: ``'fused'`` (one CPU kernel for all branches, forward and backward), ``'kernel'``,
    ``'meta'`` or ``'conv2d'`` (separate :func:`strip_conv` calls of that implementation), or
    ``'auto'`` (:mod:`jsegnext.ops.dispatch`).
    """
    branches = _normalise_msca_params(params, biases)
    impl = dispatch.resolve("msca_strips", impl, a.dtype)
    if impl != "fused":
        out = a
        for wh, bh, wv, bv in branches:
            out = out + strip_conv(strip_conv(a, wh, bh, "h", impl), wv, bv, "v", impl)
        return out
    ks, flat = [], []
    C = a.shape[1]
    for wh, bh, wv, bv in branches:
        k = _check(a, wh, bh, "h")
        if _check(a, wv, bv, "v") != k:
            raise ValueError("each MSCA branch needs the same k for its 1×k and k×1 convs")
        ks.append(k)
        flat += [wh.cast(a.dtype).reshape([C, k]), bh.cast(a.dtype), wv.cast(a.dtype).reshape([C, k]), bv.cast(a.dtype)]
    return _MscaStripsFunction(ks)(a, *flat)
