"""Benchmark SegNeXt's square depthwise convolutions: jsegnext.ops.depthwise_conv2d ('kernel', the
hand-written CPU kernels) against ``nn.Conv2d(C, C, k, padding=k//2, groups=C)`` ('conv2d': oneDNN
on the CPU, Jittor's DepthwiseConv on CUDA).

Shapes: MSCA's 5×5 ``conv0`` and the Mlp's 3×3 ``dwconv`` of every MSCAN stage (strides 4, 8, 16,
32) of the chosen variant at the chosen input size. Times are per call in milliseconds,
``jt.sync_all(True)`` before and after each timed call, warm-up calls (which include JIT
compilation) excluded. "fwd+bwd" is the forward plus ``jt.grad((y * gy).sum(), [x, weight, bias])``
(the same small extra multiply/sum for both implementations).

    python benchmarks/bench_depthwise.py --threads 2                 # SegNeXt-T, 512×512, batch 2
    python benchmarks/bench_depthwise.py --variant b --input 1024x2048 --batch 1 --json out.json
"""

import argparse
import os
import sys
from functools import partial

import op_timing  # benchmarks/op_timing.py

STAGE_CHANNELS = {"t": (32, 64, 160, 256), "s": (64, 128, 320, 512), "b": (64, 128, 320, 512), "l": (64, 128, 320, 512)}
MLP_RATIOS = (8, 8, 4, 4)
STRIDES = (4, 8, 16, 32)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="t", choices=sorted(STAGE_CHANNELS))
    p.add_argument("--input", default="512x512", help="input H×W, e.g. 512x512 or 1024x2048")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--stages", nargs="+", type=int, default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    p.add_argument(
        "--convs",
        nargs="+",
        default=["conv0", "mlp"],
        choices=["conv0", "mlp"],
        help="conv0: MSCA 5×5 on the stage width; mlp: 3×3 on the Mlp hidden width",
    )
    op_timing.add_arguments(p, iters=5, warmup=2)
    return p.parse_args(argv)


def shapes(variant, ih, iw, stages, convs):
    """(name, C, H, W, k) of each depthwise conv shape."""
    out = []
    for s in stages:
        C, stride = STAGE_CHANNELS[variant][s - 1], STRIDES[s - 1]
        H, W = ih // stride, iw // stride
        if "conv0" in convs:
            out.append((f"stage{s} conv0", C, H, W, 5))
        if "mlp" in convs:
            out.append((f"stage{s} mlp.dwconv", C * MLP_RATIOS[s - 1], H, W, 3))
    return out


def main(argv=None):
    args = parse_args(argv)
    ih, iw = op_timing.start(args)
    from jsegnext.ops.depthwise_conv import depthwise_conv2d, resolve_impl
    from jsegnext.runtime import device_name, jt

    N = args.batch
    results = {
        "device": device_name(),
        "variant": args.variant,
        "input": [ih, iw],
        "batch": N,
        "iters": args.iters,
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "auto": resolve_impl("auto"),
        "rows": [],
    }
    stat = args.stat
    impls = ["conv2d"] if jt.flags.use_cuda else ["conv2d", "kernel"]  # no CUDA kernel

    for name, C, H, W, k in shapes(args.variant, ih, iw, args.stages, args.convs):
        x = jt.randn(N, C, H, W)
        gy = jt.randn(N, C, H, W)
        conv = jt.nn.Conv2d(C, C, k, padding=k // 2, groups=C)
        w, b = conv.weight, conv.bias
        jt.sync_all(True)
        row = {"name": name, "C": C, "H": H, "W": W, "k": k}
        for impl in impls:
            forward = partial(conv, x) if impl == "conv2d" else partial(depthwise_conv2d, x, w, b, "kernel")
            row[impl] = op_timing.forward_and_backward(jt, forward, [x, w, b], gy, args.iters, args.warmup)
        results["rows"].append(row)
        print(
            f"# {name} C={C} {H}x{W} {k}x{k}: "
            + ", ".join(f"{i} {row[i]['fwd'][stat]:.2f}/{row[i]['fwd_bwd'][stat]:.2f}" for i in impls),
            file=sys.stderr,
            flush=True,
        )
        del x, gy, conv, w, b
        jt.gc()

    print(
        f"\nDevice {results['device']}, SegNeXt-{args.variant.upper()}, input {ih}x{iw}, batch {N}, "
        f"OMP_NUM_THREADS={results['omp_threads'] or 'default'}; {stat} of {args.iters} calls, ms; "
        f"auto -> {results['auto']}\n"
    )
    head = ["conv", "C", "H×W", "k"] + [f"{i} fwd" for i in impls] + [f"{i} fwd+bwd" for i in impls]
    if "kernel" in impls:
        head.append("kernel speed-up (fwd / fwd+bwd)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    tot = {i: [0.0, 0.0] for i in impls}
    for r in results["rows"]:
        cells = [r["name"], str(r["C"]), f"{r['H']}×{r['W']}", f"{r['k']}×{r['k']}"]
        cells += [f"{r[i]['fwd'][stat]:.2f}" for i in impls] + [f"{r[i]['fwd_bwd'][stat]:.2f}" for i in impls]
        for i in impls:
            tot[i][0] += r[i]["fwd"][stat]
            tot[i][1] += r[i]["fwd_bwd"][stat]
        if "kernel" in impls:
            cells.append(
                f"{r['conv2d']['fwd'][stat] / r['kernel']['fwd'][stat]:.1f}× / "
                f"{r['conv2d']['fwd_bwd'][stat] / r['kernel']['fwd_bwd'][stat]:.1f}×"
            )
        print("| " + " | ".join(cells) + " |")
    cells = (
        ["sum (one call per shape)", "", "", ""]
        + [f"{tot[i][0]:.2f}" for i in impls]
        + [f"{tot[i][1]:.2f}" for i in impls]
    )
    if "kernel" in impls:
        cells.append(f"{tot['conv2d'][0] / tot['kernel'][0]:.1f}× / {tot['conv2d'][1] / tot['kernel'][1]:.1f}×")
    print("| " + " | ".join(cells) + " |")
    op_timing.write_json(results, args.json)
    return results


if __name__ == "__main__":
    main()
