"""Segment images, folders of images and videos.

    python tools/infer.py CONFIG CHECKPOINT photo.jpg more_photos/ clip.mp4 --out results/

For each image: ``OUT/overlays/NAME.png`` (colour overlay) and ``OUT/labels/NAME.png`` (label ids,
the image's size). For each video: ``OUT/NAME_overlay.mp4``. ``OUT/infer.jsonl`` records one
line per input. Checkpoints may be jsegnext ``.pkl`` or reference ``.pth`` files.
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

from jsegnext.apis import inference_model, init_model  # noqa: E402
from jsegnext.config import ConfigError  # noqa: E402
from jsegnext.datasets import DATASETS, DataError  # noqa: E402
from jsegnext.datasets.custom import default_palette  # noqa: E402
from jsegnext.engine.evaluation import overlay  # noqa: E402
from jsegnext.weights import CheckpointError  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Segment images and videos with SegNeXt (jsegnext)")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("inputs", nargs="+", help="image files, folders of images, video files")
    parser.add_argument("--out", default="infer_out")
    parser.add_argument("--opacity", type=float, default=0.5)
    parser.add_argument("--ms-flip", action="store_true")
    parser.add_argument("--no-fuse", action="store_true",
                        help="run the model as trained instead of the fused inference path (same outputs, slower)")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def collect_inputs(paths):
    """(kind, path) for every image and video named or found in a named folder."""
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += [("image", p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(("video", path))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(("image", path))
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        else:
            raise ValueError(f"{path}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or video "
                             f"({', '.join(sorted(VIDEO_SUFFIXES))})")
    return found


def palette_of(model):
    """The palette of the config's dataset (no data needed), else a fixed pseudo-random one."""
    dataset_cfg = model.cfg.get("data", {}).get("val", {})
    dataset_cls = DATASETS.get(dataset_cfg.get("type"))
    palette = dataset_cfg.get("palette") or (dataset_cls.PALETTE if dataset_cls else None)
    return palette or default_palette(model.num_classes)


def segment_image(model, path, out, palette, args):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read this image (corrupt or not an image)")
    label = inference_model(model, image, ms_flip=args.ms_flip)
    stem = path.stem
    for sub, array in (("labels", label.astype(np.uint8)), ("overlays", overlay(image, label, palette, args.opacity))):
        (out / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / sub / f"{stem}.png"), array)
    return {"input": str(path), "labels": str(out / "labels" / f"{stem}.png"),
            "overlay": str(out / "overlays" / f"{stem}.png"), "shape": list(label.shape)}


def segment_video(model, path, out, palette, args):
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot open this video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    target = out / f"{path.stem}_overlay.mp4"
    out.mkdir(parents=True, exist_ok=True)
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


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    try:
        inputs = collect_inputs(args.inputs)
        model = init_model(args.config, args.checkpoint, options=args.cfg_options, fuse=not args.no_fuse)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    palette = palette_of(model)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    with open(out / "infer.jsonl", "a") as log:
        for kind, path in tqdm(inputs, desc="infer", dynamic_ncols=True):
            started = time.time()
            try:
                record = (segment_video if kind == "video" else segment_image)(model, path, out, palette, args)
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
