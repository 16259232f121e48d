"""Where the time of a SegNeXt forward (or training step) goes, per operator kind, from Jittor's profiler.

    python benchmarks/profile_model.py                              # SegNeXt-T eval 512x512, fused inference path
    python benchmarks/profile_model.py --no-fuse                    # the training model's eval forward
    python benchmarks/profile_model.py --train --batch 2            # forward + loss + backward + AdamW
    python benchmarks/profile_model.py --json prof.json --top 15

Runs ``--warmup`` untimed steps (kernel compilation), then ``--iters`` steps under ``jt.profile_scope()``
and sums the profiler's per-op times into kinds (see :data:`KINDS`: the op names Jittor records — MKL
matrix products, oneDNN convolutions, our ``jt.code`` kernels by their C++ entry point, fused element-wise
groups by what they contain). Op time is the time inside the ops; the step time (wall, synchronised) also
holds graph building and scheduling in Python. Eval steps also report the wall time of each part of the
forward (backbone stages, decode head, final resize) measured with a sync after each.
"""

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/segnext_t_ade20k.py")
    p.add_argument("--shape", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--train", action="store_true", help="profile a training step instead of eval")
    p.add_argument("--no-fuse", action="store_true", help="eval: the unfused model (the training graph in eval mode)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--top", type=int, default=0, help="also list the N most expensive single ops")
    p.add_argument("--json", help="write the breakdown here")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from jsegnext.runtime import jt  # noqa: E402

#: (kind, test on the op's name), first match wins. Kernels are named by their C++ entry point.
KINDS = [
    ("1x1 conv fwd / with epilogue (kernel)", r"CODE:jsn_pw::pointwise(2)?<"),
    ("1x1 conv bwd (kernel)", r"CODE:jsn_pw::pointwise_backward"),
    ("Mlp fc1-dw3x3-GELU-fc2 (fused kernel)", r"CODE:jsn_pw::mlp"),
    ("NMF (fused kernel)", r"CODE:jsn_pw::nmf"),
    ("GroupNorm / LayerNorm (fused kernel)", r"CODE:jsn_pw::(group_norm|channel_norm)"),
    ("logits resize + argmax (fused kernel)", r"CODE:jsn_resize::resize_argmax"),
    ("matrix products (MKL sgemm: 1x1 convs, NMF)", r"^mkl_matmul"),
    ("dense 3x3 convs (oneDNN: stem, patch embeds) fwd", r"^mkl_conv«"),
    ("dense 3x3 convs (oneDNN) input grad", r"^mkl_conv_backward_x"),
    ("dense 3x3 convs (oneDNN) weight grad", r"^mkl_conv_backward_w"),
    ("depthwise 3x3/5x5 kernel fwd", r"CODE:jsn_dw::forward"),
    ("depthwise 3x3/5x5 kernel bwd", r"CODE:jsn_dw::backward"),
    ("MSCA strips kernel fwd", r"CODE:.*jsn_strip::(msca_)?forward"),
    ("MSCA strips kernel bwd", r"CODE:.*jsn_strip::(msca_)?backward"),
    ("bilinear resize kernel fwd", r"CODE:jsn_resize::resize_forward"),
    ("bilinear resize kernel bwd", r"CODE:jsn_resize::resize_backward"),
    ("cross entropy fused with resize, fwd", r"CODE:jsn_resize::ce_forward"),
    ("cross entropy fused with resize, bwd", r"CODE:jsn_resize::ce_backward"),
    ("transposes", r"^transpose«"),
    ("copies (setitem/getitem/concat)", r"^(setitem|getitem|concat)«"),
    ("element-wise with GELU (erf)", r"OP:erf"),
    ("reductions (norm statistics, bias/BN grads)", r"reduce«"),
    ("other fused element-wise", r"."),
]
_COMPILED = [(kind, re.compile(pattern, re.S)) for kind, pattern in KINDS]


def kind_of(name):
    return next(kind for kind, pattern in _COMPILED if pattern.search(name))


def short_name(name):
    code = re.search(r"CODE:.*?(jsn_\w*::\w+(<[^>]*>)?)", name, re.S)
    if code:
        return "jt.code " + code.group(1)
    ops = re.findall(r"opkey\d+:(\w+)«[^«]*(?:«OP:(\w+))?", name)
    if ops:
        return "fused: " + " ".join(op + (f"({what})" if what else "") for op, what in ops)[:120]
    return name.split("«")[0]


def breakdown(report, steps):
    """{kind: (ms per step, calls per step)} and the top single ops, from a profile_scope report."""
    header, rows = report[0], report[1:]
    i_name, i_count, i_total = header.index("Name"), header.index("Count"), header.index("TotalTime")
    kinds = defaultdict(lambda: [0.0, 0.0])
    ops = []
    for row in rows:
        ms = float(row[i_total]) / 1e6 / steps
        calls = float(row[i_count]) / steps
        kind = kind_of(row[i_name])
        kinds[kind][0] += ms
        kinds[kind][1] += calls
        ops.append((ms, calls, kind, short_name(row[i_name])))
    ops.sort(reverse=True)
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1][0])), ops


