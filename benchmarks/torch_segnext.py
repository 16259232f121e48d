"""A small, self-contained PyTorch SegNeXt (MSCAN encoder + LightHamHead with NMF2D).

The PyTorch column of jsegnext's CPU/GPU benchmarks: a straightforward port written from the
architecture description in SPEC.md (plain ``nn.Conv2d(groups=C)`` depthwise and strip convs,
``nn.BatchNorm2d``, ``nn.GroupNorm``, ``nn.LayerNorm`` on flattened tokens, ``F.interpolate``),
neither micro-optimised nor crippled. Parameter names follow the reference (mmseg 0.x) checkpoints,
so ``segnext_*.pth`` files load with ``load_state_dict(state_dict, strict=True)``.

    from torch_segnext import build_torch_segnext
    model = build_torch_segnext("t", num_classes=150).eval()
    logits_s8 = model(img)              # decode-head logits at stride 8
    logits = model.forward_full(img)    # resized to the input size (bilinear, align_corners=False)
    feats = model.encoder_features(img) # the four stage outputs (strides 4, 8, 16, 32)

NMF2D draws fresh random bases on every forward (the reference's ``rand_init=True``); for exact
comparisons give fixed bases with ``model.set_nmf_bases(array)`` (shape (B·S, D, R) or (S, D, R),
repeated over the batch) or replace ``model.decode_head.hamburger.ham._build_bases`` as the
reference tests do. Gradients flow through every NMF update (``grad_mode='unrolled'``, the
reference); ``'one_step'`` differentiates only the last coefficient update (HamNet / JSeg).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Per variant: MSCAN settings and decoder (channels = ham_channels, NMF rank).
VARIANTS = {
    "t": dict(
        embed_dims=(32, 64, 160, 256),
        depths=(3, 3, 5, 2),
        mlp_ratios=(8, 8, 4, 4),
        drop_path_rate=0.1,
        channels=256,
        rank=16,
    ),
    "s": dict(
        embed_dims=(64, 128, 320, 512),
        depths=(2, 2, 4, 2),
        mlp_ratios=(8, 8, 4, 4),
        drop_path_rate=0.1,
        channels=256,
        rank=16,
    ),
    "b": dict(
        embed_dims=(64, 128, 320, 512),
        depths=(3, 3, 12, 3),
        mlp_ratios=(8, 8, 4, 4),
        drop_path_rate=0.1,
        channels=512,
        rank=64,
    ),
    "l": dict(
        embed_dims=(64, 128, 320, 512),
        depths=(3, 5, 27, 3),
        mlp_ratios=(8, 8, 4, 4),
        drop_path_rate=0.3,
        channels=1024,
        rank=64,
    ),
}
IGNORE_INDEX = 255


# ----------------------------------------------------------------------------- encoder
class DropPath(nn.Module):
    """Stochastic depth: drop whole residual branches per sample while training."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = torch.floor(keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device))
        return x / keep * mask


class StemConv(nn.Module):
    """Stage-1 downsampling: conv3x3 s2 → BN → GELU → conv3x3 s2 → BN (stride 4 in all)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_channels, out_channels // 2, 3, stride=2, padding=1),
            nn.BatchNorm2d(out_channels // 2),
            nn.GELU(),
            nn.Conv2d(out_channels // 2, out_channels, 3, stride=2, padding=1),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x):
        return self.proj(x)


class OverlapPatchEmbed(nn.Module):
    """Stages 2–4 downsampling: conv3x3 s2 p1 → BN."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.norm(self.proj(x))


class AttentionModule(nn.Module):
    """MSCA: ``conv3(a + Σ_k strip_k(a)) * u`` with ``a = conv0(u)`` (depthwise 5x5)."""

    def __init__(self, dim):
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv0_1 = nn.Conv2d(dim, dim, (1, 7), padding=(0, 3), groups=dim)
        self.conv0_2 = nn.Conv2d(dim, dim, (7, 1), padding=(3, 0), groups=dim)
        self.conv1_1 = nn.Conv2d(dim, dim, (1, 11), padding=(0, 5), groups=dim)
        self.conv1_2 = nn.Conv2d(dim, dim, (11, 1), padding=(5, 0), groups=dim)
        self.conv2_1 = nn.Conv2d(dim, dim, (1, 21), padding=(0, 10), groups=dim)
        self.conv2_2 = nn.Conv2d(dim, dim, (21, 1), padding=(10, 0), groups=dim)
        self.conv3 = nn.Conv2d(dim, dim, 1)

    def forward(self, u):
        a = self.conv0(u)
        attn = a + self.conv0_2(self.conv0_1(a)) + self.conv1_2(self.conv1_1(a)) + self.conv2_2(self.conv2_1(a))
        return self.conv3(attn) * u


