"""Operation count ("GFLOPs") of a model, read off a forward pass of the model itself.

    from jsegnext.flops import count_flops
    fc = count_flops(model, (512, 512))      # batch 1, eval (7 NMF steps)
    fc.gflops                                # 6.59 for SegNeXt-T (published: 6.6)
    print(fc.table())                        # per-part breakdown

    python -m jsegnext.flops configs/segnext_t_ade20k.py --shape 512 512

How: forward hooks on every module of the model record each call's input and output shapes, and a
rule per module type (:data:`RULES`) turns them into the operations the module does itself: a
convolution its multiply-adds, a norm one per element, a ``Block`` its residual additions and
layer-scale products, ``NMF2D`` its matrix products. Whatever the model is made of — another
strip-conv implementation, convolutions with batch norm folded in — the count is of the modules
it actually runs. The forward pass is only built: Jittor executes nothing until a result is read,
so counting the largest variant at 2048×1024 takes about a second and no memory. It runs under
``no_grad`` with every module in eval mode (restored afterwards; BatchNorm statistics are not
touched); ``training=True`` counts ``train_steps`` NMF updates instead of ``eval_steps``.

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
concatenation, reshapes and copies, dropout / drop-path (identity in eval), and the loss. A
backward pass costs about twice the forward again. Slide inference is not modelled: the count is
for one whole-image forward of the given size, as the published tables use. A module type without
a rule counts nothing itself (its submodules still count): give a new layer a rule.
"""

import argparse
import math
import re
from collections import OrderedDict

from .models.ham_head import NMF2D, Hamburger, LightHamHead
from .models.layers import BatchNorm2d, ChannelLayerNorm, Conv1x1, ConvModule, GroupNorm
from .models.mscan import GELU, AttentionModule, Block, Mlp, SpatialAttention
from .models.segmentor import EncoderDecoder
from .ops.depthwise_conv import DepthwiseConv2d
from .ops.strip_conv import StripConv
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


