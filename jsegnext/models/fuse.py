"""The inference fast path: a SegNeXt with its eval-mode algebra folded into the weights and its hot
chains fused into single kernels.

    from jsegnext.models.fuse import fuse_segmentor
    fast = fuse_segmentor(model)     # a separate inference copy; ``model`` itself is left as it was
    logits = fast.encode_decode(img) # same outputs as model.eval().encode_decode(img), to float32 rounding

``init_model`` returns the fused copy unless given ``fuse=False``; ``tools/test.py`` and
``tools/infer.py`` take ``--no-fuse``; the trainer's validation fuses a fresh copy of the model it
trains each time (folding reads the current weights; the training model is never modified).

Why a separate model rather than ``fuse()`` methods that rewrite modules in place (timm's way): the
fused graph has other parameters (folded) and other boundaries (one kernel for what were five
modules), so an in-place rewrite would leave a model that no longer loads, saves or trains like
the original while looking like it; a copy of another class cannot be mistaken for it, and the
weights it folded are a snapshot, so a model that keeps training cannot desynchronise it.

What folds, exactly (in float64, from eval-mode BatchNorm statistics ``s = γ/√(var+ε)``,
``t = β − mean·s``):

* the stem's and patch embeddings' BatchNorms into their 3×3 convs;
* a block's ``norm1`` into ``proj_1`` and ``norm2`` into ``fc1`` (a per-channel affine before a 1×1 conv);
* ``layer_scale_1`` into ``proj_2`` and into the attention's shortcut: SpatialAttention adds its own
  input ``norm1(x)``, so the first half of a block is
  ``x + ls1·(proj_2(v) + s1·x + t1) = (1 + ls1·s1)·x + (ls1·W2)·v + ls1·(b2 + t1)``: a per-channel
  scale on ``x``, applied in proj_2's epilogue;
* ``layer_scale_2`` into ``fc2``.

What fuses (``jsegnext/ops/pointwise.py``, CPU kernels in ``csrc/pointwise.h``; elsewhere the same
arithmetic in Jittor ops): ``proj_1`` + GELU; MSCA's ``conv3``, its gate ``* u``, ``proj_2`` and the
residual; the whole Mlp branch (``fc1`` → 3×3 depthwise → GELU → ``fc2`` + residual, streamed over
image rows so the 8×-wide hidden layer never reaches memory); the stage LayerNorms; the decoder's
GroupNorms with their ReLU and the Hamburger's residual; ``ham_in`` + ReLU; NMF2D's whole
decomposition. The strip convolutions and MSCA's 5×5 keep the model's ``strip_conv`` choice.

The fused model is for inference only: ``loss()`` and ``state_dict()`` raise (it cannot train, and
cannot be saved as a checkpoint: save the model it was fused from), ``train()`` leaves it in eval
mode.
"""

import copy

import numpy as np

from ..ops.depthwise_conv import depthwise_conv2d
from ..ops.pointwise import channel_norm, group_norm, mlp_block, nmf_decompose, pointwise_conv, pointwise_conv2
from ..ops.resize import resize_argmax, resize_bilinear
from ..ops.strip_conv import msca_strips
from ..runtime import jt
from .mscan import MSCAN, STRIP_KERNELS
from .segmentor import EncoderDecoder

nn = jt.nn

__all__ = ["fuse_segmentor", "FusedSegmentor", "is_fused"]


def _np(v):
    return np.asarray(v.numpy(), dtype=np.float64)


def _var(a):
    return jt.array(np.ascontiguousarray(a, dtype=np.float32)).stop_grad()


def _bn_affine(bn):
    """(s, t) with ``bn(x) = s·x + t`` in eval mode, float64."""
    s = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
    return s, _np(bn.bias) - _np(bn.running_mean) * s


def _conv1x1(conv):
    """(weight (Co, Ci), bias (Co)) of a ``Conv1x1`` (bias zeros when it has none), float64."""
    w = _np(conv.weight).reshape(conv.out_channels, conv.in_channels)
    b = _np(conv.bias) if conv.bias is not None else np.zeros(conv.out_channels)
    return w, b


class _FoldedConv(nn.Module):
    """A dense conv with a BatchNorm folded in: ``bn(conv(x))`` as one conv with bias."""

    def __init__(self, conv, bn):
        super().__init__()
        s, t = _bn_affine(bn)
        w = _np(conv.weight) * s[:, None, None, None]
        b = (_np(conv.bias) if conv.bias is not None else 0.0) * s + t
        self.conv = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding, bias=True
        )
        self.conv.weight = _var(w)
        self.conv.bias = _var(b)

    def execute(self, x):
        return self.conv(x)


