"""jsegnext against a PyTorch SegNeXt, side by side in one process on the same weights.

    python benchmarks/bench_vs_torch.py                          # SegNeXt-T, 512x512, 2 threads, eval + train
    python benchmarks/bench_vs_torch.py --strip-conv auto conv2d --json vs_torch.json

The PyTorch model is ``benchmarks/torch_segnext.py`` (a plain port written from SPEC.md); its random
weights are copied into jsegnext and the eval outputs are compared before anything is timed.
Timings alternate in rounds (PyTorch block, then each jsegnext variant, repeated) so that drifting
machine load hits every column alike; the ratio is taken per round and its median reported.

Eval: batch 1 forward to full-size logits (no grad; jsegnext's fused inference copy unless --no-fuse).
Train: batch 2 forward, cross entropy at full
size (150 classes), backward and an AdamW step (lr 6e-5, weight decay 0.01) in both frameworks.
"""

import argparse
import json
import os
import sys
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="t", choices=["t", "s", "b", "l"])
    p.add_argument("--shape", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=["eval", "train"], choices=["eval", "train"])
    p.add_argument(
        "--strip-conv",
        nargs="+",
        default=["auto"],
        help="jsegnext strip-conv paths to time (auto, conv2d, kernel, fused, meta)",
    )
    p.add_argument("--no-fuse", action="store_true", help="eval: time the training graph, not the fused inference copy")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS and torch.set_num_threads")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per framework per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations before the first round")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


ARGS = parse_args()
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)  # before Jittor and PyTorch start their thread pools

import numpy as np  # noqa: E402

_USER_SPINCOUNT = os.environ.get("GOMP_SPINCOUNT")
import jsegnext  # noqa: E402,F401  (sets Jittor's environment before Jittor is imported)
from jsegnext.models.fuse import fuse_segmentor  # noqa: E402
from jsegnext.runtime import jt  # noqa: E402

if _USER_SPINCOUNT is None:  # jsegnext's OpenMP setting is for Jittor; PyTorch runs with its defaults
    os.environ.pop("GOMP_SPINCOUNT", None)
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_torch_segnext import jittor_cfg, jittor_from_torch, nmf_bases, rel_err  # noqa: E402
from model_timing import alternate, machine_info, make_jittor_steps, make_torch_steps  # noqa: E402
from torch_segnext import build_torch_segnext  # noqa: E402

NUM_CLASSES = 150


def check_outputs(torch_model, jittor_model, img):
    """Max relative error of the full-size eval logits (the models must agree before being timed)."""
    torch_model.eval()
    jittor_model.eval()
    with torch.no_grad():
        ref = torch_model.forward_full(torch.from_numpy(img[:1])).numpy()
    with jt.no_grad():
        out = jittor_model.encode_decode(jt.array(img[:1])).numpy()
    return rel_err(out, ref)


def main():
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(0)
    h, w = ARGS.shape
    rng = np.random.default_rng(0)
    img = rng.standard_normal((ARGS.train_batch, 3, h, w)).astype(np.float32)
    label = rng.integers(0, NUM_CLASSES, (ARGS.train_batch, h, w)).astype(np.uint8)

    torch_model = build_torch_segnext(ARGS.variant, NUM_CLASSES, dropout_ratio=0.1)
    columns = {"pytorch": lambda: make_torch_steps(torch, torch_model, img, label)}
    bases = nmf_bases(
        torch_model.decode_head.hamburger.ham_in.conv.out_channels, torch_model.decode_head.hamburger.ham.R, seed=1
    )
    torch_model.set_nmf_bases(bases)
    errors = {}
    for path in ARGS.strip_conv:
        model = jittor_from_torch(torch_model, jittor_cfg(ARGS.variant, NUM_CLASSES, strip_conv=path))
        model.decode_head.hamburger.ham._build_bases = lambda B, S, D, R, b=bases: jt.array(
            np.repeat(b, B * S // b.shape[0], axis=0)
        )
        net = model if ARGS.no_fuse else fuse_segmentor(model)
        errors[path] = check_outputs(torch_model, net, img)
        print(f"jsegnext[{path}] vs PyTorch, eval logits: max relative error {errors[path]:.2e}", flush=True)
        if errors[path] > 1e-3:
            raise SystemExit(f"outputs disagree (relative error {errors[path]:.2e}); not timing different models")
        columns[f"jsegnext[{path}]"] = lambda model=model, net=net: make_jittor_steps(jt, model, img, label, net)
    steps = {name: build() for name, build in columns.items()}

    results = {
        "command": "python benchmarks/bench_vs_torch.py " + " ".join(sys.argv[1:]),
        "variant": ARGS.variant,
        "shape": [h, w],
        "train_batch": ARGS.train_batch,
        "max_rel_err": errors,
        "modes": {},
        "machine": machine_info(ARGS.threads, torch=torch.__version__, jittor=jt.__version__),
    }
    for mode in ARGS.modes:
        results["modes"][mode] = alternate(
            {name: s[mode] for name, s in steps.items()},
            ARGS.rounds,
            ARGS.iters,
            ARGS.warmup,
            "pytorch",
            label=mode,
            log=lambda line: print(line, flush=True),
        )
    results["machine"]["loadavg_after"] = list(os.getloadavg())
    print(format_table(results))
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {ARGS.json}")


def format_table(results):
    h, w = results["shape"]
    lines = [
        f"\nSegNeXt-{results['variant'].upper()} {h}x{w}, {results['machine']['threads']} threads "
        f"({results['machine']['cpu']})",
        "| | " + " | ".join(results["modes"]) + " |",
        "|---" * (len(results["modes"]) + 1) + "|",
    ]
    names = list(next(iter(results["modes"].values()))["median_ms"])
    for name in names:
        cells = []
        for m in results["modes"].values():
            cell = f"{m['median_ms'][name]:.0f} ms"
            if name in m["ratio_to_pytorch"]:
                cell += f" ({m['ratio_to_pytorch'][name]:.2f}x)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
