"""Analytic operation count ("GFLOPs") of a SegNeXt segmentor for a given input size.

    from jsegnext.flops import count_flops
    fc = count_flops(model, (512, 512))      # batch 1, eval (7 NMF steps)
    fc.gflops                                # 6.59 for SegNeXt-T (published: 6.6)
    print(fc.table())                        # per-part breakdown

    python -m jsegnext.flops configs/segnext_t_ade20k.py --shape 512 512

Nothing is executed: the count walks the model's modules (MSCAN stages and blocks, the
LightHamHead, NMF2D) and derives every feature shape from the input size and the modules'
own attributes (conv weights' shapes, strides, paddings, groups; NMF rank and step counts), so
the largest variant at 2048×1024 is counted in milliseconds.

What is counted — the unit is one multiply-add (MAC); the tables call MACs "FLOPs"
=================================================================================
Every operation is recorded with a *kind* and a cost per image:

==========  =================================================================================
kind        cost recorded
==========  =================================================================================
conv        dense k×k convolutions (stem, patch embeddings): out_elements · (C_in/groups) · kh · kw
dwconv      depthwise convs (MSCA 5×5, the 1×k / k×1 strips, the Mlp 3×3): out_elements · kh · kw
pwconv      1×1 convolutions (``Conv1x1``, 1×1 ``nn.Conv2d``): out_elements · C_in
matmul      NMF2D matrix products, (n×m)·(m×p) = n·m·p: the initial xᵀ·B; in each multiplicative
            update xᵀB, BᵀB, coef·(BᵀB) (coef update) and x·coef, coefᵀcoef, B·(coefᵀcoef)
            (bases update); the final coef update; the reconstruction B·coefᵀ
mul         element-wise products, one per output element: layer scales (2 per block), MSCA's
            ``attn * u``, NMF's ``inv_t * xᵀB`` and the ``coef * num`` / ``bases * num`` of each update
norm        BatchNorm, GroupNorm and the per-stage LayerNorm (all affine): one per element
resize      bilinear resize (the head's stride-16/32 inputs, the logits to the input size):
            4 per output element (a weighted sum of 4 neighbours)
bias        conv biases: one per output element
act         GELU / ReLU: one per element
eltwise     additions (residuals, MSCA branch sum), NMF's ``+ eps`` and division: one per element
softmax     NMF's initial softmax over R: one per element
==========  =================================================================================

A *convention* is the set of kinds summed:

* ``'published'`` (default) = conv + dwconv + pwconv + matmul + mul + norm + resize. These are
  the rules of ``torchprofile.profile_macs``, which the reference repository's
  ``tools/get_flops.py`` runs on ``forward_dummy`` (= whole-image ``encode_decode``: backbone,
  head, and the resize of the logits to the input size) of the eval-mode model at batch 1: it
  counts ``_convolution`` (MACs, bias not counted), ``bmm``/``matmul`` (MACs), ``mul`` (one per
  output element), ``batch_norm``/``group_norm``/``layer_norm`` (one per element) and
  ``upsample_bilinear2d`` (4 per output element), and nothing for GELU, ReLU, softmax, add, div.
  Eval mode means 7 NMF updates (``eval_steps``). With it, the published figures (SegNeXt-T/S/B/L
  on ADE20K, 150 classes, 512×512: 6.6 / 15.9 / 34.9 / 70.0; T on Cityscapes, 19 classes,
  2048×1024: 50.5) are reproduced within 0.5 % (tests/test_flops.py), and so are S and B on
  Cityscapes at 2048×1024 (124.6, 275.7); the one outlier is L on Cityscapes, 553.7 against a
  published 577.5 (-4.1 %, unexplained). The 2048×1024 figures are those of the Cityscapes models
  (19 classes): with the ADE20K head T counts 52.7 there. The NMF products matter: without them
  B and L come out 7–8 % low.
  (The reference's head also "resizes" its stride-8 input to its own size, a copy that
  torchprofile charges 4 per element; jsegnext does not run that copy and does not count it —
  0.02–0.1 % of the total.)
* ``'macs'`` = conv + dwconv + pwconv + matmul: multiply-adds of convolutions and matrix products.
* ``'all'`` = every kind above: a fuller count of the arithmetic (transcendental functions —
  exp, erf, sqrt — count one per element).

Not counted in any convention: the random draw and L2 normalisation of the NMF bases (O(D·R)),
concatenation, reshapes and copies, dropout / drop-path (identity in eval), and the loss.
``training=True`` counts ``train_steps`` NMF updates instead of ``eval_steps`` (the forward
only; a backward pass costs about twice the forward again). Slide inference is not modelled: the
count is for one whole-image forward of the given size, as the published tables use.
"""
import argparse
import math
from collections import OrderedDict

