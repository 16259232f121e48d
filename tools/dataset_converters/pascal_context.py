"""Pascal Context (59 classes + background) from the Detail annotation ``trainval_merged.json``.

Usage::

    python tools/dataset_converters/pascal_context.py DEVKIT_PATH JSON_PATH [-o OUT] [--nproc N]

``DEVKIT_PATH`` is the ``VOCdevkit`` folder of ``VOCtrainval_03-May-2010.tar`` (holds
``VOC2010/JPEGImages``); ``JSON_PATH`` is ``trainval_merged.json`` (PASCAL in Detail).
Writes, under ``OUT/VOC2010`` (``OUT`` defaults to ``DEVKIT_PATH``):

* ``SegmentationClassContext/<image>.png`` - single-channel uint8 labels 0..59, 0 =
  background (everything outside the 59 classes); the Pascal-Context-59 configs load them
  with ``reduce_zero_label``;
* ``ImageSets/SegmentationContext/{train,val}.txt`` - the Detail ``phase`` of each image
  (4,998 / 5,105 images in the official release).

The JSON holds ``images`` (``image_id``, ``file_name``, ``height``, ``width``, ``phase``),
``annos_segmentation`` (``image_id``, ``category_id``, ``segmentation`` as COCO RLE) and
``categories``.  The label map of an image is what the Detail API's ``getMask(img)``
builds - every annotation of the image painted with its raw ``category_id`` in file order,
later over earlier, 0 elsewhere - then mapped to 0..59 by the sorted list of the 60 raw ids
below (the list PyTorch-Encoding and mmsegmentation use).  The default ``builtin`` backend
decodes the RLE itself (no ``detail``/``pycocotools`` needed, parallel); ``--backend
detail`` uses the ``detail`` package's ``getMask`` instead, serially, as mmseg does.
Raw ids outside the 60 (mmseg asserts there are none) become 0 and are counted.
"""

import json
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

EXPECTED = {"train": 4998, "val": 5105}

# Raw Pascal Context category ids (labels.txt of the 459-class release, 1-based) of
# background + the 59 classes; sorted, position i is train id i, which makes the order
# alphabetical: 2 aeroplane, 9 bag, 18 bed, 19 bedclothes, 22 bench, ... 458 wood.
CONTEXT59_RAW_IDS = np.sort(
    np.array(
        [
            0,
            2,
            259,
            260,
            415,
            324,
            9,
            258,
            144,
            18,
            19,
            22,
            23,
            397,
            25,
            284,
            158,
            159,
            416,
            33,
            162,
            420,
            454,
            295,
            296,
            427,
            44,
            45,
            46,
            308,
            59,
            440,
            445,
            31,
            232,
            65,
            354,
            424,
            68,
            326,
            72,
            458,
            34,
            207,
            80,
            355,
            85,
            347,
            220,
            349,
            360,
            98,
            187,
            104,
            105,
            366,
            189,
            368,
            113,
            115,
        ]
    )
)
assert len(CONTEXT59_RAW_IDS) == 60 and len(set(CONTEXT59_RAW_IDS.tolist())) == 60
CLASSES = (
    "background",
    "aeroplane",
    "bag",
    "bed",
    "bedclothes",
    "bench",
    "bicycle",
    "bird",
    "boat",
    "book",
    "bottle",
    "building",
    "bus",
    "cabinet",
    "car",
    "cat",
    "ceiling",
    "chair",
    "cloth",
    "computer",
    "cow",
    "cup",
    "curtain",
    "dog",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "horse",
    "keyboard",
    "light",
    "motorbike",
    "mountain",
    "mouse",
    "person",
    "plate",
    "platform",
    "pottedplant",
    "road",
    "rock",
    "sheep",
    "shelves",
    "sidewalk",
    "sign",
    "sky",
    "snow",
    "sofa",
    "table",
    "track",
    "train",
    "tree",
    "truck",
    "tvmonitor",
    "wall",
    "water",
    "window",
    "wood",
)


# --------------------------------------------------------------------------------------
# COCO run-length encoding
# --------------------------------------------------------------------------------------
def rle_string_to_counts(s):
    """Decode COCO's compressed RLE string into run lengths.

    Each count is written in 5-bit groups, least significant first, as characters
    ``48 + group`` with bit 0x20 set on all but the last group of a number; the last
    group's bit 0x10 is the sign.  From the 4th count on, the value is stored as the
    difference to the count two places before.
    """
    if isinstance(s, str):
        s = s.encode("ascii")
    c = np.frombuffer(s, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("invalid character in compressed RLE counts")
    last = (c & 0x20) == 0
    if not last[-1]:
        raise ValueError("truncated compressed RLE counts")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    token = np.repeat(np.arange(len(ends)), ends - starts + 1)
    k = np.arange(len(c)) - starts[token]  # position of the 5-bit group in its number
    if k.max() > 11:
        raise ValueError("compressed RLE count too long")
    x = np.zeros(len(ends), np.int64)
    np.add.at(x, token, (c & 0x1F) << (5 * k))
    ngroups = ends - starts + 1
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * ngroups[negative])
    counts = x.copy()
    counts[1::2] = np.cumsum(x[1::2])  # delta coding: m > 2 adds counts[m - 2]
    counts[2::2] = np.cumsum(x[2::2])
    return counts


