"""Square depthwise convolution (k×k, odd k, stride 1, zero "same" padding k//2, per-channel bias).

SegNeXt runs two of them in every block: the 5×5 ``conv0`` of MSCA and the 3×3 ``dwconv`` of the
Mlp. On the CPU, Jittor hands ``nn.Conv2d(C, C, k, padding=k//2, groups=C)`` to oneDNN, whose
depthwise weight gradient dominated a SegNeXt-T training step. Two implementations (names and the
``'auto'`` choice: :mod:`jsegnext.ops.dispatch`):

* ``'kernel'`` — hand-written C++/OpenMP kernels (``csrc/depthwise_conv.h``, which describes them),
  float32 and float64, CPU only.
* ``'conv2d'`` — what ``nn.Conv2d(groups=C)`` does (oneDNN on the CPU, Jittor's DepthwiseConv on
  CUDA); the baseline and the fallback.

:func:`jittor_depthwise_conv` is that baseline for any kernel shape; the strip convolutions use it too.
"""

import math

from ..runtime import jt
from . import dispatch
from ._source import NCHW, call, source

__all__ = ["depthwise_conv2d", "DepthwiseConv2d", "jittor_depthwise_conv", "AUTO_IMPL", "resolve_impl"]

#: What ``impl='auto'`` runs on each device for float32 (no override).
AUTO_IMPL = dispatch.auto_impls("depthwise_conv2d")


def resolve_impl(impl="auto", dtype="float32"):
    """The implementation (``'kernel'`` or ``'conv2d'``) :func:`depthwise_conv2d` runs for ``impl``
    on the current device and ``dtype``."""
    return dispatch.resolve("depthwise_conv2d", impl, dtype)


def _check(x, weight, bias):
    if x.ndim != 4:
        raise ValueError(f"depthwise_conv2d expects NCHW input, got shape {list(x.shape)}")
    C = x.shape[1]
    wshape = list(weight.shape)
    if len(wshape) != 4 or wshape[0] != C or wshape[1] != 1 or wshape[2] != wshape[3]:
        raise ValueError(f"weight must be [C,1,k,k] with C={C}, got {wshape}")
    k = wshape[2]
    if k % 2 != 1:
        raise ValueError(f"depthwise_conv2d needs an odd kernel size, got {k}")
    if bias is not None and list(bias.shape) != [C]:
        raise ValueError(f"bias must have shape [{C}], got {list(bias.shape)}")
    return k


# ----------------------------------------------------------------------------------------------
# hand-written kernels (csrc/depthwise_conv.h)
# ----------------------------------------------------------------------------------------------


def _kernel_forward(x, w, b, k):
    src = call("jsn_dw::forward", ["in0_p", "in1_p", "in2_p", "out0_p", *NCHW], (k,))
    return jt.code(x.shape, x.dtype, [x, w, b], cpu_header=source("depthwise_conv.h"), cpu_src=src)


def _kernel_backward(x, w, g, k):
    src = call("jsn_dw::backward", ["in0_p", "in1_p", "in2_p", "out0_p", "out1_p", "out2_p", *NCHW], (k,))
    return jt.code(
        [x.shape, w.shape, [x.shape[1]]], [x.dtype] * 3, [x, w, g], cpu_header=source("depthwise_conv.h"), cpu_src=src
    )


class _DepthwiseConvFunction(jt.Function):
    """Forward and backward of one k×k depthwise conv with the CPU kernels."""

    def __init__(self, k):
        self.k = k

    def execute(self, x, w, b):
        self.saved = (x, w)
        return _kernel_forward(x, w, b, self.k)

    def grad(self, g):
        x, w = self.saved
        if g is None:
            return None, None, None
        dx, dw, db = _kernel_backward(x, w, g.cast(x.dtype), self.k)
        return dx, dw, db


