"""Training, resuming, evaluation and inference end to end on tiny demo data and a tiny model."""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import infer as infer_tool
import numpy as np
import pytest
import test as test_tool
from conftest import ROOT

from jsegnext.apis import inference_model, init_model, load_config
from jsegnext.engine import IoUAccumulator, Trainer, TrainingDiverged
from jsegnext.runtime import jt

DEMO = str(ROOT / "configs" / "segnext_t_demo.py")

MODEL_OPTIONS = {  # shrink SegNeXt-T to seconds per run: small widths, one block per stage
    "model.backbone.embed_dims": [8, 16, 32, 32],
    "model.backbone.depths": [1, 1, 1, 1],
    "model.backbone.mlp_ratios": [2, 2, 2, 2],
    "model.backbone.strip_conv": "conv2d",
    "model.decode_head.in_channels": [16, 32, 32],
    "model.decode_head.channels": 32,
    "model.decode_head.ham_channels": 32,
    "model.decode_head.norm_groups": 8,
    "model.decode_head.ham_kwargs.MD_R": 4,
    "model.decode_head.ham_kwargs.seed": None,
}


def options_list(options):
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in options.items()]


def tiny_options(**extra):
    options = dict(MODEL_OPTIONS)
    options.update(
        {
            "data.batch_size": 4,
            "data.num_workers": 0,
            "runner.max_iters": 6,
            "checkpoint_config.interval": 3,
            "evaluation.interval": 1000,
            "log_config.interval": 1,
            "lr_config.warmup_iters": 2,
            "optimizer.lr": 4e-3,
        }
    )
    options.update(extra)
    return options_list(options)


def write_boxes_dataset(root, rng, counts=(("train", 16), ("val", 4)), size=64):
    """Two classes: a bright textured box (1) on a dark noisy background (0)."""
    for split, count in counts:
        (root / "img" / split).mkdir(parents=True)
        (root / "ann" / split).mkdir(parents=True)
        for i in range(count):
            img = rng.normal(60, 15, (size, size, 3))
            label = np.zeros((size, size), np.uint8)
            y, x = rng.integers(0, size // 2, 2)
            h, w = rng.integers(size // 4, size // 2, 2)
            img[y : y + h, x : x + w] = rng.normal(190, 30, (h, w, 3))
            label[y : y + h, x : x + w] = 1
            cv2.imwrite(str(root / "img" / split / f"{i:03d}.png"), np.clip(img, 0, 255).astype(np.uint8))
            cv2.imwrite(str(root / "ann" / split / f"{i:03d}.png"), label)


def write_boxes_config(path, data_root):
    """The demo config with its data swapped for the boxes dataset (appended Python, run top to bottom)."""
    text = (
        Path(DEMO).read_text()
        + f"""
model['decode_head']['num_classes'] = 2
test_pipeline[1]['img_scale'] = (64, 64)
train_pipeline[2]['img_scale'] = (64, 64)
_common = dict(type='CustomDataset', data_root={str(data_root)!r}, img_suffix='.png', seg_map_suffix='.png',
               classes=('background', 'box'), palette=[[0, 0, 0], [255, 0, 0]])
data = dict(batch_size=4, num_workers=0,
            train=dict(_common, img_dir='img/train', ann_dir='ann/train', pipeline=train_pipeline),
            val=dict(_common, img_dir='img/val', ann_dir='ann/val', pipeline=test_pipeline))
crop_size = (48, 48)
train_pipeline[3]['crop_size'] = crop_size
train_pipeline[7]['size'] = crop_size
"""
    )
    path.write_text(text)
    return str(path)


def train_losses(work_dir):
    lines = (work_dir / "log.jsonl").read_text().splitlines()
    return [(r["iter"], r["loss"]) for r in map(json.loads, lines) if r["mode"] == "train"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("boxes")
    write_boxes_dataset(root, np.random.default_rng(0))
    return root


@pytest.fixture(scope="module")
def config(tmp_path_factory, data_root):
    return write_boxes_config(tmp_path_factory.mktemp("cfg") / "boxes.py", data_root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, config):
    work_dir = tmp_path_factory.mktemp("run")
    cfg = load_config(
        config, tiny_options(**{"runner.max_iters": 40, "checkpoint_config.interval": 40, "log_config.interval": 10})
    )
    Trainer(cfg, work_dir, progress=False).train()
    return cfg, work_dir


def test_short_training_lowers_the_loss(trained):
    _, work_dir = trained
    losses = [loss for _, loss in train_losses(work_dir)]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0]
    assert (work_dir / "latest.pkl").exists() and (work_dir / "iter_40.pkl").exists()


def test_resume_after_kill_reproduces_the_uninterrupted_run(tmp_path, config):
    options = tiny_options(**{"runner.max_iters": 12})
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    Trainer(load_config(config, options), straight, progress=False).train()
    # The kill happens in a bash process: Jittor ends its own process when a child of it dies by a
    # signal (its SIGCHLD handler), so pytest must not be the killed trainer's parent.
    command = " ".join(
        shlex.quote(str(a))
        for a in [
            sys.executable,
            ROOT / "tools" / "train.py",
            config,
            "--work-dir",
            killed,
            "--no-progress",
            "--cfg-options",
            *options,
        ]
    )
    log = shlex.quote(str(killed / "log.jsonl"))
    script = (
        f"{command} >/dev/null 2>&1 & pid=$!; for i in $(seq 6000); do "
        f"[ -f {log} ] && [ $(grep -c train {log}) -ge 4 ] && break; "
        "kill -0 $pid 2>/dev/null || break; sleep 0.02; done; kill -9 $pid; wait $pid; exit 0"
    )
    subprocess.run(["bash", "-c", script], check=True, timeout=600)
    logged = train_losses(killed)
    assert 4 <= len(logged) < 12, "the run was not interrupted mid-way"
    resumed = Trainer(load_config(config, options), killed, progress=False)
    resumed.resume()
    assert resumed.iter in (3, 6, 9)
    resumed.train()
    history = train_losses(killed)
    assert [i for i, _ in history] == list(range(1, 13))  # each iteration logged once, in order
    np.testing.assert_allclose([l for _, l in history], [l for _, l in train_losses(straight)], rtol=1e-5)


def test_resume_drops_log_records_of_later_iterations(tmp_path):
    from jsegnext.engine import JsonlLogger

    path = tmp_path / "log.jsonl"
    lines = [{"mode": "train", "iter": i, "loss": 1.0 / i} for i in (1, 2, 3, 4, 5)]
    lines.insert(3, {"mode": "val", "iter": 3, "mIoU": 50.0})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"mode": "train", "it')  # killed mid-line
    with JsonlLogger(path) as logger:
        assert logger.drop_after(3) == 3
        logger.log({"mode": "train", "iter": 4, "loss": 0.5})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["mode"], r["iter"]) for r in records] == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("val", 3),
        ("train", 4),
    ]
    assert records[-1]["loss"] == 0.5


