"""Convert a reference SegNeXt / MSCAN PyTorch checkpoint into a jsegnext weight file (no PyTorch needed).

    python tools/convert_weights.py segnext_tiny_512x512_ade_160k.pth segnext_t_ade20k.pkl
    python tools/convert_weights.py mscan_t.pth pretrained/mscan_t.pkl            # ImageNet backbone
    python tools/convert_weights.py ckpt.pth out.pkl --config configs/segnext_t_ade20k.py

Without ``--config`` the architecture is read off the checkpoint itself and every tensor is
checked against it; with ``--config`` the checkpoint must fit that config's model. Missing,
unexpected and shape-mismatched keys are listed by name and make the command fail unless
``--allow-partial`` is given.

The output (named ``.pkl`` by habit) is a safetensors file with JSON metadata
(:mod:`jsegnext.checkpoint_io`): it holds no code, and any safetensors reader opens it. The input
is read by the same restricted reader as every checkpoint: a file that refers to anything but
tensors and plain data is refused, and nothing in it runs.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsegnext.cli import one_line_errors  # noqa: E402
from jsegnext.models import MSCAN, build_segmentor  # noqa: E402
from jsegnext.runtime import jt  # noqa: E402
from jsegnext.weights import (
    infer_model_cfg,
    is_backbone_only,
    load_state,
    normalise_keys,  # noqa: E402
    read_checkpoint,
    save_weights,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", help="reference checkpoint (.pth) or jsegnext .pkl")
    parser.add_argument("dst", help="output weight file (e.g. out.pkl; safetensors inside)")
    parser.add_argument("--config", help="check the weights against this config's model")
    parser.add_argument(
        "--backbone-only",
        action="store_true",
        help="treat SRC as an ImageNet-pretrained MSCAN (detected automatically)",
    )
    parser.add_argument(
        "--allow-partial", action="store_true", help="write the tensors that fit even if some are missing or unexpected"
    )
    return parser.parse_args(argv)


def target_model(state, backbone_only, config):
    """The model to check against, and the key prefix the checkpoint covers."""
    if config:
        from jsegnext.apis import load_config

        return build_segmentor(load_config(config).model), ("backbone." if backbone_only else "")
    arch = infer_model_cfg(state)
    if backbone_only or "decode_head" not in arch:
        return _Wrapper(MSCAN(**arch["backbone"])), "backbone."
    return build_segmentor(arch), ""


class _Wrapper(jt.nn.Module):
    """Gives a bare MSCAN the ``backbone.`` names of a segmentor."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def convert(src, dst, config=None, backbone_only=False, allow_partial=False):
    raw, meta = read_checkpoint(src)
    backbone_only = backbone_only or is_backbone_only(raw)
    state, dropped = normalise_keys(raw, backbone_only)
    model, scope = target_model(state, backbone_only, config)
    report = load_state(model, state, allow_partial=allow_partial, scope=scope, dropped=dropped, source=src)
    kept = {k: state[k] for k in report.loaded}
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    save_weights(
        dst,
        kept,
        meta={
            "source": str(src),
            "backbone_only": backbone_only,
            "reference_meta": {k: str(v) for k, v in meta.items()},
        },
    )
    return report


@one_line_errors
def main(argv=None):
    args = parse_args(argv)
    report = convert(args.src, args.dst, args.config, args.backbone_only, args.allow_partial)
    print(f"{args.src} -> {args.dst}: {report.summary()}")
    if not report.ok:
        print("warning: partial conversion (--allow-partial)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
