"""MSCAN, the multi-scale convolutional attention encoder of SegNeXt.

Parameter names follow the reference checkpoints (``patch_embed1.proj.0.weight``,
``block1.0.attn.spatial_gating_unit.conv2_1.weight``, ``norm1.weight``, ...), so converted
weights load one to one. Tensors stay NCHW throughout; the reference's per-token LayerNorm
after each stage is the same as a LayerNorm over channels.
"""

import numpy as np

from ..ops.dispatch import IMPLS
from ..runtime import jt
from .layers import BatchNorm2d, ChannelLayerNorm, Conv1x1, DropPath, gelu

nn = jt.nn

#: embed_dims, depths, mlp_ratios and drop_path_rate of the four published variants.
MSCAN_SETTINGS = {
    "t": dict(embed_dims=[32, 64, 160, 256], depths=[3, 3, 5, 2], mlp_ratios=[8, 8, 4, 4], drop_path_rate=0.1),
    "s": dict(embed_dims=[64, 128, 320, 512], depths=[2, 2, 4, 2], mlp_ratios=[8, 8, 4, 4], drop_path_rate=0.1),
    "b": dict(embed_dims=[64, 128, 320, 512], depths=[3, 3, 12, 3], mlp_ratios=[8, 8, 4, 4], drop_path_rate=0.1),
    "l": dict(embed_dims=[64, 128, 320, 512], depths=[3, 5, 27, 3], mlp_ratios=[8, 8, 4, 4], drop_path_rate=0.3),
}

#: Kernel sizes of MSCA's three strip branches.
STRIP_KERNELS = (7, 11, 21)


class GELU(nn.Module):
    def execute(self, x):
        return gelu(x)


