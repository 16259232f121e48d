"""The built-in demo dataset: procedurally drawn scenes, generated on first use (no download).

Four object classes plus background. Colours are drawn at random for every object and for the
background, so a model must tell classes apart by shape and texture:

* ``stripes``  — discs filled with parallel stripes at a random angle;
* ``checker``  — rotated rectangles filled with a checkerboard;
* ``dots``     — triangles filled with a grid of dots;
* ``ring``     — thick rings filled with a flat colour plus noise;
* ``background`` — a smooth colour gradient with noise and clutter (lines, small blobs, specks
  in the objects' colours) that is labelled background.

Written in the standard layout of ``CustomDataset``: ``images/{train,val}/*.png`` and
``annotations/{train,val}/*.png`` (label ids 0..4), with ``demo.json`` listing the settings and
every file generated. Generation never touches anything else: it writes only into a missing or
empty folder, or one holding nothing but an earlier demo dataset (the files its ``demo.json``
lists, which are the only ones ever deleted); any other folder is refused with a
:class:`DataError` saying why, and left as it was.
"""

import json
import os
from pathlib import Path

import cv2
import numpy as np

from .builder import register_dataset
from .custom import CustomDataset
from .errors import DataError

CLASSES = ("background", "stripes", "checker", "dots", "ring")
PALETTE = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200))
VERSION = 1  # of the drawing code: a change regenerates earlier demo datasets
MARKER = "demo.json"


def _random_colour(rng):
    return rng.integers(0, 256, 3).astype(np.float32)


def _texture(kind, shape, rng):
    """A (H, W) pattern in [0, 1] characteristic of ``kind``."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5, 9)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        return (np.floor(phase) % 2).astype(np.float32)
    if kind == "checker":
        cell = int(rng.integers(4, 8))
        return (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    if kind == "dots":
        step = int(rng.integers(5, 8))
        oy, ox = rng.integers(0, step, 2)
        dist = ((yy + oy) % step - step / 2) ** 2 + ((xx + ox) % step - step / 2) ** 2
        return (dist < (step / 3.2) ** 2).astype(np.float32)
    return rng.normal(0.5, 0.08, shape).astype(np.float32)  # ring: flat with noise


def _shape_mask(kind, shape, rng):
    h, w = shape
    mask = np.zeros(shape, np.uint8)
    cy, cx = rng.integers(int(0.15 * h), int(0.85 * h)), rng.integers(int(0.15 * w), int(0.85 * w))
    size = rng.uniform(0.12, 0.24) * min(h, w)
    if kind == "stripes":
        cv2.circle(mask, (int(cx), int(cy)), int(size), 1, -1)
    elif kind == "checker":
        box = (
            (float(cx), float(cy)),
            (float(size * rng.uniform(1.4, 2.2)), float(size * rng.uniform(1.0, 1.6))),
            float(rng.uniform(0, 180)),
        )
        cv2.fillPoly(mask, [cv2.boxPoints(box).astype(np.int32)], 1)
    elif kind == "dots":
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([cx + 1.3 * size * np.cos(angles), cy + 1.3 * size * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    else:
        cv2.circle(mask, (int(cx), int(cy)), int(size), 1, max(3, int(size * 0.45)))
    return mask.astype(bool)


def _background(shape, rng):
    h, w = shape
    a, b = _random_colour(rng), _random_colour(rng)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    img = a * (1 - t) + b * t + rng.normal(0, 10, (h, w, 3)).astype(np.float32)
    img = np.repeat(img, 1, axis=0) if img.shape[0] == h else np.broadcast_to(img, (h, w, 3)).copy()
    for _ in range(int(rng.integers(3, 8))):  # clutter labelled background
        colour = tuple(float(c) for c in _random_colour(rng))
        p1, p2 = rng.integers(0, [w, h], 2), rng.integers(0, [w, h], 2)
        if rng.random() < 0.5:
            cv2.line(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2), colour, int(rng.integers(1, 3)))
        else:
            cv2.circle(img, tuple(int(v) for v in p1), int(rng.integers(2, 6)), colour, -1)
    return img


def draw_scene(rng, size=128):
    """One (image uint8 HxWx3 BGR, label uint8 HxW) pair."""
    shape = (size, size)
    img = _background(shape, rng)
    label = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        cls = int(rng.integers(1, len(CLASSES)))
        kind = CLASSES[cls]
        mask = _shape_mask(kind, shape, rng)
        c1, c2 = _random_colour(rng), _random_colour(rng)
        while np.abs(c1 - c2).sum() < 150:
            c2 = _random_colour(rng)
        pattern = _texture(kind, shape, rng)[..., None]
        img[mask] = (c1 * (1 - pattern) + c2 * pattern)[mask]
        label[mask] = cls
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), label


def _planned_files(num_train, num_val):
    return [
        f"{sub}/{split}/{split}_{i:04d}.png"
        for split, count in (("train", num_train), ("val", num_val))
        for sub in ("images", "annotations")
        for i in range(count)
    ]


def _files_under(root):
    """Relative paths of every file (and symlink) under ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        found += [Path(os.path.relpath(os.path.join(dirpath, n), root)).as_posix() for n in names]
    return found


