"""Which implementation each custom operator of ``jsegnext.ops`` runs.

Every op takes an ``impl`` named from one set, :data:`IMPLS`, which the models use too
(``MSCAN(strip_conv=...)``):

==========  ==========================================================================================
``kernel``  hand-written kernels through ``jt.code`` (sources in ``csrc/``): C++/OpenMP on the CPU,
            CUDA for the strip convolutions
``fused``   a hand-written kernel doing several ops in one pass: MSCA's whole strip sum
            (``msca_strips``), the cross entropy fused with its logits resize, the logits resize
            fused with the argmax (``resize_argmax``), the 1×1 convolution with its bias forward and
            its three gradients backward (``conv1x1``), the inference ops of ``pointwise.py``
            (1×1 convs with epilogues, the Mlp branch, norms, NMF2D)
``meta``    Jittor meta-operators (reindex, broadcast, reduce) that Jittor's JIT fuses; any device
``conv2d``  Jittor's own convolution, what ``nn.Conv2d(groups=C)`` runs (oneDNN on the CPU, Jittor's
            DepthwiseConv on CUDA)
``auto``    the first of the op's :data:`PREFERENCES` for the device that supports the dtype
==========  ==========================================================================================

What each op has, by device (dtypes: 16/32/64 = float16/32/64; ``any``: every dtype):

=====================  =======================================  =========================================
op                     CPU: implementations, ``auto`` order     CUDA: implementations, ``auto`` order
=====================  =======================================  =========================================
strip_conv             kernel (32, 64) > meta (any); conv2d     kernel (16, 32, 64; experimental) >
                                                                conv2d (any); meta
msca_strips            fused (32, 64) > kernel > meta; conv2d   kernel (experimental) > conv2d; meta
                       (kernel/meta/conv2d: separate strips)
depthwise_conv2d       kernel (32, 64) > conv2d (any)           conv2d (any)
resize_bilinear        kernel (32) > meta (any)                 meta (any)
resized_cross_entropy  fused (32) > meta (any)                  meta (any)
resize_argmax          fused (32) > meta (any)                  meta (any)
conv1x1                fused (32) > meta (any)                  meta (any)
pointwise_conv,        fused (32) > meta (any)                  meta (any)
mlp_block, group_norm,
nmf (inference only)
=====================  =======================================  =========================================

The CPU orders are measured (``benchmarks/``, ``docs/BENCHMARKS.md``): the kernels beat oneDNN on
every SegNeXt shape, the meta-operator strips are 2-10x slower than oneDNN.

Rules, in order:

* An explicit ``impl`` runs that implementation, or raises ``ValueError`` (not a name the op has)
  or ``TypeError`` (none for this device and dtype).
* ``impl='auto'`` first tries the op's environment override (``JSEGNEXT_STRIP_IMPL`` for the strip
  ops, ``JSEGNEXT_DW_IMPL`` for the square depthwise conv, ``JSEGNEXT_FUSED_IMPL`` for ``conv1x1``,
  ``resize_argmax`` and the inference ops of ``pointwise.py``; a value from :data:`IMPLS` — an op
  without that implementation, like ``strip_conv`` for ``fused``, ignores it), then the op's
  preferences, skipping what does not support the device and dtype: so an unsupported dtype
  falls back to the portable implementation.
* **Experimental** implementations (:data:`EXPERIMENTAL`: the CUDA strip kernels, which compile
  with nvcc for sm_80/sm_90 but have never run on a GPU) are skipped by ``'auto'`` unless
  ``JSEGNEXT_EXPERIMENTAL_KERNELS=1`` is set, so on CUDA ``'auto'`` keeps Jittor's own ops. Naming
  one explicitly (``impl='kernel'``, or the environment override) also opts in; either way a
  warning says it is untested. Once a GPU run passes the op tests, remove it from the set.
"""

import os
import warnings

from ..runtime import jt

