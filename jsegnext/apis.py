"""High-level entry points: build a model from a config and a checkpoint."""
import numpy as np

from .config import Config
from .models import build_segmentor
from .models.fuse import fuse_segmentor
from .weights import load_checkpoint


def load_config(config, options=None):
    """A Config from a path or an existing Config/dict, with ``key=value`` overrides applied."""
    cfg = Config.fromfile(config) if isinstance(config, str) or hasattr(config, "__fspath__") else Config(config)
    return cfg.merge_options(options)


def init_model(config, checkpoint=None, options=None, allow_partial=False, fuse=True):
    """Build the config's segmentor in eval mode and load ``checkpoint`` (our ``.pkl`` or a reference ``.pth``).

    ``fuse=True`` (default) returns the inference fast path (``jsegnext.models.fuse``: BatchNorms and
    layer scales folded into the convolutions, fused kernels; same outputs, inference only);
    ``fuse=False`` the model as built, which can also train and be saved.

    A checkpoint that does not fit (wrong variant or class count, truncated file, not a
    checkpoint) raises ``jsegnext.weights.CheckpointError`` naming the file and the problem.
    """
    cfg = load_config(config, options)
    model = build_segmentor(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, allow_partial=allow_partial, require_head=True)
    model.cfg = cfg
    model.eval()
    return fuse_segmentor(model) if fuse else model


def inference_model(model, image, ms_flip=False):
    """Label map (H, W) of ``image`` — a file path or an HxWx3 BGR uint8 array (as cv2 reads it).

    Uses the config's ``test_pipeline`` and test mode; ``ms_flip`` averages the softmax over the
    ratios 0.5–1.75 and horizontal flips, as ``tools/test.py --ms-flip``.
    """
    from .datasets import build_pipeline, read_image, to_sample
    from .engine.evaluation import MS_RATIOS, predict, scaled_pipeline

    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"inference_model: expected an HxWx3 image array, got shape {image.shape}")
        img, name = image, None
    else:
        img, name = read_image(str(image)), str(image)
    pipeline_cfg = [t for t in model.cfg.test_pipeline if t["type"] != "LoadImageFromFile"]
    views = []
    for ratio in (MS_RATIOS if ms_flip else (1.0,)):
        results = dict(filename=name, img=img, ori_shape=img.shape, img_shape=img.shape, pad_shape=img.shape)
        views.append(to_sample(build_pipeline(scaled_pipeline(pipeline_cfg, ratio))(results))["img"])
    return predict(model, views, img.shape[:2], flip=ms_flip)