class SpatialAttention(nn.Module):
    """proj_1 → GELU → MSCA → proj_2, plus the module's own input."""

    def __init__(self, dim):
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = AttentionModule(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


class DWConv(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x):
        return self.dwconv(x)


class Mlp(nn.Module):
    """fc1 (1x1) → depthwise 3x3 → GELU → dropout → fc2 (1x1) → dropout."""

    def __init__(self, dim, hidden, drop=0.0):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


class Block(nn.Module):
    def __init__(self, dim, mlp_ratio, drop=0.0, drop_path=0.0, layer_scale_init=1e-2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x):
        x = x + self.drop_path(self.layer_scale_1.view(1, -1, 1, 1) * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2.view(1, -1, 1, 1) * self.mlp(self.norm2(x)))


class MSCAN(nn.Module):
    """Four stages; each ends with a LayerNorm over channels applied to the flattened tokens."""

    def __init__(self, embed_dims, depths, mlp_ratios, in_channels=3, drop_rate=0.0, drop_path_rate=0.0):
        super().__init__()
        self.num_stages = len(depths)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        first = 0
        for i, (dim, depth, ratio) in enumerate(zip(embed_dims, depths, mlp_ratios)):
            embed = StemConv(in_channels, dim) if i == 0 else OverlapPatchEmbed(embed_dims[i - 1], dim)
            blocks = nn.ModuleList([Block(dim, ratio, drop_rate, rates[first + j]) for j in range(depth)])
            first += depth
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dim))

    def forward(self, x):
        outs = []
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                x = block(x)
            n, c, h, w = x.shape
            x = getattr(self, f"norm{i}")(x.flatten(2).transpose(1, 2))  # (N, H·W, C)
            x = x.transpose(1, 2).reshape(n, c, h, w).contiguous()
            outs.append(x)
        return outs


# ----------------------------------------------------------------------------- decoder
class ConvModule(nn.Module):
    """mmcv-style 1x1 conv → optional GroupNorm → optional ReLU (bias only without a norm)."""

    def __init__(self, in_channels, out_channels, num_groups=None, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=num_groups is None)
        self.gn = nn.GroupNorm(num_groups, out_channels) if num_groups else None
        self.relu = relu

    def forward(self, x):
        x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        return F.relu(x) if self.relu else x


class NMF2D(nn.Module):
    """Non-negative matrix factorisation of (B, C, H, W) as B·S matrices (D = C/S, N = H·W), rank R."""

    def __init__(self, MD_S=1, MD_R=64, train_steps=6, eval_steps=7, inv_t=1, grad_mode="unrolled"):
        super().__init__()
        if grad_mode not in ("unrolled", "one_step"):
            raise ValueError(f"grad_mode must be 'unrolled' or 'one_step', got {grad_mode!r}")
        self.S, self.R = MD_S, MD_R
        self.train_steps, self.eval_steps = train_steps, eval_steps
        self.inv_t = inv_t
        self.grad_mode = grad_mode
        self.fixed_bases = None  # (B·S | S, D, R) tensor used instead of random bases when set
        self._device = None  # device of the current input: random bases are drawn there

    def _build_bases(self, B, S, D, R):
        """Initial bases (B·S, D, R): U[0, 1), L2-normalised over D."""
        if self.fixed_bases is not None:
            bases = self.fixed_bases
            if bases.shape[0] != B * S:
                bases = bases.repeat(B, 1, 1)
            return bases
        bases = torch.rand((B * S, D, R), device=self._device)
        return F.normalize(bases, dim=1)

    @staticmethod
    def _update_coef(x, bases, coef):
        numerator = torch.bmm(x.transpose(1, 2), bases)
        denominator = coef.bmm(bases.transpose(1, 2).bmm(bases))
        return coef * numerator / (denominator + 1e-6)

    @staticmethod
    def _update_bases(x, bases, coef):
        numerator = torch.bmm(x, coef)
        denominator = bases.bmm(coef.transpose(1, 2).bmm(coef))
        return bases * numerator / (denominator + 1e-6)

    def _local_inference(self, x, bases):
        coef = F.softmax(self.inv_t * torch.bmm(x.transpose(1, 2), bases), dim=-1)
        for _ in range(self.train_steps if self.training else self.eval_steps):
            coef = self._update_coef(x, bases, coef)
            bases = self._update_bases(x, bases, coef)
        return bases, coef

    def forward(self, x):
        B, C, H, W = x.shape
        D = C // self.S
        x = x.reshape(B * self.S, D, H * W)
        self._device = x.device
        bases = self._build_bases(B, self.S, D, self.R).to(device=x.device, dtype=x.dtype)
        if self.grad_mode == "one_step":
            with torch.no_grad():
                bases, coef = self._local_inference(x, bases)
        else:
            bases, coef = self._local_inference(x, bases)
        coef = self._update_coef(x, bases, coef)
        return torch.bmm(bases, coef.transpose(1, 2)).reshape(B, C, H, W)


