"""The stages of the GPU check (``benchmarks/gpu/run.sh``): each one runs as child processes
under its own time budget, inside one overall deadline; a stage that runs out of time is stopped
and the run moves on, saying so. Results go to ``OUT_DIR/results.json`` and ``OUT_DIR/results.md``,
everything printed to ``OUT_DIR/run.log``.

    python3 benchmarks/gpu/run_stages.py OUT_DIR              # on the GPU machine (via run.sh)
    python3 benchmarks/gpu/run_stages.py OUT_DIR --cpu-smoke  # the same stages, tiny, on the CPU

This process never imports Jittor or PyTorch (a stage that crashes or hangs cannot take it down).
Exit status: 0 when every check that ran passed, 1 otherwise (the results are written either way).
"""

import argparse
import concurrent.futures
import importlib.util
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import write_report  # noqa: E402

# ------------------------------------------------------------------------------------------------
# What the run checks, in one place (the lead adapts these after other branches land).
# ------------------------------------------------------------------------------------------------
#: pytest ``-k`` expression selecting the tiny-fixture training-parity test (loss and every
#: gradient against tests/fixtures/segnext_tiny_train.npz).
TRAIN_PARITY_K = "tiny and (train or grad)"

#: The CUDA correctness tests: (group, pytest arguments on the GPU, pytest arguments in the smoke run).
#: The parity and operator tests select the strip/depthwise implementations themselves (they are
#: parametrised over every ``impl``: 'auto', 'conv2d', 'kernel', 'fused', 'meta').
TEST_GROUPS = [
    (
        "parity_every_strip_impl",
        ["tests/test_models.py", "-k", "parity_with_reference or nmf_reproduces"],
        ["tests/test_models.py::test_nmf_reproduces_reference_decomposition[kernel]"],
    ),
    ("strip_conv_ops", ["tests/test_strip_conv.py"], ["tests/test_strip_conv.py::test_matches_conv2d[7-h-kernel]"]),
    (
        "depthwise_ops",
        ["tests/test_depthwise_conv.py"],
        ["tests/test_depthwise_conv.py::test_matches_conv2d[5-kernel]"],
    ),
    ("tiny_training_parity", ["tests", "-k", TRAIN_PARITY_K], ["tests", "-k", TRAIN_PARITY_K]),
]
#: Test groups that need the SegNeXt-T/ADE reference fixture (24 MB, carried in .whl/fixtures).
NEEDS_TADE_FIXTURE = {"parity_every_strip_impl"}

#: The strip-conv implementations the speed stages use, by explicit name ('auto' means Jittor's
#: depthwise op, 'conv2d', on CUDA; 'fused' has no CUDA kernel). After the ops' dispatch module
#: lands, adapt the names here. speed_ops always times 'conv2d' beside these; the smoke run times
#: only the CPU 'kernel' in speed_models.
IMPLS = {"speed_ops": ["kernel"], "speed_models": ["conv2d", "kernel"], "precision": "kernel"}
SMOKE_MODEL_IMPLS = ["kernel"]

#: The demo training run: 20 steps of configs/segnext_t_demo.py (warm-up shortened so the loss
#: moves within 20 steps; fewer generated images).
DEMO_CONFIG = "configs/segnext_t_demo.py"
DEMO_OPTIONS = {
    "runner.max_iters": 20,
    "log_config.interval": 1,
    "lr_config.warmup_iters": 5,
    "evaluation.interval": 10**6,
    "checkpoint_config.interval": 10**6,
    "data.num_workers": 2,
    "data.train.num_train": 160,
    "data.val.num_train": 160,
    "data.train.num_val": 8,
    "data.val.num_val": 8,
}
DEMO_SMOKE_OPTIONS = {  # SegNeXt-T shrunk to seconds, as in tests/test_training.py
    "runner.max_iters": 6,
    "data.batch_size": 4,
    "data.num_workers": 0,
    "optimizer.lr": 4e-3,
    "lr_config.warmup_iters": 1,
    "data.train.num_train": 16,
    "data.val.num_train": 16,
    "data.train.num_val": 2,
    "data.val.num_val": 2,
    "model.backbone.embed_dims": [8, 16, 32, 32],
    "model.backbone.depths": [1, 1, 1, 1],
    "model.backbone.mlp_ratios": [2, 2, 2, 2],
    "model.decode_head.in_channels": [16, 32, 32],
    "model.decode_head.channels": 32,
    "model.decode_head.ham_channels": 32,
    "model.decode_head.norm_groups": 8,
    "model.decode_head.ham_kwargs.MD_R": 4,
}

