"""Check the ONNX export of SegNeXt-T/S/B/L: parity with jsegnext and onnxruntime latency.

For each variant (random weights made sensitive as the reference fixtures', 150 classes, NMF seed 0),
exports one ``--dynamic`` file, then at each shape compares onnxruntime's logits with jsegnext's
(max |onnxruntime − jsegnext| / max |jsegnext|) and times both (median of ``--repeat`` runs after one
warm-up). Exits 1 if an error exceeds ``--tol``. Needs ``pip install -e ".[deploy]"``.

    python benchmarks/check_onnx.py [--variants t s b l] [--shapes 512x512 200x328 1024x2048]
                                    [--repeat 3] [--tol 1e-4] [--json out.json]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import jsegnext  # noqa: F401  (configures Jittor before it loads)
from jsegnext.deploy import OnnxSegmentor, export_onnx
from jsegnext.models import MSCAN_SETTINGS, build_segmentor
from jsegnext.runtime import jt

HEAD = {"t": (256, 16), "s": (256, 16), "b": (512, 64), "l": (1024, 64)}  # ham channels, NMF rank


def variant_cfg(variant, num_classes=150, nmf_seed=0):
    s = MSCAN_SETTINGS[variant]
    channels, rank = HEAD[variant]
    return dict(
        backbone=dict(s),
        decode_head=dict(
            in_channels=s["embed_dims"][1:],
            channels=channels,
            ham_channels=channels,
            num_classes=num_classes,
            ham_kwargs=dict(MD_R=rank, seed=nmf_seed),
        ),
    )


def sensitive_weights_(model, seed=0, layer_scale=(0.05, 0.2)):
    """Random weights that make a comparison sensitive (as the fixtures'): non-trivial norm affines,
    biases, layer scales and BN running statistics. Layer scales stay below 0.2 so that the 27
    blocks of SegNeXt-L's third stage keep activations finite (0.5 overflows to inf there)."""
    rng = np.random.default_rng(seed)
    for name, var in model.state_dict().items():
        shape = tuple(var.shape)
        if name.endswith("running_var"):
            new = rng.random(shape) + 0.5
        elif name.endswith("running_mean"):
            new = 0.1 * rng.standard_normal(shape)
        elif "layer_scale" in name:
            new = rng.uniform(*layer_scale, shape)
        elif name.endswith("bias"):
            new = 0.02 * rng.standard_normal(shape)
        elif len(shape) == 1:  # BN / GN / LN weights
            new = rng.random(shape) + 0.5
        else:
            continue
        var.update(jt.array(new.astype(np.float32)))
    return model


def _timed(fn, repeat):
    fn()  # warm-up (Jittor compiles new shapes here)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def check_variant(variant, shapes, repeat, workdir):
    jt.set_global_seed(1)
    model = sensitive_weights_(build_segmentor(variant_cfg(variant)), seed=1)
    model.eval()
    path = Path(workdir) / f"segnext_{variant}.onnx"
    start = time.perf_counter()
    export_onnx(model, path, dynamic=True)
    row = dict(
        variant=variant,
        export_s=round(time.perf_counter() - start, 2),
        file_mb=round(path.stat().st_size / 1e6, 1),
        shapes={},
    )
    session = OnnxSegmentor(path)
    for h, w in shapes:
        image = np.random.default_rng(h * w).standard_normal((1, 3, h, w)).astype(np.float32)
        with jt.no_grad():
            expected, t_jittor = _timed(lambda: model.encode_decode(jt.array(image)).numpy(), repeat)
        got, t_ort = _timed(lambda: session.encode_decode(image).numpy(), repeat)
        error = float(np.abs(got - expected).max() / np.abs(expected).max())
        row["shapes"][f"{h}x{w}"] = dict(rel_error=error, jittor_s=round(t_jittor, 3), onnxruntime_s=round(t_ort, 3))
    path.unlink()
    return row


def parse_shape(text):
    h, w = text.lower().split("x")
    return int(h), int(w)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["t", "s", "b", "l"], choices=sorted(HEAD))
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=[(512, 512), (200, 328)])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--json", help="write the rows as JSON")
    args = parser.parse_args(argv)
    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory() as workdir:
        for variant in args.variants:
            row = check_variant(variant, args.shapes, args.repeat, workdir)
            rows.append(row)
            for shape, r in row["shapes"].items():
                worst = max(worst, r["rel_error"])
                print(
                    f"SegNeXt-{variant.upper()} {shape:>9}: rel error {r['rel_error']:.2e}  "
                    f"jittor {r['jittor_s']:.3f}s  onnxruntime {r['onnxruntime_s']:.3f}s  "
                    f"(file {row['file_mb']} MB, export {row['export_s']}s)",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print(f"worst relative error {worst:.2e} (tolerance {args.tol:g}): {'ok' if worst <= args.tol else 'FAILED'}")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
