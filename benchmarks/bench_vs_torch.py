"""jsegnext against a PyTorch SegNeXt, side by side in one process on the same weights.

    python benchmarks/bench_vs_torch.py                          # SegNeXt-T, 512x512, 2 threads, eval + train
    python benchmarks/bench_vs_torch.py --strip-conv auto conv2d --json vs_torch.json

The PyTorch model is ``benchmarks/torch_segnext.py`` (a plain port written from SPEC.md); its random
weights are copied into jsegnext and the eval outputs are compared before anything is timed.
Timings alternate in rounds (PyTorch block, then each jsegnext variant, repeated) so that drifting
machine load hits every column alike; the ratio is taken per round and its median reported.

Eval: batch 1 forward to full-size logits (no grad). Train: batch 2 forward, cross entropy at full
size (150 classes), backward and an AdamW step (lr 6e-5, weight decay 0.01) in both frameworks.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="t", choices=["t", "s", "b", "l"])
    p.add_argument("--shape", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=["eval", "train"], choices=["eval", "train"])
    p.add_argument("--strip-conv", nargs="+", default=["auto"],
                   help="jsegnext strip-conv paths to time (auto, conv2d, kernel, fused, meta)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS and torch.set_num_threads")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per framework per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations before the first round")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


ARGS = parse_args()
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)  # before Jittor and PyTorch start their thread pools

import numpy as np  # noqa: E402

import jsegnext  # noqa: E402,F401  (sets Jittor's environment before Jittor is imported)
from jsegnext.engine.optim import build_optimizer  # noqa: E402
from jsegnext.runtime import jt  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_torch_segnext import jittor_cfg, jittor_from_torch, nmf_bases, rel_err  # noqa: E402
from torch_segnext import build_torch_segnext  # noqa: E402

NUM_CLASSES = 150


def make_torch_steps(model, img, label):
    x, y = torch.from_numpy(img[:1]), torch.from_numpy(label).long()
    xb = torch.from_numpy(img)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01)

    def eval_step():
        model.eval()
        with torch.no_grad():
            return model.forward_full(x)

    def train_step():
        model.train()
        loss = model.loss(xb, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return {"eval": eval_step, "train": train_step}


def make_jittor_steps(model, img, label):
    x, xb, y = jt.array(img[:1]), jt.array(img), jt.array(label.astype(np.int32))
    model.train()  # eval() marks Jittor parameters stop-grad; the optimiser needs them trainable
    optimizer = build_optimizer(model, dict(type="AdamW", lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))

    def eval_step():
        model.eval()
        with jt.no_grad():
            out = model.encode_decode(x)
        out.sync()
        return out

    def train_step():
        model.train()
        loss = model.loss(xb, y)
        optimizer.step(loss)
        jt.sync_all(True)
        return loss
    return {"eval": eval_step, "train": train_step}


def check_outputs(torch_model, jittor_model, img):
    """Max relative error of the full-size eval logits (the models must agree before being timed)."""
    torch_model.eval()
    jittor_model.eval()
    with torch.no_grad():
        ref = torch_model.forward_full(torch.from_numpy(img[:1])).numpy()
    with jt.no_grad():
        out = jittor_model.encode_decode(jt.array(img[:1])).numpy()
    return rel_err(out, ref)


def timed(step, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": ARGS.threads, "python": platform.python_version(),
            "torch": torch.__version__, "jittor": jt.__version__,
            "loadavg_before": list(os.getloadavg())}


def main():
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(0)
    h, w = ARGS.shape
    rng = np.random.default_rng(0)
    img = rng.standard_normal((ARGS.train_batch, 3, h, w)).astype(np.float32)
    label = rng.integers(0, NUM_CLASSES, (ARGS.train_batch, h, w)).astype(np.uint8)

    torch_model = build_torch_segnext(ARGS.variant, NUM_CLASSES, dropout_ratio=0.1)
    columns = {"pytorch": (torch_model, make_torch_steps)}
    bases = nmf_bases(torch_model.decode_head.hamburger.ham_in.conv.out_channels,
                      torch_model.decode_head.hamburger.ham.R, seed=1)
    torch_model.set_nmf_bases(bases)
    errors = {}
    for path in ARGS.strip_conv:
        model = jittor_from_torch(torch_model, jittor_cfg(ARGS.variant, NUM_CLASSES, strip_conv=path))
        model.decode_head.hamburger.ham._build_bases = (
            lambda B, S, D, R, b=bases: jt.array(np.repeat(b, B * S // b.shape[0], axis=0)))
        errors[path] = check_outputs(torch_model, model, img)
        print(f"jsegnext[{path}] vs PyTorch, eval logits: max relative error {errors[path]:.2e}", flush=True)
        if errors[path] > 1e-3:
            raise SystemExit(f"outputs disagree (relative error {errors[path]:.2e}); not timing different models")
        columns[f"jsegnext[{path}]"] = (model, make_jittor_steps)
    steps = {name: build(model, img, label) for name, (model, build) in columns.items()}

    results = {"command": "python benchmarks/bench_vs_torch.py " + " ".join(sys.argv[1:]),
               "variant": ARGS.variant, "shape": [h, w], "train_batch": ARGS.train_batch,
               "max_rel_err": errors, "machine": machine(), "modes": {}}
    for mode in ARGS.modes:
        for name in steps:
            timed(steps[name][mode], ARGS.warmup)
        times = {name: [] for name in steps}
        ratios = {name: [] for name in steps if name != "pytorch"}
        for r in range(ARGS.rounds):
            medians = {}
            for name in steps:
                t = timed(steps[name][mode], ARGS.iters)
                times[name] += t
                medians[name] = float(np.median(t))
            for name in ratios:
                ratios[name].append(medians[name] / medians["pytorch"])
            print(f"{mode} round {r + 1}/{ARGS.rounds}: " +
                  "  ".join(f"{n} {m * 1e3:.0f} ms" for n, m in medians.items()), flush=True)
        results["modes"][mode] = {
            "median_ms": {n: float(np.median(t) * 1e3) for n, t in times.items()},
            "min_ms": {n: float(np.min(t) * 1e3) for n, t in times.items()},
            "ratio_to_pytorch": {n: float(np.median(r)) for n, r in ratios.items()},
            "ratio_per_round": ratios,
        }
    results["machine"]["loadavg_after"] = list(os.getloadavg())
    print(format_table(results))
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {ARGS.json}")


def format_table(results):
    h, w = results["shape"]
    lines = [f"\nSegNeXt-{results['variant'].upper()} {h}x{w}, {results['machine']['threads']} threads "
             f"({results['machine']['cpu']})",
             "| | " + " | ".join(results["modes"]) + " |", "|---" * (len(results["modes"]) + 1) + "|"]
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
