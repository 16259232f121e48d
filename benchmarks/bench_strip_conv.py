"""Benchmark the depthwise strip convolutions of SegNeXt: jsegnext.ops.strip_conv per
implementation against ``nn.Conv2d(C, C, (1,k)/(k,1), groups=C)``, and the fused MSCA strip sum
``msca_strips`` against the three branch pairs computed separately.

Shapes: the strip convs of every MSCAN stage (strides 4, 8, 16, 32) of the chosen variants at the
chosen input size. Times are per call in milliseconds, ``jt.sync_all(True)`` before and after
each timed call, warm-up calls (which include JIT compilation) excluded. "fwd+bwd" is the forward
plus ``jt.grad((y * gy).sum(), [x, weight, bias])`` (the same small extra multiply/sum for every
implementation).

    python benchmarks/bench_strip_conv.py                      # SegNeXt-T, 512×512, batch 1
    python benchmarks/bench_strip_conv.py --variants t b --input 1024x2048 --json out.json
    python benchmarks/bench_strip_conv.py --threads 1          # OMP_NUM_THREADS=1 (set before Jittor starts)
"""

import argparse
import os
import sys

import op_timing  # benchmarks/op_timing.py

STAGE_CHANNELS = {"t": (32, 64, 160, 256), "s": (64, 128, 320, 512), "b": (64, 128, 320, 512), "l": (64, 128, 320, 512)}
STRIDES = (4, 8, 16, 32)
KERNELS = (7, 11, 21)
#: MSCA strip-sum variants: name -> msca_strips impl
MSCA_IMPLS = {"separate_conv2d": "conv2d", "separate_kernel": "kernel", "fused": "fused"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["t"], choices=sorted(STAGE_CHANNELS))
    p.add_argument("--input", default="512x512", help="input H×W, e.g. 512x512 or 1024x2048")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--stages", nargs="+", type=int, default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    p.add_argument("--kernels", nargs="+", type=int, default=list(KERNELS))
    p.add_argument(
        "--impls",
        nargs="+",
        default=["kernel", "meta"],
        choices=["kernel", "meta", "auto"],
        help="jsegnext implementations to time (nn.Conv2d is always timed)",
    )
    p.add_argument("--no-strips", action="store_true", help="skip the per-strip table")
    p.add_argument("--no-msca", action="store_true", help="skip the fused-MSCA table")
    p.add_argument(
        "--msca-impls",
        nargs="+",
        default=list(MSCA_IMPLS),
        choices=list(MSCA_IMPLS),
        help="MSCA strip-sum variants to time ('fused' has no CUDA kernel)",
    )
    op_timing.add_arguments(p, iters=10, warmup=3)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ih, iw = op_timing.start(args)
    from jsegnext.ops.strip_conv import msca_strips, resolve_impl, strip_conv
    from jsegnext.runtime import device_name, jt

    N = args.batch
    results = {
        "device": device_name(),
        "input": [ih, iw],
        "batch": N,
        "iters": args.iters,
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "auto": resolve_impl("auto"),
        "strips": [],
        "msca": [],
    }
    stat = args.stat

    def fwd_and_fb(forward, inputs):
        return op_timing.forward_and_backward(jt, forward, inputs, gy, args.iters, args.warmup)

    for variant in args.variants:
        for s in args.stages:
            C, stride = STAGE_CHANNELS[variant][s - 1], STRIDES[s - 1]
            H, W = ih // stride, iw // stride
            x = jt.randn(N, C, H, W)
            gy = jt.randn(N, C, H, W)
            jt.sync_all(True)
            if not args.no_strips:
                for k in args.kernels:
                    for o in ("h", "v"):
                        ks = (1, k) if o == "h" else (k, 1)
                        conv = jt.nn.Conv2d(C, C, ks, padding=(ks[0] // 2, ks[1] // 2), groups=C)
                        w, b = conv.weight, conv.bias
                        row = {
                            "variant": variant,
                            "stage": s,
                            "C": C,
                            "H": H,
                            "W": W,
                            "k": k,
                            "orientation": o,
                            "conv2d": fwd_and_fb(lambda: conv(x), [x, w, b]),
                        }
                        for impl in args.impls:
                            row[impl] = fwd_and_fb(lambda: strip_conv(x, w, b, o, impl), [x, w, b])
                        results["strips"].append(row)
                        print(
                            f"# strips {variant} stage{s} C={C} {H}x{W} {ks}: "
                            + ", ".join(
                                f"{n} {row[n]['fwd'][stat]:.2f}/{row[n]['fwd_bwd'][stat]:.2f}"
                                for n in ["conv2d"] + list(args.impls)
                            ),
                            file=sys.stderr,
                            flush=True,
                        )
            if not args.no_msca:
                params = []
                for k in KERNELS:
                    convs = [
                        jt.nn.Conv2d(C, C, ks, padding=(ks[0] // 2, ks[1] // 2), groups=C) for ks in ((1, k), (k, 1))
                    ]
                    params.append((convs[0].weight, convs[0].bias, convs[1].weight, convs[1].bias))
                flat = [x] + [p for t in params for p in t]
                row = {"variant": variant, "stage": s, "C": C, "H": H, "W": W}
                for name in args.msca_impls:
                    row[name] = fwd_and_fb(lambda: msca_strips(x, params, impl=MSCA_IMPLS[name]), flat)
                results["msca"].append(row)
                print(
                    f"# msca {variant} stage{s} C={C} {H}x{W}: "
                    + ", ".join(
                        f"{n} {row[n]['fwd'][stat]:.2f}/{row[n]['fwd_bwd'][stat]:.2f}" for n in args.msca_impls
                    ),
                    file=sys.stderr,
                    flush=True,
                )

    print(
        f"\nDevice {results['device']}, input {ih}x{iw}, batch {N}, OMP_NUM_THREADS="
        f"{results['omp_threads'] or 'default'}; {stat} of {args.iters} calls, ms; auto -> {results['auto']}\n"
    )
    if results["strips"]:
        impls = ["conv2d"] + list(args.impls)
        head = (
            ["variant", "stage", "C", "H×W", "kernel"]
            + [f"{i} fwd" for i in impls]
            + [f"{i} fwd+bwd" for i in impls]
            + ["kernel vs conv2d (fwd / fwd+bwd)"]
        )
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in results["strips"]:
            ks = f"1×{r['k']}" if r["orientation"] == "h" else f"{r['k']}×1"
            cells = [r["variant"].upper(), str(r["stage"]), str(r["C"]), f"{r['H']}×{r['W']}", ks]
            cells += [f"{r[i]['fwd'][stat]:.2f}" for i in impls] + [f"{r[i]['fwd_bwd'][stat]:.2f}" for i in impls]
            if "kernel" in r:
                cells.append(
                    f"{r['conv2d']['fwd'][stat] / r['kernel']['fwd'][stat]:.1f}× / "
                    f"{r['conv2d']['fwd_bwd'][stat] / r['kernel']['fwd_bwd'][stat]:.1f}×"
                )
            else:
                cells.append("")
            print("| " + " | ".join(cells) + " |")
        print()
    if results["msca"]:
        names = args.msca_impls
        base, other = ("separate_kernel", "fused") if "fused" in names else ("separate_conv2d", "separate_kernel")
        ratio = base in names and other in names
        head = (
            ["variant", "stage", "C", "H×W"]
            + [f"{n} fwd" for n in names]
            + [f"{n} fwd+bwd" for n in names]
            + ([f"{other} vs {base} (fwd / fwd+bwd)"] if ratio else [])
        )
        print("MSCA strip sum a + Σ v_k(h_k(a)), k = 7, 11, 21:\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in results["msca"]:
            cells = [r["variant"].upper(), str(r["stage"]), str(r["C"]), f"{r['H']}×{r['W']}"]
            cells += [f"{r[n]['fwd'][stat]:.2f}" for n in names] + [f"{r[n]['fwd_bwd'][stat]:.2f}" for n in names]
            if ratio:
                cells.append(
                    f"{r[base]['fwd'][stat] / r[other]['fwd'][stat]:.2f}× / "
                    f"{r[base]['fwd_bwd'][stat] / r[other]['fwd_bwd'][stat]:.2f}×"
                )
            print("| " + " | ".join(cells) + " |")
    op_timing.write_json(results, args.json)
    return results


if __name__ == "__main__":
    main()
