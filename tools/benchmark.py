"""Speed, size, FLOPs and peak memory of a SegNeXt config (random weights; no data needed).

    python tools/benchmark.py configs/segnext_t_ade20k.py --shape 512 512
    python tools/benchmark.py configs/segnext_t_ade20k.py --shape 512 512 --batch 2 --train --json out.json

Eval mode times one whole-image forward (``encode_decode``: backbone, head, resize of the logits
to the input size — what the published FLOPs count) under ``jt.no_grad()``, on the fused inference
copy of the model that ``init_model`` gives by default (``--no-fuse``: the model as built; the
FLOPs are counted on that one either way); ``--train`` times a
training step: forward, cross-entropy loss against random labels, backward and the config's
optimizer (AdamW) update. Each iteration is bracketed by ``jt.sync_all(True)``, so its time is
the Python graph building plus the complete execution; warm-up iterations (Jittor compiles its
kernels on first use) are not timed.

Reported: parameters, GFLOPs per image (``jsegnext.flops``, the published convention), latency
mean / std / min / p50 / p90 / p99 / max over the timed iterations, images per second, and peak
memory:

* ``peak_rss_bytes`` — the process's peak resident memory (``VmHWM``) during the timed
  iterations (the counter is reset through ``/proc/self/clear_refs`` before them where Linux
  allows; otherwise it is the peak since the process started, ``reset_peak_rss: false``);
* ``jittor_peak_bytes`` — the peak of the memory held by live Jittor Vars over one extra,
  untimed iteration run with ``jt.flags.profile_memory_enable=1`` (host memory on CPU,
  device memory on GPU);
* on GPU also ``cuda_used_bytes`` — the device memory in use after the run as
  ``jt.get_mem_info()`` reports it (includes Jittor's cached blocks and other processes).

``--fp16`` (CUDA only): parameters cast with ``model.float16()``, input in float16, and
``jt.flags.auto_mixed_precision_level = 5``. On CPU it stops with exit status 2: Jittor's CPU
matrix-product and convolution kernels (MKL / oneDNN) take float32 only — under
``auto_mixed_precision_level`` the MKL matmul fails ("support float32 only"), and a model cast to
float16 falls back to generic kernels that take minutes to compile and are not a meaningful
speed measurement.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsegnext.apis import load_config  # noqa: E402
from jsegnext.cli import one_line_errors  # noqa: E402
from jsegnext.flops import count_flops, count_parameters  # noqa: E402
from jsegnext.models import build_segmentor  # noqa: E402
from jsegnext.models.fuse import fuse_segmentor  # noqa: E402
from jsegnext.runtime import device_name, jt  # noqa: E402

FP16_CPU_MESSAGE = (
    "--fp16 is not available on CPU: Jittor's CPU kernels for matrix products and convolutions "
    "(MKL / oneDNN) take float32 only. With jt.flags.auto_mixed_precision_level the MKL matmul "
    "fails ('support float32 only now'); casting the model to float16 falls back to generic "
    "kernels that compile for minutes and measure nothing useful. Run the fp16 benchmark on a "
    "CUDA GPU (JSEGNEXT_DEVICE=cuda)."
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark a SegNeXt config: params, GFLOPs, latency, throughput, peak memory"
    )
    parser.add_argument("config")
    parser.add_argument(
        "--shape",
        type=int,
        nargs="+",
        default=[512, 512],
        metavar="H W",
        help="input height and width (one value: square); default 512 512",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--fp16", action="store_true", help="float16 (CUDA only)")
    parser.add_argument(
        "--train",
        action="store_true",
        help="time a training step (forward + loss + backward + optimizer) instead of eval",
    )
    parser.add_argument(
        "--no-fuse", action="store_true", help="eval: time the model as built instead of its fused inference copy"
    )
    parser.add_argument("--iters", type=int, default=20, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first (kernel compilation)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to this file")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    if len(args.shape) != 2 or min(args.shape) < 1:
        parser.error("--shape takes H W (or one size)")
    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        parser.error("--batch and --iters must be >= 1, --warmup >= 0")
    return args


# --------------------------------------------------------------------------------- machine
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpu_names():
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        return []


def machine_info():
    info = {
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jittor_version": jt.__version__,
        "device": device_name(),
        "gpu": None,
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if jt.flags.use_cuda:
        names = _gpu_names()
        info["gpu"] = names[0] if names else "unknown CUDA device"
        info["gpus_visible"] = names
    try:
        info["total_ram_bytes"] = int(jt.get_mem_info().total_cpu_ram)
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


# --------------------------------------------------------------------------------- memory
def _proc_status_bytes(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    value = _proc_status_bytes("VmHWM")
    if value is None:  # not Linux: ru_maxrss is in KiB on Linux, bytes on macOS
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        value *= 1 if sys.platform == "darwin" else 1024
    return value


def jittor_peak_bytes(step):
    """Peak memory of live Jittor Vars over one ``step()`` run with the memory profiler on."""
    jt.sync_all(True)
    with jt.flag_scope(profile_memory_enable=1):
        out = step()
        out.sync()
        jt.sync_all(True)
        del out
        report = jt.get_max_memory_info()
    return int(report.split("[!@#div1!@#]", 1)[0].strip())


# --------------------------------------------------------------------------------- benchmark
def percentiles(times_s):
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "min": float(ms.min()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
    }


def make_step(model, cfg, args):
    """A function running one iteration (without the final sync) and returning a Var to sync."""
    rng = np.random.default_rng(args.seed)
    h, w = args.shape
    img = jt.array(rng.standard_normal((args.batch, 3, h, w)).astype(np.float32))
    if args.fp16:
        img = img.float16()
    if not args.train:
        model.eval()
        net = model if args.no_fuse or args.fp16 else fuse_segmentor(model)  # fp16: the model as cast

        def step():
            with jt.no_grad():
                return net.encode_decode(img)

        return step, None

    from jsegnext.engine.optim import build_optimizer

    model.train()
    label = jt.array(rng.integers(0, model.num_classes, (args.batch, h, w)).astype(np.int32))
    optimizer = build_optimizer(model, cfg.optimizer)
    state = {}

    def step():
        loss = model.loss(img, label)
        optimizer.step(loss)
        state["loss"] = loss
        return loss

    return step, state


def run(args):
    if args.fp16 and not jt.flags.use_cuda:
        print(f"error: {FP16_CPU_MESSAGE}", file=sys.stderr)
        return 2
    cfg = load_config(args.config, args.cfg_options)
    np.random.seed(args.seed)
    jt.set_global_seed(args.seed)
    model = build_segmentor(cfg.model)
    params = count_parameters(model)
    flops = count_flops(model, tuple(args.shape), batch=1, training=args.train)
    if args.fp16:
        jt.flags.auto_mixed_precision_level = 5
        model.float16()
    step, state = make_step(model, cfg, args)

    total = args.warmup + args.iters
    bar = tqdm(
        total=total,
        desc="warm-up" if args.warmup else "timed",
        disable=args.no_progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    times, warm_times = [], []
    rss_before = _proc_status_bytes("VmRSS")
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    reset_ok = None
    for i in range(total):
        if i == args.warmup:
            bar.set_description("timed")
            reset_ok = reset_peak_rss()
        jt.sync_all(True)
        start = time.perf_counter()
        out = step()
        out.sync()
        jt.sync_all(True)
        elapsed = time.perf_counter() - start
        (warm_times if i < args.warmup else times).append(elapsed)
        del out
        bar.set_postfix(ms=f"{elapsed * 1e3:.1f}")
        bar.update(1)
    bar.close()
    peak_rss = peak_rss_bytes()
    memory = {"peak_rss_bytes": peak_rss, "reset_peak_rss": bool(reset_ok), "rss_before_bytes": rss_before}
    try:
        memory["jittor_peak_bytes"] = jittor_peak_bytes(step)
    except Exception as exc:  # noqa: BLE001 - a profiler failure must not lose the timings
        memory["jittor_peak_bytes"] = None
        memory["jittor_peak_error"] = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else repr(exc)
    if jt.flags.use_cuda:
        try:
            memory["cuda_used_bytes"] = int(jt.get_mem_info().total_cuda_used)
            memory["cuda_total_bytes"] = int(jt.get_mem_info().total_cuda_ram)
        except Exception:  # noqa: BLE001
            memory["cuda_used_bytes"] = None

    latency = percentiles(times)
    result = {
        "command": "python " + shlex.join(sys.argv)
        if sys.argv and sys.argv[0].endswith("benchmark.py")
        else "python tools/benchmark.py " + shlex.join(args.argv),
        "argv": list(args.argv),
        "config": args.config,
        "cfg_options": list(args.cfg_options),
        "mode": "train" if args.train else "eval",
        "fused": not (args.train or args.no_fuse or args.fp16),
        "shape": list(args.shape),
        "batch": args.batch,
        "dtype": "float16" if args.fp16 else "float32",
        "fp16": bool(args.fp16),
        "iters": args.iters,
        "warmup": args.warmup,
        "device": device_name(),
        "params": params,
        "params_m": params / 1e6,
        "gflops": flops.gflops,
        "gflops_batch": flops.gflops * args.batch,
        "flops_convention": flops.convention,
        "flops_note": (
            "forward only, per image"
            + (
                f", NMF train_steps={flops.nmf_steps}; a training step (with backward) costs about 3x this"
                if args.train
                else f", NMF eval_steps={flops.nmf_steps}"
            )
        ),
        "flops_by_part_g": {k: v / 1e9 for k, v in flops.by_part().items()},
        "latency_ms": latency,
        "fps": args.batch * 1e3 / latency["mean"],
        "iters_per_s": 1e3 / latency["mean"],
        "warmup_s": [float(t) for t in warm_times],
        "times_ms": [float(t * 1e3) for t in times],
        "memory": memory,
        "machine": dict(machine_info(), loadavg_before=load_before),
        "jittor_version": jt.__version__,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if state and "loss" in state:
        result["last_loss"] = float(state["loss"].item())
    print(format_table(result))
    if args.json:
        path = Path(args.json)
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {path}")
    return 0


def _mb(value):
    return "n/a" if value is None else f"{value / 2**20:,.1f} MiB"


def format_table(r):
    lat = r["latency_ms"]
    m = r["machine"]
    where = m["gpu"] if m.get("gpu") else f"{m['cpu_model']} ({m['cpu_usable_cores']} cores)"
    rows = [
        ("config", r["config"] + (f"  [{' '.join(r['cfg_options'])}]" if r["cfg_options"] else "")),
        (
            "mode",
            f"{r['mode']}{' (fused inference path)' if r.get('fused') else ''}, batch {r['batch']}, "
            f"{r['shape'][0]}x{r['shape'][1]}, {r['dtype']}",
        ),
        (
            "device",
            f"{r['device']}: {where}; jittor {r['jittor_version']}"
            + (f"; load avg {m['loadavg_1_5_15'][0]:.2f}" if m.get("loadavg_1_5_15") else ""),
        ),
        ("parameters", f"{r['params_m']:.2f} M"),
        ("GFLOPs / image", f"{r['gflops']:.{2 if r['gflops'] >= 1 else 4}f} ({r['flops_note']})"),
        (
            "latency (ms)",
            f"mean {lat['mean']:.1f} ± {lat['std']:.1f}, p50 {lat['p50']:.1f}, "
            f"p90 {lat['p90']:.1f}, p99 {lat['p99']:.1f} (min {lat['min']:.1f}, max {lat['max']:.1f})",
        ),
        (
            "throughput",
            f"{r['fps']:.2f} images/s ({r['iters_per_s']:.2f} iterations/s), "
            f"{r['iters']} timed after {r['warmup']} warm-up",
        ),
        (
            "peak RSS",
            _mb(r["memory"]["peak_rss_bytes"]) + ("" if r["memory"]["reset_peak_rss"] else " (since process start)"),
        ),
        ("Jittor peak (Vars)", _mb(r["memory"].get("jittor_peak_bytes"))),
    ]
    if "cuda_used_bytes" in r["memory"]:
        rows.append(("CUDA memory used", _mb(r["memory"]["cuda_used_bytes"])))
    if "last_loss" in r:
        rows.append(("last loss", f"{r['last_loss']:.4f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@one_line_errors
def main(argv=None):
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
