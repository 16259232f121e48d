"""Nothing the user did not ask for is deleted or overwritten: demo data, work dirs, outputs."""

import json
import os
import shutil

import cv2
import infer as infer_tool
import numpy as np
import pytest
from test_checkpoint import make
from test_safety import demo_options
from test_training import DEMO

from jsegnext.apis import init_model, load_config
from jsegnext.datasets import CustomDataset, DataError
from jsegnext.datasets.demo import ensure_demo_dataset
from jsegnext.engine import CheckpointManager, Trainer
from jsegnext.engine.checkpoint import load_training_state
from jsegnext.engine.evaluation import evaluate
from jsegnext.errors import ConfigError
from jsegnext.models import build_segmentor
from jsegnext.weights import model_state, save_weights


def snapshot(root):
    """{relative path: bytes} of every file under ``root``."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


# ------------------------------------------------------------------------------------ demo dataset
def test_demo_generator_refuses_a_foreign_folder_and_deletes_nothing(tmp_path):
    user = tmp_path / "my_data"
    for sub in ("images/train", "annotations/val"):
        (user / sub).mkdir(parents=True)
    cv2.imwrite(str(user / "images/train/holiday.png"), np.full((8, 8, 3), 7, np.uint8))
    cv2.imwrite(str(user / "annotations/val/holiday.png"), np.ones((8, 8), np.uint8))
    (user / "notes.txt").write_text("mine")
    before = snapshot(user)
    with pytest.raises(DataError, match=r"my_data holds files the demo generator did not write.*nothing was changed"):
        ensure_demo_dataset(user, num_train=2, num_val=1, size=32)
    assert snapshot(user) == before
    # the same through the tools' path: a --data-root override on the demo config
    cfg = load_config(DEMO, [f"data.train.data_root={str(user)!r}"])
    from jsegnext.datasets import build_dataset

    with pytest.raises(DataError, match="did not write"):
        build_dataset(cfg.data.train)
    assert snapshot(user) == before


def test_demo_generator_replaces_only_its_own_files(tmp_path):
    root = tmp_path / "demo"
    ensure_demo_dataset(root, num_train=3, num_val=1, size=32)
    listed = json.loads((root / "demo.json").read_text())["files"]
    assert sorted(listed) == sorted(p for p in snapshot(root) if p != "demo.json")
    ensure_demo_dataset(root, num_train=2, num_val=1, size=32)  # other settings: regenerated
    assert sorted(os.listdir(root / "images/train")) == ["train_0000.png", "train_0001.png"]
    (root / "images/train/extra.png").write_bytes(b"user's")  # now a file it did not write
    with pytest.raises(DataError, match="extra.png"):
        ensure_demo_dataset(root, num_train=3, num_val=1, size=32)
    assert (root / "images/train/extra.png").read_bytes() == b"user's"
    assert len(os.listdir(root / "images/train")) == 3


def test_interrupted_and_old_demo_datasets_are_recognised(tmp_path):
    root = tmp_path / "demo"
    ensure_demo_dataset(root, num_train=2, num_val=1, size=32)
    marker = json.loads((root / "demo.json").read_text())
    # jsegnext 0.1 wrote the settings alone, at the end: its files follow from them
    (root / "demo.json").write_text(json.dumps(marker["spec"]))
    stamp = (root / "images/train/train_0000.png").stat().st_mtime_ns
    ensure_demo_dataset(root, num_train=2, num_val=1, size=32)
    assert (root / "images/train/train_0000.png").stat().st_mtime_ns == stamp  # recognised, kept
    # killed half-way: the marker says incomplete, so it is generated again (not refused)
    (root / "demo.json").write_text(json.dumps(dict(marker, complete=False)))
    os.unlink(root / "annotations/val/val_0000.png")
    ensure_demo_dataset(root, num_train=2, num_val=1, size=32)
    assert (root / "annotations/val/val_0000.png").exists()
    assert json.loads((root / "demo.json").read_text())["complete"] is True


# ------------------------------------------------------------------------------------ work dirs and runs
def test_runs_never_delete_or_resume_each_others_checkpoints(tmp_path):
    """The issue's scenario: an old run's iter_700 / best_mIoU_iter_700 and a new run in the same dir."""
    model, opt, _ = make(0)
    old = CheckpointManager(tmp_path, max_keep=1)
    old.save("iter_700.pkl", model, opt, {"iter": 700})
    old.save_best("best_mIoU_iter_700.pkl", model, opt, {"iter": 700})
    new = CheckpointManager(tmp_path, max_keep=1)
    for it in (2, 4):
        new.save(f"iter_{it}.pkl", model, opt, {"iter": it})
    new.save_best("best_mIoU_iter_4.pkl", model, opt, {"iter": 4})
    names = sorted(os.listdir(tmp_path))
    assert names == ["best_mIoU_iter_4.pkl", "best_mIoU_iter_700.pkl", "iter_4.pkl", "iter_700.pkl", "latest.pkl"]
    assert new.latest() == str(tmp_path / "iter_4.pkl")  # the run latest.pkl points to, not iteration 700
    assert new.best() == str(tmp_path / "best_mIoU_iter_4.pkl")


def test_resume_accepts_a_regular_file_latest(tmp_path):
    model, opt, _ = make(0)
    first = CheckpointManager(tmp_path / "a", max_keep=0)
    first.save("iter_3.pkl", model, opt, {"iter": 3})
    copy = tmp_path / "b"
    copy.mkdir()
    shutil.copy(tmp_path / "a" / "iter_3.pkl", copy / "latest.pkl")  # copied, not a link
    manager = CheckpointManager(copy, max_keep=0, run_id=first.run_id)
    assert manager.latest() == str(copy / "latest.pkl")
    model2, opt2, _ = make(1)
    assert load_training_state(manager.latest(), model2, opt2)["iter"] == 3
    manager.save("iter_4.pkl", model2, opt2, {"iter": 4})  # the copy is kept, under its own name
    assert os.readlink(copy / "latest.pkl") == "iter_4.pkl"
    assert (copy / "iter_3.pkl").read_bytes() == (tmp_path / "a" / "iter_3.pkl").read_bytes()


def test_a_fresh_run_refuses_a_work_dir_holding_another_run(tmp_path, capsys):
    import train as train_tool

    work_dir = tmp_path / "run"
    model, opt, _ = make(0)
    CheckpointManager(work_dir).save("iter_700.pkl", model, opt, {"iter": 700})
    before = snapshot(work_dir)
    options = demo_options(tmp_path / "demo")
    assert train_tool.main([DEMO, "--work-dir", str(work_dir), "--no-progress", "--cfg-options", *options]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(
            f"error: work dir {work_dir} already holds checkpoints of another run (iter_700.pkl, latest.pkl)"
        )
        and "--resume" in err
        and "--work-dir" in err
    )
    assert snapshot(work_dir) == before and not (work_dir / "log.jsonl").exists()
    old_log = '{"iter": 700, "loss": 0.5}\n'
    (work_dir / "log.jsonl").write_text(old_log)
    short = demo_options(tmp_path / "demo", **{"runner.max_iters": 2, "checkpoint_config.interval": 2})
    Trainer(load_config(DEMO, short), work_dir, progress=False, overwrite=True).train()  # allowed explicitly
    assert (work_dir / "iter_700.pkl").read_bytes() == before["iter_700.pkl"]  # the old run's file stays
    assert os.readlink(work_dir / "latest.pkl") == "iter_2.pkl"
    kept = sorted(work_dir.glob("log.*.jsonl"))  # the old run's log is kept beside the new one
    assert [p.read_text() for p in kept] == [old_log]
    new_iters = [json.loads(line).get("iter") for line in (work_dir / "log.jsonl").read_text().splitlines()]
    assert new_iters and 700 not in new_iters


def test_unusable_work_dirs_are_reported_before_any_work(tmp_path):
    cfg = load_config(DEMO, demo_options(tmp_path / "demo"))
    (tmp_path / "a_file").write_text("x")
    for work_dir, message in ((tmp_path / "a_file", "is a file"), (tmp_path / "a_file" / "sub", "not writable")):
        with pytest.raises(ConfigError, match=message):
            Trainer(cfg, work_dir, progress=False)
    assert not (tmp_path / "demo").exists()  # raised before the data was even prepared


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_work_dir_is_reported(tmp_path):
    cfg = load_config(DEMO, demo_options(tmp_path / "demo"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(ConfigError, match="not writable"):
        Trainer(cfg, locked / "run", progress=False)


# ------------------------------------------------------------------------------------ output names
@pytest.fixture()
def tiny_weights(tmp_path):
    options = demo_options(tmp_path / "demo")
    model = build_segmentor(load_config(DEMO, options).model)
    path = tmp_path / "tiny.pkl"
    save_weights(path, {k: v.numpy() for k, v in model_state(model).items()})
    return str(path), options


def test_infer_keeps_inputs_of_the_same_name_apart(tmp_path, tiny_weights):
    checkpoint, options = tiny_weights
    sizes = {"dirA/scene.png": (20, 30), "dirA/scene.jpg": (24, 36), "dirB/scene.png": (28, 40)}
    for name, (h, w) in sizes.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    out = tmp_path / "out"
    inputs = [str(tmp_path / n) for n in sizes]
    assert infer_tool.main([DEMO, checkpoint, *inputs, "--out", str(out), "--cfg-options", *options]) == 0
    records = [json.loads(line) for line in (out / "infer.jsonl").read_text().splitlines()]
    assert len({r["labels"] for r in records}) == 3 and len({r["overlay"] for r in records}) == 3
    for record in records:
        name = os.path.relpath(record["input"], tmp_path)
        assert cv2.imread(record["labels"], cv2.IMREAD_UNCHANGED).shape == sizes[name]  # its own result
    # unique base names stay plain; a clash between a folder's image and a named one keeps their folders
    assert [n for _, _, n in infer_tool.collect_inputs([str(tmp_path / "dirB")])] == ["scene"]
    names = [n for _, _, n in infer_tool.collect_inputs([str(tmp_path / "dirB"), str(tmp_path / "dirA/scene.jpg")])]
    assert names[0].endswith("dirB/scene") and names[1].endswith("dirA/scene")


def test_saved_predictions_keep_sub_folders_apart(tmp_path, tiny_weights):
    checkpoint, options = tiny_weights
    for city, (h, w) in (("aachen", (20, 30)), ("bremen", (24, 36))):
        for sub in ("img", "ann"):
            (tmp_path / sub / city).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "img" / city / "frame.png"), np.zeros((h, w, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "ann" / city / "frame.png"), np.zeros((h, w), np.uint8))
    cfg = load_config(DEMO, options)
    dataset = CustomDataset(
        img_dir=str(tmp_path / "img"),
        ann_dir=str(tmp_path / "ann"),
        img_suffix=".png",
        classes=[str(i) for i in range(5)],
        pipeline=cfg.test_pipeline,
        test_mode=True,
    )
    model = init_model(DEMO, checkpoint, options=options)
    evaluate(model, dataset, save_preds=str(tmp_path / "preds"), progress=False)
    assert cv2.imread(str(tmp_path / "preds/aachen/frame.png"), cv2.IMREAD_UNCHANGED).shape == (20, 30)
    assert cv2.imread(str(tmp_path / "preds/bremen/frame.png"), cv2.IMREAD_UNCHANGED).shape == (24, 36)
