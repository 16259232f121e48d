"""Evaluation: whole / sliding-window / multi-scale + flip inference over a dataset, and mIoU.

With MPI each process takes every ``world_size``-th image and the per-class counts are summed
across processes, so the result equals a single-process run.
"""

import copy
import os
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..comm import get_rank, get_world_size
from ..config import ConfigError
from ..datasets import build_pipeline
from ..models.fuse import fuse_segmentor
from ..runtime import jt
from .metrics import IoUAccumulator

MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
RESIZES = ("Resize", "AlignResize")


@contextmanager
def inference_context(model):
    """Run ``model`` in eval mode without gradients; on exit every submodule's train/eval mode and
    every parameter's stop-grad flag are as they were (Jittor's ``eval()`` also sets stop-grad).

    Eval mode matters: in training mode BatchNorm normalises with the batch's statistics and
    updates its running ones, and NMF runs 6 instead of 7 steps.
    """
    is_module = isinstance(model, jt.nn.Module)  # else a runtime behind the same interface (ONNX)
    modes = [(m, m.is_training()) for m in (model.modules() if is_module else [model])]
    stopped = [(p, p.is_stop_grad()) for p in (model.parameters() if is_module else [])]
    model.eval()
    try:
        with jt.no_grad():
            yield model
    finally:
        for module, training in modes:
            module.is_train = training
        for param, was_stopped in stopped:
            param.stop_grad() if was_stopped else param.start_grad()


def _scale(img_scale, ratio):
    if img_scale and isinstance(img_scale[0], (list, tuple)):  # several scales
        return [_scale(s, ratio) for s in img_scale]
    return tuple(int(s * ratio) for s in img_scale)


def _scale_resizes(transforms, ratio):
    """Scale, in place, every img_scale of Resize entries and of MultiScaleFlipAug (and its inner
    transforms); the number of entries scaled."""
    scaled = 0
    for t in transforms:
        if t.get("type") in RESIZES + ("MultiScaleFlipAug",) and t.get("img_scale") is not None:
            t["img_scale"] = _scale(t["img_scale"], ratio)
            scaled += 1
        if t.get("type") == "MultiScaleFlipAug":
            scaled += _scale_resizes(t.get("transforms", []), ratio)
    return scaled


def scaled_pipeline(pipeline_cfg, ratio):
    """The test pipeline config with its Resize target scaled by ``ratio``, as mmseg's multi-scale
    test does: top-level Resize/AlignResize entries, and MultiScaleFlipAug's ``img_scale`` and its
    inner Resize. A pipeline with nothing to scale is a ConfigError (every "scale" would be the same)."""
    cfg = copy.deepcopy([dict(t) for t in pipeline_cfg])
    if not _scale_resizes(cfg, ratio):
        raise ConfigError(
            "multi-scale testing (--ms-flip) needs an img_scale to scale, and the test pipeline has "
            "none: add dict(type='Resize', img_scale=(W, H), keep_ratio=True) to test_pipeline "
            "(or give MultiScaleFlipAug an img_scale)"
        )
    return cfg


def _as_batch(img):
    img = img if isinstance(img, jt.Var) else jt.array(np.ascontiguousarray(img, dtype=np.float32))
    return img.unsqueeze(0) if img.ndim == 3 else img


def predict_probs(model, views, out_size, flip=False):
    """Softmax probabilities at ``out_size``, averaged over ``views`` (and their mirror images)."""
    total = None
    for img in views:
        batch = _as_batch(img)
        variants = [batch, batch[:, :, :, ::-1]] if flip else [batch]
        for k, view in enumerate(variants):
            probs = jt.nn.softmax(model.inference(view, out_size=out_size), dim=1)
            if k == 1:
                probs = probs[:, :, :, ::-1]
            total = probs if total is None else total + probs
    return total


def predict(model, sample_views, out_size, flip=False):
    """Label map (H, W) int64 for one image given its pre-processed view(s); in eval mode whatever
    mode ``model`` is in (see :func:`inference_context`)."""
    with inference_context(model):
        if len(sample_views) == 1 and not flip:
            return model.predict_labels(_as_batch(sample_views[0]), out_size=out_size).numpy()[0]
        return predict_probs(model, sample_views, out_size, flip).argmax(dim=1)[0].numpy()[0]


def evaluate(
    model,
    dataset,
    ms_flip=False,
    ratios=MS_RATIOS,
    save_preds=None,
    show_dir=None,
    progress=True,
    max_images=None,
    fuse=True,
):
    """Run inference over ``dataset`` and return the metrics dict (percent) of IoUAccumulator.summary.

    ``fuse``: infer with the fused copy of a Jittor ``model`` (``jsegnext.models.fuse``; ``model``
    itself is not changed, so a model in training can be evaluated this way); False: with ``model``
    as it is. The model runs in eval mode and is left in the mode it came in (:func:`inference_context`).
    Label pixels equal to the dataset's ``ignore_index`` are not counted.
    """
    net = fuse_segmentor(model) if fuse and isinstance(model, jt.nn.Module) else model
    pipelines = [build_pipeline(scaled_pipeline(dataset.pipeline_cfg, r)) for r in ratios] if ms_flip else [None]
    accumulator = IoUAccumulator(len(dataset.CLASSES), ignore_index=dataset.ignore_index)
    rank, world = get_rank(), get_world_size()
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    indices = range(rank, count, world)
    for index in tqdm(indices, desc="eval", disable=not progress or rank != 0, dynamic_ncols=True):
        gt = dataset.get_gt_seg_map(index)
        views = [dataset.prepare_test_sample(index, p)["img"] for p in pipelines]
        pred = predict(net, views, gt.shape, flip=ms_flip)
        accumulator.update(pred, gt)
        name = output_name(dataset, index)
        if save_preds:
            _write_png(Path(save_preds) / f"{name}.png", pred.astype(np.uint8))
        if show_dir:
            image = cv2.imread(dataset.img_path(index), cv2.IMREAD_COLOR)
            _write_png(Path(show_dir) / f"{name}.png", overlay(image, pred, dataset.PALETTE))
    accumulator.merge_all_ranks()
    return accumulator.summary(dataset.CLASSES)


def overlay(image_bgr, label, palette, opacity=0.5, ignore_index=255):
    """Blend a colour-coded label map over a BGR image (ignored pixels left untouched)."""
    colours = np.zeros((256, 3), np.uint8)
    colours[: len(palette)] = np.asarray(palette, np.uint8)[:, ::-1]  # palette is RGB
    coloured = colours[label]
    out = image_bgr.astype(np.float32)
    mask = label != ignore_index
    out[mask] = (1 - opacity) * out[mask] + opacity * coloured[mask]
    return out.astype(np.uint8)


def output_name(dataset, index):
    """Name of image ``index``'s prediction files: its path relative to the dataset's img_dir (the
    common folder of several), without its suffix, so images of the same base name in different
    sub-folders (Cityscapes cities, several img_dirs) never overwrite each other."""
    img_dirs = dataset.img_dir if isinstance(dataset.img_dir, list) else [dataset.img_dir]
    base = os.path.commonpath([os.path.abspath(d) for d in img_dirs])
    relative = Path(os.path.relpath(os.path.abspath(dataset.img_files[index]), base))
    name = Path(*[p for p in relative.parts if p != ".."]).as_posix()
    suffix = dataset.img_suffix
    return name[: -len(suffix)] if suffix and name.endswith(suffix) else str(Path(name).with_suffix(""))


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")
