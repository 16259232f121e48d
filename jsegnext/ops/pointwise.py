"""1×1 convolutions for training (:func:`conv1x1`, differentiable) and the inference ops of the fused
SegNeXt (:mod:`jsegnext.models.fuse`): 1×1 convolutions with their epilogues, the whole Mlp branch,
the norms and NMF2D, each in one pass (forward only: the fused model does not train).

Two implementations (names and the ``'auto'`` choice:
:mod:`jsegnext.ops.dispatch`):

* ``'fused'`` — hand-written CPU kernels (``csrc/pointwise.h``, which describes them), float32; the
  matrix products run in oneDNN's sgemm on cache-sized blocks.
* ``'meta'`` — the same arithmetic in Jittor ops, any device and dtype: the fallback, and the
  kernels' test reference.
"""

import math

from ..runtime import jt
from . import dispatch
from ._source import call, source
from .depthwise_conv import depthwise_conv2d

__all__ = [
    "matmul",
    "conv1x1",
    "pointwise_conv",
    "pointwise_conv2",
    "mlp_block",
    "group_norm",
    "channel_norm",
    "nmf_decompose",
]

ACTS = {None: 0, "gelu": 1, "relu": 2}


def _fused(op, x):
    return dispatch.resolve(op, "auto", x.dtype) == "fused"


def _kernel(shape, inputs, function, args, template_args=()):
    return jt.code(
        shape,
        "float32",
        inputs,
        cpu_header=source("pointwise.h"),
        cpu_src=call("jsn_pw::" + function, args, template_args),
    )


def _gelu(x):
    return 0.5 * x * (1.0 + jt.erf(x * (1.0 / math.sqrt(2.0))))


def _act(x, act):
    if act == "gelu":
        return _gelu(x)
    return jt.nn.relu(x) if act == "relu" else x


def _channel(v):
    return v.reshape(1, -1, 1, 1)


def _matmul_nchw(w, x):
    """``w`` (Co, Ci) applied to every pixel of NCHW ``x``: 2-D products per image (MKL on CPU)."""
    n, c, h, wd = x.shape
    out = [jt.matmul(w, x[i].reshape(c, h * wd)) for i in range(n)]
    return jt.stack(out, dim=0).reshape(n, w.shape[0], h, wd)


def _mkl_ops():
    from jittor import compile_extern

    return None if jt.flags.use_cuda else compile_extern.mkl_ops


class _MatmulFunction(jt.Function):
    """``op(a) · op(b)`` with MKL's transposes, and its gradients through the same op."""

    def __init__(self, trans_a, trans_b):
        self.trans = (trans_a, trans_b)

    def execute(self, a, b):
        self.saved = (a, b)
        return _mkl_ops().mkl_matmul(a, b, *self.trans)

    def grad(self, g):
        a, b = self.saved
        if g is None:
            return None, None
        mm = _mkl_ops().mkl_matmul
        ta, tb = self.trans
        if ta and tb:  # c = aT bT
            return mm(b, g, True, True), mm(g, a, True, True)
        if ta:  # c = aT b
            return mm(b, g, False, True), mm(a, g, False, False)
        if tb:  # c = a bT
            return mm(g, b, False, False), mm(g, a, True, False)
        return mm(g, b, False, True), mm(a, g, True, False)


def matmul(a, b, trans_a=False, trans_b=False):
    """``op(a) · op(b)`` of 2-D ``a`` and ``b`` (op: transpose where asked), differentiable. On the CPU
    the transposes are flags of MKL's product instead of copies (NMF2D multiplies the (D, H·W) map
    by small matrices from both sides: transposing it cost ~100 ms per training step)."""
    if _mkl_ops() is not None and str(a.dtype) == str(b.dtype) == "float32":
        return _MatmulFunction(trans_a, trans_b)(a, b)
    return jt.matmul(a.transpose() if trans_a else a, b.transpose() if trans_b else b)


