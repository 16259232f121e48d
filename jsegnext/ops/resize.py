"""Bilinear resize (PyTorch's ``align_corners=False``) and the training loss fused with it.

``resize_bilinear(x, size)``: on CPU a hand-written OpenMP kernel (``csrc/resize.h``, forward and
backward), one pass over each output plane with the two source rows it blends kept in cache;
elsewhere the portable form, two index gathers (width, then height) that Jittor fuses. Both compute
``a + (b - a) * frac`` along the width, then along the height, with PyTorch's source indices.

``resized_cross_entropy(logits, label)``: cross entropy of ``logits`` resized to the label's size,
without ever holding the full-size logits (N·C·H·W floats, 315 MB for SegNeXt at batch 2, 512²).
The forward pass computes each output row's upsampled logits for all classes in a small buffer and
keeps one log-sum-exp per pixel; the backward pass works plane by plane (no write conflicts),
recomputes the upsampled row, forms ``softmax - onehot`` and folds it straight back through the
resize. Loss semantics are the reference's: 255 ignored, the sum divided by all N·H·W pixels.

``resize_argmax(logits, sizes)``: the label map of ``logits`` resized through each size of
``sizes`` in turn (the inference path resizes to the network input's size, then to the original
image's), without the full-size logits either: the resizes compose into a few taps per axis and the
CPU kernel takes each output pixel's argmax over the classes as it goes.
"""

import functools

import numpy as np

from ..constants import IGNORE_INDEX
from ..runtime import jt
from . import dispatch
from ._source import NCHW, call, source

_TABLES = {}


def resize_table(in_size, out_size):
    """Source indices (lo, hi) and weights of PyTorch's align_corners=False resize along one axis."""
    key = (in_size, out_size)
    if key not in _TABLES:
        scale = np.float32(in_size) / np.float32(out_size)
        src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        src = np.maximum(src, 0)
        lo = np.minimum(src.astype(np.int32), in_size - 1)
        hi = np.minimum(lo + 1, in_size - 1).astype(np.int32)
        frac = (src - lo).astype(np.float32)
        _TABLES[key] = (lo, hi, frac)
    return _TABLES[key]


def _table_vars(in_h, in_w, out_h, out_w):
    return [jt.array(a) for a in resize_table(in_h, out_h) + resize_table(in_w, out_w)]


# --------------------------------------------------------------------------- portable form
def _gather_axis(x, axis, out_size):
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    lo, hi, frac = resize_table(in_size, out_size)
    shape = list(x.shape)
    shape[axis] = out_size
    index = [f"i{d}" for d in range(x.ndim)]
    index[axis] = f"@e0(i{axis})"
    a = x.reindex(shape, index, extras=[jt.array(lo)])
    b = x.reindex(shape, index, extras=[jt.array(hi)])
    weight_shape = [1] * x.ndim
    weight_shape[axis] = out_size
    return a + (b - a) * jt.array(frac).reshape(weight_shape)


def resize_bilinear_gather(x, size):
    """The portable form (reindex gathers): used on CUDA and as the CPU kernel's test reference."""
    return _gather_axis(_gather_axis(x, 3, int(size[1])), 2, int(size[0]))


# --------------------------------------------------------------------------- CPU kernels (csrc/resize.h)
# the tables are inputs 1-6 of every kernel: height (lo, hi, frac), then width
_TABLES_ARG = "jsn_resize::Tables{in1_p, in2_p, in3_p, in4_p, in5_p, in6_p}"


def _kernel_code(shapes, dtypes, inputs, function, args):
    return jt.code(
        shapes,
        dtypes,
        inputs=inputs,
        cpu_header=source("resize.h"),
        cpu_src=call("jsn_resize::" + function, args + [_TABLES_ARG]),
    )


class _ResizeFunction(jt.Function):
    def execute(self, x, size):
        n, c, h, w = x.shape
        self.in_shape = (n, c, h, w)
        self.tables = _table_vars(h, w, *size)
        # x, tables; out0: y (N, C, OH, OW)
        return _kernel_code(
            (n, c) + tuple(size),
            x.dtype,
            [x] + self.tables,
            "resize_forward",
            ["in0_p", "out0_p", "in0_shape0 * in0_shape1", "in0_shape2", "in0_shape3", "out0_shape2", "out0_shape3"],
        )

    def grad(self, g):
        # g (N, C, OH, OW), tables; out0: the gradient of x (N, C, H, W)
        return _kernel_code(
            self.in_shape,
            g.dtype,
            [g] + self.tables,
            "resize_backward",
            ["in0_p", "out0_p", "out0_shape0 * out0_shape1", "out0_shape2", "out0_shape3", "in0_shape2", "in0_shape3"],
        ), None