class FlopCount:
    """The recorded operations of one count, with totals and breakdowns.

    ``ops``: list of ``(name, part, kind, count)``; ``shapes``: the output shape of every module
    call by module path (``''``: the counted module; a list of shapes for a list of outputs).
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
            key = (
                part
                if part.startswith("backbone") or part == "head.nmf"
                else ("head (w/o NMF)" if part.startswith("head") else part)
            )
            groups[key] = groups.get(key, 0) + count
        return groups

    def table(self):
        total = self.total()
        n, c, h, w = self.input_shape
        lines = [
            f"input {n}x{c}x{h}x{w}, convention '{self.convention}', "
            f"{'train' if self.training else 'eval'} (NMF steps {self.nmf_steps})",
            f"{'part':<22}{'GFLOPs':>10}{'share':>8}",
        ]
        for part, count in self.by_part().items():
            lines.append(f"{part:<22}{count / 1e9:>10.3f}{100 * count / max(total, 1):>7.1f}%")
        lines.append(f"{'total':<22}{total / 1e9:>10.3f}")
        kinds = self.by_kind()
        included = self._kinds(None)
        lines.append(
            "by kind (GFLOPs; * = in this convention): "
            + ", ".join(f"{k}{'*' if k in included else ''} {v / 1e9:.3f}" for k, v in kinds.items() if v)
        )
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


# ----------------------------------------------------------------------------------- rules
# rule(counter, module, x, y): the operations ``module`` does itself on input shape ``x`` (its first
# argument: a shape, or a list of shapes) giving output shape ``y``; submodules count their own.


def _conv(counter, conv, x, y):
    """Any convolution with a [C_out, C_in/groups, kh, kw] weight: MACs without the bias."""
    _, c_per_group, kh, kw = (int(s) for s in conv.weight.shape)
    groups = x[1] // c_per_group
    if kh == kw == 1 and groups == 1:
        kind = "pwconv"
    elif groups > 1 and groups == x[1] and c_per_group == 1:
        kind = "dwconv"
    else:
        kind = "conv"
    counter.add(conv, "", kind, _numel(y) * c_per_group * kh * kw)
    if getattr(conv, "bias", None) is not None:
        counter.add(conv, "bias", "bias", _numel(y))


def _per_element(kind):
    def rule(counter, module, x, y):
        counter.add(module, "", kind, _numel(y))

    return rule


def _conv_module(counter, module, x, y):
    if module.relu:
        counter.add(module, "relu", "act", _numel(y))


def _attention(counter, module, x, y):
    """MSCA: conv3(a + Σ v_i(h_i(a))) * u. With the fused strip op (``msca_strips``) the strip convs'
    weights are used without calling the strip modules: they are counted here, on a's shape (that
    of u: the 5×5 conv0 and the strips keep it)."""
    strips = [m for m in module._modules.values() if hasattr(m, "weight") and m.weight.shape[2] != m.weight.shape[3]]
    for strip in strips:
        if not counter.ran_inside(strip, module):
            _conv(counter, strip, x, x)
    counter.add(module, "branch_sum", "eltwise", len(strips) // 2 * _numel(x))
    counter.add(module, "gate", "mul", _numel(y))


def _spatial_attention(counter, module, x, y):
    counter.add(module, "act", "act", _numel(counter.output_of(module.proj_1)))
    counter.add(module, "shortcut", "eltwise", _numel(y))


def _mlp(counter, module, x, y):
    counter.add(module, "act", "act", _numel(counter.output_of(module.dwconv)))


def _block(counter, module, x, y):
    counter.add(module, "layer_scales", "mul", 2 * _numel(y))
    counter.add(module, "residuals", "eltwise", 2 * _numel(y))


def _hamburger(counter, module, x, y):
    counter.add(module, "relu_in", "act", _numel(counter.output_of(module.ham_in)))
    counter.add(module, "add", "eltwise", _numel(y))
    counter.add(module, "relu_out", "act", _numel(y))


def _nmf(counter, ham, x, y):
    n, c, h, w = x
    s, r = ham.S, ham.R
    d, m, b = c // s, h * w, n * s  # b matrices of shape (d, m), rank r
    steps = ham.train_steps if counter.fc.training else ham.eval_steps
    counter.fc.nmf_steps = steps
    add = counter.add
    add(ham, "init.xtb", "matmul", b * m * d * r)
    add(ham, "init.inv_t", "mul", b * m * r)
    add(ham, "init.softmax", "softmax", b * m * r)

    def coef_update(tag):
        add(ham, f"{tag}.coef.xtb", "matmul", b * m * d * r)  # xᵀB: (m,d)(d,r)
        add(ham, f"{tag}.coef.btb", "matmul", b * r * d * r)  # BᵀB: (r,d)(d,r)
        add(ham, f"{tag}.coef.cbtb", "matmul", b * m * r * r)  # coef(BᵀB): (m,r)(r,r)
        add(ham, f"{tag}.coef.mul", "mul", b * m * r)
        add(ham, f"{tag}.coef.div", "eltwise", 2 * b * m * r)  # + eps, division

    for step in range(steps):
        coef_update(f"step{step}")
        add(ham, f"step{step}.bases.xc", "matmul", b * d * m * r)  # x·coef: (d,m)(m,r)
        add(ham, f"step{step}.bases.ctc", "matmul", b * r * m * r)  # coefᵀcoef: (r,m)(m,r)
        add(ham, f"step{step}.bases.bctc", "matmul", b * d * r * r)  # B(coefᵀcoef): (d,r)(r,r)
        add(ham, f"step{step}.bases.mul", "mul", b * d * r)
        add(ham, f"step{step}.bases.div", "eltwise", 2 * b * d * r)
    coef_update("final")
    add(ham, "reconstruct", "matmul", b * d * r * m)  # B·coefᵀ: (d,r)(r,m)


def _resize(counter, module, op, src, size):
    """A bilinear resize of ``src`` to ``size`` (none when the size is the same)."""
    if tuple(src[2:]) != tuple(size):
        counter.add(module, op, "resize", 4 * src[0] * src[1] * _numel(size))


def _light_ham_head(counter, head, feats, y):
    inputs = [feats[i] for i in head.in_index]
    for f in inputs[1:]:
        _resize(counter, head, "resize", f, inputs[0][2:])


def _encoder_decoder(counter, model, img, y):
    _resize(counter, model, "resize", counter.output_of(model.decode_head), img[2:])


#: module type -> rule (looked up along the type's MRO)
RULES = {
    jt.nn.Conv: _conv,
    Conv1x1: _conv,
    StripConv: _conv,
    DepthwiseConv2d: _conv,
    BatchNorm2d: _per_element("norm"),
    GroupNorm: _per_element("norm"),
    ChannelLayerNorm: _per_element("norm"),
    jt.nn.BatchNorm: _per_element("norm"),
    jt.nn.GroupNorm: _per_element("norm"),
    jt.nn.LayerNorm: _per_element("norm"),
    GELU: _per_element("act"),
    jt.nn.ReLU: _per_element("act"),
    ConvModule: _conv_module,
    AttentionModule: _attention,
    SpatialAttention: _spatial_attention,
    Mlp: _mlp,
    Block: _block,
    Hamburger: _hamburger,
    NMF2D: _nmf,
    LightHamHead: _light_ham_head,
    EncoderDecoder: _encoder_decoder,
}


def _rule(module):
    return next((RULES[t] for t in type(module).__mro__ if t in RULES), None)


def _shape(value):
    if isinstance(value, jt.Var):
        return tuple(int(s) for s in value.shape)
    if isinstance(value, (list, tuple)):
        return [_shape(v) for v in value]
    return None


def _part(path, module, op):
    """Breakdown label: ``backbone.stage<i>``, ``head.<component>`` (``head.nmf`` for the
    decomposition, ``head.resize`` for the head's own resizes), the op for the counted module's own
    (``resize`` for a segmentor's)."""
    if isinstance(module, NMF2D):
        return "head.nmf"
    names = path.split(".") if path else []
    if not names:
        return op or type(module).__name__
    if names[0] == "backbone" and len(names) > 1:
        stage = re.search(r"\d+$", names[1])
        return f"backbone.stage{stage.group()}" if stage else f"backbone.{names[1]}"
    if names[0] == "decode_head":
        return f"head.{names[1] if len(names) > 1 else op}"
    return names[0]


class _Counter:
    """The pre- and post-forward hooks of one count: the order of module calls, their output
    shapes, and the operations of each call."""

    def __init__(self, fc, model):
        self.fc = fc
        self.paths = {id(m): path for path, m in model.named_modules()}
        self.step = 0
        self.entered, self.finished, self.outputs = {}, {}, {}

    def pre(self, module, args):
        self.step += 1
        self.entered[id(module)] = self.step

    def post(self, module, args, output):
        rule = _rule(module)
        out = _shape(output)
        if rule is not None:
            rule(self, module, _shape(args[0]) if args else None, out)
        self.step += 1
        self.finished[id(module)] = self.step
        self.outputs[id(module)] = out
        self.fc.shapes[self.paths[id(module)]] = out

    def ran_inside(self, child, parent):
        """Whether ``child`` was called during the current call of ``parent``."""
        return self.finished.get(id(child), -1) > self.entered[id(parent)]

    def output_of(self, module):
        return self.outputs[id(module)]

    def add(self, module, op, kind, count):
        path = self.paths[id(module)]
        self.fc.add(".".join(p for p in (path, op) if p), _part(path, module, op), kind, count)


#: what counting changes on each module (and restores): its mode and Jittor's forward (pre-)hooks
_MODULE_STATE = ("is_train", "__fhook__", "__fhook2__")


def count_module(module, input_shape, convention="published", training=False):
    """Count the operations of ``module`` (any Jittor module) called on one NCHW input of
    ``input_shape``. Returns a :class:`FlopCount`."""
    input_shape = tuple(int(s) for s in input_shape)
    fc = FlopCount(input_shape, convention, training)
    counter = _Counter(fc, module)
    modules = [m for _, m in module.named_modules()]
    saved = [(m, {k: m.__dict__[k] for k in _MODULE_STATE if k in m.__dict__}) for m in modules]
    try:
        for m in modules:
            m.is_train = False  # eval: no running-statistics updates, no dropout
            m.register_pre_forward_hook(counter.pre)
            m.register_forward_hook(counter.post)
        with jt.no_grad():
            module(jt.zeros(input_shape))  # built, never executed
    finally:
        for m, attrs in saved:
            for k in _MODULE_STATE:
                m.__dict__.pop(k, None)
            m.__dict__.update(attrs)
    return fc


def count_flops(model, shape=(512, 512), batch=1, convention="published", training=False):
    """Count the operations of ``model`` (an ``EncoderDecoder``, or any module taking an image) on
    a ``batch``×3×H×W input.

    ``shape``: (H, W) or (C, H, W). Returns a :class:`FlopCount`; ``.gflops`` is the total in the
    chosen convention (see the module docstring), ``.table()`` a per-part breakdown.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (3,) + shape
    if len(shape) != 3:
        raise ValueError(f"shape must be (H, W) or (C, H, W), got {shape}")
    return count_module(model, (int(batch),) + shape, convention, training)


def count_flops_config(config, shape=(512, 512), batch=1, convention="published", training=False, options=None):
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
