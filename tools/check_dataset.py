"""Check a prepared dataset before training on it.

Usage::

    python tools/check_dataset.py CONFIG [--split train|val] [--max-images N] [--nproc N]
                                  [--data-root DIR] [--options key=value ...]

Builds the config's ``data.<split>`` dataset (which checks that every image has its label and every
label its image), then reads every image and label: readable (not corrupt, not truncated), label
the size of its image, label values within the classes or 255 (after ``reduce_zero_label``; a bad
value is reported as it is in the file), and counts the pixels of every class.
Prints a summary with the per-class pixel share.

Exit status: 0 when no problem was found, 1 when the data has problems (each listed with its file),
2 for an unusable config or command line.
"""

import argparse
import multiprocessing
import os
import sys
from collections import defaultdict

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jsegnext.apis import load_config  # noqa: E402
from jsegnext.cli import one_line_errors  # noqa: E402
from jsegnext.config import ConfigError, did_you_mean  # noqa: E402
from jsegnext.datasets import DataError, build_dataset  # noqa: E402
from jsegnext.datasets.transforms import (
    describe_outside_values,
    read_image,
    read_label,  # noqa: E402
    reduce_zero_label,
)

MAX_LISTED = 20

_STATE = {}  # what the pool workers need (inherited with fork)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Check a prepared segmentation dataset (pairs, readability, "
        "sizes, label values, class pixel shares)"
    )
    parser.add_argument("config", help="jsegnext config file")
    parser.add_argument("--split", default="train", help="which data.<split> to check (default: train)")
    parser.add_argument("--max-images", type=int, default=None, help="check only the first N images")
    parser.add_argument("--nproc", type=int, default=1, help="processes reading files (default 1)")
    parser.add_argument("--data-root", default=None, help="override the dataset's data_root")
    parser.add_argument(
        "--options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. data.train.img_dir=images/training",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def check_one(index):
    """(index, [(kind, message)], histogram of label values or None, image (h, w) or None)."""
    img_path, ann_path = _STATE["img_files"][index], _STATE["ann_files"][index]
    problems, hist, size = [], None, None
    try:
        img = read_image(img_path)
        size = img.shape[:2]
    except DataError as err:
        problems.append(("unreadable image", str(err)))
    if ann_path is not None:
        try:
            label = read_label(ann_path)
        except DataError as err:
            problems.append(("unreadable label", str(err)))
            return index, problems, hist, size
        if size is not None and label.shape != size:
            problems.append(
                (
                    "size mismatch",
                    f"label {ann_path} is {label.shape[1]}x{label.shape[0]}, image "
                    f"{img_path} is {size[1]}x{size[0]} (width x height)",
                )
            )
        if _STATE["reduce_zero_label"]:
            label = reduce_zero_label(label)
        hist = np.bincount(label.ravel(), minlength=256)
        problem = describe_outside_values(
            hist, _STATE["num_classes"], _STATE["ignore_index"], reduced=_STATE["reduce_zero_label"]
        )
        if problem:
            problems.append(("label values outside the classes", f"label {ann_path}: {problem}"))
    return index, problems, hist, size


def scan(dataset, count, nproc, progress):
    _STATE.update(
        img_files=dataset.img_files,
        ann_files=dataset.ann_files,
        num_classes=dataset.num_classes,
        ignore_index=dataset.ignore_index,
        reduce_zero_label=dataset.reduce_zero_label,
    )
    problems = defaultdict(list)
    total = np.zeros(256, np.int64)
    sizes = defaultdict(int)
    bar = tqdm(total=count, desc="checking", unit="img", disable=not progress, dynamic_ncols=True)
    if nproc > 1:
        pool = multiprocessing.get_context("fork").Pool(nproc)
        results = pool.imap_unordered(check_one, range(count), chunksize=8)
    else:
        pool, results = None, map(check_one, range(count))
    try:
        for index, found, hist, size in results:
            for kind, message in found:
                problems[kind].append(message)
            if hist is not None:
                total += hist
            if size is not None:
                sizes[size] += 1
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return problems, total, sizes


def summary(dataset, count, problems, total, sizes, out=None):
    p = lambda *a: print(*a, file=out or sys.stdout)  # noqa: E731
    p(
        f"\n{type(dataset).__name__}: {count} of {len(dataset)} images checked "
        f"({dataset.num_classes} classes, reduce_zero_label={dataset.reduce_zero_label})"
    )
    p(f"  images: {dataset.img_dir}")
    p(f"  labels: {dataset.ann_dir}")
    if sizes:
        common = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        p(
            "  image sizes (h x w): "
            + ", ".join(f"{h}x{w} ({n})" for (h, w), n in common)
            + (f", ... {len(sizes)} sizes" if len(sizes) > 3 else "")
        )
    labelled = int(total[: dataset.num_classes].sum())
    all_pixels = int(total.sum())
    if all_pixels:
        p(
            f"\nper-class pixel share (of {labelled:,} labelled pixels; "
            f"{100.0 * total[dataset.ignore_index] / all_pixels:.2f}% of all pixels are {dataset.ignore_index}=ignore):"
        )
        width = max(len(c) for c in dataset.CLASSES)
        for k, name in enumerate(dataset.CLASSES):
            share = 100.0 * total[k] / labelled if labelled else 0.0
            p(f"  {k:3d}  {name:<{width}}  {share:7.3f}%  {int(total[k]):>14,d}")
        absent = [name for k, name in enumerate(dataset.CLASSES) if total[k] == 0]
        if absent:
            p(
                f"\nnote: {len(absent)} classes never appear: {', '.join(absent[:20])}"
                + (" ..." if len(absent) > 20 else "")
            )
    n_problems = sum(len(v) for v in problems.values())
    if not n_problems:
        p(f"\nOK: no problems found in {count} images")
        return 0
    p(f"\nPROBLEMS: {n_problems} in {count} images")
    for kind, messages in sorted(problems.items()):
        p(f"\n{kind}: {len(messages)}")
        for message in messages[:MAX_LISTED]:
            p(f"  {message}")
        if len(messages) > MAX_LISTED:
            p(f"  ... and {len(messages) - MAX_LISTED} more")
    return 1


@one_line_errors(exit_codes={ConfigError: 2})
def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.options)
    data = cfg.get("data")
    if not isinstance(data, dict) or not isinstance(data.get(args.split), dict):
        splits = [k for k, v in (data or {}).items() if isinstance(v, dict)]
        raise ConfigError(
            f"{args.config}: no data.{args.split} dataset{did_you_mean(args.split, splits)} "
            f"(has: {', '.join(splits) or 'none'})"
        )
    overrides = {"data_root": args.data_root} if args.data_root else {}
    dataset = build_dataset(data[args.split], **overrides)  # the pipeline is built, not run; DataError: exit 1
    count = len(dataset) if args.max_images is None else max(0, min(len(dataset), args.max_images))
    problems, total, sizes = scan(dataset, count, max(1, args.nproc), progress=not args.no_progress)
    return summary(dataset, count, problems, total, sizes)


if __name__ == "__main__":
    sys.exit(main())
