"""High-level entry points: build a model from a config and a checkpoint, segment an image."""

import os

import numpy as np

from .config import Config, ConfigError
from .config_check import accepted_keys, validate_config
from .models import build_segmentor
from .models.fuse import fuse_segmentor
from .weights import load_checkpoint


def load_config(config, options=None):
    """A Config from a path or an existing Config/dict, with ``key=value`` overrides applied and its
    sections checked (:func:`jsegnext.config_check.validate_config`; ConfigError names a bad key).

    An override may change any key, or add one the dict's consumer accepts (e.g.
    ``data.train.skip_bad_samples=True``).
    """
    cfg = Config.fromfile(config) if isinstance(config, str) or hasattr(config, "__fspath__") else Config(config)
    cfg.merge_options(options, accepts=accepted_keys)
    validate_config(cfg)
    return cfg


def init_model(config, checkpoint=None, options=None, allow_partial=False, fuse=True):
    """Build the config's segmentor in eval mode and load ``checkpoint`` (our ``.pkl`` or a reference ``.pth``).

    ``fuse=True`` (default) returns the inference fast path (``jsegnext.models.fuse``: BatchNorms and
    layer scales folded into the convolutions, fused kernels; same outputs, inference only);
    ``fuse=False`` the model as built, which can also train and be saved.

    A checkpoint that does not fit (wrong variant or class count, truncated file, not a
    checkpoint, a refused file) raises ``jsegnext.errors.CheckpointError`` naming the file and the
    problem; nothing stored in the file is ever run.
    """
    cfg = load_config(config, options)
    model = build_segmentor(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, allow_partial=allow_partial, require_head=True)
    model.cfg = cfg
    model.eval()
    return fuse_segmentor(model) if fuse else model


BACKENDS = ("jittor", "onnxruntime")


def init_backend(backend, config, checkpoint, options=None, fuse=True):
    """``init_model`` (``backend='jittor'``, ``fuse`` as there), or for ``'onnxruntime'`` an exported
    file behind the same interface (``jsegnext.deploy.init_onnx_model``; needs ``pip install -e ".[deploy]"``)."""
    if backend == "onnxruntime":
        from .deploy import init_onnx_model

        return init_onnx_model(config, checkpoint, options=options)
    if backend != "jittor":
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return init_model(config, checkpoint, options=options, fuse=fuse)


def _as_bgr_image(image):
    """``image`` as an (H, W, 3) uint8 BGR array and its name: read from a path, or checked."""
    from .datasets import read_image

    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image)), os.fspath(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"inference_model: expected one image, a file path or an HxWx3 uint8 BGR array, got a "
            f"{type(image).__name__}" + ("; call it once per image" if isinstance(image, (list, tuple)) else "")
        )
    if image.size == 0:
        raise ValueError(f"inference_model: the image array is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise ValueError(
            f"inference_model: the image array is {image.dtype}; expected uint8 BGR (0..255, as "
            "cv2.imread gives). Convert it first, e.g. (img * 255).round().astype(np.uint8) for floats "
            "in 0..1, (img >> 8).astype(np.uint8) for 16-bit"
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=2), None  # grey: B = G = R
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"inference_model: expected an HxWx3 BGR image array, got shape {image.shape}")
    return image, None


def inference_model(model, image, ms_flip=False):
    """Label map (H, W) of one ``image``: a file path or an HxWx3 BGR uint8 array (as cv2 reads it;
    HxW grey is accepted). Other dtypes are refused: their value range is a guess.

    Uses the config's ``test_pipeline`` and test mode; ``ms_flip`` averages the softmax over the
    ratios 0.5–1.75 and horizontal flips, as ``tools/test.py --ms-flip``. The model runs in eval
    mode whatever mode it is in, and is left in that mode.
    """
    from .datasets import build_pipeline, to_sample
    from .engine.evaluation import MS_RATIOS, predict, scaled_pipeline

    img, name = _as_bgr_image(image)
    pipeline_cfg = [t for t in model.cfg.test_pipeline if t["type"] != "LoadImageFromFile"]
    views = []
    for ratio in MS_RATIOS if ms_flip else (1.0,):
        results = dict(filename=name, img=img, ori_shape=img.shape, img_shape=img.shape, pad_shape=img.shape)
        cfg = scaled_pipeline(pipeline_cfg, ratio) if ms_flip else pipeline_cfg
        views.append(to_sample(build_pipeline(cfg)(results))["img"])
    return predict(model, views, img.shape[:2], flip=ms_flip)
