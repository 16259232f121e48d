"""jsegnext: SegNeXt semantic segmentation native to Jittor."""

from .runtime import device_name, jt  # noqa: F401  (sets up the environment before Jittor loads)

__version__ = "0.1.0"
