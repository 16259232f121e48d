"""Deployment: export to ONNX (needs ``onnx``) and run the exported file (needs ``onnxruntime``).

Both come with ``pip install -e ".[deploy]"``; the rest of jsegnext never imports this package.
"""

from .export import DEFAULT_NMF_SEED, DEFAULT_OPSET, EMITTERS, ExportError, build_onnx, export_onnx
from .runtime import OnnxModelError, OnnxSegmentor, init_onnx_model

__all__ = [
    "export_onnx",
    "build_onnx",
    "EMITTERS",
    "ExportError",
    "DEFAULT_OPSET",
    "DEFAULT_NMF_SEED",
    "OnnxSegmentor",
    "init_onnx_model",
    "OnnxModelError",
]
