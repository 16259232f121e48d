"""Data-loading throughput of the full SegNeXt training pipeline (images/s).

Generates ``--num-images`` JPEG images of 2048x1024 with label PNGs (ADE20K layout) in a temporary
folder (or ``--data-dir``), then runs the training pipeline - load, Resize (img_scale 2048x512,
ratio 0.5-2), RandomCrop 512 (cat_max_ratio 0.75), RandomFlip, PhotoMetricDistortion, Normalize,
Pad - through the Jittor loader for each ``--workers`` value, batches as training sees them
(jt.Var). The first batch of each setting (worker start-up) is timed separately.

    python benchmarks/bench_data.py --workers 0 2 --num-images 32 --batch-size 8 --epochs 2

Also prints a per-transform breakdown measured in the main process.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jsegnext.datasets import build_dataloader, build_dataset, build_pipeline  # noqa: E402

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


def train_pipeline(crop):
    return [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='Resize', img_scale=(2048, 512), ratio_range=(0.5, 2.0)),
        dict(type='RandomCrop', crop_size=(crop, crop), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='Normalize', **NORM),
        dict(type='Pad', size=(crop, crop), pad_val=0, seg_pad_val=255),
    ]


def make_data(root, n, height, width, seed=0):
    """Photo-like images (smooth colour fields + edges, so JPEG sizes are realistic) and block labels."""
    rng = np.random.default_rng(seed)
    os.makedirs(f"{root}/images/training", exist_ok=True)
    os.makedirs(f"{root}/annotations/training", exist_ok=True)
    for i in range(n):
        img_path = f"{root}/images/training/bench_{i:05d}.jpg"
        ann_path = f"{root}/annotations/training/bench_{i:05d}.png"
        if os.path.exists(img_path) and os.path.exists(ann_path):
            continue
        small = rng.integers(0, 256, (height // 64, width // 64, 3), dtype=np.uint8)
        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 24, img.shape, dtype=np.uint8))  # texture
        label = np.zeros((height, width), np.uint8)
        for _ in range(12):
            y, x = rng.integers(0, height), rng.integers(0, width)
            cv2.rectangle(
                label,
                (int(x), int(y)),
                (int(x + rng.integers(64, 900)), int(y + rng.integers(64, 500))),
                int(rng.integers(1, 151)),
                -1,
            )
        assert cv2.imwrite(img_path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert cv2.imwrite(ann_path, label)


def bench_loader(cfg, workers, batch_size, epochs, seed=0):
    ds = build_dataset(cfg)
    build_dataloader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True, seed=seed)
    images, first, start = 0, None, time.perf_counter()
    steady_start, steady_images = None, 0
    for _ in range(epochs):
        for batch in ds:
            batch['img'].sync()
            n = int(batch['img'].shape[0])
            images += n
            now = time.perf_counter()
            if first is None:
                first = now - start
                steady_start = now
            else:
                steady_images += n
    total = time.perf_counter() - start
    steady = time.perf_counter() - steady_start
    ds.reset()
    return dict(
        workers=workers,
        images=images,
        seconds=round(total, 3),
        first_batch_s=round(first, 3),
        images_per_s=round(images / total, 2),
        steady_images_per_s=round(steady_images / steady, 2) if steady_images else None,
    )


def profile_transforms(cfg, count):
    ds = build_dataset(cfg)
    pipeline = build_pipeline(cfg['pipeline'])
    times = np.zeros(len(pipeline) + 1)
    for index in range(count):
        results, rng = ds._results(index), ds.sample_rng(index)
        for k, t in enumerate(pipeline):
            t0 = time.perf_counter()
            results = t(results, rng)
            times[k] += time.perf_counter() - t0
        t0 = time.perf_counter()
        from jsegnext.datasets import to_sample

        to_sample(results)
        times[-1] += time.perf_counter() - t0
    names = [c['type'] for c in cfg['pipeline']] + ['to_sample (HWC->CHW)']
    return {name: round(1000 * t / count, 2) for name, t in zip(names, times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--num-images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--data-dir", default=None, help="where to generate (and reuse) the images")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    tmp = None
    root = args.data_dir
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="jsegnext_bench_")
        root = tmp.name
    t0 = time.perf_counter()
    make_data(root, args.num_images, *args.size)
    print(
        f"data: {args.num_images} images {args.size[1]}x{args.size[0]} in {root} "
        f"({time.perf_counter() - t0:.1f}s to generate)"
    )
    cfg = dict(
        type='ADE20KDataset',
        data_root=root,
        img_dir='images/training',
        ann_dir='annotations/training',
        pipeline=train_pipeline(args.crop),
    )
    report = dict(
        cpu_count=os.cpu_count(),
        batch_size=args.batch_size,
        crop=args.crop,
        image_size=list(args.size),
        num_images=args.num_images,
        epochs=args.epochs,
        per_transform_ms=profile_transforms(cfg, min(8, args.num_images)),
        loader=[],
    )
    print("per-transform time (ms/image, main process):")
    for name, ms in report["per_transform_ms"].items():
        print(f"  {name:<24} {ms:8.2f}")
    for workers in args.workers:
        result = bench_loader(cfg, workers, args.batch_size, args.epochs)
        report["loader"].append(result)
        print(
            f"workers={workers}: {result['images_per_s']:.1f} images/s overall "
            f"({result['images']} images in {result['seconds']:.1f}s, first batch {result['first_batch_s']:.2f}s), "
            f"{result['steady_images_per_s']} images/s after the first batch"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
