"""Building blocks shared by the backbone and the decoder.

Several of Jittor's stock layers are replaced here, each for a measured reason:

* ``Conv1x1`` runs a 1×1 convolution as matrix products (``jsegnext.ops.conv1x1``: on the CPU one
  kernel forward and one backward around oneDNN's sgemm; about 3× faster than Jittor's conv op for
  these shapes even as plain 2-D products).
* ``ChannelLayerNorm`` and ``GroupNorm`` use a centred (two-pass) variance: Jittor's own
  layers use E[x²]−E[x]², which loses digits where activations are large.
* ``BatchNorm2d`` keeps PyTorch's *unbiased* running variance (Jittor keeps the biased one),
  so training statistics match the reference.
* ``resize_bilinear`` (``jsegnext/ops/resize.py``) reproduces PyTorch's ``align_corners=False``
  bilinear resize: a CPU kernel, or two index gathers (width, then height) elsewhere.
"""

import math

from ..comm import get_world_size, mean_over_processes
from ..ops.pointwise import conv1x1
from ..ops.resize import resize_bilinear  # noqa: F401  (re-exported: the models import it from here)
from ..runtime import jt

nn = jt.nn


class Conv1x1(nn.Module):
    """1×1 convolution (``weight`` [out, in, 1, 1], optional ``bias`` [out]) as matrix products."""

    def __init__(self, in_channels, out_channels, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        bound = 1.0 / math.sqrt(in_channels)
        self.weight = jt.init.uniform((out_channels, in_channels, 1, 1), "float32", -bound, bound)
        self.bias = jt.init.uniform((out_channels,), "float32", -bound, bound) if bias else None

    def execute(self, x):
        return conv1x1(x, self.weight.reshape(self.out_channels, self.in_channels), self.bias)


def _centred_stats(x, dims):
    mean = x.mean(dims=dims, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(dims=dims, keepdims=True)
    return centred, var


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor (the reference's per-token LayerNorm)."""

    def __init__(self, channels, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = jt.ones(channels)
        self.bias = jt.zeros(channels)

    def execute(self, x):
        centred, var = _centred_stats(x, [1])
        y = centred / jt.sqrt(var + self.eps)
        return y * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


class GroupNorm(nn.Module):
    def __init__(self, num_groups, num_channels, eps=1e-5):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: {num_channels} channels do not split into {num_groups} groups")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = jt.ones(num_channels)
        self.bias = jt.zeros(num_channels)

    def execute(self, x):
        n, c, h, w = x.shape
        grouped = x.reshape(n, self.num_groups, c // self.num_groups * h * w)
        centred, var = _centred_stats(grouped, [2])
        y = (centred / jt.sqrt(var + self.eps)).reshape(n, c, h, w)
        return y * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


class BatchNorm2d(nn.Module):
    """BatchNorm with PyTorch's running statistics (unbiased variance), synchronised over MPI ranks."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.is_train = True  # Jittor sets it on train()/eval(); start in training mode
        self.weight = jt.ones(num_features)
        self.bias = jt.zeros(num_features)
        self.running_mean = jt.zeros(num_features).stop_grad()
        self.running_var = jt.ones(num_features).stop_grad()

    def execute(self, x):
        if self.is_train:
            dims = [0, 2, 3]
            mean = x.mean(dims=dims)
            sq_mean = (x * x).mean(dims=dims)
            count = x.shape[0] * x.shape[2] * x.shape[3]
            mean, sq_mean = mean_over_processes(mean), mean_over_processes(sq_mean)
            count *= get_world_size()
            var = (sq_mean - mean * mean).maximum(0.0)
            unbiased = var * (count / max(count - 1, 1))
            m = self.momentum
            self.running_mean.update((1 - m) * self.running_mean + m * mean.detach())
            self.running_var.update((1 - m) * self.running_var + m * unbiased.detach())
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / jt.sqrt(var + self.eps)
        shift = self.bias - mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


class DropPath(nn.Module):
    """Stochastic depth: drops whole residual branches per sample while training."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob
        self.is_train = True  # Jittor sets it on train()/eval(); start in training mode

    def execute(self, x):
        if not self.is_train or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = jt.floor(keep + jt.rand((x.shape[0],) + (1,) * (x.ndim - 1)))
        return x / keep * mask


def gelu(x):
    """Exact (erf) GELU, as the reference uses."""
    return 0.5 * x * (1.0 + jt.erf(x * (1.0 / math.sqrt(2.0))))


class ConvModule(nn.Module):
    """1×1 conv → optional GroupNorm → optional ReLU, with mmcv's parameter names (``conv``, ``gn``).

    As in mmcv, the conv has a bias only when no norm layer follows it.
    """

    def __init__(self, in_channels, out_channels, num_groups=None, relu=True):
        super().__init__()
        self.conv = Conv1x1(in_channels, out_channels, bias=num_groups is None)
        self.gn = GroupNorm(num_groups, out_channels) if num_groups else None
        self.relu = relu

    def execute(self, x):
        x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        return jt.nn.relu(x) if self.relu else x