class _Conv1x1Function(jt.Function):
    def execute(self, x, w, b):
        self.saved = (x, w)
        n, _, h, wd = x.shape
        return _kernel(
            (n, w.shape[0], h, wd),
            [x, w, b],
            "pointwise",
            [
                "in0_p",
                "in1_p",
                "in2_p",
                "nullptr",
                "nullptr",
                "nullptr",
                "out0_p",
                "in0_shape0",
                "in0_shape1",
                "in0_shape2",
                "in0_shape3",
                "out0_shape1",
            ],
            (0, False, False),
        )

    def grad(self, g):
        x, w = self.saved
        if g is None:
            return None, None, None
        dx, dw, db = jt.code(
            [x.shape, w.shape, (w.shape[0],)],
            ["float32"] * 3,
            [x, w, g.float32()],
            cpu_header=source("pointwise.h"),
            cpu_src=call(
                "jsn_pw::pointwise_backward",
                [
                    "in0_p",
                    "in1_p",
                    "in2_p",
                    "out0_p",
                    "out1_p",
                    "out2_p",
                    "in0_shape0",
                    "in0_shape1",
                    "in0_shape2",
                    "in0_shape3",
                    "in1_shape0",
                ],
            ),
        )
        return dx, dw, db


def conv1x1(x, weight, bias=None):
    """1×1 convolution of NCHW ``x`` with ``weight`` (Co, Ci) and optional ``bias`` (Co),
    differentiable. On the CPU (float32, ``'fused'``) one kernel each way (``pointwise`` /
    ``pointwise_backward``: blocked sgemm, bias in the epilogue, transposes folded into the products);
    elsewhere (``'meta'``) 2-D matrix products per image (MKL on the CPU) or one batched product on CUDA."""
    n, c, h, w = x.shape
    co = weight.shape[0]
    if _fused("conv1x1", x):
        b = bias if bias is not None else jt.zeros((co,), dtype=x.dtype).stop_grad()
        return _Conv1x1Function.apply(x, weight, b)
    if jt.flags.use_cuda:
        y = jt.matmul(weight, x.reshape(n, c, h * w))
    else:  # batched 3-D products are not sent to MKL on CPU; 2-D ones are
        y = jt.stack([jt.matmul(weight, x[i].reshape(c, h * w)) for i in range(n)], dim=0)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1)
    return y.reshape(n, co, h, w)


def _pointers(inputs, wanted):
    """``jt.code`` pointer names of the optional inputs (``nullptr`` for those not given)."""
    names, index = [], 0
    for present in wanted:
        names.append(f"in{index}_p" if present else "nullptr")
        index += bool(present)
    return names


def pointwise_conv(x, weight, bias, act=None, mul=None, residual=None, residual_scale=None):
    """``act(weight · x + bias) [* mul] [+ residual_scale ⊙ residual]`` for NCHW ``x``.

    ``weight`` (Co, Ci), ``bias`` (Co); ``act`` None, ``'gelu'`` or ``'relu'``; ``mul`` and
    ``residual`` (N, Co, H, W); ``residual_scale`` (Co) (None: 1).
    """
    if act not in ACTS:
        raise ValueError(f"act must be one of {list(ACTS)}, got {act!r}")
    if not _fused("pointwise_conv", x):
        y = _act(_matmul_nchw(weight, x) + _channel(bias), act)
        if mul is not None:
            y = y * mul
        if residual is not None:
            y = y + (residual if residual_scale is None else _channel(residual_scale) * residual)
        return y
    n, _, h, w = x.shape
    co = weight.shape[0]
    inputs = [v for v in (x, weight, bias, mul, residual, residual_scale) if v is not None]
    ptr = _pointers(inputs, [True, True, True, mul is not None, residual is not None, residual_scale is not None])
    return _kernel(
        (n, co, h, w),
        inputs,
        "pointwise",
        ptr + ["out0_p", "in0_shape0", "in0_shape1", "in0_shape2", "in0_shape3", "out0_shape1"],
        (ACTS[act], mul is not None, residual is not None),
    )


def pointwise_conv2(x, w1, b1, mul, w2, b2, residual=None, residual_scale=None):
    """``w2 · ((w1 · x + b1) * mul) + b2 [+ residual_scale ⊙ residual]``: MSCA's conv3, its gate and
    proj_2 with the block's residual, without the intermediate leaving the cache."""
    if not _fused("pointwise_conv", x):
        y = pointwise_conv(pointwise_conv(x, w1, b1, mul=mul), w2, b2, residual=residual, residual_scale=residual_scale)
        return y
    n, _, h, w = x.shape
    inputs = [v for v in (x, w1, b1, mul, w2, b2, residual, residual_scale) if v is not None]
    ptr = _pointers(inputs, [True] * 6 + [residual is not None, residual_scale is not None])
    return _kernel(
        (n, w2.shape[0], h, w),
        inputs,
        "pointwise2",
        ptr + ["out0_p", "in0_shape0", "in0_shape1", "in0_shape2", "in0_shape3", "in1_shape0", "out0_shape1"],
        (residual is not None,),
    )


