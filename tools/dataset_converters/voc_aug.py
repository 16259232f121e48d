"""Pascal VOC 2012 + SBD ("aug"): ``SegmentationClassAug`` and the aug / trainaug lists.

Usage::

    python tools/dataset_converters/voc_aug.py DEVKIT_PATH AUG_PATH [-o OUT] [--nproc N]

``DEVKIT_PATH`` is the ``VOCdevkit`` folder from ``VOCtrainval_11-May-2012.tar`` (it holds
``VOC2012/``).  ``AUG_PATH`` is SBD's ``benchmark_RELEASE`` folder from ``benchmark.tgz``
(it holds ``dataset/cls/*.mat``, ``dataset/train.txt``, ``dataset/val.txt``); the
``dataset`` folder itself is accepted too.  Writes, under ``OUT/VOC2012`` (``OUT``
defaults to ``DEVKIT_PATH``):

* ``SegmentationClassAug/*.png`` - single-channel uint8 label PNGs without a palette
  (0..20, 255 = boundary/ignore): SBD's ``GTcls.Segmentation`` for every ``.mat``, and
  VOC's own ``SegmentationClass`` annotation for the 2,913 images that have one (those
  are palette PNGs: the palette *indices* are the labels).  Where both exist, VOC's
  annotation wins - it is the one mmseg's concat config reads for VOC train images, and
  the one with the 255 object boundaries.
* ``ImageSets/Segmentation/aug.txt`` - SBD train + SBD val minus VOC train and VOC val
  (9,118 names, mmseg's definition: disjoint from VOC train so that
  ``train.txt`` + ``aug.txt`` concatenated is the trainaug set without duplicates);
* ``ImageSets/Segmentation/trainaug.txt`` - VOC train + SBD train + SBD val minus VOC val
  (10,582 names).
"""

import glob
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

EXPECTED = {
    "VOC SegmentationClass PNGs": 2913,
    "SBD cls .mat files": 11355,
    "SegmentationClassAug PNGs": 12031,
    "VOC train.txt": 1464,
    "VOC val.txt": 1449,
    "aug.txt": 9118,
    "trainaug.txt": 10582,
}
NUM_CLASSES = 21
IGNORE = 255


