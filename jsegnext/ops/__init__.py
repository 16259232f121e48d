"""Custom operators: depthwise strip convolutions for MSCA (CPU kernels, CUDA kernels, meta-op form)."""
from .strip_conv import AUTO_IMPL, STRIP_IMPLS, StripConv, msca_strips, resolve_impl, strip_conv

__all__ = ["strip_conv", "StripConv", "msca_strips", "resolve_impl", "STRIP_IMPLS", "AUTO_IMPL"]
