"""Segment images, folders of images and videos.

    python tools/infer.py CONFIG CHECKPOINT photo.jpg more_photos/ clip.mp4 --out results/

For each image: ``OUT/overlays/NAME.png`` (colour overlay) and ``OUT/labels/NAME.png`` (label ids,
the image's size). For each video: ``OUT/NAME_overlay.mp4``. ``OUT/infer.jsonl`` records one
line per input with the files written for it. Checkpoints may be jsegnext ``.pkl`` or reference
``.pth`` files, or with ``--backend onnxruntime`` a file written by ``tools/export_onnx.py``.

``NAME`` is the image's name without its extension; an image found in a folder keeps its path
inside that folder (``photos/2023/a.jpg`` -> ``2023/a``). Inputs that would still share a name
are kept apart, never overwritten: their names keep the folder they came from and, where that is
not enough, their extension (``dirA/scene.png``, ``dirA/scene.jpg``, ``dirB/scene.png`` ->
``dirA/scene_png``, ``dirA/scene_jpg``, ``dirB/scene``).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsegnext.apis import BACKENDS, inference_model, init_backend  # noqa: E402
from jsegnext.cli import one_line_errors  # noqa: E402
from jsegnext.datasets import DATASETS, DataError  # noqa: E402
from jsegnext.datasets.custom import default_palette  # noqa: E402
from jsegnext.engine.evaluation import overlay  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Segment images and videos with SegNeXt (jsegnext)")
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="jsegnext .pkl, reference .pth, or with --backend onnxruntime an .onnx")
    parser.add_argument(
        "inputs",
        nargs="+",
        help="image files, folders of images, video files (outputs are "
        "named after them; inputs sharing a name are kept apart)",
    )
    parser.add_argument("--out", default="infer_out")
    parser.add_argument("--opacity", type=float, default=0.5)
    parser.add_argument("--ms-flip", action="store_true")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="jittor",
        help="run the Jittor model (default) or an exported ONNX file with onnxruntime",
    )
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="run the model as trained instead of the fused inference path (same outputs, slower)",
    )
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def collect_inputs(paths):
    """(kind, path, name) for every image and video named or found in a named folder; ``name`` (the
    outputs' name, without extension) is unique, see the module docstring. A file given twice is
    segmented once."""
    found, seen = [], set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            items = [
                ("image", p, p.relative_to(path)) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES
            ]
        elif path.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES and path.is_file():
            kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
            items = [(kind, path, Path(path.name))]
        elif not path.exists():
            raise DataError(f"{path}: no such file or folder", str(path))
        else:
            raise DataError(
                f"{path}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or video "
                f"({', '.join(sorted(VIDEO_SUFFIXES))})",
                str(path),
            )
        for kind, file, relative in items:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.append((kind, file, relative))
    return [(kind, file, name) for (kind, file, _), name in zip(found, output_names(found))]


def output_names(found):
    """Unique output names for (kind, path, relative path) inputs: the relative path without its
    extension; where that collides, the path as given, and if still needed its extension too."""

    def stems(items, with_folder, with_suffix):
        out = []
        for _, path, relative in items:
            base = Path(*[p for p in path.parts if p not in ("/", "..")]) if with_folder else relative
            stem = base.with_suffix("").as_posix()
            out.append(f"{stem}_{path.suffix.lstrip('.').lower()}" if with_suffix else stem)
        return out

    names = stems(found, False, False)
    for with_folder, with_suffix in ((True, False), (True, True)):
        counts = {n: names.count(n) for n in names}
        if all(c == 1 for c in counts.values()):
            break
        clashing = [i for i, n in enumerate(names) if counts[n] > 1]
        renamed = stems([found[i] for i in clashing], with_folder, with_suffix)
        for i, name in zip(clashing, renamed):
            names[i] = name
    taken = set()
    for i, name in enumerate(names):  # last resort (e.g. a/x.png and ../a/x.png): a counter
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name}_{k}", k + 1
        taken.add(unique)
        names[i] = unique
    return names


def palette_of(model):
    """The palette of the config's dataset (no data needed), else a fixed pseudo-random one."""
    dataset_cfg = model.cfg.get("data", {}).get("val", {})
    dataset_cls = DATASETS.get(dataset_cfg.get("type"))
    palette = dataset_cfg.get("palette") or (dataset_cls.PALETTE if dataset_cls else None)
    return palette or default_palette(model.num_classes)


def segment_image(model, path, name, out, palette, args):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read this image (corrupt or not an image)")
    label = inference_model(model, image, ms_flip=args.ms_flip)
    written = {}
    for sub, array in (("labels", label.astype(np.uint8)), ("overlays", overlay(image, label, palette, args.opacity))):
        target = out / sub / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), array):
            raise OSError(f"could not write {target}")
        written[sub] = str(target)
    return {"input": str(path), "labels": written["labels"], "overlay": written["overlays"], "shape": list(label.shape)}


def segment_video(model, path, name, out, palette, args):
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot open this video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    target = out / f"{name}_overlay.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    writer, count = None, 0
    with tqdm(total=frames, desc=path.name, leave=False, dynamic_ncols=True) as bar:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            writer.write(overlay(frame, inference_model(model, frame, ms_flip=args.ms_flip), palette, args.opacity))
            count += 1
            bar.update(1)
    capture.release()
    if writer is None:
        raise DataError(f"{path}: the video has no readable frames")
    writer.release()
    return {"input": str(path), "overlay_video": str(target), "frames": count}


@one_line_errors
def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    inputs = collect_inputs(args.inputs)
    model = init_backend(args.backend, args.config, args.checkpoint, options=args.cfg_options, fuse=not args.no_fuse)
    palette = palette_of(model)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    with open(out / "infer.jsonl", "a") as log:
        for kind, path, name in tqdm(inputs, desc="infer", dynamic_ncols=True):
            started = time.time()
            try:
                record = (segment_video if kind == "video" else segment_image)(model, path, name, out, palette, args)
            except DataError as err:
                failures += 1
                record = {"input": str(path), "error": str(err)}
                tqdm.write(f"error: {err}")
            record["seconds"] = round(time.time() - started, 3)
            log.write(json.dumps(record) + "\n")
            log.flush()
    print(f"{len(inputs) - failures} of {len(inputs)} inputs segmented into {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
