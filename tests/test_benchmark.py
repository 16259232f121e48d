"""tools/benchmark.py on a tiny SegNeXt (64x64, 2 timed iterations): eval, --train, JSON fields."""

import json
import math
import subprocess
import sys
from pathlib import Path

import benchmark
import pytest

from jsegnext.apis import load_config
from jsegnext.flops import count_flops
from jsegnext.models import build_segmentor
from jsegnext.runtime import jt

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "segnext_t_ade20k.py")
TINY = [
    "model.backbone.embed_dims=[8,16,32,32]",
    "model.backbone.depths=[1,1,1,1]",
    "model.backbone.mlp_ratios=[2,2,2,2]",
    "model.decode_head.in_channels=[16,32,32]",
    "model.decode_head.channels=32",
    "model.decode_head.ham_channels=32",
    "model.decode_head.norm_groups=8",
    "model.decode_head.ham_kwargs.MD_R=4",
    "model.decode_head.num_classes=5",
]


def _check_common(result, mode, batch, iters=2):
    assert result["mode"] == mode and result["batch"] == batch and result["shape"] == [64, 64]
    assert result["dtype"] == "float32" and result["fp16"] is False
    assert result["iters"] == iters and len(result["times_ms"]) == iters and len(result["warmup_s"]) == 1
    model = build_segmentor(load_config(CONFIG, TINY).model)
    assert result["params"] == sum(
        int(math.prod(v.shape))
        for k, v in model.state_dict().items()
        if not k.endswith(("running_mean", "running_var"))
    )
    assert result["gflops"] == pytest.approx(count_flops(model, (64, 64), training=mode == "train").gflops)
    assert result["gflops_batch"] == pytest.approx(result["gflops"] * batch)
    lat = result["latency_ms"]
    assert set(lat) >= {"mean", "p50", "p90", "p99", "min", "max", "std"}
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["fps"] == pytest.approx(batch * 1e3 / lat["mean"])
    memory = result["memory"]
    assert memory["peak_rss_bytes"] > 10 * 2**20
    assert memory["jittor_peak_bytes"] and memory["jittor_peak_bytes"] > 0
    machine = result["machine"]
    assert machine["cpu_model"] and machine["cpu_logical_cores"] >= 1 and machine["cpu_usable_cores"] >= 1
    assert machine["jittor_version"] == result["jittor_version"] == jt.__version__
    assert result["device"] == machine["device"] in ("cpu", "cuda")
    assert (machine["gpu"] is not None) == (result["device"] == "cuda")
    assert "tools/benchmark.py" in result["command"] and "--cfg-options" in result["argv"]
    assert result["flops_by_part_g"]["head.nmf"] > 0


def test_eval_command_line(tmp_path):
    out = tmp_path / "eval.json"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "benchmark.py"),
        CONFIG,
        "--shape",
        "64",
        "64",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--json",
        str(out),
        "--cfg-options",
        *TINY,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "latency (ms)" in proc.stdout and "GFLOPs / image" in proc.stdout and "peak RSS" in proc.stdout
    result = json.loads(out.read_text())
    _check_common(result, "eval", 1)
    assert result["command"].startswith("python ") and result["config"] == CONFIG


def test_train_step(tmp_path, capsys):
    out = tmp_path / "sub" / "train.json"
    argv = [
        CONFIG,
        "--shape",
        "64",
        "--batch",
        "2",
        "--train",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--no-progress",
        "--json",
        str(out),
        "--cfg-options",
        *TINY,
    ]
    assert benchmark.main(argv) == 0
    assert "last loss" in capsys.readouterr().out
    result = json.loads(out.read_text())
    _check_common(result, "train", 2)
    assert math.isfinite(result["last_loss"]) and result["last_loss"] > 0
    assert "train_steps=6" in result["flops_note"]


@pytest.mark.skipif(jt.flags.use_cuda, reason="float16 is refused on CPU only")
def test_fp16_refused_on_cpu(capsys):
    assert benchmark.main([CONFIG, "--fp16", "--shape", "64", "--cfg-options", *TINY]) == 2
    err = capsys.readouterr().err
    assert "--fp16 is not available on CPU" in err and "float32 only" in err


def test_bad_arguments():
    with pytest.raises(SystemExit):
        benchmark.parse_args([CONFIG, "--shape", "1", "2", "3"])
    assert benchmark.main([CONFIG, "--shape", "64", "--cfg-options", "model.nope=1"]) == 1