from .runtime import jt

KINDS = ("conv", "dwconv", "pwconv", "matmul", "mul", "norm", "resize", "bias", "act", "eltwise", "softmax")
CONVENTIONS = {
    "published": ("conv", "dwconv", "pwconv", "matmul", "mul", "norm", "resize"),
    "macs": ("conv", "dwconv", "pwconv", "matmul"),
    "all": KINDS,
}

#: state_dict entries that are buffers, not parameters
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def count_parameters(model):
    """Number of learnable values (BatchNorm running statistics excluded); shared Vars counted once."""
    seen, total = set(), 0
    for name, var in model.state_dict().items():
        if not isinstance(var, jt.Var) or name.endswith(BUFFER_SUFFIXES) or id(var) in seen:
            continue
        seen.add(id(var))
        total += int(math.prod(var.shape))
    return total


def _numel(shape):
    return int(math.prod(shape))


def _pair(value, default):
    if value is None:
        return default
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    return value if len(value) == 2 else (value[0], value[0])


class FlopCount:
    """The recorded operations of one count, with totals and breakdowns.

    ``ops``: list of ``(name, part, kind, count)``; ``shapes``: feature shapes met on the way
    (``'backbone.stage1'`` … ``'logits'``, NCHW tuples).
    """

    def __init__(self, input_shape, convention="published", training=False):
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.convention = convention
        self.training = training
        self.ops = []
        self.shapes = OrderedDict()
        self.nmf_steps = None

    def add(self, name, part, kind, count):
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}")
        if count:
            self.ops.append((name, part, kind, int(count)))

    def _kinds(self, convention):
        convention = convention or self.convention
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
        return CONVENTIONS[convention]

    def total(self, convention=None):
        kinds = self._kinds(convention)
        return sum(c for _, _, k, c in self.ops if k in kinds)

    @property
    def flops(self):
        return self.total()

    @property
    def gflops(self):
        return self.total() / 1e9

    def by_part(self, convention=None):
        kinds, out = self._kinds(convention), OrderedDict()
        for _, part, kind, count in self.ops:
            out.setdefault(part, 0)
            if kind in kinds:
                out[part] += count
        return out

    def by_kind(self):
        out = OrderedDict((k, 0) for k in KINDS)
        for _, _, kind, count in self.ops:
            out[kind] += count
        return out

    def by_name(self, convention=None):
        kinds, out = self._kinds(convention), OrderedDict()
        for name, _, kind, count in self.ops:
            if kind in kinds:
                out[name] = out.get(name, 0) + count
        return out

    def summary(self):
        """Grouped parts: backbone stages, head without NMF, NMF, final resize."""
        parts = self.by_part()
        groups = OrderedDict()
        for part, count in parts.items():
            key = part if part.startswith("backbone") or part == "head.nmf" else (
                "head (w/o NMF)" if part.startswith("head") else part)
            groups[key] = groups.get(key, 0) + count
        return groups

    def table(self):
        total = self.total()
        n, c, h, w = self.input_shape
        lines = [f"input {n}x{c}x{h}x{w}, convention '{self.convention}', "
                 f"{'train' if self.training else 'eval'} (NMF steps {self.nmf_steps})",
                 f"{'part':<22}{'GFLOPs':>10}{'share':>8}"]
        for part, count in self.by_part().items():
            lines.append(f"{part:<22}{count / 1e9:>10.3f}{100 * count / max(total, 1):>7.1f}%")
        lines.append(f"{'total':<22}{total / 1e9:>10.3f}")
        kinds = self.by_kind()
        included = self._kinds(None)
        lines.append("by kind (GFLOPs; * = in this convention): " + ", ".join(
            f"{k}{'*' if k in included else ''} {v / 1e9:.3f}" for k, v in kinds.items() if v))
        for name in CONVENTIONS:
            if name != self.convention:
                lines.append(f"convention '{name}': {self.total(name) / 1e9:.3f} GFLOPs")
        return "\n".join(lines)

    def to_dict(self):
        return {
            "input_shape": list(self.input_shape),
            "convention": self.convention,
            "training": self.training,
            "nmf_steps": self.nmf_steps,
            "gflops": self.gflops,
            "flops": self.total(),
            "by_part": dict(self.by_part()),
            "by_kind": dict(self.by_kind()),
            "totals": {name: self.total(name) for name in CONVENTIONS},
        }


