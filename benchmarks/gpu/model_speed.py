"""Whole-model speed, jsegnext against the PyTorch SegNeXt of ``benchmarks/torch_segnext.py`` on the
same device, weights and NMF bases (outputs compared before anything is timed).

Rows, in this order (the GPU run's budget may stop it part-way; each finished row is one JSON
line of ``--out``): SegNeXt-T eval at 512×512 batch 1 and 16, 768×1536, 1024×2048; T training at
512×512 batch 16; B eval; B training; S eval; L eval.

Eval: ``encode_decode`` (logits at the input size) under ``no_grad``. Train: forward, cross entropy
at full size (150 classes), backward, AdamW step. jsegnext is timed once per strip-conv ``--impls``
entry; PyTorch with ``torch.backends.cudnn.benchmark = True``, NCHW and channels-last, its
defaults otherwise (TF32 convolutions allowed). The output check runs with TF32 off. Each timed
call is synchronised: ``jt.sync_all(True)`` around a jsegnext step, CUDA events around a PyTorch
step (wall clock on the CPU). Warm-up calls, which include Jittor's kernel compilation, are not
timed; the first one's duration is reported as ``first_call_s``.

    python benchmarks/gpu/model_speed.py --out rows.jsonl --impls conv2d kernel
    python benchmarks/gpu/model_speed.py --out rows.jsonl --smoke        # tiny model, 64×64, seconds
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tools")]

from benchmark import percentiles  # noqa: E402  (tools/benchmark.py)

import jsegnext  # noqa: E402,F401  (Jittor's environment before Jittor, and before torch)
from jsegnext.apis import load_config  # noqa: E402
from jsegnext.engine.optim import build_optimizer  # noqa: E402
from jsegnext.models import build_segmentor  # noqa: E402
from jsegnext.runtime import device_name, jt  # noqa: E402

try:
    import torch
except ImportError:  # CI: no PyTorch; the jsegnext columns still run
    torch = None

NUM_CLASSES = 150
EVAL_SHAPES = [(512, 512, 1), (512, 512, 16), (768, 1536, 1), (1024, 2048, 1)]
PLAN = (
    [("t", "eval", s) for s in EVAL_SHAPES]
    + [("t", "train", (512, 512, 16))]
    + [("b", "eval", s) for s in EVAL_SHAPES]
    + [("b", "train", (512, 512, 16))]
    + [("s", "eval", s) for s in EVAL_SHAPES]
    + [("l", "eval", s) for s in EVAL_SHAPES]
)
SMOKE_PLAN = [("t", "eval", (64, 64, 1)), ("t", "train", (64, 64, 2))]
#: The smoke run's model: SegNeXt-T shrunk (as in tests/test_benchmark.py).
TINY = dict(embed_dims=(8, 16, 32, 32), depths=(1, 1, 1, 1), mlp_ratios=(2, 2, 2, 2), channels=32, rank=4)
CHECK_TOL = 1e-3  # max relative error of the eval logits, jsegnext vs PyTorch (fp32, TF32 off)


def jsegnext_model(variant, impl, tiny):
    opts = [f"model.backbone.strip_conv='{impl}'", f"model.decode_head.num_classes={NUM_CLASSES}"]
    if tiny:
        opts += [
            f"model.backbone.embed_dims={list(TINY['embed_dims'])}",
            f"model.backbone.depths={list(TINY['depths'])}",
            f"model.backbone.mlp_ratios={list(TINY['mlp_ratios'])}",
            f"model.decode_head.in_channels={list(TINY['embed_dims'][1:])}",
            f"model.decode_head.channels={TINY['channels']}",
            f"model.decode_head.ham_channels={TINY['channels']}",
            "model.decode_head.norm_groups=8",
            f"model.decode_head.ham_kwargs.MD_R={TINY['rank']}",
        ]
    cfg = load_config(str(ROOT / "configs" / f"segnext_{variant}_ade20k.py"), opts)
    return build_segmentor(cfg.model), cfg


def torch_model(variant, tiny, device):
    from check_torch_segnext import randomize_
    from torch_segnext import build_torch_segnext

    torch.manual_seed(0)
    model = build_torch_segnext(variant, NUM_CLASSES, norm_groups=8 if tiny else 32, **(TINY if tiny else {}))
    return randomize_(model).to(device)


def fix_bases(models, channels, rank):
    from check_torch_segnext import nmf_bases

    bases = nmf_bases(channels, rank, seed=1)
    for m in models:
        if torch is not None and isinstance(m, torch.nn.Module):
            m.set_nmf_bases(bases)
        else:
            m.decode_head.hamburger.ham._build_bases = lambda B, S, D, R, b=bases: jt.array(
                np.repeat(b, B * S // b.shape[0], axis=0)
            )


# ------------------------------------------------------------------------------------------ timing
def time_jittor(step, warmup, iters):
    t0 = time.perf_counter()
    step().sync()
    jt.sync_all(True)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        step().sync()
    times = []
    for _ in range(iters):
        jt.sync_all(True)
        t0 = time.perf_counter()
        step().sync()
        jt.sync_all(True)
        times.append(time.perf_counter() - t0)
    return dict(percentiles(times), first_call_s=round(first, 2))


def time_torch(step, warmup, iters, cuda):
    t0 = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        step()
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    return dict(percentiles(times), first_call_s=round(first, 2))


def jittor_step(model, cfg, kind, img, label):
    x = jt.array(img)
    if kind == "eval":
        model.eval()

        def step():
            with jt.no_grad():
                return model.encode_decode(x)

        return step
    model.train()
    y = jt.array(label.astype(np.int32))
    optimizer = build_optimizer(model, cfg.optimizer)

    def step():
        loss = model.loss(x, y)
        optimizer.step(loss)
        return loss

    return step


def torch_step(model, kind, img, label, device, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.from_numpy(img).to(device).contiguous(memory_format=fmt)
    if kind == "eval":
        model.eval()

        def step():
            with torch.no_grad():
                return model.forward_full(x)

        return step
    model.train()
    y = torch.from_numpy(label).long().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01)

    def step():
        loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def check_outputs(torch_m, jittor_models, h, w, device):
    """Max relative error of eval logits per jsegnext model against PyTorch (fp32, TF32 off)."""
    from check_torch_segnext import rel_err

    img = np.random.default_rng(3).standard_normal((1, 3, h, w)).astype(np.float32)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        torch_m.eval()
        with torch.no_grad():
            ref = torch_m.forward_full(torch.from_numpy(img).to(device)).cpu().numpy()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    errors = {}
    for name, m in jittor_models.items():
        m.eval()
        with jt.no_grad():
            errors[name] = rel_err(m.encode_decode(jt.array(img)).numpy(), ref)
    return errors


# ------------------------------------------------------------------------------------------ main
def run_variant(variant, rows, args, emit):
    tiny = args.smoke
    models, cfg = {}, None
    for impl in args.impls:
        models[impl], cfg = jsegnext_model(variant, impl, tiny)
    head = cfg.model["decode_head"]
    tm, errors = None, {}
    cuda = torch is not None and torch.cuda.is_available() and device_name() == "cuda"
    tdevice = "cuda" if cuda else "cpu"
    if torch is not None:
        from check_torch_segnext import torch_state_numpy

        from jsegnext.weights import load_state

        tm = torch_model(variant, tiny, tdevice)
        state = torch_state_numpy(tm)
        for m in models.values():
            load_state(m, state, source="torch model")
        fix_bases([tm, *models.values()], head["channels"], head["ham_kwargs"]["MD_R"])
        errors = check_outputs(tm, models, 64 if tiny else 256, 64 if tiny else 320, tdevice)
    if torch is not None:
        torch.backends.cudnn.benchmark = True
    for kind, (h, w, n) in rows:
        rng = np.random.default_rng(0)
        img = rng.standard_normal((n, 3, h, w)).astype(np.float32)
        label = rng.integers(0, NUM_CLASSES, (n, h, w)).astype(np.uint8)
        warmup, iters = (1, 2) if tiny else ((3, 10) if kind == "eval" else (2, 5))
        row = dict(
            variant=variant,
            kind=kind,
            shape=[h, w],
            batch=n,
            device=device_name(),
            check_rel_err=errors,
            check_tol=CHECK_TOL,
            columns={},
        )
        for impl, m in models.items():
            name = f"jsegnext[{impl}]"
            if errors and errors[impl] > CHECK_TOL:
                row["columns"][name] = dict(error=f"outputs differ from PyTorch ({errors[impl]:.1e}); not timed")
                continue
            try:
                row["columns"][name] = time_jittor(jittor_step(m, cfg, kind, img, label), warmup, iters)
            except Exception as exc:  # noqa: BLE001 - report the failure, keep the other columns
                row["columns"][name] = dict(error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}")
            jt.sync_all(True)
            jt.gc()
        if tm is None:
            row["columns"]["pytorch"] = dict(skipped="PyTorch not installed")
        else:
            for cl in (False, True):
                name = "pytorch_channels_last" if cl else "pytorch"
                try:
                    row["columns"][name] = time_torch(
                        torch_step(tm, kind, img, label, tdevice, cl), warmup, iters, cuda
                    )
                except Exception as exc:  # noqa: BLE001
                    row["columns"][name] = dict(error=f"{type(exc).__name__}: {str(exc)[:300]}")
                if cuda:
                    torch.cuda.empty_cache()
            tm = tm.to(memory_format=torch.contiguous_format)
        for col in row["columns"].values():
            if "mean" in col:
                col["images_per_s" if kind == "eval" else "iters_per_s"] = round(
                    (n if kind == "eval" else 1) * 1e3 / col["mean"], 2
                )
        emit(row)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON lines file, one row per line (appended as rows finish)")
    p.add_argument("--impls", nargs="+", default=["conv2d", "kernel"], help="jsegnext strip_conv implementations")
    p.add_argument("--variants", nargs="+", default=None, help="only these variants")
    p.add_argument("--smoke", action="store_true", help="tiny model at 64x64 (CPU check of this script)")
    args = p.parse_args(argv)
    plan = SMOKE_PLAN if args.smoke else PLAN
    out = open(args.out, "a", buffering=1)

    def emit(row):
        out.write(json.dumps(row) + "\n")
        cols = ", ".join(f"{k} {v['mean']:.1f} ms" if "mean" in v else f"{k} -" for k, v in row["columns"].items())
        print(
            f"{row['variant'].upper()} {row['kind']} {row['shape'][0]}x{row['shape'][1]} b{row['batch']}: {cols}",
            flush=True,
        )

    order = []
    for variant, kind, shape in plan:  # group consecutive rows of one variant: one set of models each
        if args.variants and variant not in args.variants:
            continue
        if order and order[-1][0] == variant:
            order[-1][1].append((kind, shape))
        else:
            order.append((variant, [(kind, shape)]))
    for variant, rows in order:
        run_variant(variant, rows, args, emit)
        jt.gc()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