class Hamburger(nn.Module):
    """``ReLU(x + ham_out(NMF(ReLU(ham_in(x)))))``."""

    def __init__(self, ham_channels, ham_kwargs=None, norm_groups=32):
        super().__init__()
        self.ham_in = ConvModule(ham_channels, ham_channels, num_groups=None, relu=False)
        self.ham = NMF2D(**(ham_kwargs or {}))
        self.ham_out = ConvModule(ham_channels, ham_channels, num_groups=norm_groups, relu=False)

    def forward(self, x):
        enjoy = self.ham(F.relu(self.ham_in(x)))
        return F.relu(x + self.ham_out(enjoy))


class LightHamHead(nn.Module):
    """Resize stages ``in_index`` to the first one's size, concatenate → squeeze → Hamburger → align → classify."""

    def __init__(
        self,
        in_channels,
        in_index=(1, 2, 3),
        channels=512,
        ham_channels=512,
        num_classes=150,
        dropout_ratio=0.1,
        norm_groups=32,
        ham_kwargs=None,
    ):
        super().__init__()
        self.in_index = list(in_index)
        self.squeeze = ConvModule(sum(in_channels), ham_channels, num_groups=norm_groups)
        self.hamburger = Hamburger(ham_channels, ham_kwargs, norm_groups)
        self.align = ConvModule(ham_channels, channels, num_groups=norm_groups)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats):
        inputs = [feats[i] for i in self.in_index]
        size = inputs[0].shape[2:]
        inputs = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in inputs]
        x = self.align(self.hamburger(self.squeeze(torch.cat(inputs, dim=1))))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.conv_seg(x)


# ----------------------------------------------------------------------------- segmentor
class TorchSegNeXt(nn.Module):
    """Encoder–decoder: ``forward`` gives stride-8 logits, ``forward_full`` input-size logits."""

    def __init__(self, backbone, decode_head):
        super().__init__()
        self.backbone = MSCAN(**backbone)
        self.decode_head = LightHamHead(**decode_head)

    def encoder_features(self, img):
        return self.backbone(img)

    def forward(self, img):
        return self.decode_head(self.backbone(img))

    def forward_full(self, img):
        return F.interpolate(self(img), size=img.shape[2:], mode="bilinear", align_corners=False)

    def loss(self, img, label):
        """Cross entropy of logits resized to the label size; 255 ignored, averaged over all pixels."""
        logits = F.interpolate(self(img), size=label.shape[1:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, label.long(), ignore_index=IGNORE_INDEX, reduction="none").mean()

    def set_nmf_bases(self, bases):
        """Fix NMF2D's initial bases (array/tensor (B·S, D, R) or (S, D, R)); ``None`` restores random ones."""
        ham = self.decode_head.hamburger.ham
        ham.fixed_bases = None if bases is None else torch.as_tensor(bases, dtype=torch.float32)


def build_torch_segnext(
    variant="t",
    num_classes=150,
    drop_path_rate=0.0,
    dropout_ratio=0.1,
    norm_groups=32,
    grad_mode="unrolled",
    **overrides,
):
    """SegNeXt-T/S/B/L in PyTorch. ``overrides`` replace entries of ``VARIANTS[variant]``
    (embed_dims, depths, mlp_ratios, channels, rank) — e.g. for tiny test models."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    s = dict(VARIANTS[variant], **overrides)
    backbone = dict(
        embed_dims=s["embed_dims"], depths=s["depths"], mlp_ratios=s["mlp_ratios"], drop_path_rate=drop_path_rate
    )
    head = dict(
        in_channels=list(s["embed_dims"][1:]),
        in_index=(1, 2, 3),
        channels=s["channels"],
        ham_channels=s["channels"],
        num_classes=num_classes,
        dropout_ratio=dropout_ratio,
        norm_groups=norm_groups,
        ham_kwargs=dict(MD_S=1, MD_R=s["rank"], train_steps=6, eval_steps=7, inv_t=1, grad_mode=grad_mode),
    )
    return TorchSegNeXt(backbone, head)


def load_reference_checkpoint(model, path, strict=True):
    """Load a reference (mmseg) ``.pth`` (``{'meta', 'state_dict'}`` or a bare state dict)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return model.load_state_dict(state, strict=strict)


def count_params(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":  # quick smoke run: python benchmarks/torch_segnext.py [variant] [HxW]
    import sys
    import time

    variant = sys.argv[1] if len(sys.argv) > 1 else "t"
    h, w = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "128x128").split("x"))
    net = build_torch_segnext(variant).eval()
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        net(x)
        t0 = time.perf_counter()
        out = net.forward_full(x)
        dt = time.perf_counter() - t0
    print(
        f"SegNeXt-{variant.upper()}: {count_params(net) / 1e6:.2f} M params, {tuple(out.shape)}, "
        f"{dt * 1e3:.1f} ms ({math.prod(x.shape[2:])} px)"
    )
