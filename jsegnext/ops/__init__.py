"""Custom operators: depthwise strip convolutions for MSCA (CPU kernels, CUDA kernels, meta-op form),
square depthwise convolutions (CPU kernels), bilinear resize and the resize-fused training loss.
Kernel sources: ``csrc/``; which implementation runs: :mod:`jsegnext.ops.dispatch`."""

from .depthwise_conv import DepthwiseConv2d, depthwise_conv2d
from .dispatch import IMPLS, resolve
from .resize import cross_entropy, resize_bilinear, resized_cross_entropy
from .strip_conv import StripConv, msca_strips, strip_conv

__all__ = [
    "strip_conv",
    "StripConv",
    "msca_strips",
    "IMPLS",
    "resolve",
    "depthwise_conv2d",
    "DepthwiseConv2d",
    "resize_bilinear",
    "cross_entropy",
    "resized_cross_entropy",
]
