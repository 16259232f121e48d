"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--ms-flip] [--out results.json] ...``.

Accepts jsegnext ``.pkl`` and reference PyTorch ``.pth`` checkpoints, or with ``--backend onnxruntime``
a file written by ``tools/export_onnx.py`` (sliding windows, scales and flips run around it as
around the Jittor model). With MPI (``mpirun -np N python tools/test.py ...``) the images are split
across processes.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsegnext.apis import BACKENDS, init_backend, load_config  # noqa: E402
from jsegnext.cli import one_line_errors  # noqa: E402
from jsegnext.comm import is_main_process  # noqa: E402
from jsegnext.config import ConfigError, did_you_mean  # noqa: E402
from jsegnext.config_check import check_class_count  # noqa: E402
from jsegnext.datasets import build_dataset  # noqa: E402
from jsegnext.engine.evaluation import evaluate  # noqa: E402
from jsegnext.engine.metrics import format_metrics_table  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate SegNeXt (jsegnext)")
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="jsegnext .pkl, reference .pth, or with --backend onnxruntime an .onnx")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="jittor",
        help="run the Jittor model (default) or an exported ONNX file with onnxruntime",
    )
    parser.add_argument("--ms-flip", action="store_true", help="ratios 0.5-1.75 with flip, softmax averaged")
    parser.add_argument("--data-root", help="override data.val.data_root")
    parser.add_argument("--split", default="val", help="which data.<split> to evaluate (default val)")
    parser.add_argument("--out", help="write metrics (percent) and per-class values as JSON")
    parser.add_argument(
        "--save-preds",
        help="write one label-id PNG per image into this folder, under the "
        "image's path relative to the dataset's img_dir",
    )
    parser.add_argument("--show-dir", help="write colour overlays into this folder (names as --save-preds)")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images")
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="run the model as trained instead of the fused inference path (same outputs, slower)",
    )
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


@one_line_errors
def main(argv=None):
    args = parse_args(argv)
    options = list(args.cfg_options)
    if args.data_root:
        options.append(f"data.{args.split}.data_root={args.data_root!r}")
    cfg = load_config(args.config, options)
    splits = [k for k, v in cfg.get("data", {}).items() if isinstance(v, dict)]
    if args.split not in splits:
        raise ConfigError(
            f"{args.config}: no data.{args.split} dataset{did_you_mean(args.split, splits)} "
            f"(has: {', '.join(splits) or 'none'})"
        )
    model = init_backend(args.backend, cfg, args.checkpoint, fuse=not args.no_fuse)
    dataset = build_dataset(model.cfg.data[args.split], test_mode=True)
    check_class_count(model.num_classes, dataset, args.split)
    metrics = evaluate(
        model,
        dataset,
        ms_flip=args.ms_flip,
        save_preds=args.save_preds,
        show_dir=args.show_dir,
        max_images=args.max_images,
        fuse=not args.no_fuse,
    )
    if is_main_process():
        print(format_metrics_table(metrics))
        print(f"aAcc {metrics['aAcc']:.2f}  mIoU {metrics['mIoU']:.2f}  mAcc {metrics['mAcc']:.2f}")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
