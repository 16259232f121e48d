"""Transforms: mmseg 0.x semantics and the invariants training relies on."""

import cv2
import numpy as np
import pytest

from jsegnext.config import ConfigError
from jsegnext.datasets import build_pipeline, reduce_zero_label
from jsegnext.datasets.transforms import (
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    Resize,
    rescale_size,
)

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


def results_of(img, label=None):
    r = dict(img=img, img_shape=img.shape, ori_shape=img.shape, seg_fields=[], filename='x.jpg')
    if label is not None:
        r['gt_semantic_seg'] = label
        r['seg_fields'].append('gt_semantic_seg')
    return r


def striped(h, w, classes=(0, 1, 2, 3, 255)):
    label = np.zeros((h, w), np.uint8)
    for k, c in enumerate(classes):
        label[:, k * w // len(classes) : (k + 1) * w // len(classes)] = c
    return label


def rng(seed=0):
    return np.random.default_rng(seed)


# ============================================================================ Resize
def test_rescale_size_matches_mmcv_rule():
    # fit (w, h) = (80, 60) into long 160 / short 40: factor min(160/80, 40/60)
    assert rescale_size(80, 60, (160, 40)) == (int(80 * 2 / 3 + 0.5), 40)
    assert rescale_size(2048, 1024, (2048, 512)) == (1024, 512)
    assert rescale_size(500, 375, (2048, 512)) == (683, 512)


def test_resize_ratio_range_keeps_aspect_and_fits_scale():
    img = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    label = striped(60, 80)
    t = Resize(img_scale=(160, 40), ratio_range=(0.5, 2.0))
    for seed in range(20):
        r = t(results_of(img.copy(), label.copy()), rng(seed))
        # the ratio is drawn first from the generator: reproduce it
        ratio = rng(seed).random() * 1.5 + 0.5
        scale = (int(160 * ratio), int(40 * ratio))
        assert r['scale'] == scale
        h, w = r['img'].shape[:2]
        assert (w, h) == rescale_size(80, 60, scale)
        assert max(h, w) <= max(scale) and min(h, w) <= min(scale)
        assert abs(w / h - 80 / 60) < 0.05
        assert r['gt_semantic_seg'].shape == (h, w)
        assert set(np.unique(r['gt_semantic_seg'])) <= set(np.unique(label))  # nearest: no new values


def test_resize_test_mode_size_divisor_and_keep_ratio_only():
    img = np.zeros((375, 500, 3), np.uint8)
    aligned = Resize(img_scale=(2048, 512), keep_ratio=True, size_divisor=32)(results_of(img), rng())
    assert aligned['img'].shape == (512, 704, 3)  # 683 -> 704 (next multiple of 32)
    plain = Resize(img_scale=(2048, 512), keep_ratio=True)(results_of(img), rng())
    assert plain['img'].shape == (512, 683, 3)
    city = Resize(img_scale=(2048, 1024), keep_ratio=True)(results_of(np.zeros((1024, 2048, 3), np.uint8)), rng())
    assert city['img'].shape == (1024, 2048, 3)
    fixed = Resize(img_scale=(64, 32), keep_ratio=False)(results_of(img), rng())
    assert fixed['img'].shape == (32, 64, 3)


def test_resize_labels_are_nearest_even_when_aligning():
    label = np.random.default_rng(1).choice(np.array([0, 5, 17, 255], np.uint8), (37, 51))
    r = Resize(img_scale=(97, 45), keep_ratio=True, size_divisor=32)(
        results_of(np.zeros((37, 51, 3), np.uint8), label), rng()
    )
    assert r['gt_semantic_seg'].shape == r['img'].shape[:2]
    assert set(np.unique(r['gt_semantic_seg'])) <= {0, 5, 17, 255}


# ============================================================================ RandomCrop
def test_random_crop_cat_max_ratio_rule():
    # class 1 everywhere except a band of class 2 on the right: most windows are >= 75 % class 1
    label = np.ones((64, 64), np.uint8)
    label[:, 52:] = 2
    img = np.zeros((64, 64, 3), np.uint8)
    t = RandomCrop(crop_size=(16, 16), cat_max_ratio=0.75)
    for seed in range(30):
        r = t(results_of(img.copy(), label.copy()), rng(seed))
        crop = r['gt_semantic_seg']
        assert crop.shape == (16, 16) and r['img'].shape == (16, 16, 3)
        counts = np.bincount(crop.ravel(), minlength=256)
        # accepted crops satisfy the rule unless all 10 retries failed (rare with this layout)
        ok = (counts > 0).sum() > 1 and counts.max() / counts.sum() < 0.75
        plain = RandomCrop(crop_size=(16, 16))(results_of(img.copy(), label.copy()), rng(seed))
        assert ok or not RandomCrop(crop_size=(16, 16), cat_max_ratio=0.75).accept(plain['gt_semantic_seg'])


def test_random_crop_ignore_index_not_counted_and_ten_tries():
    t = RandomCrop(crop_size=(8, 8), cat_max_ratio=0.75)
    half = np.full((8, 8), 255, np.uint8)
    half[:, :4] = 3
    assert not t.accept(half)  # one class only once 255 is left out
    mix = half.copy()
    mix[:, :2] = 4
    assert t.accept(mix)  # 50 % / 50 % of the labelled pixels
    # a label that can never pass: 1 check + 10 redraws, then the 11th window is used as it is
    calls = []

    class Counting(RandomCrop):
        def get_crop_bbox(self, img, g):
            calls.append(1)
            return super().get_crop_bbox(img, g)

    r = Counting(crop_size=(8, 8), cat_max_ratio=0.75)(
        results_of(np.zeros((32, 32, 3), np.uint8), np.ones((32, 32), np.uint8)), rng()
    )
    assert len(calls) == 11 and r['gt_semantic_seg'].shape == (8, 8)


def test_random_crop_smaller_image_keeps_whole_side():
    r = RandomCrop(crop_size=(32, 32))(results_of(np.zeros((20, 50, 3), np.uint8), np.zeros((20, 50), np.uint8)), rng())
    assert r['img'].shape == (20, 32, 3) and r['gt_semantic_seg'].shape == (20, 32)


# ============================================================================ RandomFlip / Pad / Normalize
def test_random_flip_moves_image_and_label_together():
    h, w = 6, 10
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = np.arange(w, dtype=np.uint8)[None, :]  # image encodes x
    label = np.tile(np.arange(w, dtype=np.uint8), (h, 1))  # label encodes x too
    flips = 0
    for seed in range(20):
        r = RandomFlip(prob=0.5)(results_of(img.copy(), label.copy()), rng(seed))
        assert np.array_equal(r['img'][:, :, 0], r['gt_semantic_seg'])
        if r['flip']:
            flips += 1
            assert r['gt_semantic_seg'][0, 0] == w - 1
    assert 3 < flips < 17
    assert not RandomFlip(prob=0.0)(results_of(img, label), rng())['flip']


def test_pad_values_image_zero_label_255():
    img = np.full((5, 7, 3), 9, np.float32)
    label = np.full((5, 7), 2, np.uint8)
    r = Pad(size=(8, 12), pad_val=0, seg_pad_val=255)(results_of(img, label), rng())
    assert r['img'].shape == (8, 12, 3) and r['gt_semantic_seg'].shape == (8, 12)
    assert (r['img'][5:] == 0).all() and (r['img'][:, 7:] == 0).all() and (r['img'][:5, :7] == 9).all()
    assert (r['gt_semantic_seg'][5:] == 255).all() and (r['gt_semantic_seg'][:, 7:] == 255).all()
    assert (r['gt_semantic_seg'][:5, :7] == 2).all()
    div = Pad(size_divisor=4)(results_of(img, label), rng())
    assert div['img'].shape == (8, 8, 3)


def test_normalize_to_rgb():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # BGR
    out = Normalize(**NORM)(results_of(img), rng())['img']
    expect = (np.array([30, 20, 10], np.float32) - np.array(NORM['mean'])) / np.array(NORM['std'])
    np.testing.assert_allclose(out[0, 0], expect, rtol=1e-6)
    assert out.dtype == np.float32
    keep = Normalize(mean=[0, 0, 0], std=[1, 1, 1], to_rgb=False)(results_of(img), rng())['img']
    np.testing.assert_array_equal(keep[0, 0], [10, 20, 30])


# ============================================================================ PhotoMetricDistortion
class Scripted:
    """A stand-in generator returning scripted values, to check the order of PhotoMetricDistortion's draws."""

    def __init__(self, integers, uniforms):
        self.ints, self.unis, self.log = list(integers), list(uniforms), []

    def integers(self, *args):
        self.log.append(('integers', args))
        return self.ints.pop(0)

    def uniform(self, lo, hi):
        self.log.append(('uniform', (lo, hi)))
        return self.unis.pop(0)


def test_photometric_distortion_order_and_ranges():
    img = np.full((4, 4, 3), 100, np.uint8)
    t = PhotoMetricDistortion()
    # brightness on (+20), mode 0 (contrast last), saturation off, hue off, contrast on (x2)
    g = Scripted([1, 0, 0, 0, 1], [20.0, 2.0])
    out = t(results_of(img.copy()), g)['img']
    assert (out == 240).all()
    assert g.log == [
        ('integers', (2,)),
        ('uniform', (-32, 32)),
        ('integers', (2,)),
        ('integers', (2,)),
        ('integers', (2,)),
        ('integers', (2,)),
        ('uniform', (0.5, 1.5)),
    ]
    # mode 1: contrast right after brightness, before saturation and hue: (150 + 20) x 2 -> clipped 255
    g = Scripted([1, 1, 1, 0, 0], [20.0, 2.0])
    out = t(results_of(np.full((4, 4, 3), 150, np.uint8)), g)['img']
    assert (out == 255).all()
    assert g.log == [
        ('integers', (2,)),
        ('uniform', (-32, 32)),
        ('integers', (2,)),
        ('integers', (2,)),
        ('uniform', (0.5, 1.5)),
        ('integers', (2,)),
        ('integers', (2,)),
    ]
    # hue: draws an integer shift in [-18, 18)
    g = Scripted([0, 0, 0, 1, 5, 0], [])
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 2] = 200  # red in BGR
    out = t(results_of(colour), g)['img']
    assert ('integers', (-18, 18)) in g.log and out.dtype == np.uint8 and not np.array_equal(out, colour)


