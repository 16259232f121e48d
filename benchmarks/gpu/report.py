"""``results.json`` and ``results.md`` of a GPU-check run (``run_stages.py``)."""

import json
from pathlib import Path


def _ms(col):
    if not col:
        return ""
    if "mean" in col:
        return f"{col['mean']:.2f}"
    return "skipped" if "skipped" in col else "error"


def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def stage_table(results):
    lines = ["| stage | status | seconds (budget) | notes |", "|---|---|---|---|"]
    for name, s in results["stages"].items():
        note = s.get("message", "")
        if name == "correctness":
            note = "; ".join(
                f"{g}: {r['status']}"
                + (f" ({r.get('passed', 0)} passed, {r.get('failed', 0)} failed)" if "passed" in r else "")
                for g, r in s.get("groups", {}).items()
            )
        elif name == "train_demo" and s.get("losses"):
            note = f"{s['steps']} steps, loss {s['losses'][0]:.3f} -> {s['losses'][-1]:.3f}, " + ", ".join(
                f"{k} {'yes' if v else 'NO'}" for k, v in s["checks"].items()
            )
        note = note.splitlines()[-1][:200] if note else ""
        lines.append(f"| {name} | {s['status']} | {s['seconds']} ({s['budget_s']}) | {note} |")
    return lines


def failures(results):
    groups = results["stages"].get("correctness", {}).get("groups", {})
    lines = [
        f"- `{t}`: {m.splitlines()[0][:200] if m else ''}"
        for g in groups.values()
        for t, m in g.get("failures", {}).items()
    ]
    return (["", "Failed tests:", ""] + lines) if lines else []


def strip_table(results):
    tables = [t for t in results["stages"].get("speed_ops", {}).get("tables", []) if "strips" in t]
    if not tables:
        return []
    lines = [
        "",
        "Strip convolutions (ms per call, median; conv2d = Jittor's depthwise op):",
        "",
        "| input, batch | variant | stage | C | H×W | k | conv2d fwd | kernel fwd | conv2d fwd+bwd "
        "| kernel fwd+bwd "
        "| kernel speed-up (fwd / fwd+bwd) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in tables:
        for r in t["strips"]:
            if "kernel" not in r:
                continue
            c, k = r["conv2d"], r["kernel"]
            ks = f"1×{r['k']}" if r["orientation"] == "h" else f"{r['k']}×1"
            lines.append(
                f"| {t['input'][0]}×{t['input'][1]}, {t['batch']} | {r['variant'].upper()} | {r['stage']} | "
                f"{r['C']} | {r['H']}×{r['W']} | {ks} | "
                f"{c['fwd']['median']:.3f} | {k['fwd']['median']:.3f} | "
                f"{c['fwd_bwd']['median']:.3f} | {k['fwd_bwd']['median']:.3f} | "
                f"{c['fwd']['median'] / k['fwd']['median']:.2f}× / "
                f"{c['fwd_bwd']['median'] / k['fwd_bwd']['median']:.2f}× |"
            )
    return lines


def model_table(results):
    rows = results["stages"].get("speed_models", {}).get("rows", [])
    if not rows:
        return []
    cols = []
    for r in rows:
        cols += [c for c in r["columns"] if c not in cols]
    unit = lambda r: "img/s" if r["kind"] == "eval" else "it/s"
    lines = [
        "",
        "Whole model (mean ms per call; throughput of the best column of each framework):",
        "",
        "| variant | mode | input | batch | " + " | ".join(cols) + " | jsegnext best | PyTorch best | ratio | "
        "max rel err vs PyTorch |",
        "|" + "---|" * (len(cols) + 8),
    ]
    for r in rows:
        key = "images_per_s" if r["kind"] == "eval" else "iters_per_s"
        best = lambda prefix: max((c.get(key, 0) for n, c in r["columns"].items() if n.startswith(prefix)), default=0)
        j, t = best("jsegnext"), best("pytorch")
        err = ", ".join(f"{k} {v:.1e}" for k, v in r.get("check_rel_err", {}).items())
        lines.append(
            f"| {r['variant'].upper()} | {r['kind']} | {r['shape'][0]}×{r['shape'][1]} | {r['batch']} | "
            + " | ".join(_ms(r["columns"].get(c)) for c in cols)
            + f" | {_fmt(j)} {unit(r)} | {_fmt(t) if t else '-'} | "
            + f"{f'{j / t:.2f}×' if j and t else '-'} | {err} |"
        )
    return lines


def precision_table(results):
    rows = [r for r in results["stages"].get("precision", {}).get("rows", []) if "mode" in r]
    if not rows:
        return []
    lines = [
        "",
        "Reduced precision (error vs float32 of the same framework):",
        "",
        "| framework | variant | input | mode | max rel err (tolerance) | argmax agree | status | img/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['framework']} | {r['variant'].upper()} | {r['shape'][0]}×{r['shape'][1]} b{r['batch']} | "
            f"{r['mode']} | {_fmt(r.get('max_rel_err'), 4)} ({r.get('tolerance', '-')}) | "
            f"{_fmt(r.get('argmax_agree'), 4)} | {r['status']} | {_fmt(r.get('images_per_s'))} |"
        )
    return lines


def write_report(results, out_dir):
    out_dir = Path(out_dir)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    m = results.get("machine", {})
    lines = [
        f"# jsegnext GPU check ({results['mode']})",
        "",
        f"Machine: {m.get('gpu') or 'no GPU'}; {m.get('cores')} cores; Python {m.get('python')}, "
        f"NumPy {m.get('numpy')}. Command: `{results['command']}`. Total {results.get('seconds')} s.",
        "",
    ]
    lines += stage_table(results) + failures(results) + strip_table(results) + model_table(results)
    lines += precision_table(results)
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