#: (stage, budget in seconds on the GPU, in the smoke run). The whole run stops at DEADLINE.
BUDGETS = {
    "warmup": (150, 300),
    "correctness": (110, 300),
    "train_demo": (60, 240),
    "speed_ops": (35, 120),
    "speed_models": (95, 240),
    "precision": (25, 120),
}
DEADLINE = {"gpu": 465, "smoke": 1500}  # seconds from the start of run_stages.py; run.sh's set-up comes first


# ------------------------------------------------------------------------------------------------
class Run:
    """Deadline, log and child processes of one run."""

    def __init__(self, out_dir, smoke):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.smoke = smoke
        self.device = "cpu" if smoke else "cuda"
        self.start = time.monotonic()
        self.deadline = self.start + DEADLINE["smoke" if smoke else "gpu"]
        self.tmp = Path(tempfile.mkdtemp(prefix="jsegnext-gpu-"))
        self.log_file = open(self.out_dir / "run.log", "a", buffering=1)
        self.env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            JSEGNEXT_DEVICE=self.device,
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )

    def log(self, text):
        line = f"[{time.monotonic() - self.start:6.1f}s] {text}"
        print(line, flush=True)
        self.log_file.write(line + "\n")

    def left(self):
        return self.deadline - time.monotonic()

    def command(self, cmd, timeout, cwd=ROOT, echo=True):
        """Run ``cmd`` (its output into the log as it comes, or, ``echo=False``, only returned),
        stopping it after ``timeout`` seconds.
        Returns (exit status or None when stopped, seconds, everything it printed)."""
        timeout = min(timeout, self.left())
        self.log("$ " + " ".join(str(c) for c in cmd))
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output, stopped = [], False
        fd = proc.stdout.fileno()
        try:
            while True:
                remaining = timeout - (time.monotonic() - t0)
                if remaining <= 0:
                    stopped = True
                    break
                ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
                if not ready:
                    if proc.poll() is not None:  # exited; a left-over grandchild may hold the pipe
                        break
                    continue
                chunk = os.read(fd, 65536)  # what is there: pytest's dots come without a newline
                if not chunk:
                    break
                text = chunk.decode(errors="replace")
                if echo:
                    self.log_file.write(text)
                output.append(text)
        finally:
            if stopped or proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the child's own process group (start_new_session)
                except ProcessLookupError:
                    pass
            proc.wait()
            proc.stdout.close()
        seconds = time.monotonic() - t0
        if stopped:
            self.log(f"stopped after {seconds:.0f} s (time budget): {' '.join(str(c) for c in cmd)[:200]}")
        return (None if stopped else proc.returncode), seconds, "".join(output)

    def commands(self, cmds, timeout):
        """Run ``cmds`` at the same time (as :meth:`command`); their outputs go to the log one after another."""
        with concurrent.futures.ThreadPoolExecutor(len(cmds)) as pool:
            results = list(pool.map(lambda c: self.command(c, timeout, echo=False), cmds))
        for cmd, (_, _, output) in zip(cmds, results):
            self.log_file.write(f"----- output of: {' '.join(str(c) for c in cmd)}\n{output}\n")
        return results


def _result(status, seconds, budget, **extra):
    return dict(status=status, seconds=round(seconds, 1), budget_s=budget, **extra)


def _budget(run, name):
    return BUDGETS[name][1 if run.smoke else 0]


def _options(options):
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in options.items()]


def _python():
    return sys.executable