class FusedStem(nn.Module):
    def __init__(self, stem):
        super().__init__()
        p = stem.proj
        self.conv1 = _FoldedConv(p[0], p[1])
        self.conv2 = _FoldedConv(p[3], p[4])

    def execute(self, x):
        y = self.conv1(x)
        return self.conv2(0.5 * y * (1.0 + jt.erf(y * (1.0 / np.sqrt(2.0)))))


class FusedBlock(nn.Module):
    """One MSCAN block in five ops: proj_1+GELU, conv0, strips, conv3·u→proj_2+residual, the Mlp."""

    def __init__(self, block, strip_conv):
        super().__init__()
        attn, sgu, mlp = block.attn, block.attn.spatial_gating_unit, block.mlp
        s1, t1 = _bn_affine(block.norm1)
        s2, t2 = _bn_affine(block.norm2)
        ls1, ls2 = _np(block.layer_scale_1), _np(block.layer_scale_2)
        w, b = _conv1x1(attn.proj_1)
        self.proj1_w, self.proj1_b = _var(w * s1[None]), _var(b + w @ t1)
        self.conv0_w, self.conv0_b = _var(_np(sgu.conv0.weight)), _var(_np(sgu.conv0.bias))
        self.strips = [
            tuple(_var(_np(v)) for v in (h.weight, h.bias, v_.weight, v_.bias))
            for h, v_ in ((getattr(sgu, f"conv{i}_1"), getattr(sgu, f"conv{i}_2")) for i in range(len(STRIP_KERNELS)))
        ]
        w, b = _conv1x1(sgu.conv3)
        self.conv3_w, self.conv3_b = _var(w), _var(b)
        w, b = _conv1x1(attn.proj_2)
        self.proj2_w, self.proj2_b = _var(ls1[:, None] * w), _var(ls1 * (b + t1))
        self.shortcut_scale = _var(1.0 + ls1 * s1)
        w, b = _conv1x1(mlp.fc1)
        self.fc1_w, self.fc1_b = _var(w * s2[None]), _var(b + w @ t2)
        dw = mlp.dwconv.dwconv
        self.dw_w, self.dw_b = _var(_np(dw.weight)), _var(_np(dw.bias))
        w, b = _conv1x1(mlp.fc2)
        self.fc2_w, self.fc2_b = _var(ls2[:, None] * w), _var(ls2 * b)
        self.strip_conv = strip_conv

    def execute(self, x):
        u = pointwise_conv(x, self.proj1_w, self.proj1_b, act="gelu")
        a = depthwise_conv2d(u, self.conv0_w, self.conv0_b, impl="conv2d" if self.strip_conv == "conv2d" else "auto")
        s = msca_strips(a, self.strips, impl=self.strip_conv)
        x = pointwise_conv2(
            s, self.conv3_w, self.conv3_b, u, self.proj2_w, self.proj2_b, residual=x, residual_scale=self.shortcut_scale
        )
        return mlp_block(x, self.fc1_w, self.fc1_b, self.dw_w, self.dw_b, self.fc2_w, self.fc2_b)


class _FusedChannelNorm(nn.Module):
    """A stage's ``ChannelLayerNorm`` as the fused kernel."""

    def __init__(self, norm):
        super().__init__()
        self.weight, self.bias, self.eps = _var(_np(norm.weight)), _var(_np(norm.bias)), norm.eps

    def execute(self, x):
        return channel_norm(x, self.weight, self.bias, self.eps)


class FusedMSCAN(nn.Module):
    """MSCAN with folded stems, blocks and stage norms (the stage loop is MSCAN's own)."""

    def __init__(self, mscan):
        super().__init__()
        self.num_stages = mscan.num_stages
        strip_conv = mscan.block1[0].attn.spatial_gating_unit.strip_conv
        for i in range(1, self.num_stages + 1):
            embed = getattr(mscan, f"patch_embed{i}")
            setattr(self, f"patch_embed{i}", FusedStem(embed) if i == 1 else _FoldedConv(embed.proj, embed.norm))
            setattr(self, f"block{i}", nn.ModuleList([FusedBlock(b, strip_conv) for b in getattr(mscan, f"block{i}")]))
            setattr(self, f"norm{i}", _FusedChannelNorm(getattr(mscan, f"norm{i}")))

    execute = MSCAN.execute


