"""tools/check_dataset.py on tiny generated datasets."""

import os
import subprocess
import sys

import check_dataset  # tools/ is on sys.path (conftest)
import numpy as np
import pytest
from test_datasets import BAD, H, W, make_layout, write_png

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(tmp_path, train, val=None):
    path = tmp_path / "cfg.py"
    data = dict(batch_size=2, num_workers=0, train=train)
    if val is not None:
        data["val"] = val
    path.write_text(f"data = {data!r}\n")
    return str(path)


def test_clean_dataset_passes(tmp_path, capsys):
    cfg = write_config(tmp_path, make_layout(tmp_path / "ade", "ade20k", n=3))
    assert check_dataset.main([cfg, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "OK: no problems found in 3 images" in out
    assert "per-class pixel share" in out and "wall" in out


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_problem_names_the_file(tmp_path, capsys, case):
    train = make_layout(tmp_path / "ade", "ade20k", n=3)
    from jsegnext.datasets import build_dataset

    path = BAD[case](build_dataset(train), 2)
    cfg = write_config(tmp_path, train)
    assert check_dataset.main([cfg, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert os.path.basename(path) in captured.out + captured.err


def test_unpaired_files_and_split_selection(tmp_path, capsys):
    train = make_layout(tmp_path / "city", "cityscapes", n=2, split="train")
    val = make_layout(tmp_path / "city", "cityscapes", n=2, split="val")
    os.remove(tmp_path / "city/leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png")
    cfg = write_config(tmp_path, train, val)
    assert check_dataset.main([cfg, "--split", "train", "--no-progress"]) == 0
    assert check_dataset.main([cfg, "--split", "val", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "aachen_000000_000019_gtFine_labelTrainIds.png" in err
    assert check_dataset.main([cfg, "--split", "test", "--no-progress"]) == 2


def test_max_images_nproc_and_command_line(tmp_path):
    train = make_layout(tmp_path / "isaid", "isaid", n=4)
    label = np.full((H, W), 3, np.uint8)
    label[0, 0] = 40  # not one of the 16 classes
    from jsegnext.datasets import build_dataset

    ds = build_dataset(train)
    write_png(ds.ann_files[3], label)
    cfg = write_config(tmp_path, train)
    assert check_dataset.main([cfg, "--max-images", "3", "--no-progress"]) == 0
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "check_dataset.py"), cfg, "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert os.path.basename(ds.ann_files[3]) in proc.stdout and "values 40" in proc.stdout


def test_out_of_range_value_is_reported_as_it_is_in_the_file(tmp_path, capsys):
    """ADE20K labels are reduced (file value v is class v-1): a file value 151 must be named 151."""
    train = make_layout(tmp_path / "ade", "ade20k", n=2)
    from jsegnext.datasets import build_dataset

    ds = build_dataset(train)
    label = np.full((H, W), 5, np.uint8)
    label[:3, :4] = 151  # one past the 150 classes (1..150 in the file)
    write_png(ds.ann_files[1], label)
    assert check_dataset.main([write_config(tmp_path, train), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"label {ds.ann_files[1]}: file values 151 (12 pixels) are not classes" in out
    assert "with reduce_zero_label (applied by this check)" in out and "holds 1..150" in out
    from jsegnext.datasets import DataError

    with pytest.raises(DataError, match="file values 151 "):
        ds.get_gt_seg_map(1)