def build(args):
    from jsegnext.apis import load_config
    from jsegnext.models import build_segmentor
    from jsegnext.ops import resize_bilinear

    cfg = load_config(args.config)
    jt.set_global_seed(0)
    model = build_segmentor(cfg.model)
    rng = np.random.default_rng(0)
    h, w = args.shape
    img = jt.array(rng.standard_normal((args.batch, 3, h, w)).astype(np.float32))
    if args.train:
        from jsegnext.engine.optim import build_optimizer

        model.train()
        label = jt.array(rng.integers(0, model.num_classes, (args.batch, h, w)).astype(np.int32))
        optimizer = build_optimizer(model, cfg.optimizer)

        def step():
            loss = model.loss(img, label)
            optimizer.step(loss)
            jt.sync_all(True)

        return step, None
    model.eval()
    if args.no_fuse:
        net = model
    else:
        from jsegnext.models.fuse import fuse_segmentor

        net = fuse_segmentor(model)

    def step():
        with jt.no_grad():
            net.encode_decode(img).sync()
        jt.sync_all(True)

    def parts():
        """Wall ms of each part of the forward, synchronised after each."""
        times = {}
        with jt.no_grad():
            t0 = time.perf_counter()
            feats = net.extract_feat(img)
            jt.sync(list(feats))
            t1 = time.perf_counter()
            logits = net.decode_head(feats)
            logits.sync()
            t2 = time.perf_counter()
            resize_bilinear(logits, img.shape[2:]).sync()
            t3 = time.perf_counter()
        times.update({"backbone": (t1 - t0) * 1e3, "decode head": (t2 - t1) * 1e3, "final resize": (t3 - t2) * 1e3})
        return times

    return step, parts


def main(args):
    step, parts = build(args)
    for _ in range(args.warmup):
        step()
    walls = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        walls.append((time.perf_counter() - t0) * 1e3)
    with jt.profile_scope() as report:
        for _ in range(args.iters):
            step()
    kinds, ops = breakdown(report, args.iters)
    total = sum(ms for ms, _ in kinds.values())
    mode = "train step" if args.train else ("eval, unfused" if args.no_fuse else "eval, fused")
    print(
        f"\n{args.config}, {mode}, batch {args.batch}, {args.shape[0]}x{args.shape[1]}, "
        f"{args.threads} threads; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"step (wall, median of {args.iters}): {np.median(walls):.1f} ms; op time {total:.1f} ms per step\n")
    print("| kind | ms / step | share | calls / step |\n|---|---|---|---|")
    for kind, (ms, calls) in kinds.items():
        print(f"| {kind} | {ms:.1f} | {100 * ms / total:.1f} % | {calls:.0f} |")
    section = None
    if parts is not None:
        section = [parts() for _ in range(args.iters)]
        section = {k: float(np.median([s[k] for s in section])) for k in section[0]}
        print(
            "\nwall time by part (ms, synchronised after each): "
            + ", ".join(f"{k} {v:.1f}" for k, v in section.items())
        )
    if args.top:
        print(f"\ntop {args.top} ops:\n| ms / step | calls | kind | op |\n|---|---|---|---|")
        for ms, calls, kind, name in ops[: args.top]:
            print(f"| {ms:.2f} | {calls:.0f} | {kind} | {name} |")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "command": "python benchmarks/profile_model.py " + " ".join(sys.argv[1:]),
                    "mode": mode,
                    "shape": args.shape,
                    "batch": args.batch,
                    "threads": args.threads,
                    "wall_ms": walls,
                    "op_ms": total,
                    "kinds": {k: {"ms": v[0], "calls": v[1]} for k, v in kinds.items()},
                    "parts_ms": section,
                    "top_ops": ops[: max(args.top, 20)],
                    "loadavg": os.getloadavg(),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main(ARGS)
