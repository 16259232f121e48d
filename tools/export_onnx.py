"""Export a checkpoint to ONNX and check it with onnxruntime (no PyTorch needed).

    python tools/export_onnx.py CONFIG CHECKPOINT model.onnx [--shape H W] [--dynamic] [--opset N]
                                [--nmf-seed S] [--no-verify] [--cfg-options KEY=VALUE ...]

The graph maps a normalised image (N, 3, H, W) to logits (N, classes, H, W). ``--shape`` fixes H, W
(default: the slide ``crop_size`` for sliding-window configs, else 512 512) with batch 1;
``--dynamic`` leaves batch, height and width free. After writing, the file is checked with
``onnx.checker`` and, unless ``--no-verify`` (or onnxruntime is absent), run by onnxruntime on a
random input of ``--shape`` and compared with jsegnext given the same NMF bases.

Checkpoints may be jsegnext ``.pkl`` or reference ``.pth`` files. Needs ``pip install -e ".[deploy]"``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsegnext.apis import init_model  # noqa: E402
from jsegnext.cli import one_line_errors  # noqa: E402
from jsegnext.deploy import DEFAULT_OPSET, OnnxSegmentor, export_onnx  # noqa: E402
from jsegnext.deploy.export import nmf_seed_of  # noqa: E402
from jsegnext.runtime import jt  # noqa: E402

#: Largest accepted difference between onnxruntime and jsegnext, relative to the logits' largest magnitude.
VERIFY_TOLERANCE = 1e-4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Export SegNeXt (jsegnext) to ONNX")
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="jsegnext .pkl or reference .pth")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input height and width (default: slide crop_size, else 512 512)",
    )
    parser.add_argument("--dynamic", action="store_true", help="free batch, height and width")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--nmf-seed", type=int, help="seed of the fixed NMF bases (default: ham_kwargs.seed, else 0)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def default_shape(model):
    test_cfg = model.test_cfg
    return tuple(test_cfg["crop_size"]) if test_cfg.get("mode") == "slide" else (512, 512)


def verify(model, path, shape, seed):
    """Largest |onnxruntime − jsegnext| relative to max |jsegnext| on a random input of ``shape``."""
    image = np.random.default_rng(0).standard_normal((1, 3) + tuple(shape)).astype(np.float32)
    ham = model.decode_head.hamburger.ham
    saved, ham.seed = ham.seed, seed  # the exported bases
    try:
        with jt.no_grad():
            expected = model.encode_decode(jt.array(image)).numpy()
    finally:
        ham.seed = saved
    got = OnnxSegmentor(path).encode_decode(image).numpy()
    return float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12))


@one_line_errors
def main(argv=None):
    args = parse_args(argv)
    model = init_model(args.config, args.checkpoint, options=args.cfg_options, fuse=False)
    shape = tuple(args.shape) if args.shape else default_shape(model)
    seed = nmf_seed_of(model, args.nmf_seed)
    proto = export_onnx(model, args.output, input_shape=shape, dynamic=args.dynamic, opset=args.opset, nmf_seed=seed)
    size_mb = Path(args.output).stat().st_size / 1e6
    dims = "batch x 3 x H x W (dynamic)" if args.dynamic else f"1 x 3 x {shape[0]} x {shape[1]}"
    print(
        f"wrote {args.output} ({size_mb:.1f} MB, opset {args.opset}, {len(proto.graph.node)} nodes): "
        f"image {dims} -> logits with {model.num_classes} classes; NMF bases fixed (seed {seed}); "
        "onnx.checker passed"
    )
    if args.no_verify:
        return 0
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime is not installed: not verified (pip install onnxruntime)")
        return 0
    error = verify(model, args.output, shape, seed)
    verdict = "ok" if error <= VERIFY_TOLERANCE else f"FAILED (tolerance {VERIFY_TOLERANCE:g})"
    print(
        f"onnxruntime vs jsegnext at {shape[0]}x{shape[1]}: max difference {error:.2e} of the largest logit: {verdict}"
    )
    return 0 if error <= VERIFY_TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