def mlp_block(x, w1, b1, dw_weight, dw_bias, w2, b2, bands=None):
    """``x + w2 · gelu(dw3x3(w1 · x + b1)) + b2``: SegNeXt's Mlp branch (norm and layer scale folded
    in) and its residual. ``dw_weight`` (Hd, 1, 3, 3), ``dw_bias`` (Hd). ``bands``: row bands per
    image the kernel streams (default: enough to give every thread one)."""
    if not _fused("mlp_block", x):
        hidden = depthwise_conv2d(_matmul_nchw(w1, x) + _channel(b1), dw_weight, dw_bias)
        return x + _matmul_nchw(w2, _gelu(hidden)) + _channel(b2)
    n, c, h, w = x.shape
    hd = w1.shape[0]
    return _kernel(
        (n, c, h, w),
        [x, w1, b1, dw_weight.reshape(hd, 9), dw_bias, w2, b2],
        "mlp",
        [
            "in0_p",
            "in1_p",
            "in2_p",
            "in3_p",
            "in4_p",
            "in5_p",
            "in6_p",
            "out0_p",
            "in0_shape0",
            "in0_shape1",
            "in0_shape2",
            "in0_shape3",
            "in1_shape0",
            str(int(bands or 0)),
        ],
    )


def _centred_norm(x, dims, eps):
    mean = x.mean(dims=dims, keepdims=True)
    centred = x - mean
    return centred / jt.sqrt((centred * centred).mean(dims=dims, keepdims=True) + eps)


def group_norm(x, num_groups, weight, bias, eps=1e-5, residual=None, relu=False):
    """``[relu](GroupNorm(x) · weight + bias [+ residual])`` with centred statistics."""
    n, c, h, w = x.shape
    if not _fused("group_norm", x):
        y = _centred_norm(x.reshape(n, num_groups, -1), [2], eps).reshape(n, c, h, w)
        y = y * _channel(weight) + _channel(bias)
        if residual is not None:
            y = y + residual
        return jt.nn.relu(y) if relu else y
    inputs = [x, weight, bias] + ([residual] if residual is not None else [])
    return _kernel(
        (n, c, h, w),
        inputs,
        "group_norm",
        [
            "in0_p",
            "in1_p",
            "in2_p",
            "in3_p" if residual is not None else "nullptr",
            "out0_p",
            "in0_shape0",
            "in0_shape1",
            "in0_shape2 * in0_shape3",
            str(int(num_groups)),
            repr(float(eps)) + "f",
        ],
        (residual is not None, bool(relu)),
    )


def channel_norm(x, weight, bias, eps=1e-5):
    """LayerNorm over the channels of NCHW ``x`` (centred statistics)."""
    if not _fused("group_norm", x):
        return _centred_norm(x, [1], eps) * _channel(weight) + _channel(bias)
    n, c, h, w = x.shape
    return _kernel(
        (n, c, h, w),
        [x, weight, bias],
        "channel_norm",
        [
            "in0_p",
            "in1_p",
            "in2_p",
            "out0_p",
            "in0_shape0",
            "in0_shape1",
            "in0_shape2 * in0_shape3",
            repr(float(eps)) + "f",
        ],
    )


def nmf_decompose(x, bases, steps, inv_t=1.0):
    """NMF2D's eval-mode reconstruction of ``x`` (M, D, N) from initial ``bases`` (M, D, R): softmax
    initial coefficients, ``steps`` multiplicative updates of coefficients and bases, a last
    coefficient update, ``bases · coefᵀ``."""
    if not _fused("nmf", x):
        from ..models.ham_head import NMF2D

        outs = []
        for i in range(x.shape[0]):
            xi, b = x[i], bases[i]
            coef = jt.nn.softmax(inv_t * jt.matmul(xi.transpose(), b), dim=-1)
            for _ in range(steps):
                coef = NMF2D._update_coef(xi, b, coef)
                b = NMF2D._update_bases(xi, b, coef)
            coef = NMF2D._update_coef(xi, b, coef)
            outs.append(jt.matmul(b, coef.transpose()))
        return jt.stack(outs, dim=0)
    m, d, nn_ = x.shape
    return _kernel(
        (m, d, nn_),
        [x, bases],
        "nmf",
        [
            "in0_p",
            "in1_p",
            "out0_p",
            "in0_shape0",
            "in0_shape1",
            "in0_shape2",
            "in1_shape2",
            str(int(steps)),
            repr(float(inv_t)) + "f",
        ],
    )