__all__ = ["IMPLS", "EXPERIMENTAL_ENV", "resolve", "available", "op_impls", "check_impl", "auto_impls", "device"]

#: The implementation names every op and model uses.
IMPLS = ("auto", "fused", "kernel", "meta", "conv2d")

#: Setting this to 1 lets ``impl='auto'`` choose the experimental implementations.
EXPERIMENTAL_ENV = "JSEGNEXT_EXPERIMENTAL_KERNELS"

_ANY = None  # every dtype
_F32 = ("float32",)
_F32_64 = ("float32", "float64")
_F16_32_64 = ("float16", "float32", "float64")
_EVERYWHERE = {"cpu": _ANY, "cuda": _ANY}
_STRIP_KERNEL = {"cpu": _F32_64, "cuda": _F16_32_64}

#: op -> implementation -> device -> the dtypes it runs (``None``: any).
SUPPORT = {
    "strip_conv": {"kernel": _STRIP_KERNEL, "meta": _EVERYWHERE, "conv2d": _EVERYWHERE},
    # kernel / meta / conv2d: the branches as separate strip_conv calls of that implementation
    "msca_strips": {"fused": {"cpu": _F32_64}, "kernel": _STRIP_KERNEL, "meta": _EVERYWHERE, "conv2d": _EVERYWHERE},
    "depthwise_conv2d": {"kernel": {"cpu": _F32_64}, "conv2d": _EVERYWHERE},
    "resize_bilinear": {"kernel": {"cpu": _F32}, "meta": _EVERYWHERE},
    "resized_cross_entropy": {"fused": {"cpu": _F32}, "meta": _EVERYWHERE},
    "resize_argmax": {"fused": {"cpu": _F32}, "meta": _EVERYWHERE},
    "conv1x1": {"fused": {"cpu": _F32}, "meta": _EVERYWHERE},
    # inference only (pointwise.py)
    "pointwise_conv": {"fused": {"cpu": _F32}, "meta": _EVERYWHERE},
    "mlp_block": {"fused": {"cpu": _F32}, "meta": _EVERYWHERE},
    "group_norm": {"fused": {"cpu": _F32}, "meta": _EVERYWHERE},
    "nmf": {"fused": {"cpu": _F32}, "meta": _EVERYWHERE},
}

#: op -> device -> what ``impl='auto'`` tries, in order.
PREFERENCES = {
    "strip_conv": {"cpu": ("kernel", "meta"), "cuda": ("kernel", "conv2d")},
    "msca_strips": {"cpu": ("fused", "kernel", "meta"), "cuda": ("kernel", "conv2d")},
    "depthwise_conv2d": {"cpu": ("kernel", "conv2d"), "cuda": ("conv2d",)},
    "resize_bilinear": {"cpu": ("kernel", "meta"), "cuda": ("meta",)},
    "resized_cross_entropy": {"cpu": ("fused", "meta"), "cuda": ("meta",)},
    "resize_argmax": {"cpu": ("fused", "meta"), "cuda": ("meta",)},
    "conv1x1": {"cpu": ("fused", "meta"), "cuda": ("meta",)},
    "pointwise_conv": {"cpu": ("fused", "meta"), "cuda": ("meta",)},
    "mlp_block": {"cpu": ("fused", "meta"), "cuda": ("meta",)},
    "group_norm": {"cpu": ("fused", "meta"), "cuda": ("meta",)},
    "nmf": {"cpu": ("fused", "meta"), "cuda": ("meta",)},
}

#: (op, implementation, device) never run there yet: ``'auto'`` skips them unless opted in.
EXPERIMENTAL = {("strip_conv", "kernel", "cuda"), ("msca_strips", "kernel", "cuda")}

