"""iSAID: RGB semantic masks -> class ids, cut into 896x896 patches (overlap 384).

Usage::

    python tools/dataset_converters/isaid.py DATASET_PATH [-o OUT] [--nproc N]

``DATASET_PATH`` is laid out as the official downloads are (DOTA-v1.0 images + iSAID
semantic masks), zipped or already unzipped::

    train/images/part1.zip part2.zip part3.zip   (or the P*.png files, any depth)
    train/Semantic_masks/images.zip             (or P*_instance_color_RGB.png files)
    val/images/part1.zip   val/Semantic_masks/images.zip
    test/images/part1.zip part2.zip             (optional; no masks)

The semantic mask of ``P0000.png`` is ``P0000_instance_color_RGB.png`` (the
``*_instance_id_RGB.png`` files are instance ids and are ignored).  Its colours map to the
16 classes below; a colour outside the table becomes 255 (ignore) and is counted.
Written, under ``OUT`` (default ``DATASET_PATH``), in mmsegmentation's layout and naming:

* ``img_dir/{train,val}/P0000_{y0}_{y1}_{x0}_{x1}.png`` - RGB patches;
* ``ann_dir/{train,val}/P0000_{y0}_{y1}_{x0}_{x1}_instance_color_RGB.png`` - single-channel
  uint8 id patches (0..15, 255);
* ``img_dir/test/P*.png`` - test images copied whole (no masks exist).

Windows start every ``patch - overlap`` = 512 px; the last one in each direction is moved
back to end at the border (duplicates dropped), and an image smaller than the patch is
padded at the bottom/right (image 0, label 255).  mmseg's default settings give 33,978
train and 11,644 val patches.
"""

import glob
import io
import os
import sys
import zipfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

Image.MAX_IMAGE_PIXELS = None  # DOTA images reach ~20000 x 20000 px

EXPECTED_IMAGES = {"train": 1411, "val": 458, "test": 937}
EXPECTED_PATCHES = {"train": 33978, "val": 11644}  # with patch 896, overlap 384
MASK_SUFFIX = "_instance_color_RGB.png"

CLASSES = (
    "background",
    "ship",
    "store_tank",
    "baseball_diamond",
    "tennis_court",
    "basketball_court",
    "Ground_Track_Field",
    "Bridge",
    "Large_Vehicle",
    "Small_Vehicle",
    "Helicopter",
    "Swimming_pool",
    "Roundabout",
    "Soccer_ball_field",
    "plane",
    "Harbor",
)
PALETTE = np.array(
    [
        (0, 0, 0),
        (0, 0, 63),
        (0, 63, 63),
        (0, 63, 0),
        (0, 63, 127),
        (0, 63, 191),
        (0, 63, 255),
        (0, 127, 63),
        (0, 127, 127),
        (0, 0, 127),
        (0, 0, 191),
        (0, 0, 255),
        (0, 191, 127),
        (0, 127, 191),
        (0, 127, 255),
        (0, 100, 155),
    ],
    np.int64,
)  # RGB, id = row
_CODES = (PALETTE[:, 0] << 16) | (PALETTE[:, 1] << 8) | PALETTE[:, 2]
_ORDER = np.argsort(_CODES)
_SORTED_CODES, _SORTED_IDS = _CODES[_ORDER], _ORDER.astype(np.uint8)


def rgb_to_ids(rgb):
    """HxWx3 uint8 RGB mask -> (HxW uint8 ids, number of pixels with an unknown colour)."""
    rgb = rgb.astype(np.int32)  # 24-bit colour codes fit; halves memory on huge images
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    pos = np.clip(np.searchsorted(_SORTED_CODES, code), 0, len(_SORTED_CODES) - 1)
    hit = _SORTED_CODES[pos] == code
    ids = np.where(hit, _SORTED_IDS[pos], 255).astype(np.uint8)
    return ids, int((~hit).sum())


def window_starts(length, patch, stride):
    """Start offsets along one axis (``length`` already padded to >= ``patch``)."""
    if length <= patch:
        return [0]
    return sorted({min(s, length - patch) for s in range(0, length, stride)})