def test_non_finite_loss_stops_with_a_checkpoint(tmp_path, config, monkeypatch):
    trainer = Trainer(load_config(config, tiny_options()), tmp_path, progress=False)
    real_loss, calls = trainer.model.loss, []

    def loss(img, label, ignore_index):
        calls.append(1)
        value = real_loss(img, label, ignore_index)
        return value * float("nan") if len(calls) == 5 else value

    monkeypatch.setattr(trainer.model, "loss", loss)
    with pytest.raises(TrainingDiverged, match="iteration 5"):
        trainer.train()
    assert (tmp_path / "iter_4_before_nonfinite.pkl").exists()


def test_the_training_loss_ignores_the_datasets_ignore_index(tmp_path, config, monkeypatch):
    options = tiny_options(**{"data.train.ignore_index": 1, "runner.max_iters": 1})
    trainer = Trainer(load_config(config, options), tmp_path, progress=False)
    real_loss, seen = trainer.model.loss, []

    def loss(img, label, ignore_index):
        seen.append(ignore_index)
        return real_loss(img, label, ignore_index)

    monkeypatch.setattr(trainer.model, "loss", loss)
    trainer.train()
    assert seen == [1]
    img, label = jt.randn(1, 3, 32, 32), jt.array(np.ones((1, 32, 32), np.int32))  # every pixel class 1
    assert real_loss(img, label, ignore_index=1).item() == 0.0  # nothing counted
    assert real_loss(img, label).item() > 0.0