def _read_marker(path):
    """(spec, files we wrote, complete) from ``demo.json``; None when unreadable. Markers of jsegnext
    0.1 hold the spec alone and were written last; their files follow from the spec."""
    try:
        data = json.loads(path.read_text())
        if "spec" not in data:
            data = {"spec": data, "files": _planned_files(data["num_train"], data["num_val"]), "complete": True}
        return data["spec"], set(data["files"]), bool(data["complete"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_marker(path, spec, files, complete):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"spec": spec, "files": files, "complete": complete}))
    os.replace(tmp, path)


def ensure_demo_dataset(root, num_train=400, num_val=60, size=128, seed=0):
    """Generate the demo dataset under ``root`` unless an identical one is already there.

    Refuses (DataError, nothing changed) a folder holding anything but an earlier demo dataset.
    """
    root = Path(root)
    spec = dict(version=VERSION, num_train=num_train, num_val=num_val, size=size, seed=seed)
    files = _planned_files(num_train, num_val)
    marker = root / MARKER
    if root.exists() and not root.is_dir():
        raise DataError(f"demo data_root {root} is a file, not a folder", str(root))
    present = set(_files_under(root)) - {MARKER} if root.is_dir() else set()
    for name in [n for n in present if n.startswith(f".{MARKER}.tmp-")]:  # of an interrupted earlier run
        (root / name).unlink()
        present.discard(name)
    previous = _read_marker(marker) if marker.exists() else None
    if marker.exists() and previous is None:
        raise DataError(
            f"demo data_root {root}: {marker} is not a demo dataset marker; the demo scenes are "
            "generated only into an empty or new folder - nothing was changed, give another "
            "data_root",
            str(marker),
        )
    if previous is not None and previous[0] == spec and previous[2] and set(files) <= present:
        return root
    ours = previous[1] if previous is not None else set()
    foreign = sorted(present - ours)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" ... ({len(foreign)} files)" if len(foreign) > 3 else "")
        raise DataError(
            f"demo data_root {root} holds files the demo generator did not write ({shown}); the demo "
            "scenes are generated only into an empty or new folder, or over an earlier demo dataset - "
            "nothing was changed, give another data_root",
            str(root / foreign[0]),
        )
    for name in sorted(present & ours):  # an earlier demo dataset (other settings, or interrupted)
        (root / name).unlink()
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(marker, spec, files, complete=False)  # an interrupted generation stays ours
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, label = draw_scene(rng, size)
            cv2.imwrite(str(root / "images" / split / f"{split}_{i:04d}.png"), img)
            cv2.imwrite(str(root / "annotations" / split / f"{split}_{i:04d}.png"), label)
    _write_marker(marker, spec, files, complete=True)
    return root


@register_dataset
class DemoDataset(CustomDataset):
    """The demo scenes in CustomDataset's layout; generated into ``data_root`` on first use."""

    CLASSES, PALETTE = CLASSES, PALETTE
    IMG_SUFFIX = SEG_MAP_SUFFIX = ".png"
    REDUCE_ZERO_LABEL = False

    def __init__(self, *, data_root="data/demo", num_train=400, num_val=60, image_size=128, **kwargs):
        ensure_demo_dataset(data_root, num_train=num_train, num_val=num_val, size=image_size)
        super().__init__(data_root=data_root, **kwargs)