def windows(h, w, patch, overlap):
    """[(y0, x0)] of the patches of an h x w image (before padding)."""
    stride = patch - overlap
    return [
        (y, x) for x in window_starts(max(w, patch), patch, stride) for y in window_starts(max(h, patch), patch, stride)
    ]


def patch_names(stem, y, x, patch):
    coords = f"{y}_{y + patch}_{x}_{x + patch}"
    return f"{stem}_{coords}.png", f"{stem.split('_')[0]}_{coords}{MASK_SUFFIX}"


# --------------------------------------------------------------------------------------
# reading from folders or from the official zips
# --------------------------------------------------------------------------------------
_ZIPS = {}


def _open_ref(ref, whole=True):
    """ref = (zip_path, member) or ("", file_path) -> binary file object.  ``whole=False``
    streams a zip member (enough to read an image header without inflating it all)."""
    zpath, member = ref
    if not zpath:
        return open(member, "rb")
    zf = _ZIPS.get(zpath)
    if zf is None:
        zf = _ZIPS[zpath] = zipfile.ZipFile(zpath)
    return io.BytesIO(zf.read(member)) if whole else zf.open(member)


def _ref_name(ref):
    return f"{ref[0]}:{ref[1]}" if ref[0] else ref[1]


def _read_rgb(ref):
    with _open_ref(ref) as f, Image.open(f) as im:
        return np.array(im.convert("RGB"))


def _image_size(ref):
    with _open_ref(ref, whole=False) as f, Image.open(f) as im:
        return im.size  # (w, h)


def find_sources(split_dir):
    """-> ({stem: image ref}, {stem: mask ref}) from folders and zips under a split."""
    images, masks = {}, {}

    def classify(base, ref):
        if base.endswith(MASK_SUFFIX):
            masks[base[: -len(MASK_SUFFIX)]] = ref
        elif "_instance_" in base or not base.lower().endswith(".png"):
            return
        else:
            images[os.path.splitext(base)[0]] = ref

    for sub in ("images", "Semantic_masks"):
        d = os.path.join(split_dir, sub)
        for p in sorted(glob.glob(os.path.join(d, "**", "*.png"), recursive=True)):
            classify(os.path.basename(p), ("", p))
        for z in sorted(glob.glob(os.path.join(d, "*.zip"))):
            try:
                with zipfile.ZipFile(z) as zf:
                    names = zf.namelist()
            except (OSError, zipfile.BadZipFile) as e:
                raise ValueError(f"unreadable zip {z}: {e}") from None
            for n in names:
                if not n.endswith("/"):
                    classify(n.rsplit("/", 1)[-1], (z, n))
    return images, masks


# --------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------
def crop_one(task):
    key, img_ref, mask_ref, img_out, ann_out, patch, overlap = task
    stem = os.path.splitext(os.path.basename(img_ref[1]))[0]
    try:
        w, h = _image_size(img_ref)
    except OSError as e:
        raise ValueError(f"unreadable image {_ref_name(img_ref)} ({e})") from None
    wins = windows(h, w, patch, overlap)
    todo = []
    for y, x in wins:
        ni, na = patch_names(stem, y, x, patch)
        pi, pa = os.path.join(img_out, ni), os.path.join(ann_out, na)
        if not (C.is_readable_image(pi) and C.is_readable_image(pa)):
            todo.append((y, x, pi, pa))
    stats = {"patches": len(wins), "patches_written": len(todo)}
    if not todo:
        return C.Result(C.SKIPPED, stats=stats)
    try:
        img = _read_rgb(img_ref)
    except OSError as e:
        raise ValueError(f"unreadable image {_ref_name(img_ref)} ({e})") from None
    try:
        mask_rgb = _read_rgb(mask_ref)
    except OSError as e:
        raise ValueError(f"unreadable mask {_ref_name(mask_ref)} ({e})") from None
    if mask_rgb.shape != img.shape:
        raise ValueError(f"mask {_ref_name(mask_ref)} is {mask_rgb.shape[1]}x{mask_rgb.shape[0]}, image is {w}x{h}")
    label, unknown = rgb_to_ids(mask_rgb)
    del mask_rgb
    ph, pw = max(h, patch) - h, max(w, patch) - w
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=0)
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=255)
    for y, x, pi, pa in todo:
        C.save_png(img[y : y + patch, x : x + patch], pi)
        C.save_png(label[y : y + patch, x : x + patch], pa)
    stats.update(unknown_px=unknown, unknown_img=int(unknown > 0))
    return C.Result(C.DONE, stats=stats)


