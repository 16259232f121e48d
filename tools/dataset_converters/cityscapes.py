"""Cityscapes: polygon annotations -> ``*_gtFine_labelTrainIds.png`` (+ split lists).

Usage::

    python tools/dataset_converters/cityscapes.py CITYSCAPES_ROOT [-o OUT] [--nproc N]

``CITYSCAPES_ROOT`` holds ``leftImg8bit/`` and ``gtFine/`` as unpacked from the official
``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``.  For every
``gtFine/{split}/{city}/*_gtFine_polygons.json`` this writes
``OUT/gtFine/{split}/{city}/*_gtFine_labelTrainIds.png`` (19 train ids 0..18, 255 = ignore)
and ``OUT/{train,val,test}.txt`` with one ``city/city_xxxxxx_yyyyyy`` per line, the
layout mmsegmentation uses.  ``OUT`` defaults to ``CITYSCAPES_ROOT`` (labels land next to
the JSON files); a different ``OUT`` gets a ``leftImg8bit`` symlink so it is a complete
data root.

Rasterisation: with the optional ``cityscapesscripts`` package installed
(``pip install jsegnext[cityscapes]``) its ``json2labelImg(json, png, 'trainIds')`` is
used; otherwise the built-in rasteriser below, which follows the same rules (official
label table; objects drawn in file order, later over earlier; ``deleted`` objects skipped;
``xxxgroup`` mapped to ``xxx``; labels with id < 0 - the licence plate - not drawn) and
the same drawing primitive, ``PIL.ImageDraw.polygon``, so the output is pixel-identical to
the official tool's.  ``--backend`` forces one or the other.
"""

import contextlib
import glob
import io
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

EXPECTED = {"train": 2975, "val": 500, "test": 1525}  # gtFine_trainvaltest

# The official label table (cityscapesscripts/helpers/labels.py): name, id, trainId.
LABELS = [
    ("unlabeled", 0, 255),
    ("ego vehicle", 1, 255),
    ("rectification border", 2, 255),
    ("out of roi", 3, 255),
    ("static", 4, 255),
    ("dynamic", 5, 255),
    ("ground", 6, 255),
    ("road", 7, 0),
    ("sidewalk", 8, 1),
    ("parking", 9, 255),
    ("rail track", 10, 255),
    ("building", 11, 2),
    ("wall", 12, 3),
    ("fence", 13, 4),
    ("guard rail", 14, 255),
    ("bridge", 15, 255),
    ("tunnel", 16, 255),
    ("pole", 17, 5),
    ("polegroup", 18, 255),
    ("traffic light", 19, 6),
    ("traffic sign", 20, 7),
    ("vegetation", 21, 8),
    ("terrain", 22, 9),
    ("sky", 23, 10),
    ("person", 24, 11),
    ("rider", 25, 12),
    ("car", 26, 13),
    ("truck", 27, 14),
    ("bus", 28, 15),
    ("caravan", 29, 255),
    ("trailer", 30, 255),
    ("train", 31, 16),
    ("motorcycle", 32, 17),
    ("bicycle", 33, 18),
    ("license plate", -1, -1),
]
NAME2LABEL = {name: (lid, tid) for name, lid, tid in LABELS}
CLASSES = tuple(name for name, _, tid in sorted((l for l in LABELS if 0 <= l[2] < 255), key=lambda l: l[2]))
assert len(CLASSES) == 19


def _cityscapesscripts():
    try:
        from cityscapesscripts.preparation.json2labelImg import json2labelImg
    except ImportError:
        return None
    return json2labelImg


def rasterize(annotation):
    """Polygon annotation dict (the JSON's content) -> HxW uint8 train-id map."""
    size = (int(annotation["imgWidth"]), int(annotation["imgHeight"]))
    img = Image.new("L", size, NAME2LABEL["unlabeled"][1])
    draw = ImageDraw.Draw(img)
    for obj in annotation["objects"]:
        if obj.get("deleted", 0):
            continue
        label = obj["label"]
        if label not in NAME2LABEL and label.endswith("group"):
            label = label[: -len("group")]
        if label not in NAME2LABEL:
            raise ValueError(f"label {obj['label']!r} not in the Cityscapes label table")
        label_id, train_id = NAME2LABEL[label]
        if label_id < 0:
            continue
        draw.polygon([(p[0], p[1]) for p in obj["polygon"]], fill=train_id)
    return np.asarray(img)