# ----------------------------------------------------------------------------------- primitives
def conv_shape_and_macs(conv, shape):
    """(output shape, MACs without bias, kind) of a 2-D convolution ``conv`` on an NCHW ``shape``.

    Works for Jittor's ``nn.Conv2d`` (kernel from the weight; stride, padding, dilation and groups
    from the module), jsegnext's ``Conv1x1`` and strip convolutions exposing only ``weight``
    (stride 1, 'same' padding).
    """
    n, c_in, h, w = shape
    c_out, c_per_group, kh, kw = (int(s) for s in conv.weight.shape)
    if c_in % c_per_group:
        raise ValueError(f"conv with weight {tuple(conv.weight.shape)} cannot take {c_in} input channels")
    groups = c_in // c_per_group
    if isinstance(conv, jt.nn.Conv):
        sh, sw = _pair(conv.stride, (1, 1))
        ph, pw = _pair(conv.padding, (0, 0))
        dh, dw = _pair(conv.dilation, (1, 1))
    else:  # Conv1x1, strip convolutions: stride 1, 'same' padding
        (sh, sw), (ph, pw), (dh, dw) = (1, 1), (kh // 2, kw // 2), (1, 1)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = (n, c_out, ho, wo)
    macs = _numel(out) * c_per_group * kh * kw
    if kh == kw == 1 and groups == 1:
        kind = "pwconv"
    elif groups > 1 and groups == c_in and c_per_group == 1:
        kind = "dwconv"
    else:
        kind = "conv"
    return out, macs, kind


class _Walker:
    def __init__(self, fc):
        self.fc = fc

    def conv(self, name, part, conv, shape):
        out, macs, kind = conv_shape_and_macs(conv, shape)
        self.fc.add(name, part, kind, macs)
        if getattr(conv, "bias", None) is not None:
            self.fc.add(name + ".bias", part, "bias", _numel(out))
        return out

    def elementwise(self, name, part, kind, shape, times=1):
        self.fc.add(name, part, kind, times * _numel(shape))

    def resize(self, name, part, shape, size):
        n, c, h, w = shape
        out = (n, c, int(size[0]), int(size[1]))
        if (h, w) != out[2:]:  # resize_bilinear returns its input unchanged at the same size
            self.fc.add(name, part, "resize", 4 * _numel(out))
        return out

    # --------------------------------------------------------------------------- backbone
    def sequential(self, name, part, seq, shape):
        layers = list(seq.layers.items()) if hasattr(seq, "layers") else list(enumerate(seq))
        for key, layer in layers:
            lname = f"{name}.{key}"
            if hasattr(layer, "weight") and layer.weight is not None and len(layer.weight.shape) == 4:
                shape = self.conv(lname, part, layer, shape)
            elif _is_norm(layer):
                self.elementwise(lname, part, "norm", shape)
            else:
                self.elementwise(lname, part, "act", shape)
        return shape

    def patch_embed(self, name, part, embed, shape):
        if isinstance(getattr(embed, "proj", None), jt.nn.Sequential):
            return self.sequential(name + ".proj", part, embed.proj, shape)
        shape = self.conv(name + ".proj", part, embed.proj, shape)
        if getattr(embed, "norm", None) is not None:
            self.elementwise(name + ".norm", part, "norm", shape)
        return shape

    def msca(self, name, part, sgu, shape):
        a = self.conv(name + ".conv0", part, sgu.conv0, shape)
        branches = 0
        while hasattr(sgu, f"conv{branches}_1"):
            s = self.conv(f"{name}.conv{branches}_1", part, getattr(sgu, f"conv{branches}_1"), a)
            self.conv(f"{name}.conv{branches}_2", part, getattr(sgu, f"conv{branches}_2"), s)
            branches += 1
        self.elementwise(name + ".branch_sum", part, "eltwise", a, times=branches)
        out = self.conv(name + ".conv3", part, sgu.conv3, a)
        self.elementwise(name + ".gate", part, "mul", out)  # attn * u
        return out

    def block(self, name, part, blk, shape):
        self.elementwise(name + ".norm1", part, "norm", shape)
        attn = blk.attn
        s = self.conv(name + ".attn.proj_1", part, attn.proj_1, shape)
        self.elementwise(name + ".attn.act", part, "act", s)
        s = self.msca(name + ".attn.spatial_gating_unit", part, attn.spatial_gating_unit, s)
        s = self.conv(name + ".attn.proj_2", part, attn.proj_2, s)
        self.elementwise(name + ".attn.shortcut", part, "eltwise", s)
        self.elementwise(name + ".layer_scale_1", part, "mul", s)
        self.elementwise(name + ".residual1", part, "eltwise", s)
        self.elementwise(name + ".norm2", part, "norm", shape)
        mlp = blk.mlp
        s = self.conv(name + ".mlp.fc1", part, mlp.fc1, shape)
        s = self.conv(name + ".mlp.dwconv.dwconv", part, mlp.dwconv.dwconv, s)
        self.elementwise(name + ".mlp.act", part, "act", s)
        s = self.conv(name + ".mlp.fc2", part, mlp.fc2, s)
        self.elementwise(name + ".layer_scale_2", part, "mul", s)
        self.elementwise(name + ".residual2", part, "eltwise", s)
        return s

    def backbone(self, bb, shape):
        outs = []
        for i in range(1, bb.num_stages + 1):
            part, prefix = f"backbone.stage{i}", "backbone"
            shape = self.patch_embed(f"{prefix}.patch_embed{i}", part, getattr(bb, f"patch_embed{i}"), shape)
            for j, blk in enumerate(getattr(bb, f"block{i}")):
                shape = self.block(f"{prefix}.block{i}.{j}", part, blk, shape)
            self.elementwise(f"{prefix}.norm{i}", part, "norm", shape)
            self.fc.shapes[part] = shape
            outs.append(shape)
        return outs

    # --------------------------------------------------------------------------- head
    def conv_module(self, name, part, module, shape):
        shape = self.conv(name + ".conv", part, module.conv, shape)
        if getattr(module, "gn", None) is not None:
            self.elementwise(name + ".gn", part, "norm", shape)
        if getattr(module, "relu", False):
            self.elementwise(name + ".relu", part, "act", shape)
        return shape

    def nmf(self, name, part, ham, shape):
        n, c, h, w = shape
        s, r = ham.S, ham.R
        d, m, b = c // s, h * w, n * s  # b matrices of shape (d, m), rank r
        steps = ham.train_steps if self.fc.training else ham.eval_steps
        self.fc.nmf_steps = steps
        add = self.fc.add
        add(name + ".init.xtb", part, "matmul", b * m * d * r)
        add(name + ".init.inv_t", part, "mul", b * m * r)
        add(name + ".init.softmax", part, "softmax", b * m * r)

        def coef_update(tag):
            add(f"{name}.{tag}.coef.xtb", part, "matmul", b * m * d * r)       # xᵀB: (m,d)(d,r)
            add(f"{name}.{tag}.coef.btb", part, "matmul", b * r * d * r)       # BᵀB: (r,d)(d,r)
            add(f"{name}.{tag}.coef.cbtb", part, "matmul", b * m * r * r)      # coef(BᵀB): (m,r)(r,r)
            add(f"{name}.{tag}.coef.mul", part, "mul", b * m * r)
            add(f"{name}.{tag}.coef.div", part, "eltwise", 2 * b * m * r)      # + eps, division

        for step in range(steps):
            coef_update(f"step{step}")
            add(f"{name}.step{step}.bases.xc", part, "matmul", b * d * m * r)  # x·coef: (d,m)(m,r)
            add(f"{name}.step{step}.bases.ctc", part, "matmul", b * r * m * r)  # coefᵀcoef: (r,m)(m,r)
            add(f"{name}.step{step}.bases.bctc", part, "matmul", b * d * r * r)  # B(coefᵀcoef): (d,r)(r,r)
            add(f"{name}.step{step}.bases.mul", part, "mul", b * d * r)
            add(f"{name}.step{step}.bases.div", part, "eltwise", 2 * b * d * r)
        coef_update("final")
        add(name + ".reconstruct", part, "matmul", b * d * r * m)              # B·coefᵀ: (d,r)(r,m)
        return shape

    def head(self, head, feats):
        inputs = [feats[i] for i in head.in_index]
        size = inputs[0][2:]
        part = "head.squeeze"
        resized = [inputs[0]] + [self.resize(f"decode_head.resize{k + 1}", part, f, size)
                                 for k, f in enumerate(inputs[1:])]
        shape = (resized[0][0], sum(f[1] for f in resized)) + tuple(size)
        shape = self.conv_module("decode_head.squeeze", part, head.squeeze, shape)
        hamburger, part = head.hamburger, "head.hamburger"
        s = self.conv_module("decode_head.hamburger.ham_in", part, hamburger.ham_in, shape)
        self.elementwise("decode_head.hamburger.relu_in", part, "act", s)
        s = self.nmf("decode_head.hamburger.ham", "head.nmf", hamburger.ham, s)
        s = self.conv_module("decode_head.hamburger.ham_out", part, hamburger.ham_out, s)
        self.elementwise("decode_head.hamburger.add", part, "eltwise", s)
        self.elementwise("decode_head.hamburger.relu_out", part, "act", s)
        s = self.conv_module("decode_head.align", "head.align", head.align, s)
        s = self.conv("decode_head.conv_seg", "head.cls_seg", head.conv_seg, s)
        self.fc.shapes["head"] = s
        return s


def _is_norm(module):
    name = type(module).__name__
    return "Norm" in name


def count_flops(model, shape=(512, 512), batch=1, convention="published", training=False):
    """Count the operations of ``model`` (an ``EncoderDecoder``) on a ``batch``×3×H×W input.

    ``shape``: (H, W) or (C, H, W). Returns a :class:`FlopCount`; ``.gflops`` is the total in the
    chosen convention (see the module docstring), ``.table()`` a per-part breakdown.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (3,) + shape
    if len(shape) != 3:
        raise ValueError(f"shape must be (H, W) or (C, H, W), got {shape}")
    in_shape = (int(batch),) + shape
    fc = FlopCount(in_shape, convention, training)
    walker = _Walker(fc)
    feats = walker.backbone(model.backbone, in_shape)
    logits = walker.head(model.decode_head, feats)
    logits = walker.resize("resize_to_input", "resize", logits, in_shape[2:])
    fc.shapes["logits"] = logits
    return fc


def count_nmf(ham, shape, training=False, convention="published"):
    """Count one ``NMF2D`` module alone on an NCHW ``shape`` (part ``'head.nmf'``)."""
    fc = FlopCount(shape, convention, training)
    _Walker(fc).nmf("ham", "head.nmf", ham, tuple(int(s) for s in shape))
    return fc


def count_conv(conv, shape):
    """Count one convolution (``nn.Conv2d``, ``Conv1x1``, strip conv) on an NCHW ``shape``."""
    fc = FlopCount(shape, "all")
    _Walker(fc).conv("conv", "conv", conv, tuple(int(s) for s in shape))
    return fc


def count_flops_config(config, shape=(512, 512), batch=1, convention="published", training=False,
                       options=None):
    """Build the segmentor of ``config`` (path, Config or dict) and count it; no weights needed."""
    from .apis import load_config
    from .models import build_segmentor

    cfg = load_config(config, options)
    return count_flops(build_segmentor(cfg.model), shape, batch, convention, training)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Count the GFLOPs (multiply-adds) of a jsegnext config")
    parser.add_argument("config")
    parser.add_argument("--shape", type=int, nargs="+", default=[512, 512], help="H W (or one size)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--convention", choices=sorted(CONVENTIONS), default="published")
    parser.add_argument("--train", action="store_true", help="count train_steps NMF updates")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--detail", action="store_true", help="also list every counted operation")
    args = parser.parse_args(argv)
    shape = args.shape * 2 if len(args.shape) == 1 else args.shape
    from .apis import load_config
    from .models import build_segmentor

    model = build_segmentor(load_config(args.config, args.cfg_options).model)
    fc = count_flops(model, shape, args.batch, args.convention, args.train)
    print(f"{args.config}: {count_parameters(model) / 1e6:.2f} M parameters")
    print(fc.table())
    if args.detail:
        for name, count in fc.by_name().items():
            print(f"  {name:<60}{count / 1e6:>12.3f} M")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
