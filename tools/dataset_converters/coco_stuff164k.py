"""COCO-Stuff 164k: ``stuffthingmaps`` (182 raw ids) -> ``*_labelTrainIds.png`` (171 ids).

Usage::

    python tools/dataset_converters/coco_stuff164k.py COCO_STUFF_ROOT [-o OUT] [--nproc N]

``COCO_STUFF_ROOT`` holds ``images/{train2017,val2017}/*.jpg`` (COCO 2017) and
``annotations/{train2017,val2017}/*.png`` (``stuffthingmaps_trainval2017.zip``).  Writes
``OUT/annotations/{train2017,val2017}/<name>_labelTrainIds.png`` (``OUT`` defaults to the
root; a different ``OUT`` gets an ``images`` symlink).

Label convention of the stuffthingmaps PNGs: pixel value = COCO-Stuff class id - 1, i.e.
0-based (0 = person, ..., 90 = the last thing slot, 91 = banner, ..., 181 = wood), 255 =
unlabeled.  182 slots, 171 of them used: the 11 thing ids COCO never annotated are, in
the PNG's 0-based values, 11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90 (1-based COCO
category ids 12 street sign, 26 hat, 29 shoe, 30 eye glasses, 45 plate, 66 mirror,
68 window, 69 desk, 71 door, 83 blender, 91 hair brush).  The used values are mapped in
increasing order to 0..170 (0..79 things, 80..170 stuff); 255 stays 255, and an unused
value (never present in the official maps) also becomes 255 and is counted.
"""

import glob
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

EXPECTED = {"train2017": 118287, "val2017": 5000}
SPLITS = ("train2017", "val2017")
NUM_RAW = 182
UNUSED_RAW = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)  # 0-based PNG values
USED_RAW = tuple(i for i in range(NUM_RAW) if i not in UNUSED_RAW)
assert len(USED_RAW) == 171

LUT = np.full(256, 255, np.uint8)
LUT[list(USED_RAW)] = np.arange(171, dtype=np.uint8)
KNOWN = np.zeros(256, bool)
KNOWN[list(USED_RAW)] = True
KNOWN[255] = True


def to_train_ids(raw):
    """Raw 0..181/255 map -> (train-id map, number of pixels with an unused/invalid value)."""
    return LUT[raw], int((~KNOWN[raw]).sum())


def convert_one(task):
    src, out_path = task
    if C.is_readable_image(out_path):
        return C.Result(C.SKIPPED)
    try:
        with Image.open(src) as im:
            if im.mode not in ("L", "P"):
                raise ValueError(f"expected a single-channel label PNG, got mode {im.mode}")
            raw = np.array(im)
    except OSError as e:
        raise ValueError(f"unreadable label PNG ({e})") from None
    label, bad = to_train_ids(raw)
    C.save_png(label, out_path)
    return C.Result(C.DONE, stats={"bad_px": bad, "bad_img": int(bad > 0)})


def parse_args(argv=None):
    p = C.make_parser(__doc__)
    p.add_argument("coco_path", help="COCO-Stuff root (holds images/, annotations/)")
    C.add_common_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    root = args.coco_path
    out = args.out_dir or root
    ann_root = C.require_dir(os.path.join(root, "annotations"), "annotations folder")
    reports, rows = [], []
    for split in SPLITS:
        srcs = sorted(
            p for p in glob.glob(os.path.join(ann_root, split, "*.png")) if not p.endswith("_labelTrainIds.png")
        )
        tasks = [
            (p, os.path.join(out, "annotations", split, os.path.basename(p)[: -len(".png")] + "_labelTrainIds.png"))
            for p in srcs
        ]
        reports.append(C.track_map(convert_one, tasks, args.nproc, desc=f"{split} -> labelTrainIds"))
        rows.append((f"{split} label maps", len(srcs), EXPECTED[split]))
    if not C.same_path(out, root):
        C.link_dir(os.path.join(root, "images"), os.path.join(out, "images"))
    notes = []
    bad = sum(r.stats["bad_px"] for r in reports)
    if bad:
        notes.append(
            f"{bad} pixels in {sum(r.stats['bad_img'] for r in reports)} maps had a "
            f"value outside the 171 used ids and 255 (written as 255)"
        )
    if not any(n for _, n, _ in rows):
        C.fail_usage(f"no label PNGs in {ann_root}/{{train2017,val2017}}")
    return C.print_summary("COCO-Stuff 164k", rows, reports, notes)


if __name__ == "__main__":
    sys.exit(main())
