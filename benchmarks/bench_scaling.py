"""How the cost of SegNeXt grows: time and peak memory against input size and variant, beside the FLOPs.

    python benchmarks/bench_scaling.py --json scaling.json                 # the default grid below
    python benchmarks/bench_scaling.py --eval t:256x256 t:512x512 --train none --iters 3

Each case runs ``tools/benchmark.py`` in a process of its own (so its peak memory is its own) with
the ADE20K config of the variant (150 classes): eval = the default inference path (fused), batch 1,
whole image; train = forward, loss, backward and AdamW, batch ``--train-batch``. The table gives the
median time, the time per GFLOP (the FLOPs are jsegnext.flops' count of the model, published
convention, per image; a training step does about 3x the forward's work), both relative to the
smallest case of the same mode and variant, and the peak resident memory of the process during
the timed iterations. If the time grows faster than the FLOPs (ms/GFLOP rising), something is
bound by memory or does more than the FLOPs say.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL = ["t:256x256", "t:512x512", "t:1024x1024", "t:1024x2048", "t:2048x2048", "s:512x512", "b:512x512", "l:512x512"]
TRAIN = ["t:256x256", "t:512x512", "t:1024x1024", "s:512x512", "b:512x512", "l:512x512"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eval", nargs="+", default=EVAL, metavar="V:HxW", help="eval cases, or 'none'")
    p.add_argument("--train", nargs="+", default=TRAIN, metavar="V:HxW", help="training cases, or 'none'")
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", help="write all results here")
    args = p.parse_args(argv)
    args.eval = [] if args.eval == ["none"] else args.eval
    args.train = [] if args.train == ["none"] else args.train
    return args


def run_case(mode, case, args, out_dir):
    variant, size = case.split(":")
    h, w = (int(v) for v in size.lower().split("x"))
    out = Path(out_dir) / f"{mode}_{variant}_{h}x{w}.json"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "benchmark.py"),
        str(ROOT / "configs" / f"segnext_{variant}_ade20k.py"),
        "--shape",
        str(h),
        str(w),
        "--iters",
        str(args.iters),
        "--warmup",
        str(args.warmup),
        "--no-progress",
        "--json",
        str(out),
    ]
    if mode == "train":
        cmd += ["--train", "--batch", str(args.train_batch)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(f"{mode} SegNeXt-{variant.upper()} {h}x{w} ...", flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return {"mode": mode, "variant": variant, "shape": [h, w], "error": done.stderr.strip().splitlines()[-1:]}
    r = json.loads(out.read_text())
    return {
        "mode": mode,
        "variant": variant,
        "shape": [h, w],
        "batch": r["batch"],
        "gflops": r["gflops"],
        "ms": r["latency_ms"]["p50"],
        "ms_min": r["latency_ms"]["min"],
        "peak_rss_mib": r["memory"]["peak_rss_bytes"] / 2**20,
        "jittor_peak_mib": (r["memory"].get("jittor_peak_bytes") or 0) / 2**20,
        "loadavg": r["machine"]["loadavg_1_5_15"],
    }


def format_table(rows):
    """Rows of the table; "growth" is ms/GFLOP relative to the smallest SegNeXt-T case of the same mode
    (size sweep) or to SegNeXt-T at 512x512 (variant sweep)."""
    lines = [
        "| mode | variant | input (HxW) | GFLOPs / image | time (p50) | ms / GFLOP | time growth / FLOP growth "
        "| peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ok = [r for r in rows if "error" not in r]

    def per_gflop(r):
        return r["ms"] / (r["gflops"] * r["batch"] * (3 if r["mode"] == "train" else 1))

    for r in rows:
        label = (
            f"| {r['mode']}{' (batch %d)' % r.get('batch', 0) if r['mode'] == 'train' else ''} | "
            f"{r['variant'].upper()} | {r['shape'][0]}x{r['shape'][1]} |"
        )
        if "error" in r:
            lines.append(f"{label} | failed: {' '.join(r['error'])} | | | |")
            continue
        t_rows = [q for q in ok if q["mode"] == r["mode"] and q["variant"] == "t"]
        if r["variant"] == "t":
            ref = t_rows[0] if t_rows else None
        else:
            ref = next((q for q in t_rows if q["shape"] == [512, 512]), None)
        growth = f"{per_gflop(r) / per_gflop(ref):.2f}" if ref else ""
        lines.append(
            f"{label} {r['gflops']:.1f} | {r['ms']:.0f} ms | {per_gflop(r):.2f} | {growth} | "
            f"{r['peak_rss_mib']:.0f} MiB |"
        )
    return "\n".join(lines)


def main():
    args = parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode, cases in (("eval", args.eval), ("train", args.train)):
            for case in cases:
                rows.append(run_case(mode, case, args, tmp))
                print(format_table(rows).splitlines()[-1], flush=True)
    print("\n" + format_table(rows))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:]),
                    "threads": args.threads,
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