def label_path_for(json_path, gt_root, out_gt_root):
    rel = os.path.relpath(json_path, gt_root)
    return os.path.join(out_gt_root, rel[: -len("_polygons.json")] + "_labelTrainIds.png")


def convert_one(task):
    json_path, out_path, backend = task
    if C.is_readable_image(out_path):
        return C.Result(C.SKIPPED)
    if backend == "cityscapesscripts":
        json2labelImg = _cityscapesscripts()
        # the package names the format after the file suffix: keep ".png" on the temp file
        tmp = out_path[: -len(".png")] + f".{os.getpid()}.tmp.png"
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        said = io.StringIO()
        try:
            try:
                with contextlib.redirect_stdout(said):
                    json2labelImg(json_path, tmp, "trainIds")
            except SystemExit:  # the package prints an error and exits, e.g. on an unknown label
                msg = next(
                    (l for l in said.getvalue().splitlines() if l.startswith("ERROR")), "cityscapesscripts exited"
                )
                raise ValueError(msg) from None
            if not C.is_readable_image(tmp):
                raise RuntimeError("cityscapesscripts wrote no readable label image")
            os.replace(tmp, out_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return C.Result(C.DONE)
    try:
        with open(json_path) as f:
            annotation = json.load(f)
        label = rasterize(annotation)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"cannot rasterise the polygon file ({type(e).__name__}: {e})") from None
    C.save_png(label, out_path)
    return C.Result(C.DONE)


def parse_args(argv=None):
    p = C.make_parser(__doc__)
    p.add_argument("cityscapes_path", help="Cityscapes root (holds gtFine/, leftImg8bit/)")
    p.add_argument("--gt-dir", default="gtFine", help="annotation folder (default gtFine)")
    p.add_argument(
        "--backend",
        choices=("auto", "cityscapesscripts", "builtin"),
        default="auto",
        help="rasteriser: cityscapesscripts if installed (auto), or the built-in one",
    )
    C.add_common_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    root = args.cityscapes_path
    out = args.out_dir or root
    gt_root = C.require_dir(os.path.join(root, args.gt_dir), "annotation folder")
    out_gt_root = os.path.join(out, args.gt_dir)

    backend = args.backend
    if backend == "auto":
        backend = "cityscapesscripts" if _cityscapesscripts() else "builtin"
    elif backend == "cityscapesscripts" and _cityscapesscripts() is None:
        C.fail_usage("--backend cityscapesscripts: the package is not installed (pip install cityscapesscripts)")
    print(f"rasteriser: {backend}")

    jsons = sorted(glob.glob(os.path.join(gt_root, "*", "*", "*_polygons.json")))
    if not jsons:
        C.fail_usage(f"no */*/*_polygons.json under {gt_root}")
    tasks = [(j, label_path_for(j, gt_root, out_gt_root), backend) for j in jsons]
    report = C.track_map(convert_one, tasks, args.nproc, desc="polygons -> labelTrainIds")

    splits = sorted({os.path.relpath(j, gt_root).split(os.sep)[0] for j in jsons})
    rows = []
    suffix = f"_{args.gt_dir}_polygons.json"
    for split in splits:
        names = []
        for j in jsons:
            rel = os.path.relpath(j, os.path.join(gt_root, split))
            if rel.startswith(".."):
                continue
            name = rel.replace(os.sep, "/")
            name = name[: -len(suffix)] if name.endswith(suffix) else name[: -len("_polygons.json")]
            names.append(name)
        C.write_list(os.path.join(out, f"{split}.txt"), sorted(names))
        rows.append(
            (f"{split} label maps / {split}.txt", len(names), EXPECTED.get(split) if args.gt_dir == "gtFine" else None)
        )
    notes = []
    for split in EXPECTED:
        if args.gt_dir == "gtFine" and split not in splits:
            notes.append(f"no {split} split found under {gt_root}")
    if not C.same_path(out, root):
        C.link_dir(os.path.join(root, "leftImg8bit"), os.path.join(out, "leftImg8bit"))
    return C.print_summary("Cityscapes", rows, [report], notes)


if __name__ == "__main__":
    sys.exit(main())