class _FusedConvGN(nn.Module):
    """A ``ConvModule``: 1×1 conv, then GroupNorm (with an optional residual) and ReLU, or its own bias."""

    def __init__(self, module):
        super().__init__()
        w, b = _conv1x1(module.conv)
        self.w, self.b = _var(w), _var(b)
        self.gn = None
        if module.gn is not None:
            gn = module.gn
            self.gn = (gn.num_groups, _var(_np(gn.weight)), _var(_np(gn.bias)), gn.eps)
        self.relu = module.relu

    def execute(self, x, residual=None, relu=None):
        relu = self.relu if relu is None else relu
        if self.gn is None:
            return pointwise_conv(x, self.w, self.b, act="relu" if relu else None)
        y = pointwise_conv(x, self.w, self.b)
        groups, weight, bias, eps = self.gn
        return group_norm(y, groups, weight, bias, eps, residual=residual, relu=relu)


class FusedHead(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.in_index = list(head.in_index)
        self.num_classes = head.num_classes
        self.squeeze = _FusedConvGN(head.squeeze)
        ham = head.hamburger
        self.ham_in = _FusedConvGN(ham.ham_in)
        self.ham_out = _FusedConvGN(ham.ham_out)
        # NMF2D has no weights: a shallow copy keeps its settings and its way of drawing bases
        # (including a replaced ``_build_bases``) without sharing its train/eval flag
        self.nmf = copy.copy(ham.ham)
        self.nmf.is_train = False
        self.align = _FusedConvGN(head.align)
        w, b = _conv1x1(head.conv_seg)
        self.seg_w, self.seg_b = _var(w), _var(b)

    def hamburger(self, x):
        enjoy = self.ham_in(x, relu=True)  # ReLU(ham_in(x))
        n, c, h, w = enjoy.shape
        nmf = self.nmf
        d = c // nmf.S
        bases = nmf._initial_bases(n, d)
        enjoy = nmf_decompose(enjoy.reshape(n * nmf.S, d, h * w), bases, nmf.eval_steps, nmf.inv_t)
        return self.ham_out(enjoy.reshape(n, c, h, w), residual=x, relu=True)  # ReLU(x + ham_out(.))

    def execute(self, feats):
        inputs = [feats[i] for i in self.in_index]
        size = inputs[0].shape[2:]
        x = jt.concat([inputs[0]] + [resize_bilinear(f, size) for f in inputs[1:]], dim=1)
        x = self.align(self.hamburger(self.squeeze(x)))
        return pointwise_conv(x, self.seg_w, self.seg_b)


class FusedSegmentor(EncoderDecoder):
    """An ``EncoderDecoder`` for inference only, built by :func:`fuse_segmentor` (same ``inference``,
    ``slide_inference``, ``encode_decode``; other backbone and head)."""

    is_fused = True

    def __init__(self, model):  # not super().__init__: that would build an unfused model
        nn.Module.__init__(self)
        self.backbone = FusedMSCAN(model.backbone)
        self.decode_head = FusedHead(model.decode_head)
        self.test_cfg = dict(model.test_cfg)
        if getattr(model, "cfg", None) is not None:
            self.cfg = model.cfg
        self.is_train = False

    def predict_labels(self, img, out_size=None):
        """Label map (N, H, W) int32, as ``EncoderDecoder.predict_labels``; in whole-image mode the
        logits' resizes (to the input's size, then to ``out_size``) and the argmax are one kernel
        that never holds the full-size logits."""
        if self.test_cfg.get("mode", "whole") != "whole":
            return super().predict_labels(img, out_size)
        sizes = [tuple(img.shape[2:])] + ([tuple(out_size)] if out_size is not None else [])
        return resize_argmax(self.decode_head(self.extract_feat(img)), sizes)

    def loss(self, img, label):
        raise RuntimeError(
            "a fused SegNeXt is for inference only and cannot train; train the model it "
            "was fused from (init_model(..., fuse=False))"
        )

    def state_dict(self, to=None, recurse=True):
        raise RuntimeError(
            "a fused SegNeXt has no checkpoint state (its weights are folded); save the model it was fused from"
        )

    def train(self):
        """No training mode: stays in eval mode (``loss`` raises)."""
        return self


def is_fused(model):
    return getattr(model, "is_fused", False)


def fuse_segmentor(model):
    """The inference copy of ``model`` (an ``EncoderDecoder``) with folded weights and fused kernels.

    Reads the eval-mode weights (BatchNorm running statistics) as they are now; ``model`` is not
    modified and its mode is left as it was. A model that is already fused is returned as it is.
    """
    if is_fused(model):
        return model
    with jt.no_grad():
        return FusedSegmentor(model)
