"""Whole-model timing helpers shared by bench_vs_torch.py and bench_vs_onnxruntime.py.

Nothing here imports Jittor or PyTorch at module level: the scripts set ``OMP_NUM_THREADS`` first and
pass the frameworks in. A *step* is a function running one iteration to completion (synchronised).
Timings alternate in rounds (every column's block once per round, in order), so that drifting machine
load hits all columns alike; ratios are taken per round and their median reported.
"""

import os
import platform
import time
from pathlib import Path

import numpy as np

#: AdamW settings of the training-step comparisons (the SegNeXt recipe's).
ADAMW = dict(lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01)


def timed(step, n):
    """Seconds of each of ``n`` calls of ``step`` (a step with a ``timed`` method, e.g. one running in
    another process, times its ``n`` calls itself)."""
    if hasattr(step, "timed"):
        return list(step.timed(n))
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def alternate(steps, rounds, iters, warmup, reference, label="", log=print):
    """Time every step of ``steps`` ({name: step}) in alternating rounds.

    Returns {"median_ms", "min_ms", "ratio_to_<reference>" (median of per-round ratios),
    "ratio_per_round", "times_ms"} per name.
    """
    for name, step in steps.items():
        timed(step, warmup)
    times = {name: [] for name in steps}
    ratios = {name: [] for name in steps if name != reference}
    for r in range(rounds):
        medians = {}
        for name, step in steps.items():
            t = timed(step, iters)
            times[name] += t
            medians[name] = float(np.median(t))
        for name in ratios:
            ratios[name].append(medians[name] / medians[reference])
        log(f"{label} round {r + 1}/{rounds}: " + "  ".join(f"{n} {m * 1e3:.1f} ms" for n, m in medians.items()))
    return {
        "median_ms": {n: float(np.median(t) * 1e3) for n, t in times.items()},
        "min_ms": {n: float(np.min(t) * 1e3) for n, t in times.items()},
        f"ratio_to_{reference}": {n: float(np.median(r)) for n, r in ratios.items()},
        "ratio_per_round": ratios,
        "times_ms": {n: [float(v * 1e3) for v in t] for n, t in times.items()},
    }


def cpu_model():
    path = Path("/proc/cpuinfo")
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def machine_info(threads, **versions):
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        **versions,
        "loadavg_before": list(os.getloadavg()),
    }


# ----------------------------------------------------------------------------- step builders
def make_torch_steps(torch, model, img, label, forward="forward_full"):
    """{'eval': batch-1 forward to full-size logits (no grad), 'train': batch forward + loss + backward +
    AdamW} of a PyTorch SegNeXt (benchmarks/torch_segnext.py) on NumPy ``img`` (N, 3, H, W), ``label``."""
    x, y = torch.from_numpy(img[:1]), torch.from_numpy(label).long()
    xb = torch.from_numpy(img)
    optimizer = torch.optim.AdamW(model.parameters(), **ADAMW)

    def eval_step():
        model.eval()
        with torch.no_grad():
            return getattr(model, forward)(x)

    def train_step():
        model.train()
        loss = model.loss(xb, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return {"eval": eval_step, "train": train_step}


def make_jittor_steps(jt, model, img, label, eval_model=None):
    """The same two steps for a jsegnext model; ``eval_model`` (default ``model``) runs the eval step,
    e.g. the fused inference copy of ``model``."""
    from jsegnext.engine.optim import build_optimizer

    x, xb, y = jt.array(img[:1]), jt.array(img), jt.array(label.astype(np.int32))
    net = model if eval_model is None else eval_model
    model.train()  # eval() marks Jittor parameters stop-grad; the optimiser needs them trainable
    optimizer = build_optimizer(model, dict(type="AdamW", **ADAMW))

    def eval_step():
        net.eval()
        with jt.no_grad():
            out = net.encode_decode(x)
        out.sync()
        return out

    def train_step():
        model.train()
        loss = model.loss(xb, y)
        optimizer.step(loss)
        jt.sync_all(True)
        return loss

    return {"eval": eval_step, "train": train_step}
