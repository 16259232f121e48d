"""benchmarks/gpu/run.sh --cpu-smoke: the GPU check's stages at tiny sizes on the CPU (so the script
cannot rot while no GPU is at hand), and the stage runner's time budgets and result parsing."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
import run_stages  # noqa: E402

STAGES = ["warmup", "correctness", "train_demo", "speed_ops", "speed_models", "precision"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_smoke")
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), str(out), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=1500,
        env=dict(os.environ, PYTHON=sys.executable),
    )
    return proc, out, json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None


def test_smoke_runs_every_stage(smoke):
    proc, out, results = smoke
    assert results is not None, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, (out / "results.md").read_text() + proc.stdout[-3000:]
    assert results["mode"] == "cpu-smoke" and results["device"] == "cpu"
    assert list(results["stages"]) == STAGES
    assert all(s["status"] in ("passed", "skipped") for s in results["stages"].values())
    # a handful of files at most, as the device call brings back
    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["results.json", "results.md", "run.log"]


def test_smoke_results_hold_what_each_stage_measured(smoke):
    _, out, results = smoke
    s = results["stages"]
    assert s["warmup"]["status"] == "passed" and any(l.startswith("nvcc_path=") for l in s["warmup"]["settings"])
    groups = s["correctness"]["groups"]
    assert groups["strip_conv_ops"]["status"] == "passed" and groups["strip_conv_ops"]["passed"] >= 1
    assert groups["depthwise_ops"]["status"] == "passed" and groups["depthwise_ops"]["passed"] >= 1
    train = s["train_demo"]
    assert train["status"] == "passed" and len(train["losses"]) == train["steps"]
    assert all(math.isfinite(v) for v in train["losses"]) and train["checks"]["decreasing"]
    strips = s["speed_ops"]["tables"][0]["strips"]
    assert strips and all(r["conv2d"]["fwd"]["median"] > 0 and r["kernel"]["fwd_bwd"]["median"] > 0 for r in strips)
    rows = s["speed_models"]["rows"]
    assert [(r["kind"], r["shape"]) for r in rows] == [("eval", [64, 64]), ("train", [64, 64])]
    for r in rows:
        col = r["columns"]["jsegnext[kernel]"]
        assert col["mean"] > 0 and col["first_call_s"] >= 0
        assert ("images_per_s" if r["kind"] == "eval" else "iters_per_s") in col
    assert s["precision"]["status"] == "skipped" and "CUDA" in s["precision"]["rows"][0]["reason"]
    md = (out / "results.md").read_text()
    for text in ("| train_demo | passed", "Strip convolutions", "Whole model", "jsegnext[kernel]"):
        assert text in md


def _in_fresh_python(code, tmp_path):
    """Run ``code`` in a Python without Jittor: the stage runner stops children with SIGKILL, and a
    Jittor process (this one, once a test imported jsegnext) ends itself when a child of its own
    dies by a signal."""
    driver = f"import sys, time\nsys.path.insert(0, {str(ROOT / 'benchmarks' / 'gpu')!r})\nimport run_stages\n"
    driver += f"run = run_stages.Run({str(tmp_path)!r}, smoke=True)\n" + code
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_command_stops_at_its_budget(tmp_path):
    out = _in_fresh_python(
        """
child = "import sys, time\\nfor i in range(100):\\n    sys.stdout.write('.'); sys.stdout.flush(); time.sleep(0.1)"
t0 = time.monotonic()
code, seconds, output = run.command([sys.executable, "-c", child], timeout=1.5)
assert code is None and time.monotonic() - t0 < 5 and 1.4 < seconds < 5, (code, seconds)
assert output.startswith("..."), output  # output without a newline is still read as it comes
code, _, output = run.command([sys.executable, "-c", "print('done'); raise SystemExit(3)"], timeout=30)
assert code == 3 and output.strip() == "done", (code, output)
print("checked")
""",
        tmp_path,
    )
    assert out.strip().endswith("checked")
    assert "stopped after" in (tmp_path / "run.log").read_text()


def test_deadline_caps_every_command(tmp_path):
    out = _in_fresh_python(
        """
run.deadline = time.monotonic() + 1
code, seconds, _ = run.command([sys.executable, "-c", "import time; time.sleep(30)"], timeout=60)
assert code is None and seconds < 5, (code, seconds)
print("checked")
""",
        tmp_path,
    )
    assert out.strip().endswith("checked")


def test_pytest_outcomes_are_read_from_junit_or_verbose_output(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite><testcase classname="tests.test_a" name="test_x[k]"/>'
        '<testcase classname="tests.test_a" name="test_y"><failure message="boom">tb</failure></testcase>'
        '<testcase classname="tests.test_a" name="test_z"><skipped message="no fixture"/></testcase>'
        '</testsuite></testsuites>'
    )
    assert run_stages._junit(xml) == {
        "tests.test_a::test_x[k]": ("passed", ""),
        "tests.test_a::test_y": ("failed", "boom"),
        "tests.test_a::test_z": ("skipped", "no fixture"),
    }
    out = (
        "tests/test_a.py::test_x[7-h-kernel] PASSED                 [ 50%]\n"
        "tests/test_a.py::test_y FAILED                             [100%]\n"
    )
    assert run_stages._verbose_outcomes(out) == {
        "tests/test_a.py::test_x[7-h-kernel]": ("passed", ""),
        "tests/test_a.py::test_y": ("failed", ""),
    }
    xdist = "[gw2] [ 50%] PASSED tests/test_a.py::test_x[3]\n[gw0] [100%] SKIPPED tests/test_a.py::test_z\n"
    assert run_stages._verbose_outcomes(xdist) == {
        "tests/test_a.py::test_x[3]": ("passed", ""),
        "tests/test_a.py::test_z": ("skipped", ""),
    }


def test_commands_run_side_by_side(tmp_path):
    run = run_stages.Run(tmp_path, smoke=True)
    cmds = [[sys.executable, "-c", f"import time; time.sleep(1); print('job {i}')"] for i in range(3)]
    t0 = time.monotonic()
    results = run.commands(cmds, timeout=60)
    assert [r[0] for r in results] == [0, 0, 0] and [r[2].strip() for r in results] == ["job 0", "job 1", "job 2"]
    assert time.monotonic() - t0 < 2.9  # not one after another
    log = (tmp_path / "run.log").read_text()
    outputs = log[log.index("----- output of") :]  # the "$ command" lines before it come in thread order
    assert outputs.index("job 0") < outputs.index("job 1") < outputs.index("job 2")


def test_loss_decrease_check():
    assert run_stages._losses_decrease([2.0, 1.9, 1.8, 1.7, 1.5, 1.4])
    assert not run_stages._losses_decrease([1.5, 1.6, 1.7, 1.6, 1.8, 1.9])
    assert not run_stages._losses_decrease([1.0, 1.0, 1.0])
