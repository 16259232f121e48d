"""No silent wrong answers from evaluation and inference: the model's mode, the image given to
inference_model, multi-scale test pipelines, the dataset's ignore_index."""

import cv2
import numpy as np
import pytest
from conftest import tiny_model_cfg

from jsegnext.apis import inference_model, init_model
from jsegnext.config import ConfigError
from jsegnext.datasets import build_dataset, build_pipeline
from jsegnext.engine import IoUAccumulator, evaluate
from jsegnext.engine.evaluation import MS_RATIOS, scaled_pipeline
from jsegnext.models.layers import BatchNorm2d
from jsegnext.runtime import jt

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
TEST_PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", img_scale=(64, 48), keep_ratio=True),
    dict(type="Normalize", **NORM),
]
NUM_CLASSES = 3


def tiny_model():
    """A tiny SegNeXt with seeded NMF (repeatable) and BN running statistics unlike a batch's."""
    cfg = tiny_model_cfg(num_classes=NUM_CLASSES, strip_conv="conv2d")
    cfg["decode_head"]["ham_kwargs"]["seed"] = 0
    model = init_model(dict(model=dict(type="EncoderDecoder", **cfg), test_pipeline=TEST_PIPELINE), fuse=False)
    rng = np.random.default_rng(0)
    for bn in bns(model):
        bn.running_mean.update(jt.array(rng.normal(0, 0.5, bn.running_mean.shape).astype(np.float32)))
        bn.running_var.update(jt.array(rng.uniform(0.5, 2.0, bn.running_var.shape).astype(np.float32)))
    return model


def bns(model):
    found = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    assert found
    return found


def bn_statistics(model):
    return [(bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()) for bn in bns(model)]


def assert_same_statistics(before, after):
    for (mean0, var0), (mean1, var1) in zip(before, after):
        np.testing.assert_array_equal(mean0, mean1)
        np.testing.assert_array_equal(var0, var1)


def write_dataset(root, n=3, ignore_value=255, size=(40, 56)):
    rng = np.random.default_rng(1)
    for sub in ("img", "ann"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        img = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        label = rng.integers(0, NUM_CLASSES, size).astype(np.uint8)
        label[: size[0] // 3] = ignore_value
        cv2.imwrite(str(root / "img" / f"{i}.png"), img)
        cv2.imwrite(str(root / "ann" / f"{i}.png"), label)
    return dict(
        type="CustomDataset",
        data_root=str(root),
        img_dir="img",
        ann_dir="ann",
        img_suffix=".png",
        seg_map_suffix=".png",
        classes=("a", "b", "c"),
        palette=[[0, 0, 0], [0, 255, 0], [0, 0, 255]],
        pipeline=TEST_PIPELINE,
    )


# ============================================================================ the model's mode
def test_evaluate_leaves_the_model_in_its_mode_with_its_statistics(tmp_path):
    dataset = build_dataset(write_dataset(tmp_path), test_mode=True)
    model = tiny_model()
    before = bn_statistics(model)
    first = evaluate(model, dataset, progress=False)
    assert not any(m.is_training() for m in model.modules())
    assert all(p.is_stop_grad() for p in model.parameters())
    assert_same_statistics(before, bn_statistics(model))
    assert evaluate(model, dataset, progress=False)["mIoU"] == first["mIoU"]

    model.train()  # the trainer validates a training model: it must come back trainable
    trainable = [p for p in model.parameters() if not p.is_stop_grad()]
    assert evaluate(model, dataset, progress=False)["mIoU"] == first["mIoU"]
    assert all(m.is_training() for m in model.modules())
    assert [p for p in model.parameters() if not p.is_stop_grad()] == trainable
    assert_same_statistics(before, bn_statistics(model))


def test_inference_model_gives_the_eval_result_in_any_mode():
    model = tiny_model()
    image = np.random.default_rng(2).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    before = bn_statistics(model)
    expected = inference_model(model, image), inference_model(model, image, ms_flip=True)
    model.train()
    np.testing.assert_array_equal(inference_model(model, image), expected[0])
    np.testing.assert_array_equal(inference_model(model, image, ms_flip=True), expected[1])
    assert model.is_training() and model.decode_head.hamburger.ham.is_training()
    assert_same_statistics(before, bn_statistics(model))


# ============================================================================ what inference_model accepts
def test_inference_model_accepts_uint8_bgr_and_grey(tmp_path):
    model = tiny_model()
    grey = np.random.default_rng(3).integers(0, 256, (30, 40), dtype=np.uint8)
    expected = inference_model(model, np.stack([grey] * 3, axis=2))
    np.testing.assert_array_equal(inference_model(model, grey), expected)
    np.testing.assert_array_equal(inference_model(model, grey[:, :, None]), expected)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    np.testing.assert_array_equal(inference_model(model, tmp_path / "grey.png"), expected)


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.random.default_rng(4).random((30, 40, 3)).astype(np.float32), ValueError, "float32; expected uint8"),
        (np.full((30, 40, 3), 40000, np.uint16), ValueError, "uint16; expected uint8"),
        (np.zeros((0, 40, 3), np.uint8), ValueError, r"empty \(shape \(0, 40, 3\)\)"),
        (np.zeros((30, 40, 4), np.uint8), ValueError, "HxWx3"),
        ([np.zeros((30, 40, 3), np.uint8)] * 2, TypeError, "got a list; call it once per image"),
    ],
)
def test_inference_model_refuses_other_images_in_one_short_line(image, error, message):
    model = tiny_model()
    with pytest.raises(error, match=message) as info:
        inference_model(model, image)
    assert len(str(info.value)) < 250 and "\n" not in str(info.value)