def resize_bilinear(x, size):
    """Bilinear resize of NCHW ``x`` to ``size`` (h, w), align_corners=False, equal to PyTorch's."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[2:]) == size:
        return x
    if dispatch.resolve("resize_bilinear", "auto", x.dtype) == "kernel":
        return _ResizeFunction.apply(x, size)
    return resize_bilinear_gather(x, size)


# --------------------------------------------------------------------------- resize + argmax
def composed_taps(in_size, sizes):
    """Source indices and weights (taps, out) of the 1-D resizes ``in_size`` → each of ``sizes``
    in turn, composed into one linear map (float64, then float32), and the first and last source
    index each output reads (out,) (unused taps repeat the first index, with weight 0)."""
    m = np.eye(in_size)
    for size in sizes:
        if size == m.shape[0]:
            continue
        lo, hi, frac = resize_table(m.shape[0], size)
        step = np.zeros((size, m.shape[0]))
        np.add.at(step, (np.arange(size), lo), 1.0 - frac.astype(np.float64))
        np.add.at(step, (np.arange(size), hi), frac.astype(np.float64))
        m = step @ m
    taps = max(1, int((m != 0).sum(axis=1).max()))
    index = np.zeros((taps, m.shape[0]), np.int32)
    weight = np.zeros((taps, m.shape[0]), np.float32)
    first = np.zeros(m.shape[0], np.int32)
    last = np.zeros(m.shape[0], np.int32)
    for i, row in enumerate(m):
        nz = np.flatnonzero(row)
        index[:, i] = nz[0]  # unused taps read the first source value, with weight 0
        index[: len(nz), i] = nz
        weight[: len(nz), i] = row[nz]
        first[i], last[i] = nz[0], nz[-1]
    return index, weight, first, last


@functools.lru_cache(maxsize=64)  # images of a dataset come in a few sizes; a stream of others stays bounded
def _taps_vars(in_size, sizes):
    return [jt.array(a) for a in composed_taps(in_size, list(sizes))]


def resize_argmax(logits, sizes):
    """``argmax`` over the classes of ``logits`` (N, C, H, W) resized (bilinear, align_corners=False)
    to each (h, w) of ``sizes`` in turn: int32 labels (N, h, w) of the last size."""
    sizes = [(int(h), int(w)) for h, w in sizes]
    if dispatch.resolve("resize_argmax", "auto", logits.dtype) != "fused":
        for size in sizes:
            logits = resize_bilinear(logits, size)
        return logits.argmax(dim=1)[0].int32()
    n, c, h, w = logits.shape
    yi, yw, _, _ = _taps_vars(h, tuple(s[0] for s in sizes))
    xi, xw, xf, xl = _taps_vars(w, tuple(s[1] for s in sizes))
    out_h, out_w = sizes[-1]
    args = [
        "in0_p",
        "out0_p",
        *NCHW,
        str(out_h),
        str(out_w),
        "in1_p",
        "in2_p",
        str(yi.shape[0]),
        "in3_p",
        "in4_p",
        str(xi.shape[0]),
        "in5_p",
        "in6_p",
    ]
    return jt.code(
        (n, out_h, out_w),
        "int32",
        [logits, yi, yw, xi, xw, xf, xl],
        cpu_header=source("resize.h"),
        cpu_src=call("jsn_resize::resize_argmax", args),
    )


# --------------------------------------------------------------------------- fused loss
# N, C, H, W of the logits (input 0), OH, OW of the label (input 7)
_CE_SIZES = NCHW + ("in7_shape1", "in7_shape2")


class _ResizedCrossEntropy(jt.Function):
    def execute(self, logits, label):
        n, c, h, w = logits.shape
        out_h, out_w = label.shape[1:]
        tables = _table_vars(h, w, out_h, out_w)
        # logits, tables, label (N, OH, OW) int32; out0: loss summed per row (N, OH), out1: log-sum-exp
        # per pixel (N, OH, OW)
        row_loss, lse = _kernel_code(
            [(n, out_h), (n, out_h, out_w)],
            ["float32", "float32"],
            [logits] + tables + [label],
            "ce_forward",
            ["in0_p", "in7_p", "out0_p", "out1_p", *_CE_SIZES],
        )
        self.saved = (logits, tables, label, lse)
        return row_loss

    def grad(self, g):
        logits, tables, label, lse = self.saved
        # logits, tables, label, lse, g: the gradient of the row sums (N, OH); out0: that of the logits
        grad = _kernel_code(
            logits.shape,
            "float32",
            [logits] + tables + [label, lse, g],
            "ce_backward",
            ["in0_p", "in7_p", "in8_p", "in9_p", "out0_p", *_CE_SIZES],
        )
        return grad, None


def cross_entropy(logits, label, ignore_index=IGNORE_INDEX):
    """Pixel cross entropy of (N, C, H, W) logits against (N, H, W) labels.

    Ignored pixels contribute zero and the sum is divided by *all* N·H·W pixels, as the
    reference (mmseg 0.24, ``avg_non_ignore=False``) does.
    """
    n, c, h, w = logits.shape
    label = label.int32()
    valid = (label != ignore_index).float32()
    safe = label * (label != ignore_index).int32()
    peak = logits.max(dim=1, keepdims=True).detach()
    log_sum_exp = jt.log(jt.exp(logits - peak).sum(dim=1)) + peak.reshape(n, h, w)
    picked = logits.reindex([n, h, w], ["i0", "@e0(i0,i1,i2)", "i1", "i2"], extras=[safe])
    return ((log_sum_exp - picked) * valid).sum() / float(n * h * w)


def resized_cross_entropy(logits, label, ignore_index=IGNORE_INDEX):
    """``cross_entropy(resize_bilinear(logits, label.shape[1:]), label)``, fused on CPU.

    Labels outside ``[0, C)`` count as ignored in the fused kernel; datasets reject them earlier.
    """
    n, c = logits.shape[:2]
    out_h, out_w = label.shape[1:]
    if dispatch.resolve("resized_cross_entropy", "auto", logits.dtype) != "fused":
        return cross_entropy(resize_bilinear(logits, (out_h, out_w)), label, ignore_index)
    label = label.int32()
    if ignore_index < c:  # an ignore index inside the class range must still be skipped
        label = jt.where(label == ignore_index, jt.full_like(label, -1), label)
    return _ResizedCrossEntropy.apply(logits, label).sum() / float(n * out_h * out_w)