def jittor_depthwise_conv(x, weight, bias, padding):
    """What ``nn.Conv2d(C, C, (kh, kw), padding=padding, groups=C)`` computes, through the same
    Jittor ops: ``weight`` [C,1,kh,kw], ``bias`` [C] or None, ``padding`` (ph, pw)."""
    ph, pw = padding
    if jt.flags.use_cuda:
        # what nn.Conv2d(groups=C) does on CUDA: Jittor's DepthwiseConv op, then the bias
        from jittor.depthwise_conv import DepthwiseConv

        y = DepthwiseConv(1, (ph, pw), 1)(x, weight)
        return y if bias is None else y + bias.broadcast(y.shape, [0, 2, 3])
    # The same graph nn.Conv2d(groups=C).execute builds on the CPU (compile options included), which
    # Jittor's conv tuner turns into oneDNN convolutions forward and backward (the functional
    # jt.nn.conv2d has other compile options and a ~10x slower backward).
    N, C, H, W = x.shape
    kh, kw = weight.shape[2], weight.shape[3]
    shape = [N, C, 1, 1, H, W, kh, kw]
    xx = x.reindex(shape, ["i0", "i1+i3", f"i4-{ph}+i6", f"i5-{pw}+i7"])
    ww = weight.reindex(shape, ["i1+i2", "i3", "i6", "i7"])
    ww.compile_options = xx.compile_options = {"G": C, "C": C}
    y = (xx * ww).reindex_reduce("add", [N, C, H, W], ["i0", "i1+i2", "i4", "i5"])
    return y if bias is None else y + bias.broadcast(y.shape, [0, 2, 3])


def depthwise_conv2d(x, weight, bias=None, impl="auto"):
    """Depthwise k×k convolution of NCHW ``x`` with ``weight`` [C,1,k,k] (odd k), zero "same"
    padding k//2, stride 1 and optional ``bias`` [C]: the result of
    ``nn.Conv2d(C, C, k, padding=k//2, groups=C)``. Differentiable in ``x``, ``weight`` and ``bias``.

    ``impl``: ``'kernel'`` (CPU C++/OpenMP kernels, float32/float64), ``'conv2d'`` (Jittor's
    convolution: oneDNN on the CPU) or ``'auto'`` (:mod:`jsegnext.ops.dispatch`, ``JSEGNEXT_DW_IMPL``).
    """
    k = _check(x, weight, bias)
    impl = resolve_impl(impl, x.dtype)
    w = weight.cast(x.dtype)
    b = None if bias is None else bias.cast(x.dtype)
    if impl == "conv2d":
        return jittor_depthwise_conv(x, w, b, (k // 2, k // 2))
    if b is None:
        b = jt.zeros([x.shape[1]], dtype=x.dtype).stop_grad()
    return _DepthwiseConvFunction(k)(x, w, b)


class DepthwiseConv2d(jt.nn.Module):
    """Drop-in for ``nn.Conv2d(C, C, k, padding=k//2, groups=C, bias=bias)`` (odd k): parameters
    ``weight`` [C,1,k,k] and ``bias`` [C] initialised as Jittor's Conv2d does, so checkpoints of
    the nn.Conv2d version load one to one."""

    def __init__(self, channels, kernel_size, bias=True, impl="auto"):
        super().__init__()
        if not isinstance(kernel_size, int):
            kh, kw = kernel_size
            if kh != kw:
                raise ValueError(f"DepthwiseConv2d needs a square kernel, got {kernel_size}")
            kernel_size = kh
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        dispatch.check_impl("depthwise_conv2d", impl)
        self.channels, self.kernel_size, self.impl = channels, kernel_size, impl
        self.weight = jt.init.invariant_uniform([channels, 1, kernel_size, kernel_size], dtype="float")
        if bias:
            bound = 1 / math.sqrt(kernel_size * kernel_size)  # fan = in_channels/groups · kh · kw
            self.bias = jt.init.uniform([channels], dtype="float", low=-bound, high=bound)
        else:
            self.bias = None

    def execute(self, x):
        return depthwise_conv2d(x, self.weight, self.bias, self.impl)

    def extra_repr(self):
        k = self.kernel_size
        return f"{self.channels}, kernel_size=({k}, {k}), padding={k // 2}, impl={self.impl!r}"
