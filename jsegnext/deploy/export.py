"""Export a jsegnext segmentor to ONNX: image (N, 3, H, W) → logits (N, classes, H, W).

The graph is written from the modules themselves, one emitter per module class (:data:`EMITTERS`),
each reading the module's parameters as NumPy and appending standard ONNX ops. It is the eval-mode
network: BatchNorm with its running statistics (folded into one multiply-add), dropout and drop
path left out, NMF2D's ``eval_steps`` updates unrolled. To support a new module, write
``emit_<module>(g, module, name, *inputs)`` and add it to the table.

NMF2D's initial bases are the one thing that differs from jsegnext's default behaviour. The
reference (and jsegnext without ``ham_kwargs.seed``) draws new random bases on every forward pass;
the graph holds one fixed (S, D, R) set as a constant, shared by every sample of a batch: the bases
that ``NMF2D.seeded_bases`` draws from ``ham_kwargs.seed``, or from :data:`DEFAULT_NMF_SEED` when
the config sets none. A jsegnext model with the same seed gives the same outputs.
"""

import math

import numpy as np

from ..checkpoint_io import atomic_write_bytes
from ..errors import DeployError, MissingDependencyError
from ..models.fuse import is_fused
from ..models.ham_head import NMF2D, Hamburger, LightHamHead
from ..models.layers import BatchNorm2d, ChannelLayerNorm, Conv1x1, ConvModule, DropPath, GroupNorm
from ..models.mscan import (
    GELU,
    MSCAN,
    AttentionModule,
    Block,
    DWConv,
    Mlp,
    OverlapPatchEmbed,
    SpatialAttention,
    StemConv,
)
from ..models.segmentor import EncoderDecoder
from ..ops.depthwise_conv import DepthwiseConv2d
from ..ops.strip_conv import StripConv
from ..runtime import jt
from .graph import MIN_OPSET, MISSING, GraphBuilder, onnx, tensor_info

DEFAULT_OPSET = 17
#: Seed of the NMF bases when the config's ``ham_kwargs`` has none.
DEFAULT_NMF_SEED = 0

INPUT, OUTPUT = "image", "logits"


class ExportError(DeployError):
    """The model cannot be exported as asked (unknown module, bad shape or opset)."""


def _array(var):
    return np.asarray(var.numpy(), dtype=np.float32)


def _child(g, module, name, attr, *inputs, **kwargs):
    return emit(g, getattr(module, attr), f"{name}.{attr}" if name else attr, *inputs, **kwargs)


def emit(g, module, name, *inputs, **kwargs):
    """Append the ops of ``module`` (named ``name``) applied to ``inputs``; returns its output(s)."""
    emitter = EMITTERS.get(type(module))
    if emitter is None:
        raise ExportError(
            f"no ONNX emitter for {type(module).__name__} (at {name or 'the model'!r}); "
            "add one to jsegnext.deploy.export.EMITTERS"
        )
    return emitter(g, module, name, *inputs, **kwargs)


# ----------------------------------------------------------------------------- element-wise pieces
def _per_channel(g, values, hint):
    return g.const(np.asarray(values, np.float32).reshape(1, -1, 1, 1), hint)


def _scalar(g, value):
    return g.const(np.float32(value), "scalar")


def gelu(g, x, hint):
    """Exact GELU, ``0.5·x·(1 + erf(x/√2))``, in jsegnext's order of operations."""
    erf = g.op("Erf", [g.op("Mul", [x, _scalar(g, 1.0 / math.sqrt(2.0))], f"{hint}.scaled")], f"{hint}.erf")
    half = g.op("Mul", [x, _scalar(g, 0.5)], f"{hint}.half")
    return g.op("Mul", [half, g.op("Add", [erf, _scalar(g, 1.0)], f"{hint}.erf1")], hint)


def _normalise(g, x, axis, eps, hint):
    """``(x − mean) / sqrt(var + eps)`` over ``axis`` with the centred (two-pass) variance."""
    centred = g.op("Sub", [x, g.reduce_mean(x, [axis], f"{hint}.mean")], f"{hint}.centred")
    var = g.reduce_mean(g.op("Mul", [centred, centred], f"{hint}.sq"), [axis], f"{hint}.var")
    std = g.op("Sqrt", [g.op("Add", [var, _scalar(g, eps)], f"{hint}.var_eps")], f"{hint}.std")
    return g.op("Div", [centred, std], f"{hint}.normed")


def _affine(g, x, weight, bias, hint):
    scaled = g.op("Mul", [x, _per_channel(g, weight, f"{hint}.weight")], f"{hint}.scaled")
    return g.op("Add", [scaled, _per_channel(g, bias, f"{hint}.bias")], hint)


