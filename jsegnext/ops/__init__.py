"""Custom operators: depthwise strip convolutions for MSCA (CPU kernels, CUDA kernels, meta-op form)
square depthwise convolutions (CPU kernels), bilinear resize and the resize-fused training loss."""
from .depthwise_conv import DepthwiseConv2d, depthwise_conv2d
from .resize import cross_entropy, resize_bilinear, resized_cross_entropy
from .strip_conv import AUTO_IMPL, STRIP_IMPLS, StripConv, msca_strips, resolve_impl, strip_conv

__all__ = ["strip_conv", "StripConv", "msca_strips", "resolve_impl", "STRIP_IMPLS", "AUTO_IMPL",
           "depthwise_conv2d", "DepthwiseConv2d", "resize_bilinear", "cross_entropy", "resized_cross_entropy"]