def copy_test_image(task):
    key, img_ref, out_path = task
    if C.is_readable_image(out_path):
        return C.Result(C.SKIPPED)

    def writer(tmp):
        with _open_ref(img_ref) as f, open(tmp, "wb") as g:
            g.write(f.read())

    C.atomic_write(out_path, writer)
    if not C.is_readable_image(out_path):
        os.remove(out_path)
        raise ValueError(f"unreadable image {_ref_name(img_ref)}")
    return C.Result(C.DONE)


def parse_args(argv=None):
    p = C.make_parser(__doc__)
    p.add_argument("dataset_path", help="iSAID root (holds train/, val/, optionally test/)")
    p.add_argument("--patch-size", type=int, default=896, help="patch height and width (896)")
    p.add_argument("--overlap", type=int, default=384, help="overlap of neighbouring patches (384)")
    p.add_argument("--skip-test", action="store_true", help="do not copy the test images")
    C.add_common_args(p, out_help="output root for img_dir/ and ann_dir/ (default: DATASET_PATH)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    root = args.dataset_path
    out = args.out_dir or root
    if not 0 <= args.overlap < args.patch_size:
        C.fail_usage("--overlap must be in [0, patch size)")
    default_geometry = (args.patch_size, args.overlap) == (896, 384)
    reports, rows, notes = [], [], []
    for split in ("train", "val"):
        split_dir = C.require_dir(os.path.join(root, split), f"{split} folder")
        try:
            images, masks = find_sources(split_dir)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        pairs = sorted(set(images) & set(masks))
        no_mask, no_image = sorted(set(images) - set(masks)), sorted(set(masks) - set(images))
        if no_mask:
            notes.append(f"{split}: {len(no_mask)} images without a semantic mask were skipped (first: {no_mask[:5]})")
        if no_image:
            notes.append(f"{split}: {len(no_image)} masks without an image were skipped (first: {no_image[:5]})")
        img_out = os.path.join(out, "img_dir", split)
        ann_out = os.path.join(out, "ann_dir", split)
        tasks = [
            (_ref_name(images[s]), images[s], masks[s], img_out, ann_out, args.patch_size, args.overlap) for s in pairs
        ]
        rep = C.track_map(crop_one, tasks, args.nproc, desc=f"{split} images -> patches")
        reports.append(rep)
        rows.append((f"{split} images with masks", len(pairs), EXPECTED_IMAGES[split]))
        rows.append(
            (
                f"{split} patches",
                rep.stats["patches"],
                EXPECTED_PATCHES[split] if default_geometry and not rep.failed else None,
            )
        )
        rows.append((f"{split} patches written this run", rep.stats["patches_written"], None))
        if rep.stats["unknown_px"]:
            notes.append(
                f"{split}: {rep.stats['unknown_px']} mask pixels in "
                f"{rep.stats['unknown_img']} of the images converted in this run had a "
                "colour outside the 16-class table (written as 255)"
            )
    test_dir = os.path.join(root, "test")
    if os.path.isdir(test_dir) and not args.skip_test:
        try:
            images, _ = find_sources(test_dir)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        tasks = [
            (_ref_name(ref), ref, os.path.join(out, "img_dir", "test", s + ".png")) for s, ref in sorted(images.items())
        ]
        reports.append(C.track_map(copy_test_image, tasks, args.nproc, desc="test images"))
        rows.append(("test images (copied whole)", len(tasks), EXPECTED_IMAGES["test"]))
    return C.print_summary("iSAID", rows, reports, notes)


if __name__ == "__main__":
    sys.exit(main())
