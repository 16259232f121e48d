"""Bad input never hangs and never shows a traceback: one line naming the key or file, a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import benchmark as benchmark_tool
import check_dataset as check_dataset_tool
import convert_weights as convert_tool
import infer as infer_tool
import pytest
import test as test_tool
import train as train_tool
from conftest import ROOT
from test_safety import demo_options, one_error_line
from test_training import DEMO

from jsegnext.apis import load_config
from jsegnext.config_check import ConfigWarning
from jsegnext.datasets import build_dataset
from jsegnext.errors import ConfigError


@pytest.mark.parametrize("value", ["-2", "0", "'abc'", "2.5", "True", "None"])
def test_batch_sizes_below_one_and_wrong_types_name_the_key(value):
    with pytest.raises(ConfigError, match=r"config key 'data\.batch_size' must be a positive integer"):
        load_config(DEMO, [f"data.batch_size={value}"])


@pytest.mark.parametrize(
    "option,message",
    [
        ("data.num_workers=-1", "'data.num_workers' must be an integer >= 0"),
        ("runner.max_iters='10'", "'runner.max_iters' must be a positive integer"),
        ("checkpoint_config.interval=0", "'checkpoint_config.interval' must be a positive integer"),
        ("optimizer.lr=-1", "'optimizer.lr' must be a positive number"),
        ("lr_config.warmup_ratio=2", r"'lr_config.warmup_ratio' must be a number in \(0, 1\]"),
        ("evaluation.metric='mDice'", "'evaluation.metric' must be 'mIoU'"),
    ],
)
def test_values_the_trainer_uses_are_checked(option, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DEMO, [option])


def test_negative_batch_size_does_not_hang_train(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train.py"),
            DEMO,
            "--work-dir",
            str(tmp_path),
            "--cfg-options",
            "data.batch_size=-2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert one_error_line(result.stderr).startswith("error: config key 'data.batch_size' must be a positive integer")


@pytest.mark.parametrize(
    "section,typo,fix",
    [
        ("checkpoint_config", "dict(interval=100, max_keep_ckpt=2)", "max_keep_ckpts"),
        ("lr_config", "dict(policy='poly', warmup='linear', warmup_iter=50, warmup_ratio=1e-3)", "warmup_iters"),
        ("optimizer", "dict(type='AdamW', lr=2e-3, weight_decy=0.01)", "weight_decay"),
        ("runner", "dict(max_iter=700)", "max_iters"),
        ("data", "dict(data, batch_sise=8)", "batch_size"),
    ],
)
def test_typos_inside_known_sections_name_the_key(tmp_path, section, typo, fix):
    path = tmp_path / "typo.py"
    path.write_text(Path(DEMO).read_text() + f"\n{section} = {typo}\n")
    with pytest.raises(ConfigError, match=rf"unknown config key '{section}\.\w+' \(did you mean '{fix}'\?\)"):
        load_config(str(path))


def test_unknown_top_level_name_warns_with_a_suggestion(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text(Path(DEMO).read_text() + "\nevalution = dict(interval=10)\nmy_helper_value = 3\n")
    with pytest.warns(
        ConfigWarning, match="config name 'evalution' is not used by jsegnext .did you mean 'evaluation'"
    ) as record:
        load_config(str(path))
    assert len(record) == 1  # a name unlike any known one (a helper variable) is not reported


def test_skip_bad_samples_can_be_set_from_the_command_line(tmp_path):
    options = demo_options(tmp_path / "demo") + ["data.train.skip_bad_samples=True"]
    assert build_dataset(load_config(DEMO, options).data.train).skip_bad_samples is True
    with pytest.raises(ConfigError, match="did you mean 'skip_bad_samples'"):
        load_config(DEMO, ["data.train.skip_bad_sample=True"])
    with pytest.raises(ConfigError, match="unknown config key 'data.train.no_such_key'"):
        load_config(DEMO, ["data.train.no_such_key=1"])


def test_every_tool_reports_each_error_family_in_one_line(tmp_path, capsys):
    options = demo_options(tmp_path / "demo")
    missing = str(tmp_path / "missing.pkl")
    cases = [  # tool main, argv, exit status, text of the one line
        (
            train_tool.main,
            [DEMO, "--work-dir", str(tmp_path / "w"), "--cfg-options", "optimizer.lr=0"],
            1,
            "config key 'optimizer.lr'",
        ),
        (
            train_tool.main,
            [
                DEMO,
                "--work-dir",
                str(tmp_path / "w"),
                "--load-from",
                missing,
                "--no-progress",
                "--cfg-options",
                *options,
            ],
            1,
            f"{missing}: no such checkpoint file",
        ),
        (
            train_tool.main,
            [
                DEMO,
                "--work-dir",
                str(tmp_path / "w"),
                "--no-progress",
                "--cfg-options",
                *options,
                "model.decode_head.num_classes=7",
            ],
            1,
            "model.decode_head.num_classes=7 but data.train (DemoDataset) has 5 classes",
        ),
        (test_tool.main, [DEMO, missing, "--cfg-options", *options], 1, f"{missing}: no such checkpoint file"),
        (test_tool.main, [DEMO, missing, "--split", "vall"], 1, "no data.vall dataset (did you mean 'val'"),
        (infer_tool.main, [DEMO, missing, str(tmp_path / "nope.png")], 1, "nope.png: no such file or folder"),
        (infer_tool.main, [DEMO, missing, str(ROOT / "README.md")], 1, "not an image"),
        (convert_tool.main, [missing, str(tmp_path / "o.pkl")], 1, f"{missing}: no such checkpoint file"),
        (check_dataset_tool.main, [DEMO, "--options", "data.train.data_rot=x"], 2, "did you mean 'data_root'"),
        (check_dataset_tool.main, [DEMO, "--data-root", str(ROOT / "configs")], 1, "did not write"),
        (benchmark_tool.main, [DEMO, "--cfg-options", "model.backbone.depth=[1]"], 1, "did you mean 'depths'"),
    ]
    for main, argv, status, text in cases:
        assert main(argv) == status, (main.__module__, argv)
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith("error: ") and text in line, (main.__module__, line)


def test_test_tool_command_line_gives_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "test.py"), DEMO, str(tmp_path / "none.pkl")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert one_error_line(result.stderr) == f"error: {tmp_path / 'none.pkl'}: no such checkpoint file"


def test_test_tool_refuses_a_head_whose_classes_are_not_the_datasets(tmp_path, capsys):
    from jsegnext.apis import init_model
    from jsegnext.engine import save_checkpoint

    options = demo_options(tmp_path / "demo") + ["model.decode_head.num_classes=7"]
    checkpoint = save_checkpoint(tmp_path / "seven.pkl", init_model(DEMO, options=options, fuse=False))
    assert test_tool.main([DEMO, str(checkpoint), "--cfg-options", *options]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "num_classes=7 but data.val (DemoDataset) has 5 classes" in line, line