def test_test_tool_metrics_equal_its_saved_predictions(trained, tmp_path, data_root, config):
    cfg, work_dir = trained
    out, preds, shows = tmp_path / "r.json", tmp_path / "preds", tmp_path / "show"
    options = tiny_options()
    assert (
        test_tool.main(
            [
                config,
                str(work_dir / "latest.pkl"),
                "--out",
                str(out),
                "--save-preds",
                str(preds),
                "--show-dir",
                str(shows),
                "--cfg-options",
                *options,
            ]
        )
        == 0
    )
    metrics = json.loads(out.read_text())
    acc = IoUAccumulator(2)
    labels = sorted((data_root / "ann" / "val").glob("*.png"))
    assert len(labels) == 4 and len(list(shows.glob("*.png"))) == 4
    for label_path in labels:
        pred = cv2.imread(str(preds / label_path.name), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        assert pred.shape == label.shape
        acc.update(pred, label)
    expected = acc.summary()
    for key in ("mIoU", "aAcc", "mAcc"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6)
    assert metrics["mIoU"] > 60  # all-background prediction scores ~40 here


def test_ms_flip_evaluation_runs_all_views(trained, tmp_path, config):
    _, work_dir = trained
    out = tmp_path / "ms.json"
    assert (
        test_tool.main(
            [config, str(work_dir / "latest.pkl"), "--ms-flip", "--out", str(out), "--cfg-options", *tiny_options()]
        )
        == 0
    )
    assert 0 <= json.loads(out.read_text())["mIoU"] <= 100


def test_inference_on_images_folders_and_video(trained, tmp_path, data_root, config):
    _, work_dir = trained
    options = tiny_options()
    model = init_model(config, str(work_dir / "latest.pkl"), options=options)
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    assert inference_model(model, image).shape == (50, 70)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, src in enumerate(sorted((data_root / "img" / "val").glob("*.png"))[:2]):
        shutil.copy(src, folder / f"img{i}.png")
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (40, 30))
    for _ in range(3):
        writer.write(np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    writer.release()
    cv2.imwrite(str(tmp_path / "single.jpg"), image)
    out = tmp_path / "out"
    code = infer_tool.main(
        [
            config,
            str(work_dir / "latest.pkl"),
            str(tmp_path / "single.jpg"),
            str(folder),
            str(video),
            "--out",
            str(out),
            "--cfg-options",
            *options,
        ]
    )
    assert code == 0
    for name, shape in (("single", (50, 70)), ("img0", (64, 64)), ("img1", (64, 64))):
        assert cv2.imread(str(out / "labels" / f"{name}.png"), cv2.IMREAD_UNCHANGED).shape == shape
        assert cv2.imread(str(out / "overlays" / f"{name}.png")).shape == shape + (3,)
    capture = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    ok, frame = capture.read()
    assert ok and frame.shape == (30, 40, 3)
    records = [json.loads(line) for line in (out / "infer.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all("error" not in r for r in records)


def test_train_tool_reports_config_errors_in_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train.py"),
            DEMO,
            "--work-dir",
            str(tmp_path),
            "--cfg-options",
            "optimizer.lrr=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: unknown config key 'optimizer.lrr' (did you mean 'lr'?)"


def test_demo_dataset_is_generated_on_first_use(tmp_path):
    from jsegnext.datasets import build_dataset

    cfg = load_config(
        DEMO,
        [
            f"data.train.data_root={str(tmp_path)!r}",
            "data.train.num_train=3",
            "data.train.num_val=2",
            "data.train.image_size=32",
        ],
    )
    dataset = build_dataset(cfg.data.train)
    assert len(dataset) == 3 and dataset.CLASSES[0] == "background"
    sample = dataset[0]
    assert sample["img"].shape[0] == 3 and sample["gt_semantic_seg"].max() < 5
    stamp = (tmp_path / "demo.json").stat().st_mtime_ns
    build_dataset(cfg.data.train)
    assert (tmp_path / "demo.json").stat().st_mtime_ns == stamp  # not generated twice


def test_plot_log_draws_curves_and_names_bad_lines(trained, tmp_path):
    import plot_log

    _, work_dir = trained
    out = tmp_path / "curves.png"
    assert plot_log.main([str(work_dir / "log.jsonl"), "--out", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] > image.shape[0] > 100
    broken = tmp_path / "log.jsonl"
    broken.write_text('{"mode": "train", "iter": 1, "loss": 1.0, "lr": 0.1}\n{"mode": "tr\n')
    with pytest.raises(ValueError, match=r"log.jsonl:2: not a JSON line"):
        plot_log.read_log(broken)