# ============================================================================ --ms-flip pipelines
MSFA_PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(64, 48),
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=True),
            dict(type="RandomFlip"),
            dict(type="Normalize", **NORM),
            dict(type="ImageToTensor", keys=["img"]),
            dict(type="Collect", keys=["img"]),
        ],
    ),
]


def test_ms_flip_scales_a_multiscaleflipaug_pipeline():
    image = np.zeros((48, 64, 3), np.uint8)
    shapes = set()
    for ratio in MS_RATIOS:
        cfg = scaled_pipeline(MSFA_PIPELINE[1:], ratio)
        assert cfg[0]["img_scale"] == (int(64 * ratio), int(48 * ratio))
        out = build_pipeline(cfg)(dict(filename=None, img=image, ori_shape=image.shape))
        shapes.add(out["img"].shape)
    assert len(shapes) == len(MS_RATIOS)
    assert MSFA_PIPELINE[1]["img_scale"] == (64, 48)  # the config itself is left alone


def test_ms_flip_refuses_a_pipeline_with_nothing_to_scale():
    with pytest.raises(ConfigError, match=r"add dict\(type='Resize'"):
        scaled_pipeline([dict(type="LoadImageFromFile"), dict(type="Normalize", **NORM)], 0.5)


def test_ms_flip_evaluation_of_an_msfa_dataset_sees_every_scale(tmp_path, monkeypatch):
    cfg = write_dataset(tmp_path, n=1)
    cfg["pipeline"] = MSFA_PIPELINE
    dataset = build_dataset(cfg, test_mode=True)
    model = tiny_model()
    seen = []
    inference = model.inference
    monkeypatch.setattr(
        model, "inference", lambda img, out_size=None: (seen.append(tuple(img.shape[2:])), inference(img, out_size))[1]
    )
    evaluate(model, dataset, ms_flip=True, progress=False, fuse=False)
    assert len(seen) == 2 * len(MS_RATIOS) and len(set(seen)) == len(MS_RATIOS)


# ============================================================================ ignore_index
def test_evaluation_ignores_the_datasets_ignore_index(tmp_path):
    cfg = write_dataset(tmp_path, ignore_value=NUM_CLASSES)
    cfg["ignore_index"] = NUM_CLASSES
    dataset = build_dataset(cfg, test_mode=True)
    model = tiny_model()
    metrics = evaluate(model, dataset, save_preds=tmp_path / "preds", progress=False)
    expected, counted = IoUAccumulator(NUM_CLASSES, ignore_index=NUM_CLASSES), IoUAccumulator(NUM_CLASSES)
    for index in range(len(dataset)):
        pred = cv2.imread(str(tmp_path / "preds" / f"{index}.png"), cv2.IMREAD_UNCHANGED)
        expected.update(pred, dataset.get_gt_seg_map(index))
        counted.update(pred, dataset.get_gt_seg_map(index))
    assert metrics["mIoU"] == pytest.approx(expected.summary()["mIoU"])
    assert metrics["mIoU"] != pytest.approx(counted.summary()["mIoU"])  # the ignored pixels matter here