def _conv(g, x, name, weight, bias=None, stride=(1, 1), padding=(0, 0), groups=1, dilation=(1, 1)):
    inputs = [x, g.const(weight, f"{name}.weight")]
    if bias is not None:
        inputs.append(g.const(bias, f"{name}.bias"))
    return g.op(
        "Conv",
        inputs,
        name,
        kernel_shape=list(weight.shape[2:]),
        strides=list(stride),
        pads=[padding[0], padding[1], padding[0], padding[1]],
        group=groups,
        dilations=list(dilation),
    )


# ----------------------------------------------------------------------------- layers
def emit_conv2d(g, m, name, x):
    return _conv(
        g,
        x,
        name,
        _array(m.weight),
        None if m.bias is None else _array(m.bias),
        m.stride,
        m.padding,
        m.groups,
        m.dilation,
    )


def emit_conv1x1(g, m, name, x):
    return _conv(g, x, name, _array(m.weight), None if m.bias is None else _array(m.bias))


def emit_strip_conv(g, m, name, x):
    k = m.kernel_size
    padding = (0, k // 2) if m.orientation == "h" else (k // 2, 0)
    return _conv(
        g, x, name, _array(m.weight), None if m.bias is None else _array(m.bias), padding=padding, groups=m.channels
    )


def emit_depthwise_conv(g, m, name, x):
    k = m.kernel_size
    return _conv(
        g,
        x,
        name,
        _array(m.weight),
        None if m.bias is None else _array(m.bias),
        padding=(k // 2, k // 2),
        groups=m.channels,
    )


def emit_batch_norm(g, m, name, x):
    """Running statistics folded as jsegnext computes them: ``x·scale + (bias − mean·scale)``."""
    var, mean = _array(m.running_var), _array(m.running_mean)
    scale = _array(m.weight) / np.sqrt(var + np.float32(m.eps))
    shift = _array(m.bias) - mean * scale
    return g.op(
        "Add",
        [
            g.op("Mul", [x, _per_channel(g, scale, f"{name}.scale")], f"{name}.scaled"),
            _per_channel(g, shift, f"{name}.shift"),
        ],
        name,
    )


def emit_channel_layer_norm(g, m, name, x):
    return _affine(g, _normalise(g, x, 1, m.eps, name), _array(m.weight), _array(m.bias), name)


def emit_group_norm(g, m, name, x):
    grouped = g.op("Reshape", [x, g.ints([0, m.num_groups, -1], "group_shape")], f"{name}.grouped")
    normed = _normalise(g, grouped, 2, m.eps, name)
    restored = g.op("Reshape", [normed, g.op("Shape", [x], f"{name}.shape")], f"{name}.ungrouped")
    return _affine(g, restored, _array(m.weight), _array(m.bias), name)


def emit_gelu(g, m, name, x):
    return gelu(g, x, name)


def emit_identity(g, m, name, x):
    """Dropout and drop path: nothing at inference."""
    return x


def emit_sequential(g, m, name, x):
    for key, layer in m.layers.items():
        x = emit(g, layer, f"{name}.{key}", x)
    return x


def emit_conv_module(g, m, name, x):
    x = _child(g, m, name, "conv", x)
    if m.gn is not None:
        x = _child(g, m, name, "gn", x)
    return g.op("Relu", [x], f"{name}.relu") if m.relu else x


# ----------------------------------------------------------------------------- MSCAN
def emit_stem(g, m, name, x):
    return _child(g, m, name, "proj", x)


def emit_patch_embed(g, m, name, x):
    return _child(g, m, name, "norm", _child(g, m, name, "proj", x))


def emit_attention_module(g, m, name, u):
    """MSCA: ``conv3(a + Σ_i conv{i}_2(conv{i}_1(a))) · u`` with ``a = conv0(u)``, strips as grouped Convs."""
    a = _child(g, m, name, "conv0", u)
    attn = a
    for i in range(3):
        branch = _child(g, m, name, f"conv{i}_2", _child(g, m, name, f"conv{i}_1", a))
        attn = g.op("Add", [attn, branch], f"{name}.sum{i}")
    return g.op("Mul", [_child(g, m, name, "conv3", attn), u], name)


def emit_spatial_attention(g, m, name, x):
    y = gelu(g, _child(g, m, name, "proj_1", x), f"{name}.gelu")
    y = _child(g, m, name, "proj_2", _child(g, m, name, "spatial_gating_unit", y))
    return g.op("Add", [y, x], name)


def emit_dwconv(g, m, name, x):
    return _child(g, m, name, "dwconv", x)


def emit_mlp(g, m, name, x):
    x = gelu(g, _child(g, m, name, "dwconv", _child(g, m, name, "fc1", x)), f"{name}.gelu")
    return _child(g, m, name, "fc2", x)


def emit_block(g, m, name, x):
    for branch, norm, scale in (("attn", "norm1", "layer_scale_1"), ("mlp", "norm2", "layer_scale_2")):
        y = _child(g, m, name, branch, _child(g, m, name, norm, x))
        y = g.op("Mul", [_per_channel(g, _array(getattr(m, scale)), f"{name}.{scale}"), y], f"{name}.{branch}_scaled")
        x = g.op("Add", [x, y], f"{name}.{branch}_out")
    return x


def emit_mscan(g, m, name, x):
    outs = []
    for i in range(1, m.num_stages + 1):
        x = _child(g, m, name, f"patch_embed{i}", x)
        for j, block in enumerate(getattr(m, f"block{i}")):
            x = emit(g, block, f"{name}.block{i}.{j}", x)
        x = _child(g, m, name, f"norm{i}", x)
        outs.append(x)
    return outs


# ----------------------------------------------------------------------------- LightHamHead
def emit_nmf(g, m, name, x, channels):
    """NMF2D in eval mode: softmax initial coefficients, ``eval_steps`` multiplicative updates of the
    coefficients then the bases, one last coefficient update, reconstruction. The (1, S, D, R) initial
    bases are a constant that MatMul broadcasts over the batch."""
    S, D = m.S, channels // m.S
    bases = g.const(m.seeded_bases(D, seed=g.nmf_seed)[None], f"{name}.bases")
    mats = g.op("Reshape", [x, g.ints([0, S, D, -1], "nmf_shape")], f"{name}.mats")  # (B, S, D, N)
    mats_t = g.op("Transpose", [mats], f"{name}.mats_t", perm=[0, 1, 3, 2])  # (B, S, N, D)

    def t(v, hint):
        return g.op("Transpose", [v], hint, perm=[0, 1, 3, 2])

    def update(value, data, other, hint):
        """``value · (data @ other) / (value @ (otherᵀ @ other) + 1e-6)``: one multiplicative update."""
        numerator = g.op("MatMul", [data, other], f"{hint}.num")
        gram = g.op("MatMul", [t(other, f"{hint}.other_t"), other], f"{hint}.gram")
        denominator = g.op("Add", [g.op("MatMul", [value, gram], f"{hint}.den"), _scalar(g, 1e-6)], f"{hint}.den_eps")
        return g.op("Div", [g.op("Mul", [value, numerator], f"{hint}.prod"), denominator], hint)

    logits = g.op("MatMul", [mats_t, bases], f"{name}.coef_logits")
    if m.inv_t != 1:
        logits = g.op("Mul", [logits, _scalar(g, m.inv_t)], f"{name}.coef_logits_t")
    coef = g.op("Softmax", [logits], f"{name}.coef0", axis=-1)  # (B, S, N, R)
    for step in range(m.eval_steps):
        coef = update(coef, mats_t, bases, f"{name}.step{step}.coef")
        bases = update(bases, mats, coef, f"{name}.step{step}.bases")
    coef = update(coef, mats_t, bases, f"{name}.coef")
    rebuilt = g.op("MatMul", [bases, t(coef, f"{name}.coef_t")], f"{name}.rebuilt")  # (B, S, D, N)
    return g.op("Reshape", [rebuilt, g.op("Shape", [x], f"{name}.shape")], name)


def emit_hamburger(g, m, name, x):
    enjoy = g.op("Relu", [_child(g, m, name, "ham_in", x)], f"{name}.ham_in_relu")
    enjoy = _child(g, m, name, "ham", enjoy, channels=m.ham_in.conv.out_channels)
    return g.op("Relu", [g.op("Add", [x, _child(g, m, name, "ham_out", enjoy)], f"{name}.sum")], name)


def emit_light_ham_head(g, m, name, feats):
    """Stages ``in_index`` at the first one's size, concatenated → squeeze → Hamburger → align → classify."""
    inputs = [feats[i] for i in m.in_index]
    resized = [g.resize_bilinear(f, inputs[0], f"{name}.resize{k + 1}") for k, f in enumerate(inputs[1:])]
    x = g.op("Concat", [inputs[0]] + resized, f"{name}.concat", axis=1)
    x = _child(g, m, name, "align", _child(g, m, name, "hamburger", _child(g, m, name, "squeeze", x)))
    return _child(g, m, name, "conv_seg", x)  # dropout: nothing at inference


def emit_encoder_decoder(g, m, name, img):
    logits = _child(g, m, name, "decode_head", _child(g, m, name, "backbone", img))
    return g.resize_bilinear(logits, img, OUTPUT)


EMITTERS = {
    EncoderDecoder: emit_encoder_decoder,
    MSCAN: emit_mscan,
    StemConv: emit_stem,
    OverlapPatchEmbed: emit_patch_embed,
    Block: emit_block,
    SpatialAttention: emit_spatial_attention,
    AttentionModule: emit_attention_module,
    Mlp: emit_mlp,
    DWConv: emit_dwconv,
    GELU: emit_gelu,
    LightHamHead: emit_light_ham_head,
    Hamburger: emit_hamburger,
    NMF2D: emit_nmf,
    ConvModule: emit_conv_module,
    Conv1x1: emit_conv1x1,
    StripConv: emit_strip_conv,
    DepthwiseConv2d: emit_depthwise_conv,
    jt.nn.Conv2d: emit_conv2d,
    jt.nn.Sequential: emit_sequential,
    BatchNorm2d: emit_batch_norm,
    ChannelLayerNorm: emit_channel_layer_norm,
    GroupNorm: emit_group_norm,
    DropPath: emit_identity,
    jt.nn.Dropout: emit_identity,
    jt.nn.Dropout2d: emit_identity,
}


# ----------------------------------------------------------------------------- entry point
def nmf_seed_of(model, nmf_seed=None):
    """The seed of the exported NMF bases: ``nmf_seed``, else the model's ``ham_kwargs.seed``, else the default."""
    if nmf_seed is not None:
        return int(nmf_seed)
    seed = model.decode_head.hamburger.ham.seed
    return DEFAULT_NMF_SEED if seed is None else int(seed)


def build_onnx(model, input_shape=(512, 512), dynamic=False, opset=DEFAULT_OPSET, nmf_seed=None, batch_size=1):
    """The ONNX ModelProto of ``model``'s whole-image network (see :func:`export_onnx`)."""
    if onnx is None:
        raise MissingDependencyError(MISSING)
    if not MIN_OPSET <= int(opset) <= onnx.defs.onnx_opset_version():
        raise ExportError(
            f"opset {opset} is not supported: use {MIN_OPSET}..{onnx.defs.onnx_opset_version()} "
            f"(default {DEFAULT_OPSET})"
        )
    if is_fused(model):
        raise ExportError(
            "this is the fused inference copy (init_model's default); export the model as built: "
            "init_model(config, checkpoint, fuse=False)"
        )
    h, w = (int(s) for s in input_shape)
    if h < 1 or w < 1 or batch_size < 1:
        raise ExportError(f"input shape must be positive, got batch {batch_size}, {h}x{w}")
    g = GraphBuilder(int(opset))
    g.nmf_seed = nmf_seed_of(model, nmf_seed)
    emit(g, model, "", INPUT)
    classes = model.num_classes
    in_shape = ["batch", 3, "height", "width"] if dynamic else [batch_size, 3, h, w]
    out_shape = ["batch", classes, "height", "width"] if dynamic else [batch_size, classes, h, w]
    metadata = {
        "num_classes": classes,
        "nmf_seed": g.nmf_seed,
        "dynamic": int(bool(dynamic)),
        "input_shape": "x".join(str(s) for s in in_shape),
        "nmf_bases": f"fixed: NMF2D.seeded_bases(seed={g.nmf_seed}), the same for every sample "
        "(the reference draws random bases on every forward pass)",
    }
    return g.model([tensor_info(INPUT, in_shape)], [tensor_info(OUTPUT, out_shape)], metadata)


def export_onnx(
    model, path, input_shape=(512, 512), dynamic=False, opset=DEFAULT_OPSET, nmf_seed=None, batch_size=1, check=True
):
    """Write ``model`` (an EncoderDecoder) as an ONNX file: input ``image`` (N, 3, H, W) float32, the
    normalised image as the test pipeline gives it; output ``logits`` (N, classes, H, W).

    ``input_shape`` (H, W) and ``batch_size`` fix the input's shape; ``dynamic=True`` leaves batch,
    height and width free (any size jsegnext accepts; odd sizes give the same outputs as jsegnext).
    ``nmf_seed``: seed of the fixed NMF bases (default: the config's ``ham_kwargs.seed``, else
    :data:`DEFAULT_NMF_SEED`). ``check`` runs ``onnx.checker.check_model``. Returns the ModelProto.
    """
    proto = build_onnx(model, input_shape, dynamic, opset, nmf_seed, batch_size)
    if check:
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as err:  # a bug in an emitter, not in the user's input
            raise ExportError(f"the exported graph fails onnx.checker: {err}") from None
    atomic_write_bytes(path, proto.SerializeToString())
    return proto