def voc_palette():
    """The VOC colour map (bit-interleaved), index -> (r, g, b); 255 -> (224, 224, 192)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def _rgb_to_index(rgb):
    pal = voc_palette()
    valid = list(range(NUM_CLASSES)) + [IGNORE]
    codes = (pal[valid].astype(np.int64) << np.array([16, 8, 0])).sum(1)
    order = np.argsort(codes)
    codes, valid = codes[order], np.array(valid)[order]
    px = (rgb[..., :3].astype(np.int64) << np.array([16, 8, 0])).sum(-1)
    pos = np.clip(np.searchsorted(codes, px), 0, len(codes) - 1)
    if not np.all(codes[pos] == px):
        raise ValueError("RGB label image has colours outside the VOC palette")
    return valid[pos].astype(np.uint8)


def read_voc_label(path):
    """VOC ``SegmentationClass`` PNG -> class indices (palette indices, not colours)."""
    with Image.open(path) as im:
        if im.mode in ("P", "L"):
            return np.array(im)  # for P: the indices, which is what VOC stores
        if im.mode in ("RGB", "RGBA"):
            return _rgb_to_index(np.array(im))
        raise ValueError(f"unexpected image mode {im.mode}")


def read_sbd_mat(path):
    """SBD ``cls/*.mat`` (MATLAB struct ``GTcls``, field ``Segmentation``) -> uint8 labels."""
    from scipy.io import loadmat

    data = loadmat(path)
    if "GTcls" not in data:
        raise ValueError("no 'GTcls' struct in the .mat file")
    gt = data["GTcls"]
    if gt.dtype.names is None or "Segmentation" not in gt.dtype.names:
        raise ValueError("'GTcls' has no field 'Segmentation'")
    seg = np.asarray(gt["Segmentation"].ravel()[0])
    if seg.ndim != 2:
        raise ValueError(f"'GTcls.Segmentation' has shape {seg.shape}, expected 2-D")
    return seg


def _check_values(label):
    bad = (label >= NUM_CLASSES) & (label != IGNORE)
    n = int(bad.sum())
    if n:
        raise ValueError(f"{n} pixels with values outside 0..20/255: {sorted(np.unique(label[bad]).tolist())[:10]}")


def convert_one(task):
    src, out_path, kind = task
    if C.is_readable_image(out_path):
        return C.Result(C.SKIPPED)
    try:
        label = read_voc_label(src) if kind == "voc" else read_sbd_mat(src)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"unreadable {kind} annotation ({type(e).__name__}: {e})") from None
    if label.dtype != np.uint8:
        if label.min() < 0 or label.max() > 255:
            raise ValueError(f"label values {label.min()}..{label.max()} do not fit uint8")
        label = label.astype(np.uint8)
    _check_values(label)
    C.save_png(label, out_path)
    return C.Result(C.DONE)


def _voc_root(devkit):
    if os.path.isdir(os.path.join(devkit, "VOC2012")):
        return os.path.join(devkit, "VOC2012"), False
    if os.path.isdir(os.path.join(devkit, "ImageSets", "Segmentation")):
        return devkit, True  # given the VOC2012 folder itself
    C.fail_usage(f"no VOC2012/ folder in {devkit}")


def _sbd_root(aug):
    for cand in (os.path.join(aug, "dataset"), aug):
        if os.path.isdir(os.path.join(cand, "cls")):
            return cand
    C.fail_usage(f"no dataset/cls/ (SBD benchmark_RELEASE layout) in {aug}")


def parse_args(argv=None):
    p = C.make_parser(__doc__)
    p.add_argument("devkit_path", help="VOCdevkit folder (holds VOC2012/)")
    p.add_argument("aug_path", help="SBD benchmark_RELEASE folder (holds dataset/cls/)")
    C.add_common_args(p, out_help="output devkit root (default: DEVKIT_PATH)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    voc, given_voc_dir = _voc_root(args.devkit_path)
    sbd = _sbd_root(args.aug_path)
    if args.out_dir is None:
        out_voc = voc
    else:
        out_voc = args.out_dir if given_voc_dir else os.path.join(args.out_dir, "VOC2012")
    out_ann = os.path.join(out_voc, "SegmentationClassAug")
    sets_in = os.path.join(voc, "ImageSets", "Segmentation")
    sets_out = os.path.join(out_voc, "ImageSets", "Segmentation")

    voc_train = C.read_list(C.require_file(os.path.join(sets_in, "train.txt"), "VOC train list"))
    voc_val = C.read_list(C.require_file(os.path.join(sets_in, "val.txt"), "VOC val list"))
    sbd_train = C.read_list(C.require_file(os.path.join(sbd, "train.txt"), "SBD train list"))
    sbd_val = C.read_list(C.require_file(os.path.join(sbd, "val.txt"), "SBD val list"))

    voc_pngs = sorted(glob.glob(os.path.join(voc, "SegmentationClass", "*.png")))
    mats = sorted(glob.glob(os.path.join(sbd, "cls", "*.mat")))
    if not mats:
        C.fail_usage(f"no .mat files in {os.path.join(sbd, 'cls')}")
    voc_stems = {os.path.splitext(os.path.basename(p))[0] for p in voc_pngs}
    tasks = [(p, os.path.join(out_ann, os.path.basename(p)), "voc") for p in voc_pngs]
    for m in mats:
        stem = os.path.splitext(os.path.basename(m))[0]
        if stem not in voc_stems:  # VOC's own annotation has priority
            tasks.append((m, os.path.join(out_ann, stem + ".png"), "sbd"))
    report = C.track_map(convert_one, tasks, args.nproc, desc="VOC + SBD -> SegmentationClassAug")

    sbd_all = set(sbd_train) | set(sbd_val)
    aug = sorted(sbd_all - set(voc_train) - set(voc_val))
    trainaug = sorted((set(voc_train) | sbd_all) - set(voc_val))
    C.write_list(os.path.join(sets_out, "aug.txt"), aug)
    C.write_list(os.path.join(sets_out, "trainaug.txt"), trainaug)
    if not C.same_path(out_voc, voc):
        for name in ("train.txt", "val.txt", "trainval.txt"):
            if os.path.isfile(os.path.join(sets_in, name)):
                C.copy_file(os.path.join(sets_in, name), os.path.join(sets_out, name))
        for d in ("JPEGImages", "SegmentationClass"):
            C.link_dir(os.path.join(voc, d), os.path.join(out_voc, d))

    n_out = len(glob.glob(os.path.join(out_ann, "*.png")))
    missing = [n for n in trainaug if not os.path.isfile(os.path.join(out_ann, n + ".png"))]
    notes = []
    if missing:
        notes.append(f"{len(missing)} trainaug names have no label in {out_ann} (first: {missing[:5]})")
    rows = [
        ("VOC SegmentationClass PNGs", len(voc_pngs), EXPECTED["VOC SegmentationClass PNGs"]),
        ("SBD cls .mat files", len(mats), EXPECTED["SBD cls .mat files"]),
        ("SegmentationClassAug PNGs", n_out, EXPECTED["SegmentationClassAug PNGs"]),
        ("VOC train.txt", len(voc_train), EXPECTED["VOC train.txt"]),
        ("VOC val.txt", len(voc_val), EXPECTED["VOC val.txt"]),
        ("aug.txt", len(aug), EXPECTED["aug.txt"]),
        ("trainaug.txt", len(trainaug), EXPECTED["trainaug.txt"]),
    ]
    return C.print_summary("Pascal VOC 2012 + SBD", rows, [report], notes)


if __name__ == "__main__":
    sys.exit(main())