def depthwise_conv(channels, kernel_size, strip_conv="conv2d"):
    """Depthwise conv with 'same' padding and bias; ``kernel_size`` is an int or (kh, kw).

    Square odd kernels (MSCA's 5×5 ``conv0``, the Mlp's 3×3 ``dwconv``) use jsegnext's depthwise
    operator (``DepthwiseConv2d``, ``impl='auto'``: hand-written kernels on the CPU) unless
    ``strip_conv`` is ``'conv2d'``, which keeps every depthwise conv on ``nn.Conv2d``. Both have
    parameters ``weight`` [C,1,kh,kw] and ``bias`` [C], so state dicts are the same.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if strip_conv != "conv2d" and kh == kw and kh % 2 == 1:
        from ..ops.depthwise_conv import DepthwiseConv2d

        return DepthwiseConv2d(channels, kh, bias=True, impl="auto")
    return nn.Conv2d(channels, channels, (kh, kw), padding=(kh // 2, kw // 2), groups=channels, bias=True)


class StemConv(nn.Module):
    """Stage-1 downsampling: two stride-2 3×3 convs with BN (and GELU between)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_channels, out_channels // 2, 3, stride=2, padding=1),
            BatchNorm2d(out_channels // 2),
            GELU(),
            nn.Conv2d(out_channels // 2, out_channels, 3, stride=2, padding=1),
            BatchNorm2d(out_channels),
        )

    def execute(self, x):
        return self.proj(x)


class OverlapPatchEmbed(nn.Module):
    """Stages 2–4 downsampling: stride-2 3×3 conv and BN."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm = BatchNorm2d(out_channels)

    def execute(self, x):
        return self.norm(self.proj(x))


class AttentionModule(nn.Module):
    """MSCA: ``conv3(a + Σ_k v_k(h_k(a))) * u`` with ``a = conv0(u)`` (5×5 depthwise).

    ``strip_conv`` chooses how the depthwise strips run: ``'auto'`` (default) the fastest measured
    path of jsegnext's strip operator on this device (on CPU: all three branch pairs and their sum
    in one fused kernel); ``'fused'``, ``'kernel'`` or ``'meta'`` force one path; ``'conv2d'`` uses
    Jittor's ``nn.Conv2d(groups=C)`` (for comparison, and as a fallback). The 5×5 ``conv0`` (and the
    Mlp's 3×3 ``dwconv``) run jsegnext's ``DepthwiseConv2d`` (``impl='auto'``) for every setting
    but ``'conv2d'``, which keeps them on ``nn.Conv2d`` too.
    """

    def __init__(self, dim, strip_conv="auto"):
        super().__init__()
        if strip_conv not in IMPLS:
            raise ValueError(f"strip_conv must be one of {IMPLS}, got {strip_conv!r}")
        self.strip_conv = strip_conv
        self.conv0 = depthwise_conv(dim, 5, strip_conv)
        for i, k in enumerate(STRIP_KERNELS):
            setattr(self, f"conv{i}_1", self._strip(dim, k, "h"))
            setattr(self, f"conv{i}_2", self._strip(dim, k, "v"))
        self.conv3 = Conv1x1(dim, dim)

    def _strip(self, dim, k, orientation):
        if self.strip_conv == "conv2d":
            return depthwise_conv(dim, (1, k) if orientation == "h" else (k, 1))
        from ..ops import StripConv

        impl = self.strip_conv if self.strip_conv in ("meta", "kernel") else "auto"
        return StripConv(dim, k, orientation, impl=impl)

    def _strip_sum(self, a):
        if self.strip_conv in ("auto", "fused"):
            from ..ops import msca_strips

            pairs = [(getattr(self, f"conv{i}_1"), getattr(self, f"conv{i}_2")) for i in range(len(STRIP_KERNELS))]
            return msca_strips(a, [(h.weight, h.bias, v.weight, v.bias) for h, v in pairs], impl=self.strip_conv)
        attn = a
        for i in range(len(STRIP_KERNELS)):
            attn = attn + getattr(self, f"conv{i}_2")(getattr(self, f"conv{i}_1")(a))
        return attn

    def execute(self, u):
        a = self.conv0(u)
        return self.conv3(self._strip_sum(a)) * u


class SpatialAttention(nn.Module):
    def __init__(self, dim, strip_conv="auto"):
        super().__init__()
        self.proj_1 = Conv1x1(dim, dim)
        self.spatial_gating_unit = AttentionModule(dim, strip_conv)
        self.proj_2 = Conv1x1(dim, dim)

    def execute(self, x):
        return self.proj_2(self.spatial_gating_unit(gelu(self.proj_1(x)))) + x


class DWConv(nn.Module):
    def __init__(self, dim, strip_conv="auto"):
        super().__init__()
        self.dwconv = depthwise_conv(dim, 3, strip_conv)

    def execute(self, x):
        return self.dwconv(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden, drop=0.0, strip_conv="auto"):
        super().__init__()
        self.fc1 = Conv1x1(dim, hidden)
        self.dwconv = DWConv(hidden, strip_conv)
        self.fc2 = Conv1x1(hidden, dim)
        self.drop = nn.Dropout(drop) if drop > 0 else None

    def execute(self, x):
        x = gelu(self.dwconv(self.fc1(x)))
        if self.drop is not None:
            x = self.drop(x)
        x = self.fc2(x)
        return self.drop(x) if self.drop is not None else x


class Block(nn.Module):
    def __init__(self, dim, mlp_ratio, drop=0.0, drop_path=0.0, strip_conv="auto", layer_scale_init=1e-2):
        super().__init__()
        self.norm1 = BatchNorm2d(dim)
        self.attn = SpatialAttention(dim, strip_conv)
        self.drop_path = DropPath(drop_path)
        self.norm2 = BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop, strip_conv)
        self.layer_scale_1 = jt.full((dim,), layer_scale_init)
        self.layer_scale_2 = jt.full((dim,), layer_scale_init)

    def execute(self, x):
        ls1 = self.layer_scale_1.reshape(1, -1, 1, 1)
        ls2 = self.layer_scale_2.reshape(1, -1, 1, 1)
        x = x + self.drop_path(ls1 * self.attn(self.norm1(x)))
        return x + self.drop_path(ls2 * self.mlp(self.norm2(x)))


class MSCAN(nn.Module):
    """Four-stage encoder returning the stage outputs (strides 4, 8, 16, 32), NCHW."""

    def __init__(
        self,
        embed_dims=(64, 128, 256, 512),
        depths=(3, 4, 6, 3),
        mlp_ratios=(4, 4, 4, 4),
        in_channels=3,
        drop_rate=0.0,
        drop_path_rate=0.0,
        strip_conv="auto",
    ):
        super().__init__()
        if not len(embed_dims) == len(depths) == len(mlp_ratios):
            raise ValueError("MSCAN: embed_dims, depths and mlp_ratios must have one entry per stage")
        self.embed_dims = list(embed_dims)
        self.num_stages = len(depths)
        rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        first = 0
        for i, (dim, depth, ratio) in enumerate(zip(embed_dims, depths, mlp_ratios)):
            embed = StemConv(in_channels, dim) if i == 0 else OverlapPatchEmbed(embed_dims[i - 1], dim)
            blocks = nn.ModuleList([Block(dim, ratio, drop_rate, rates[first + j], strip_conv) for j in range(depth)])
            first += depth
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", ChannelLayerNorm(dim))

    def execute(self, x):
        outs = []
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                x = block(x)
            x = getattr(self, f"norm{i}")(x)
            outs.append(x)
        return outs
