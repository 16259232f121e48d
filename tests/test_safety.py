"""Hostile checkpoints run no code through any entry point, and every tool reports bad input in one line."""

import os
import subprocess
import sys

import convert_weights as convert_tool
import cv2
import infer as infer_tool
import numpy as np
import pytest
import test as test_tool
import train as train_tool
from conftest import ROOT, tiny_model_cfg
from malicious import FORMATS, REFUSED, unsafe_load, write_malicious
from test_training import DEMO, tiny_options

from jsegnext import checkpoint_io
from jsegnext.apis import init_model
from jsegnext.errors import CheckpointError
from jsegnext.models import build_segmentor
from jsegnext.weights import model_state, save_weights


def demo_options(data_root, **extra):
    """The demo config shrunk to seconds: tiny model, 4 + 2 generated 32-pixel scenes in ``data_root``."""
    shapes = {
        "train_pipeline.2.img_scale": (64, 64),
        "train_pipeline.3.crop_size": (48, 48),
        "train_pipeline.7.size": (48, 48),
        "test_pipeline.1.img_scale": (64, 64),
    }  # as test_training's
    options = tiny_options(**dict(shapes, **extra))
    for split in ("train", "val"):
        options += [
            f"data.{split}.data_root={str(data_root)!r}",
            f"data.{split}.num_train=4",
            f"data.{split}.num_val=2",
            f"data.{split}.image_size=32",
        ]
    return options


def one_error_line(err):
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def assert_refused(line, path, marker):
    assert not os.path.exists(marker), "the checkpoint's payload ran"
    assert line.startswith("error: ") and str(path) in line, line
    assert f"refused: it references {REFUSED}, which no checkpoint contains" in line, line


# ------------------------------------------------------------------------------------ the files are hostile
@pytest.mark.parametrize("kind", FORMATS)
def test_the_malicious_files_run_their_payload_when_unpickled_unsafely(tmp_path, kind):
    marker = tmp_path / "PWNED"
    unsafe_load(write_malicious(tmp_path, kind, marker))
    assert marker.exists()  # so a missing marker below means the reader refused the file


# ------------------------------------------------------------------------------------ every entry point
def _entry_points(tmp_path, evil):
    """Each way a user hands jsegnext a checkpoint: name -> callable returning (exit code, stderr)."""
    options = demo_options(tmp_path / "demo")
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    return {
        "convert_weights": lambda: convert_tool.main([evil, str(tmp_path / "out.pkl")]),
        "test": lambda: test_tool.main([DEMO, evil, "--cfg-options", *options]),
        "infer": lambda: infer_tool.main(
            [DEMO, evil, str(image), "--out", str(tmp_path / "infer"), "--cfg-options", *options]
        ),
        "train_load_from": lambda: train_tool.main(
            [DEMO, "--work-dir", str(tmp_path / "w1"), "--load-from", evil, "--no-progress", "--cfg-options", *options]
        ),
        "train_pretrained": lambda: train_tool.main(
            [
                DEMO,
                "--work-dir",
                str(tmp_path / "w2"),
                "--no-progress",
                "--cfg-options",
                *options,
                f"pretrained={evil!r}",
            ]
        ),
    }


@pytest.mark.parametrize("kind", FORMATS)
def test_no_entry_point_runs_a_malicious_checkpoint(tmp_path, capsys, kind):
    marker = tmp_path / "PWNED"
    evil = write_malicious(tmp_path, kind, marker)
    with pytest.raises(CheckpointError, match=f"refused: it references {REFUSED}") as info:
        init_model(DEMO, evil, options=demo_options(tmp_path / "demo"))
    assert str(evil) in str(info.value) and not marker.exists()
    for name, call in _entry_points(tmp_path, evil).items():
        assert call() == 1, name
        assert_refused(one_error_line(capsys.readouterr().err), evil, marker)
    assert not (tmp_path / "out.pkl").exists()


@pytest.mark.parametrize("kind", FORMATS)
def test_resume_refuses_a_malicious_latest_checkpoint(tmp_path, capsys, kind):
    marker = tmp_path / "PWNED"
    work_dir = tmp_path / "run"
    work_dir.mkdir()
    latest = write_malicious(work_dir, kind, marker, name="latest.pkl")
    code = train_tool.main(
        [
            DEMO,
            "--work-dir",
            str(work_dir),
            "--resume",
            "--no-progress",
            "--cfg-options",
            *demo_options(tmp_path / "demo"),
        ]
    )
    assert code == 1
    assert_refused(one_error_line(capsys.readouterr().err), latest, marker)
    assert os.path.exists(latest)  # and nothing of the user's was deleted


@pytest.mark.parametrize(
    "tool,kind",
    [
        ("convert_weights.py", "torch_legacy"),
        ("test.py", "torch_zip"),
        ("infer.py", "jittor_pkl"),
        ("train.py", "torch_zip_named_pkl"),
    ],
)
def test_command_line_tools_refuse_in_one_line(tmp_path, tool, kind):
    """The real processes: exit status 1, one line on stderr, no traceback, no marker."""
    marker = tmp_path / "PWNED"
    evil = write_malicious(tmp_path, kind, marker)
    options = ["--cfg-options", *demo_options(tmp_path / "demo")]
    args = {
        "convert_weights.py": [evil, tmp_path / "out.pkl"],
        "test.py": [DEMO, evil, *options],
        "infer.py": [DEMO, evil, ROOT / "docs" / "demo_curves.png", "--out", tmp_path / "o", *options],
        "train.py": [DEMO, "--work-dir", tmp_path / "w", "--load-from", evil, "--no-progress", *options],
    }[tool]
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / tool), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1, result.stderr
    assert_refused(one_error_line(result.stderr), evil, marker)


# ------------------------------------------------------------------------------------ Jittor's own files
def test_a_stored_jittor_var_is_read_as_an_array(tmp_path):
    from jsegnext.runtime import jt

    path = str(tmp_path / "module.pkl")
    jt.save({"w": jt.array(np.arange(3, dtype=np.float32))}, path)  # Module.save pickles jittor.Var
    np.testing.assert_array_equal(checkpoint_io.load(path)["w"], np.arange(3, dtype=np.float32))


# ------------------------------------------------------------------------------------ package structure
def test_weights_import_no_training_or_data_code():
    code = (
        "import jsegnext.weights, sys; "
        "print([m for m in sys.modules if m.startswith(('jsegnext.engine', 'jsegnext.datasets'))])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr


def test_weight_files_round_trip_as_safetensors(tmp_path):
    model = build_segmentor(dict(type="EncoderDecoder", **tiny_model_cfg()))
    state = {k: v.numpy() for k, v in model_state(model).items()}
    path = save_weights(tmp_path / "out.pkl", state, meta={"source": "x.pth"})
    assert checkpoint_io.detect_format(open(path, "rb").read()) == "safetensors"
    back = checkpoint_io.load(path)
    assert back["meta"] == {"source": "x.pth"} and set(back["state_dict"]) == set(state)