# ------------------------------------------------------------------------------------------------ stages
#: Run after the warm-up: NumPy in and out, an element-wise op, a reduction and a matrix product
#: (cuBLAS on CUDA) against NumPy, on the device the run is for.
DEVICE_CHECK = """
import numpy as np
import jsegnext
from jsegnext.runtime import jt
rng = np.random.default_rng(0)
a, b = rng.standard_normal((64, 96)).astype("float32"), rng.standard_normal((96, 32)).astype("float32")
np.testing.assert_allclose(jt.matmul(jt.array(a), jt.array(b)).numpy(), a @ b, rtol=1e-4, atol=1e-4)
np.testing.assert_allclose((jt.array(a) * 2 + 1).numpy(), a * 2 + 1, rtol=1e-6)
assert float(jt.array(np.arange(12, dtype="float32")).sum().item()) == 66.0
print("device check passed on", jsegnext.device_name())
"""


def stage_warmup(run):
    budget = _budget(run, "warmup")
    code, seconds, tail = run.command([_python(), "-m", "jsegnext.warmup"], budget)
    settings = [l for l in tail.splitlines() if "=" in l and ":" in l and not l.startswith("$")]
    if code == 0 and f"Jittor ready ({run.device})" in tail:
        code, more, tail = run.command([_python(), "-c", DEVICE_CHECK], budget - seconds)
        seconds += more
        if code == 0 and f"device check passed on {run.device}" in tail:
            return _result("passed", seconds, budget, settings=settings)
    status = "timeout" if code is None else "failed"
    return _result(status, seconds, budget, settings=settings, message=tail[-3000:])