def counts_to_rle_string(counts):
    """Inverse of :func:`rle_string_to_counts` (COCO's ``rleToString``)."""
    counts = [int(v) for v in counts]
    out = bytearray()
    for i, v in enumerate(counts):
        x = v - counts[i - 2] if i > 2 else v
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return out.decode("ascii")


def rle_decode(rle):
    """COCO RLE dict (``size`` = [h, w]; ``counts`` compressed str/bytes or a list) ->
    HxW uint8 mask.  Runs alternate 0, 1, 0, ... over the pixels in column-major order."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = (
        np.asarray(counts, np.int64) if isinstance(counts, (list, tuple, np.ndarray)) else rle_string_to_counts(counts)
    )
    if counts.size and counts.min() < 0:
        raise ValueError("negative run length in RLE")
    if counts.sum() != h * w:
        raise ValueError(f"RLE runs cover {counts.sum()} pixels, size says {h}x{w}")
    flat = np.repeat((np.arange(len(counts)) % 2).astype(np.uint8), counts)
    return flat.reshape(w, h).T


def rle_encode(mask):
    """HxW binary mask -> COCO RLE dict with compressed counts (used by the tests)."""
    flat = np.asarray(mask, np.uint8).T.reshape(-1)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_rle_string(runs)}


def polygons_to_mask(polys, h, w):
    """COCO polygon list ``[[x0, y0, x1, y1, ...], ...]`` -> HxW mask (cv2 fill; pycocotools
    rasterises polygons slightly differently at the boundary - Detail uses RLE anyway)."""
    import cv2

    mask = np.zeros((h, w), np.uint8)
    pts = [np.round(np.asarray(p, np.float64).reshape(-1, 2)).astype(np.int32) for p in polys if len(p) >= 6]
    if pts:
        cv2.fillPoly(mask, pts, 1)
    return mask


def decode_segmentation(seg, h, w):
    if isinstance(seg, dict):
        m = rle_decode(seg)
    elif isinstance(seg, list) and seg and isinstance(seg[0], dict):
        m = np.zeros((h, w), np.uint8)
        for part in seg:
            m |= rle_decode(part)
    elif isinstance(seg, list):
        m = polygons_to_mask(seg, h, w)
    else:
        raise ValueError(f"unsupported segmentation of type {type(seg).__name__}")
    if m.shape != (h, w):
        raise ValueError(f"segmentation is {m.shape[0]}x{m.shape[1]}, image is {h}x{w}")
    return m


# --------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------
def raw_to_context59(raw):
    """Raw category-id map -> (0..59 uint8 map, number of pixels with an id outside the 60)."""
    lut_size = max(int(raw.max()) + 1, int(CONTEXT59_RAW_IDS[-1]) + 1)
    lut = np.zeros(lut_size, np.uint8)
    known = np.zeros(lut_size, bool)
    lut[CONTEXT59_RAW_IDS] = np.arange(60, dtype=np.uint8)
    known[CONTEXT59_RAW_IDS] = True
    if raw.min() < 0:
        raise ValueError("negative category id")
    return lut[raw], int((~known[raw]).sum())


def build_raw_mask(h, w, anns):
    """``anns``: [(category_id, segmentation)] in file order -> HxW raw category ids."""
    raw = np.zeros((h, w), np.int32)
    for cat, seg in anns:
        raw[decode_segmentation(seg, h, w) != 0] = int(cat)
    return raw


def _finish(raw, out_path):
    label, unknown = raw_to_context59(raw)
    C.save_png(label, out_path)
    return C.Result(C.DONE, stats={"unknown_px": unknown, "unknown_img": int(unknown > 0)})


def convert_one(task):
    key, h, w, anns, out_path = task
    if C.is_readable_image(out_path):
        return C.Result(C.SKIPPED)
    try:
        raw = build_raw_mask(int(h), int(w), anns)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"bad segmentation annotation ({type(e).__name__}: {e})") from None
    return _finish(raw, out_path)


def _stem(file_name):
    return os.path.splitext(os.path.basename(file_name))[0]


def _voc2010(devkit):
    if os.path.isdir(os.path.join(devkit, "VOC2010")):
        return os.path.join(devkit, "VOC2010"), False
    if os.path.isdir(os.path.join(devkit, "JPEGImages")):
        return devkit, True
    C.fail_usage(f"no VOC2010/ folder in {devkit}")


def load_detail_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
        images = data["images"]
        annos = data["annos_segmentation"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: cannot read the Detail annotation {path}: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    return images, annos


def parse_args(argv=None):
    p = C.make_parser(__doc__)
    p.add_argument("devkit_path", help="VOCdevkit folder (holds VOC2010/)")
    p.add_argument("json_path", help="trainval_merged.json (PASCAL in Detail)")
    p.add_argument(
        "--backend",
        choices=("builtin", "detail"),
        default="builtin",
        help="builtin RLE decoder (default, parallel) or the detail package",
    )
    C.add_common_args(p, out_help="output devkit root (default: DEVKIT_PATH)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    voc, given_voc_dir = _voc2010(args.devkit_path)
    C.require_file(args.json_path, "Detail annotation")
    if args.out_dir is None:
        out_voc = voc
    else:
        out_voc = args.out_dir if given_voc_dir else os.path.join(args.out_dir, "VOC2010")
    out_ann = os.path.join(out_voc, "SegmentationClassContext")
    out_sets = os.path.join(out_voc, "ImageSets", "SegmentationContext")

    reports, lists = [], {}
    if args.backend == "detail":
        reports, lists = _run_detail(args, voc, out_ann)
    else:
        print(f"loading {args.json_path} ...")
        images, annos = load_detail_json(args.json_path)
        by_image = defaultdict(list)
        for a in annos:
            by_image[a["image_id"]].append((a["category_id"], a["segmentation"]))
        del annos
        json_name = os.path.basename(args.json_path)
        for phase in ("train", "val"):
            imgs = [im for im in images if im.get("phase") == phase]
            tasks = [
                (
                    f"{json_name}[{im['file_name']}]",
                    im["height"],
                    im["width"],
                    by_image.get(im["image_id"], []),
                    os.path.join(out_ann, _stem(im["file_name"]) + ".png"),
                )
                for im in imgs
            ]
            reports.append(C.track_map(convert_one, tasks, args.nproc, desc=f"{phase} masks"))
            lists[phase] = sorted(_stem(im["file_name"]) for im in imgs)

    for phase, names in lists.items():
        C.write_list(os.path.join(out_sets, f"{phase}.txt"), names)
    if not C.same_path(out_voc, voc):
        C.link_dir(os.path.join(voc, "JPEGImages"), os.path.join(out_voc, "JPEGImages"))

    rows, notes = [], []
    jpeg_dir = os.path.join(voc, "JPEGImages")
    for phase in ("train", "val"):
        names = lists.get(phase, [])
        rows.append((f"{phase} label maps / {phase}.txt", len(names), EXPECTED[phase]))
        if os.path.isdir(jpeg_dir):
            missing = sum(not os.path.isfile(os.path.join(jpeg_dir, n + ".jpg")) for n in names)
            if missing:
                notes.append(f"{missing} {phase} images are not in {jpeg_dir}")
    if not os.path.isdir(jpeg_dir):
        notes.append(f"{jpeg_dir} not found (the labels are written anyway)")
    unknown = sum(r.stats["unknown_px"] for r in reports)
    if unknown:
        n_img = sum(r.stats["unknown_img"] for r in reports)
        notes.append(
            f"{unknown} pixels in {n_img} images had a category outside the 59 classes and were set to background (0)"
        )
    return C.print_summary("Pascal Context 59", rows, reports, notes)


def _run_detail(args, voc, out_ann):
    """mmseg's route: the ``detail`` package's ``getMask`` (serial)."""
    try:
        from detail import Detail
    except ImportError:
        C.fail_usage("--backend detail: the 'detail' package is not installed")
    reports, lists = [], {}
    for phase in ("train", "val"):
        detail = Detail(args.json_path, os.path.join(voc, "JPEGImages"), phase)
        imgs = detail.getImgs()

        def one(task, detail=detail):
            img, out_path = task[1], task[2]
            if C.is_readable_image(out_path):
                return C.Result(C.SKIPPED)
            return _finish(np.asarray(detail.getMask(img)).astype(np.int32), out_path)

        tasks = [(im["file_name"], im, os.path.join(out_ann, _stem(im["file_name"]) + ".png")) for im in imgs]
        reports.append(C.track_map(one, tasks, 1, desc=f"{phase} masks (detail)"))
        lists[phase] = sorted(_stem(im["file_name"]) for im in imgs)
    return reports, lists


if __name__ == "__main__":
    sys.exit(main())
