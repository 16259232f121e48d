"""Segmentation metrics exactly as mmsegmentation 0.24 computes them (pure NumPy).

Per image (mmseg ``intersect_and_union``):

* pixels whose label equals ``ignore_index`` (255) are dropped, from the prediction too;
* four histograms over ``num_classes`` bins are counted: ``area_intersect`` (pixels where
  prediction == label, by class), ``area_pred_label``, ``area_label`` and
  ``area_union = area_pred_label + area_label - area_intersect``.
  Values outside ``[0, num_classes)`` fall outside mmseg's ``torch.histc`` range and are not
  counted in that histogram (e.g. a stray label 200 with 150 classes still counts the pixel's
  prediction in ``area_pred_label``, but nowhere else).

Over the data set (mmseg ``total_area_to_metrics`` + ``CustomDataset.evaluate``), the counts are
summed, then

* ``IoU[c] = I[c] / U[c]``, ``Acc[c] = I[c] / area_label[c]`` — 0/0 is NaN: a class with
  ``U == 0`` (never in the labels, never predicted) has IoU NaN and Acc NaN; a class predicted
  but absent from the labels has IoU 0 (it lowers mIoU) and Acc NaN (0/0);
* ``aAcc = sum(I) / sum(area_label)``;
* ``mIoU = nanmean(IoU)``, ``mAcc = nanmean(Acc)`` (NaN classes excluded);
* everything is reported in percent (x100).

Differences from the reference, both invisible at mmseg's 2-decimal printout: the counts here
are exact int64 (mmseg sums float32 ``histc`` tensors), and :meth:`IoUAccumulator.summary`
returns unrounded percentages (mmseg rounds to 2 decimals before reporting);
:func:`format_metrics_table` rounds to 2 decimals like mmseg's tables.
"""

import warnings
from collections import OrderedDict

import numpy as np

from ..constants import IGNORE_INDEX

_ROWS = ("area_intersect", "area_union", "area_pred_label", "area_label")


def intersect_and_union(pred, label, num_classes, ignore_index=IGNORE_INDEX):
    """The four per-class pixel counts of one image: int64 array of shape (4, num_classes).

    Rows, in order: area_intersect, area_union, area_pred_label, area_label.
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    pred = pred.reshape(-1).astype(np.int64, copy=False)
    label = label.reshape(-1).astype(np.int64, copy=False)
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]

    def hist(values):
        values = values[(values >= 0) & (values < num_classes)]
        return np.bincount(values, minlength=num_classes)[:num_classes]

    area_intersect = hist(pred[pred == label])
    area_pred_label = hist(pred)
    area_label = hist(label)
    area_union = area_pred_label + area_label - area_intersect
    return np.stack([area_intersect, area_union, area_pred_label, area_label]).astype(np.int64)


def _divide(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, np.float64) / np.asarray(denominator, np.float64)


def _nanmean(values):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN -> NaN, silently
        return float(np.nanmean(values))


def metrics_from_counts(counts, class_names=None):
    """Metrics (percent) from summed counts (4, num_classes); see the module docstring."""
    counts = np.asarray(counts)
    area_intersect, area_union, _, area_label = counts
    num_classes = counts.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    class_names = [str(n) for n in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    iou = _divide(area_intersect, area_union) * 100
    acc = _divide(area_intersect, area_label) * 100
    return {
        "aAcc": float(_divide(area_intersect.sum(), area_label.sum())) * 100,
        "mIoU": _nanmean(iou),
        "mAcc": _nanmean(acc),
        "IoU": OrderedDict(zip(class_names, (float(v) for v in iou))),
        "Acc": OrderedDict(zip(class_names, (float(v) for v in acc))),
    }


class IoUAccumulator:
    """Sums the per-class counts of mmseg's ``intersect_and_union`` over a data set.

    ``update(pred, label)`` per image (NumPy integer arrays of the same shape); ``summary()`` for
    the metrics. For MPI, each rank accumulates its own images; then either
    ``merge_all_ranks()`` (sums the counts in place across ranks with Jittor's MPI), or sum
    ``state()`` arrays yourself and rebuild with ``IoUAccumulator.from_state``. Counts are int64.
    """

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.counts = np.zeros((4, self.num_classes), np.int64)
        self.num_images = 0

    def update(self, pred, label):
        self.counts += intersect_and_union(pred, label, self.num_classes, self.ignore_index)
        self.num_images += 1
        return self

    # ---------------------------------------------------------------- combining
    def state(self):
        """(5, num_classes) int64: the 4 count rows, then the image count in column 0 of row 4."""
        extra = np.zeros((1, self.num_classes), np.int64)
        extra[0, 0] = self.num_images
        return np.concatenate([self.counts, extra])

    @classmethod
    def from_state(cls, state, ignore_index=IGNORE_INDEX):
        state = np.asarray(state)
        acc = cls(state.shape[1], ignore_index)
        acc.counts = np.rint(state[:4]).astype(np.int64)
        acc.num_images = int(round(float(state[4, 0])))
        return acc

    def merge(self, other):
        """Add another accumulator (or its ``state()``) into this one."""
        state = other.state() if isinstance(other, IoUAccumulator) else np.asarray(other)
        if state.shape != (5, self.num_classes):
            raise ValueError(f"cannot merge counts of shape {state.shape} into {self.num_classes} classes")
        self.counts += np.rint(state[:4]).astype(np.int64)
        self.num_images += int(round(float(state[4, 0])))
        return self

    def merge_all_ranks(self):
        """Sum the counts over all MPI processes (no-op outside MPI). Every rank gets the total."""
        from ..comm import get_world_size, sum_over_processes
        from ..runtime import jt

        if get_world_size() == 1:
            return self
        # float64 holds integers exactly up to 2**53 pixels (an explicit dtype: jt.array would
        # otherwise make float32 of it, exact only to 2**24)
        total = sum_over_processes(jt.array(self.state(), "float64")).numpy()
        merged = IoUAccumulator.from_state(total, self.ignore_index)
        self.counts, self.num_images = merged.counts, merged.num_images
        return self

    # ---------------------------------------------------------------- results
    def summary(self, class_names=None):
        """Dict: aAcc, mIoU, mAcc (floats, percent), IoU and Acc (class name -> percent, NaN where
        undefined), num_images."""
        result = metrics_from_counts(self.counts, class_names)
        result["num_images"] = self.num_images
        return result


def _fmt(value):
    return "nan" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _table(header, rows):
    widths = [max(len(str(c)) for c in col) + 2 for col in zip(header, *rows)]
    rule = "+" + "+".join("-" * w for w in widths) + "+"
    line = lambda cells: "|" + "|".join(str(c).center(w) for c, w in zip(cells, widths)) + "|"  # noqa: E731
    return "\n".join([rule, line(header), rule] + [line(r) for r in rows] + [rule])


def format_metrics_table(summary):
    """mmseg-style text: the per-class IoU/Acc table, then the aAcc/mIoU/mAcc summary (2 decimals)."""
    per_class = _table(
        ["Class", "IoU", "Acc"],
        [[name, _fmt(summary["IoU"][name]), _fmt(summary["Acc"].get(name))] for name in summary["IoU"]],
    )
    overall = _table(["aAcc", "mIoU", "mAcc"], [[_fmt(summary["aAcc"]), _fmt(summary["mIoU"]), _fmt(summary["mAcc"])]])
    return f"per class results:\n{per_class}\nSummary:\n{overall}"