def _fixture_dir():
    return Path(os.environ.get("JSEGNEXT_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def _junit(path):
    """{test id: (outcome, message)} from a pytest JUnit XML file."""
    out = {}
    if not path.exists():
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", (child.get("message") or "")[:400]
            elif child.tag == "skipped":
                outcome, message = "skipped", (child.get("message") or "")[:200]
        out[test_id] = (outcome, message)
    return out


def _verbose_outcomes(output):
    """{test id: (outcome, '')} from ``pytest -v`` lines."""
    found = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", output, re.M)
    found += [
        (t, o)
        for o, t in re.findall(
            r"^\[gw\d+\] \[ *\d+%\] (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) "
            r"(\S+::\S+)",
            output,
            re.M,
        )
    ]  # pytest-xdist
    norm = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "failed"}
    return {t: (norm.get(o, "skipped"), "") for t, o in found}


def stage_correctness(run):
    """The test groups at the same time, each one process (``pytest -n 3`` where pytest-xdist is
    installed: Jittor compiles each new kernel on first use, one at a time within a process)."""
    budget = _budget(run, "correctness")
    t0 = time.monotonic()
    groups, jobs = {}, []
    xdist = ["-n", "3"] if not run.smoke and importlib.util.find_spec("xdist") else []
    for name, gpu_args, smoke_args in TEST_GROUPS:
        if name in NEEDS_TADE_FIXTURE and not (_fixture_dir() / "segnext_t_ade.pth").exists():
            groups[name] = dict(
                status="skipped" if run.smoke else "failed",
                message=f"SegNeXt-T/ADE fixture not in {_fixture_dir()} (prepare_wheels.sh copies it to .whl/fixtures)",
            )
            continue
        xml = run.tmp / f"{name}.xml"
        jobs.append(
            (
                name,
                smoke_args if run.smoke else gpu_args,
                xml,
                [
                    _python(),
                    "-m",
                    "pytest",
                    "-v",
                    "-p",
                    "no:cacheprovider",
                    *xdist,
                    f"--junitxml={xml}",
                    *(smoke_args if run.smoke else gpu_args),
                ],
            )
        )
    outcomes = run.commands([cmd for *_, cmd in jobs], budget) if jobs else []
    for (name, args, xml, _), (code, seconds, output) in zip(jobs, outcomes):
        cases = _junit(xml) or _verbose_outcomes(output)  # no XML when pytest was stopped
        counts = {k: sum(1 for o, _ in cases.values() if o == k) for k in ("passed", "failed", "skipped")}
        failed = {t: m for t, (o, m) in cases.items() if o == "failed"}
        if code is None:
            status = "timeout"
        elif code == 5:  # nothing collected
            status = "skipped" if run.smoke else "failed"
            note = f"no test matched {args}; adjust TEST_GROUPS / TRAIN_PARITY_K in benchmarks/gpu/run_stages.py"
            failed = {} if run.smoke else {"(selection)": note}
        else:
            status = "passed" if code == 0 and not failed else "failed"
        groups[name] = dict(status=status, seconds=round(seconds, 1), args=args, **counts, failures=failed)
        if code == 5:
            groups[name]["message"] = note
        elif status != "passed" and not failed:
            groups[name]["message"] = output[-2000:]
    for name, g in groups.items():
        run.log(
            f"correctness/{name}: {g['status']}"
            + (
                f" ({g['passed']} passed, {g['failed']} failed, {g['skipped']} skipped, {g['seconds']:.0f} s)"
                if "passed" in g
                else f", {g.get('message')}"
            )
        )
    states = [g["status"] for g in groups.values()]
    status = (
        "passed"
        if all(s in ("passed", "skipped") for s in states)
        else ("timeout" if "timeout" in states else "failed")
    )
    return _result(status, time.monotonic() - t0, budget, groups=groups)


def _losses_decrease(losses):
    third = max(1, len(losses) // 3)
    return sum(losses[-third:]) / third < sum(losses[:third]) / third


def stage_train_demo(run):
    budget = _budget(run, "train_demo")
    options = dict(DEMO_OPTIONS)
    if run.smoke:
        options.update(DEMO_SMOKE_OPTIONS)
    work, data = run.tmp / "demo_work", run.tmp / "demo_data"
    options.update({"data.train.data_root": str(data), "data.val.data_root": str(data)})
    code, seconds, tail = run.command(
        [
            _python(),
            "tools/train.py",
            DEMO_CONFIG,
            "--work-dir",
            work,
            "--no-progress",
            "--cfg-options",
            *_options(options),
        ],
        budget,
    )
    log = work / "log.jsonl"
    records = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    losses = [r["loss"] for r in records if r.get("mode") == "train"]
    steps = int(options["runner.max_iters"])
    checks = {
        "all_steps": len(losses) == steps,
        "finite": bool(losses) and all(map(math.isfinite, losses)),
        "decreasing": len(losses) >= 3 and _losses_decrease(losses),
    }
    if code is None:
        status = "timeout"
    else:
        status = "passed" if code == 0 and all(checks.values()) else "failed"
    step_time = [r["time"] for r in records if r.get("mode") == "train"][1:]
    return _result(
        status,
        seconds,
        budget,
        steps=steps,
        losses=losses,
        checks=checks,
        config=DEMO_CONFIG,
        options=_options(options),
        median_step_s=sorted(step_time)[len(step_time) // 2] if step_time else None,
        **({} if status == "passed" else {"message": tail[-2000:]}),
    )


def stage_speed_ops(run):
    budget = _budget(run, "speed_ops")
    t0 = time.monotonic()
    if run.smoke:
        settings = [
            [
                "--variants",
                "t",
                "--input",
                "64x64",
                "--batch",
                "1",
                "--stages",
                "4",
                "--kernels",
                "7",
                "--iters",
                "2",
                "--warmup",
                "1",
            ]
        ]
    else:  # every MSCA strip shape (T's widths and S/B/L's) at the Cityscapes and the ADE training size
        settings = [
            ["--variants", "t", "b", "--input", "1024x2048", "--batch", "1"],
            ["--variants", "t", "b", "--input", "512x512", "--batch", "16"],
        ]
    tables, status = [], "passed"
    for i, extra in enumerate(settings):
        out = run.tmp / f"strips_{i}.json"
        share = (budget - (time.monotonic() - t0)) / (len(settings) - i)
        code, seconds, tail = run.command(
            [
                _python(),
                "benchmarks/bench_strip_conv.py",
                *extra,
                "--impls",
                *IMPLS["speed_ops"],
                "--msca-impls",
                "separate_conv2d",
                "separate_kernel",
                "--json",
                out,
            ],
            share,
        )
        if code == 0 and out.exists():
            tables.append(json.loads(out.read_text()))
        else:
            status = "timeout" if code is None else "failed"
            tables.append(dict(args=extra, error=tail[-1500:]))
            if code is None:
                break
    return _result(status, time.monotonic() - t0, budget, tables=tables)


def _json_lines(path):
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


def stage_speed_models(run):
    budget = _budget(run, "speed_models")
    out = run.tmp / "models.jsonl"
    impls = SMOKE_MODEL_IMPLS if run.smoke else IMPLS["speed_models"]
    args = [_python(), "benchmarks/gpu/model_speed.py", "--out", out, "--impls", *impls]
    code, seconds, tail = run.command(args + (["--smoke"] if run.smoke else []), budget)
    rows = _json_lines(out)
    status = "timeout" if code is None else ("passed" if code == 0 else "failed")
    return _result(status, seconds, budget, rows=rows, **({} if code == 0 else {"message": tail[-2000:]}))


def stage_precision(run):
    budget = _budget(run, "precision")
    out = run.tmp / "precision.jsonl"
    cmd = [_python(), "benchmarks/gpu/precision.py", "--out", out, "--impl", IMPLS["precision"]]
    code, seconds, tail = run.command(cmd + (["--smoke"] if run.smoke else []), budget)
    rows = _json_lines(out)
    status = "timeout" if code is None else ("passed" if code == 0 else "failed")
    if code == 0 and rows and all(r.get("status") == "skipped" for r in rows):
        status = "skipped"
    return _result(status, seconds, budget, rows=rows, **({} if code == 0 else {"message": tail[-2000:]}))


STAGES = [
    ("warmup", stage_warmup),
    ("correctness", stage_correctness),
    ("train_demo", stage_train_demo),
    ("speed_ops", stage_speed_ops),
    ("speed_models", stage_speed_models),
    ("precision", stage_precision),
]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, seconds per stage")
    p.add_argument("--stages", nargs="+", choices=[s for s, _ in STAGES], help="run only these")
    args = p.parse_args(argv)
    run = Run(args.out_dir, args.cpu_smoke)
    results = {
        "mode": "cpu-smoke" if run.smoke else "gpu",
        "device": run.device,
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": _machine(run),
        "stages": {},
    }
    for name, fn in STAGES:
        if args.stages and name not in args.stages:
            continue
        if run.left() < 5:
            results["stages"][name] = _result("timeout", 0, _budget(run, name), message="run deadline reached")
            run.log(f"== {name}: not started, the run's deadline is reached")
            continue
        run.log(f"== {name} (budget {_budget(run, name)} s, {run.left():.0f} s left in the run)")
        try:
            results["stages"][name] = fn(run)
        except Exception as exc:  # noqa: BLE001 - a broken stage must not lose the others' results
            results["stages"][name] = _result("failed", 0, _budget(run, name), message=f"{type(exc).__name__}: {exc}")
        run.log(f"== {name}: {results['stages'][name]['status']} in {results['stages'][name]['seconds']} s")
        if name == "warmup" and results["stages"][name]["status"] != "passed":
            run.log("Jittor did not start; the other stages cannot run")
            break
    results["seconds"] = round(time.monotonic() - run.start, 1)
    write_report(results, run.out_dir)
    shutil.rmtree(run.tmp, ignore_errors=True)  # this run's own scratch folder (demo data, partial results)
    run.log(f"results: {run.out_dir / 'results.json'}, {run.out_dir / 'results.md'}")
    return 0 if all(s["status"] in ("passed", "skipped") for s in results["stages"].values()) else 1


def _machine(run):
    info = {"python": sys.version.split()[0], "cores": os.cpu_count()}
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        info["gpu"] = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = None
    try:
        out = subprocess.run(
            [_python(), "-c", "import numpy; print(numpy.__version__)"],
            capture_output=True,
            text=True,
            timeout=60,
            env=run.env,
        )
        info["numpy"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


if __name__ == "__main__":
    sys.exit(main())