#: op -> the environment variable that overrides its ``'auto'``.
ENV_OVERRIDES = {
    "strip_conv": "JSEGNEXT_STRIP_IMPL",
    "msca_strips": "JSEGNEXT_STRIP_IMPL",
    "depthwise_conv2d": "JSEGNEXT_DW_IMPL",
    "conv1x1": "JSEGNEXT_FUSED_IMPL",
    "pointwise_conv": "JSEGNEXT_FUSED_IMPL",
    "mlp_block": "JSEGNEXT_FUSED_IMPL",
    "group_norm": "JSEGNEXT_FUSED_IMPL",
    "nmf": "JSEGNEXT_FUSED_IMPL",
    "resize_argmax": "JSEGNEXT_FUSED_IMPL",
}

_warned = set()


def device():
    """``'cuda'`` when Jittor runs on the GPU, else ``'cpu'``."""
    return "cuda" if jt.flags.use_cuda else "cpu"


def op_impls(op):
    """The ``impl`` values ``op`` accepts: ``'auto'`` and its implementations."""
    return ("auto",) + tuple(n for n in IMPLS if n in SUPPORT[op])


def check_impl(op, impl):
    """Raise ``ValueError`` unless ``impl`` names an implementation of ``op`` (or ``'auto'``)."""
    if impl not in op_impls(op):
        raise ValueError(f"{op} impl must be one of {op_impls(op)}, got {impl!r}")


def _supports(op, impl, dev, dtype):
    dtypes = SUPPORT[op].get(impl, {}).get(dev, ())
    return dtypes is _ANY or str(dtype) in dtypes


def available(op, impl, dtype="float32"):
    """True when ``impl`` (``'auto'`` always) can run ``op`` on the current device for ``dtype``."""
    check_impl(op, impl)
    return impl == "auto" or _supports(op, impl, device(), dtype)


def _experimental_enabled():
    return os.environ.get(EXPERIMENTAL_ENV, "") not in ("", "0")


def _env_choice(op):
    name = ENV_OVERRIDES.get(op)
    value = os.environ.get(name, "") if name else ""
    if not value:
        return None
    if value not in IMPLS[1:]:
        raise ValueError(f"{name} must be one of {IMPLS[1:]}, got {value!r}")
    return value if value in SUPPORT[op] else None


def _warn_experimental(op, impl, dev):
    if (op, impl, dev) not in _warned:
        _warned.add((op, impl, dev))
        warnings.warn(
            f"{op} impl={impl!r} on {dev} runs kernels that have not been tested on a GPU yet "
            "(see jsegnext/ops/dispatch.py)",
            stacklevel=3,
        )


def _auto(op, dev, dtype):
    chosen = _env_choice(op)  # naming an implementation opts in to it
    for name in ((chosen,) if chosen else ()) + PREFERENCES[op][dev]:
        allowed = name == chosen or (op, name, dev) not in EXPERIMENTAL or _experimental_enabled()
        if allowed and _supports(op, name, dev, dtype):
            return name
    raise TypeError(f"{op} has no {dev} implementation for {dtype}")


def resolve(op, impl="auto", dtype="float32"):
    """The implementation ``op`` runs for ``impl`` on the current device and ``dtype`` (rules above)."""
    check_impl(op, impl)
    dev = device()
    if impl == "auto":
        impl = _auto(op, dev, dtype)
    elif not _supports(op, impl, dev, dtype):
        usable = [n for n in SUPPORT[op] if _supports(op, n, dev, dtype)]
        raise TypeError(f"{op} impl={impl!r} has no {dev} implementation for {dtype}; use 'auto' or one of {usable}")
    if (op, impl, dev) in EXPERIMENTAL:
        _warn_experimental(op, impl, dev)
    return impl


def auto_impls(op, dtype="float32"):
    """``{device: what 'auto' runs}`` for ``dtype`` without overrides or opt-ins (for documentation
    and tests)."""
    return {
        dev: next(n for n in prefs if _supports(op, n, dev, dtype) and (op, n, dev) not in EXPERIMENTAL)
        for dev, prefs in PREFERENCES[op].items()
    }