def test_photometric_distortion_reproducible_and_uint8():
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    t = PhotoMetricDistortion()
    a = t(results_of(img.copy()), rng(5))['img']
    b = t(results_of(img.copy()), rng(5))['img']
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert any(not np.array_equal(a, t(results_of(img.copy()), rng(s))['img']) for s in range(6, 10))
    with pytest.raises(ConfigError, match="before Normalize"):
        t(results_of(img.astype(np.float32)), rng())


# ============================================================================ whole pipeline
def train_pipeline():
    return build_pipeline(
        [
            dict(type='Resize', img_scale=(128, 48), ratio_range=(0.5, 2.0)),
            dict(type='RandomCrop', crop_size=(32, 32), cat_max_ratio=0.75),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PhotoMetricDistortion'),
            dict(type='Normalize', **NORM),
            dict(type='Pad', size=(32, 32), pad_val=0, seg_pad_val=255),
        ]
    )


def test_pipeline_determinism_and_label_values():
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    label = striped(48, 64, (0, 1, 7, 9, 255))
    p = train_pipeline()
    outs = [p(results_of(img.copy(), label.copy()), rng(s)) for s in (3, 3, 4)]
    np.testing.assert_array_equal(outs[0]['img'], outs[1]['img'])
    np.testing.assert_array_equal(outs[0]['gt_semantic_seg'], outs[1]['gt_semantic_seg'])
    for s in range(12):
        r = p(results_of(img.copy(), label.copy()), rng(s))
        assert r['img'].shape == (32, 32, 3) and r['img'].dtype == np.float32
        assert set(np.unique(r['gt_semantic_seg'])) <= {0, 1, 7, 9, 255}


