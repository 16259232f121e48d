"""Evaluation: whole / sliding-window / multi-scale + flip inference over a dataset, and mIoU.

With MPI each process takes every ``world_size``-th image and the per-class counts are summed
across processes, so the result equals a single-process run.
"""
import copy
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..datasets import build_pipeline
from ..models.fuse import fuse_segmentor
from ..runtime import jt
from .metrics import IoUAccumulator

MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def scaled_pipeline(pipeline_cfg, ratio):
    """The test pipeline config with its Resize target scaled by ``ratio`` (mmseg's MultiScaleFlipAug)."""
    cfg = copy.deepcopy([dict(t) for t in pipeline_cfg])
    for t in cfg:
        if t["type"] in ("Resize", "AlignResize"):
            t["img_scale"] = tuple(int(s * ratio) for s in t["img_scale"])
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
    """Label map (H, W) int64 for one image given its pre-processed view(s)."""
    with jt.no_grad():
        if len(sample_views) == 1 and not flip:
            return model.predict_labels(_as_batch(sample_views[0]), out_size=out_size).numpy()[0]
        return predict_probs(model, sample_views, out_size, flip).argmax(dim=1)[0].numpy()[0]


def evaluate(model, dataset, ms_flip=False, ratios=MS_RATIOS, save_preds=None, show_dir=None,
             progress=True, max_images=None, fuse=True):
    """Run inference over ``dataset`` and return the metrics dict (percent) of IoUAccumulator.summary.

    ``fuse``: infer with the fused copy of ``model`` (``jsegnext.models.fuse``; ``model`` itself is not
    changed, so a model in training can be evaluated this way); False: with ``model`` as it is.
    """
    model.eval()
    net = fuse_segmentor(model) if fuse else model
    pipelines = [build_pipeline(scaled_pipeline(dataset.pipeline_cfg, r)) for r in ratios] if ms_flip else [None]
    accumulator = IoUAccumulator(len(dataset.CLASSES))
    rank, world = (jt.rank, jt.world_size) if jt.in_mpi else (0, 1)
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    indices = range(rank, count, world)
    for index in tqdm(indices, desc="eval", disable=not progress or rank != 0, dynamic_ncols=True):
        gt = dataset.get_gt_seg_map(index)
        views = [dataset.prepare_test_sample(index, p)["img"] for p in pipelines]
        pred = predict(net, views, gt.shape, flip=ms_flip)
        accumulator.update(pred, gt)
        name = _base_name(dataset.img_files[index], dataset.img_suffix)
        if save_preds:
            _write_png(Path(save_preds) / f"{name}.png", pred.astype(np.uint8))
        if show_dir:
            image = cv2.imread(dataset.img_path(index), cv2.IMREAD_COLOR)
            _write_png(Path(show_dir) / f"{name}.png", overlay(image, pred, dataset.PALETTE))
    if jt.in_mpi:
        accumulator.merge_all_ranks()
    model.train()
    return accumulator.summary(dataset.CLASSES)


def overlay(image_bgr, label, palette, opacity=0.5, ignore_index=255):
    """Blend a colour-coded label map over a BGR image (ignored pixels left untouched)."""
    colours = np.zeros((256, 3), np.uint8)
    colours[:len(palette)] = np.asarray(palette, np.uint8)[:, ::-1]  # palette is RGB
    coloured = colours[label]
    out = image_bgr.astype(np.float32)
    mask = label != ignore_index
    out[mask] = (1 - opacity) * out[mask] + opacity * coloured[mask]
    return out.astype(np.uint8)


def _base_name(path, suffix):
    name = Path(path).name
    return name[:-len(suffix)] if suffix and name.endswith(suffix) else Path(path).stem


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")
