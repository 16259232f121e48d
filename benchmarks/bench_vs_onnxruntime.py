"""jsegnext against onnxruntime (eval) and against PyTorch eager and torch.compile (training step).

    python benchmarks/bench_vs_onnxruntime.py --json ort.json          # everything issue #13 asks for
    python benchmarks/bench_vs_onnxruntime.py --eval t:512x512 --no-train --rounds 3
    python benchmarks/bench_vs_onnxruntime.py --eval none --train       # training step only

Eval, per case ``variant:HxW``: the PyTorch SegNeXt of ``benchmarks/torch_segnext.py`` with random
sensitive weights (non-trivial BN statistics, affines, biases, layer scales) and fixed NMF bases is
exported with ``torch.onnx.export`` (opset 17, static shape, full-size logits: backbone, head and the
final bilinear resize) and run by onnxruntime (CPU provider, ``--threads`` intra-op threads, all graph
optimisations); jsegnext runs the same weights (copied strictly by name) through its default inference
path, the fused copy (``jsegnext.models.fuse``). Before anything is timed the three (jsegnext, PyTorch,
onnxruntime) must agree to ``--tol`` (relative to the logits' largest magnitude). ``--labels`` also
times the label map (jsegnext: ``predict_labels``, the fused resize+argmax; onnxruntime: the same
export with an ``ArgMax`` at the end); ``--ablation`` adds jsegnext's training graph in eval mode
(``jsegnext_unfused``) and the fused model with its kernels switched off (``JSEGNEXT_FUSED_IMPL=meta``:
the folding alone, ``jsegnext_folded``), ``--torch-eval`` PyTorch eager.

Training step (batch 2, 512², 150 classes, cross entropy at full size, backward, AdamW lr 6e-5 wd 0.01),
jsegnext against PyTorch eager and ``torch.compile``, each PyTorch column in a process of its own
(a compiled call slows eager PyTorch in the same process down several times, and a process holds one
OpenMP runtime, which PyTorch would otherwise share with Jittor and its settings): a worker builds
the same model, compiles (``torch.compile`` of forward + loss; backward through AOTAutograd, the
optimiser step eager), warms up, and then times its block when this process asks, so the three
columns still alternate round by round.

Timings alternate in rounds (benchmarks/model_timing.py); ratios are per round, median reported.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_EVAL = ["t:512x512", "t:1024x1024", "t:1024x2048", "s:512x512", "b:512x512", "l:512x512"]
#: the pair whose times are compared with their FLOPs (alternated in the same rounds, after the cases)
GROWTH_PAIR = ("t:512x512", "t:1024x2048")
_GROWTH_STEPS = {}
NUM_CLASSES = 150


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--eval", nargs="+", default=DEFAULT_EVAL, metavar="V:HxW", help="eval cases (variant:HxW), or 'none'"
    )
    p.add_argument("--train", dest="train", action="store_true", default=True)
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--train-variant", default="t", choices=["t", "s", "b", "l"])
    p.add_argument("--train-shape", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    p.add_argument("--labels", action="store_true", help="also time label maps (argmax)")
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also time jsegnext's unfused eval and the fused model on Jittor ops (folding only)",
    )
    p.add_argument("--torch-eval", action="store_true", help="also time PyTorch eager eval")
    p.add_argument("--threads", type=int, default=2, help="threads of every framework")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=3, help="timed iterations per column per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-4, help="largest relative disagreement allowed")
    p.add_argument("--onnx-dir", help="keep the exported models here (default: a temporary folder)")
    p.add_argument("--json", help="write all results here")
    p.add_argument("--torch-worker", choices=["eager", "compile"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.eval == ["none"]:
        args.eval = []
    return args


ARGS = parse_args()
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)  # before any framework starts its thread pool

import numpy as np  # noqa: E402

_USER_SPINCOUNT = os.environ.get("GOMP_SPINCOUNT")
if not ARGS.torch_worker:
    import jsegnext  # noqa: E402,F401  (Jittor's environment; before torch)
    from jsegnext.flops import count_flops  # noqa: E402
    from jsegnext.models.fuse import fuse_segmentor  # noqa: E402
    from jsegnext.runtime import jt  # noqa: E402
if _USER_SPINCOUNT is None:  # jsegnext's OpenMP setting is for Jittor: the PyTorch workers run
    os.environ.pop("GOMP_SPINCOUNT", None)  # with PyTorch's defaults

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_timing import ADAMW, alternate, machine_info, make_jittor_steps, make_torch_steps, timed  # noqa: E402
from torch_segnext import VARIANTS, build_torch_segnext  # noqa: E402


def log(line):
    print(line, flush=True)


def rel_err(out, ref):
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))


def torch_model(variant, seed=0):
    """The PyTorch SegNeXt with sensitive random weights (check_torch_segnext.randomize_; layer scales
    shrunk by 13 / depth for the deeper variants, whose activations would otherwise overflow) and
    fixed NMF bases, the same in every process."""
    from check_torch_segnext import nmf_bases, randomize_

    torch.manual_seed(seed)
    model = randomize_(build_torch_segnext(variant, NUM_CLASSES, dropout_ratio=0.1), seed=seed)
    shrink = min(1.0, 13 / sum(VARIANTS[variant]["depths"]))  # SegNeXt-T has 13 blocks
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_scale" in name:
                p.mul_(shrink)
    bases = nmf_bases(VARIANTS[variant]["channels"], VARIANTS[variant]["rank"], seed=1)
    model.set_nmf_bases(bases)
    return model.eval(), bases


def jittor_model(model, variant, bases):
    from check_torch_segnext import jittor_cfg, jittor_from_torch

    net = jittor_from_torch(model, jittor_cfg(variant, NUM_CLASSES))
    net.decode_head.hamburger.ham._build_bases = lambda B, S, D, R, b=bases: jt.array(
        np.repeat(b, B * S // b.shape[0], axis=0)
    )
    net.eval()
    return net


class _Export(torch.nn.Module):
    """What is exported: full-size logits, or their argmax (``labels``)."""

    def __init__(self, model, labels):
        super().__init__()
        self.model, self.labels = model, labels

    def forward(self, img):
        logits = self.model.forward_full(img)
        return logits.argmax(dim=1) if self.labels else logits


def ort_session(model, shape, path, labels=False):
    import onnxruntime as ort

    wrapper = _Export(model, labels).eval()
    x = torch.zeros((1, 3) + tuple(shape))
    torch.onnx.export(
        wrapper, (x,), str(path), opset_version=17, dynamo=False, input_names=["img"], output_names=["out"]
    )
    model.eval()  # export restores the wrapper's (training) mode on everything inside it
    so = ort.SessionOptions()
    so.intra_op_num_threads = ARGS.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- eval
def eval_case(case, onnx_dir):
    variant, size = case.split(":")
    h, w = (int(v) for v in size.lower().split("x"))
    log(f"\n== eval SegNeXt-{variant.upper()} {h}x{w}")
    tm, bases = torch_model(variant)
    net = jittor_model(tm, variant, bases)
    fused = fuse_segmentor(net)
    gflops = count_flops(net, (h, w)).gflops
    session = ort_session(tm, (h, w), Path(onnx_dir) / f"segnext_{variant}_{h}x{w}.onnx")
    img = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
    x = jt.array(img)
    with torch.no_grad():
        ref = tm.forward_full(torch.from_numpy(img)).numpy()
    with jt.no_grad():
        ours = fused.encode_decode(x).numpy()
    onnx_out = session.run(None, {"img": img})[0]
    errors = {
        "jsegnext_vs_pytorch": rel_err(ours, ref),
        "onnxruntime_vs_pytorch": rel_err(onnx_out, ref),
        "jsegnext_vs_onnxruntime": rel_err(ours, onnx_out),
    }
    log("agreement (max relative error): " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    if not np.isfinite(ref).all():
        raise SystemExit(f"{case}: the reference logits are not finite; not timing")
    if not all(e <= ARGS.tol for e in errors.values()):  # NaN fails too
        raise SystemExit(f"{case}: outputs disagree beyond {ARGS.tol}; not timing different models")
    del ref, ours, onnx_out

    def sync(out):
        out.sync()
        return out

    steps = {
        "onnxruntime": lambda: session.run(None, {"img": img}),
        "jsegnext": lambda: sync(_no_grad(fused.encode_decode, x)),
    }
    if ARGS.ablation:
        steps["jsegnext_unfused"] = lambda: sync(_no_grad(net.encode_decode, x))
        steps["jsegnext_folded"] = lambda: sync(_with_env({"JSEGNEXT_FUSED_IMPL": "meta"}, fused.encode_decode, x))
    if ARGS.torch_eval:
        steps["pytorch"] = make_torch_steps(torch, tm, img, np.zeros((1, h, w), np.uint8))["eval"]
    if case in GROWTH_PAIR:
        _GROWTH_STEPS[case] = {"jsegnext": steps["jsegnext"], "onnxruntime": steps["onnxruntime"], "gflops": gflops}
    result = {
        "variant": variant,
        "shape": [h, w],
        "gflops": gflops,
        "max_rel_err": errors,
        "logits": alternate(steps, ARGS.rounds, ARGS.iters, ARGS.warmup, "onnxruntime", f"{case} logits", log),
    }
    if ARGS.labels:
        label_session = ort_session(tm, (h, w), Path(onnx_dir) / f"segnext_{variant}_{h}x{w}_labels.onnx", labels=True)
        ours = _no_grad(fused.predict_labels, x).numpy()
        theirs = label_session.run(None, {"img": img})[0]
        result["labels_agree"] = float((ours == theirs).mean())
        log(f"label maps agree on {100 * result['labels_agree']:.4f} % of the pixels")
        label_steps = {
            "onnxruntime": lambda: label_session.run(None, {"img": img}),
            "jsegnext": lambda: sync(_no_grad(fused.predict_labels, x)),
        }
        result["labels"] = alternate(
            label_steps, ARGS.rounds, ARGS.iters, ARGS.warmup, "onnxruntime", f"{case} labels", log
        )
        del label_session
    return result  # its models are freed on return, except the growth pair's (timed again later)


def _no_grad(fn, *args):
    with jt.no_grad():
        return fn(*args)


def _with_env(env, fn, *args):
    """fn(*args) under jt.no_grad() with ``env`` set (the ops read their overrides when called)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return _no_grad(fn, *args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------- training
def train_batch(shape, batch):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((batch, 3) + tuple(shape)).astype(np.float32)
    return img, rng.integers(0, NUM_CLASSES, (batch,) + tuple(shape)).astype(np.uint8)


class TorchWorker:
    """A PyTorch training step (eager or torch.compile) in a process of its own, timed on request."""

    def __init__(self, mode):
        argv = [
            sys.executable,
            __file__,
            "--torch-worker",
            mode,
            "--threads",
            str(ARGS.threads),
            "--train-variant",
            ARGS.train_variant,
            "--train-batch",
            str(ARGS.train_batch),
            "--warmup",
            str(ARGS.warmup),
            "--train-shape",
            *map(str, ARGS.train_shape),
        ]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        started = time.time()
        ready = self._read()
        log(
            f"PyTorch {mode} worker ready after {time.time() - started:.0f} s "
            f"(first step {ready['first_step_s']:.1f} s, then {ARGS.warmup} warm-up steps)"
        )

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("a PyTorch worker ended unexpectedly")
        return json.loads(line)

    def timed(self, n):
        """The times of ``n`` steps run in the worker (model_timing.timed calls this)."""
        if not n:
            return []
        self.proc.stdin.write(json.dumps({"iters": n}) + "\n")
        return self._read()["times"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def torch_worker():
    """--torch-worker eager|compile: build, (compile,) warm up, then answer {"iters": n} lines with step times."""
    torch.set_num_threads(ARGS.threads)
    model, _ = torch_model(ARGS.train_variant)
    img, label = train_batch(ARGS.train_shape, ARGS.train_batch)
    x, y = torch.from_numpy(img), torch.from_numpy(label).long()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), **ADAMW)
    loss_fn = torch.compile(model.loss) if ARGS.torch_worker == "compile" else model.loss

    def step():
        loss = loss_fn(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    first = timed(step, 1)[0]
    timed(step, ARGS.warmup)
    print(json.dumps({"ready": True, "first_step_s": first}), flush=True)
    for line in sys.stdin:
        n = int(json.loads(line)["iters"])
        print(json.dumps({"times": timed(step, n)}), flush=True)


def train_comparison():
    variant, shape, batch = ARGS.train_variant, ARGS.train_shape, ARGS.train_batch
    log(f"\n== training step SegNeXt-{variant.upper()}, batch {batch}, {shape[0]}x{shape[1]}, AdamW")
    tm, bases = torch_model(variant)
    net = jittor_model(tm, variant, bases)
    img, label = train_batch(shape, batch)
    workers = {"pytorch_eager": TorchWorker("eager")}
    if not ARGS.no_compile:
        workers["torch_compile"] = TorchWorker("compile")
    steps = {"jsegnext": make_jittor_steps(jt, net, img, label)["train"], **workers}
    try:
        result = alternate(steps, ARGS.rounds, ARGS.iters, ARGS.warmup, "jsegnext", "train", log)
    finally:
        for worker in workers.values():
            worker.close()
    # jsegnext's time over each PyTorch column's (per round, median)
    result["jsegnext_over"] = {
        name: float(np.median([1.0 / r for r in rounds])) for name, rounds in result["ratio_per_round"].items()
    }
    return {"variant": variant, "shape": list(shape), "batch": batch, **result}


# ----------------------------------------------------------------------------- report
def format_report(results):
    m = results["machine"]
    lines = [
        f"\n{m['cpu']}, {m['threads']} threads; torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
        f"jittor {m['jittor']}; load average before {m['loadavg_before'][0]:.2f}, after "
        f"{m['loadavg_after'][0]:.2f}"
    ]
    if results["eval"]:
        extra = [
            c
            for c in ("jsegnext_folded", "jsegnext_unfused", "pytorch")
            if c in results["eval"][0]["logits"]["median_ms"]
        ]
        lines += [
            "",
            "| eval, batch 1 | GFLOPs | onnxruntime | jsegnext | jsegnext / onnxruntime | "
            + "".join(f"{c} | " for c in extra)
            + "max rel. err |",
            "|---" * (6 + len(extra)) + "|",
        ]
        for r in results["eval"]:
            t = r["logits"]
            ratio = t["ratio_to_onnxruntime"]
            cells = [
                f"SegNeXt-{r['variant'].upper()} {r['shape'][0]}x{r['shape'][1]}",
                f"{r['gflops']:.1f}",
                f"{t['median_ms']['onnxruntime']:.1f} ms",
                f"{t['median_ms']['jsegnext']:.1f} ms",
                f"**{ratio['jsegnext']:.2f}x**",
            ]
            cells += [f"{t['median_ms'][c]:.1f} ms ({ratio[c]:.2f}x)" for c in extra]
            cells.append(f"{max(r['max_rel_err'].values()):.1e}")
            lines.append("| " + " | ".join(cells) + " |")
        if "labels" in results["eval"][0]:
            lines += [
                "",
                "| label map, batch 1 | onnxruntime (+ArgMax) | jsegnext (fused resize+argmax) | ratio | "
                "pixels equal |",
                "|---|---|---|---|---|",
            ]
            for r in results["eval"]:
                t = r["labels"]
                lines.append(
                    f"| SegNeXt-{r['variant'].upper()} {r['shape'][0]}x{r['shape'][1]} | "
                    f"{t['median_ms']['onnxruntime']:.1f} ms | {t['median_ms']['jsegnext']:.1f} ms | "
                    f"{t['ratio_to_onnxruntime']['jsegnext']:.2f}x | {100 * r['labels_agree']:.3f} % |"
                )
        growth = results.get("growth_t")
        if growth:
            lines.append(
                f"\nSegNeXt-T 512x512 -> 1024x2048 (both in the same rounds): GFLOPs x{growth['flops']:.2f}; "
                + "; ".join(
                    f"{fw} time x{growth[fw]['time']:.2f}, time growth / FLOP growth {growth[fw]['ratio']:.2f}"
                    for fw in ("jsegnext", "onnxruntime")
                )
            )
    if results.get("train"):
        t = results["train"]
        lines += [
            "",
            f"| training step, SegNeXt-{t['variant'].upper()} batch {t['batch']} {t['shape'][0]}x"
            f"{t['shape'][1]} | median | jsegnext / this |",
            "|---|---|---|",
        ]
        for name, ms in t["median_ms"].items():
            ratio = "" if name == "jsegnext" else f"**{t['jsegnext_over'][name]:.2f}x**"
            lines.append(f"| {name} | {ms:.0f} ms | {ratio} |")
    return "\n".join(lines)


def growth_comparison():
    """Time of SegNeXt-T at 1024x2048 over its time at 512x512, both sizes alternated in the same
    rounds (machine drift between two separately timed cases would enter the ratio), against the
    ratio of their FLOPs; for jsegnext and for onnxruntime."""
    if not all(c in _GROWTH_STEPS for c in GROWTH_PAIR):
        return None
    small, big = (_GROWTH_STEPS[c] for c in GROWTH_PAIR)
    steps = {f"{fw} {c.split(':')[1]}": _GROWTH_STEPS[c][fw] for fw in ("jsegnext", "onnxruntime") for c in GROWTH_PAIR}
    log("\n== growth: SegNeXt-T 512x512 and 1024x2048 in the same rounds")
    timing = alternate(steps, ARGS.rounds, ARGS.iters, 1, next(iter(steps)), "growth", log)
    flops = big["gflops"] / small["gflops"]
    result = {"flops": flops, "rounds": ARGS.rounds}
    for fw in ("jsegnext", "onnxruntime"):
        times = [
            np.asarray(timing["times_ms"][f"{fw} {c.split(':')[1]}"]).reshape(ARGS.rounds, ARGS.iters)
            for c in GROWTH_PAIR
        ]
        per_round = np.median(times[1], axis=1) / np.median(times[0], axis=1)
        result[fw] = {
            "time": float(np.median(per_round)),
            "ratio": float(np.median(per_round) / flops),
            "per_round": per_round.tolist(),
        }
    return result


def main():
    import onnxruntime

    torch.set_num_threads(ARGS.threads)
    results = {
        "command": "python benchmarks/bench_vs_onnxruntime.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(
            ARGS.threads, torch=torch.__version__, onnxruntime=onnxruntime.__version__, jittor=jt.__version__
        ),
        "eval": [],
        "train": None,
    }
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = ARGS.onnx_dir or tmp
        Path(onnx_dir).mkdir(parents=True, exist_ok=True)
        for case in ARGS.eval:
            results["eval"].append(eval_case(case, onnx_dir))
            gc.collect()
    results["growth_t"] = growth_comparison()
    if ARGS.train:
        results["train"] = train_comparison()
    results["machine"]["loadavg_after"] = list(os.getloadavg())
    log(format_report(results))
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(results, indent=1) + "\n")
        log(f"results written to {ARGS.json}")


if __name__ == "__main__":
    if ARGS.torch_worker:
        torch_worker()
    else:
        main()