def test_reduce_zero_label_function():
    label = np.array([[0, 1, 2, 150, 255]], np.uint8)
    np.testing.assert_array_equal(reduce_zero_label(label), [[255, 0, 1, 149, 255]])


def test_build_pipeline_errors():
    with pytest.raises(ConfigError, match="unknown transform type 'Resise'.*Resize"):
        build_pipeline([dict(type='Resise', img_scale=(1, 1))])
    with pytest.raises(ConfigError, match="Resize.img_sclae"):
        build_pipeline([dict(type='Resize', img_sclae=(1, 1))])
    with pytest.raises(ConfigError, match="type"):
        build_pipeline([dict(img_scale=(1, 1))])
    with pytest.raises(ConfigError, match="ratio_range"):
        build_pipeline([dict(type='Resize', img_scale=(4, 4), ratio_range=(2.0, 0.5))])
    # mmseg formatting steps are accepted (the dataset formats itself)
    p = build_pipeline([dict(type='DefaultFormatBundle'), dict(type='Collect', keys=['img', 'gt_semantic_seg'])])
    assert len(p) == 2


def test_multiscaleflipaug_single_scale_form():
    p = build_pipeline(
        [
            dict(
                type='MultiScaleFlipAug',
                img_scale=(2048, 512),
                flip=False,
                transforms=[
                    dict(type='AlignResize', keep_ratio=True, size_divisor=32),
                    dict(type='RandomFlip'),
                    dict(type='Normalize', **NORM),
                    dict(type='ImageToTensor', keys=['img']),
                    dict(type='Collect', keys=['img']),
                ],
            )
        ]
    )
    out = p(results_of(np.zeros((375, 500, 3), np.uint8)), rng())
    assert out['img'].shape == (512, 704, 3)
    with pytest.raises(ConfigError, match="ms-flip"):
        build_pipeline([dict(type='MultiScaleFlipAug', img_scale=(2048, 512), flip=True, transforms=[])])


def test_resize_interpolation_is_bilinear_like_cv2():
    img = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    out = Resize(img_scale=(20, 20), keep_ratio=True)(results_of(img), rng())['img']
    np.testing.assert_array_equal(out, cv2.resize(img, (20, 20), interpolation=cv2.INTER_LINEAR))
