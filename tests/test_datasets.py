"""Datasets and loading on tiny generated data in the six prepared layouts (mmseg conventions)."""

import os
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from jsegnext.config import ConfigError
from jsegnext.datasets import DATASETS, DataError, DataWarning, build_dataloader, build_dataset, collate_batch
from jsegnext.datasets.classes import DATASET_INFO

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
H, W = 40, 56


def train_pipeline(reduce_zero_label, crop=(24, 24), img_scale=(112, 40)):
    return [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=reduce_zero_label),
        dict(type='Resize', img_scale=img_scale, ratio_range=(0.5, 2.0)),
        dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='Normalize', **NORM),
        dict(type='Pad', size=crop, pad_val=0, seg_pad_val=255),
    ]


def eval_pipeline_cfg():
    return [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', img_scale=(112, 40), keep_ratio=True, size_divisor=8),
        dict(type='Normalize', **NORM),
    ]


# ============================================================================ tiny data in real layouts
def make_label(rng, num_classes, h=H, w=W, zero_is_other=False):
    """Blocks of a few classes plus some 255 pixels."""
    label = np.full((h, w), 255, np.uint8)
    lo = 0
    hi = num_classes + 1 if zero_is_other else num_classes  # ADE/Context raw labels go up to num_classes
    values = rng.integers(lo, hi, 4)
    label[: h // 2, : w // 2] = values[0]
    label[: h // 2, w // 2 :] = values[1]
    label[h // 2 :, : w // 3] = values[2]
    label[h // 2 :, w // 3 : w - 4] = values[3]
    return label


def make_image(rng, h=H, w=W):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_jpg(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), img)


def write_png(path, array, palette=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = Image.fromarray(array)
    if palette is not None:
        im.putpalette(palette)  # L -> P: the pixel values become palette indices
    im.save(path)


def voc_palette_bytes():
    pal = []
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def make_layout(root, kind, n=4, split='train', seed=0):
    """Write a tiny dataset of ``kind`` under ``root``; returns the dataset config dict (train split).

    File names and folders follow mmsegmentation's prepared layouts (what the converters write).
    """
    rng = np.random.default_rng(seed)
    root = str(root)
    if kind == 'ade20k':
        sub = {'train': 'training', 'val': 'validation'}[split]
        for i in range(n):
            write_jpg(f"{root}/images/{sub}/ADE_{sub}_{i:08d}.jpg", make_image(rng))
            write_png(f"{root}/annotations/{sub}/ADE_{sub}_{i:08d}.png", make_label(rng, 150, zero_is_other=True))
        return dict(
            type='ADE20KDataset',
            data_root=root,
            img_dir=f'images/{sub}',
            ann_dir=f'annotations/{sub}',
            pipeline=train_pipeline(True),
        )
    if kind == 'cityscapes':
        for i in range(n):
            city = ('aachen', 'bremen')[i % 2]
            stem = f"{city}_{i:06d}_000019"
            write_png(f"{root}/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", make_image(rng))
            label = make_label(rng, 19)
            write_png(f"{root}/gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png", label)
            # other official files in the same folder must be ignored
            write_png(f"{root}/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png", label + 7)
            write_png(f"{root}/gtFine/{split}/{city}/{stem}_gtFine_color.png", make_image(rng))
        return dict(
            type='CityscapesDataset',
            data_root=root,
            img_dir=f'leftImg8bit/{split}',
            ann_dir=f'gtFine/{split}',
            pipeline=train_pipeline(False),
        )
    if kind == 'coco_stuff164k':
        sub = f"{split}2017"
        for i in range(n):
            write_jpg(f"{root}/images/{sub}/{i:012d}.jpg", make_image(rng))
            label = make_label(rng, 171)
            write_png(f"{root}/annotations/{sub}/{i:012d}_labelTrainIds.png", label)
            write_png(f"{root}/annotations/{sub}/{i:012d}.png", np.full_like(label, 181))  # raw map, ignored
        return dict(
            type='COCOStuffDataset',
            data_root=root,
            img_dir=f'images/{sub}',
            ann_dir=f'annotations/{sub}',
            pipeline=train_pipeline(False),
        )
    if kind == 'voc':
        names = [f"2007_{i:06d}" for i in range(n)]
        aug_names = [f"2008_{i:06d}" for i in range(n)]
        pal = voc_palette_bytes()
        for name in names:
            write_jpg(f"{root}/JPEGImages/{name}.jpg", make_image(rng))
            write_png(f"{root}/SegmentationClass/{name}.png", make_label(rng, 21), palette=pal)
        for name in aug_names:
            write_jpg(f"{root}/JPEGImages/{name}.jpg", make_image(rng))
            write_png(f"{root}/SegmentationClassAug/{name}.png", make_label(rng, 21))
        os.makedirs(f"{root}/ImageSets/Segmentation", exist_ok=True)
        with open(f"{root}/ImageSets/Segmentation/train.txt", "w") as f:
            f.write("\n".join(names[:-1]) + "\n")
        with open(f"{root}/ImageSets/Segmentation/val.txt", "w") as f:
            f.write(names[-1] + "\n")
        with open(f"{root}/ImageSets/Segmentation/aug.txt", "w") as f:
            f.write("\n".join(aug_names) + "\n")
        return dict(
            type='PascalVOCDataset',
            data_root=root,
            img_dir='JPEGImages',
            ann_dir=['SegmentationClass', 'SegmentationClassAug'],
            split=['ImageSets/Segmentation/train.txt', 'ImageSets/Segmentation/aug.txt'],
            pipeline=train_pipeline(False),
        )
    if kind == 'pascal_context59':
        names = [f"2008_{i:06d}" for i in range(n)]
        for name in names:
            write_jpg(f"{root}/JPEGImages/{name}.jpg", make_image(rng))
            write_png(f"{root}/SegmentationClassContext/{name}.png", make_label(rng, 59, zero_is_other=True))
        os.makedirs(f"{root}/ImageSets/SegmentationContext", exist_ok=True)
        with open(f"{root}/ImageSets/SegmentationContext/train.txt", "w") as f:
            f.write("\n".join(names[:-1]) + "\n")
        with open(f"{root}/ImageSets/SegmentationContext/val.txt", "w") as f:
            f.write(names[-1] + "\n")
        return dict(
            type='PascalContextDataset59',
            data_root=root,
            img_dir='JPEGImages',
            ann_dir='SegmentationClassContext',
            split='ImageSets/SegmentationContext/train.txt',
            pipeline=train_pipeline(True),
        )
    if kind == 'isaid':
        for i in range(n):
            stem = f"P{i:04d}_0_{H}_0_{W}"
            write_png(f"{root}/img_dir/{split}/{stem}.png", make_image(rng))
            write_png(f"{root}/ann_dir/{split}/{stem}_instance_color_RGB.png", make_label(rng, 16))
        return dict(
            type='iSAIDDataset',
            data_root=root,
            img_dir=f'img_dir/{split}',
            ann_dir=f'ann_dir/{split}',
            pipeline=train_pipeline(False),
        )
    raise ValueError(kind)


KINDS = {  # kind -> (expected images with n=4, classes)
    'ade20k': (4, 150),
    'cityscapes': (4, 19),
    'coco_stuff164k': (4, 171),
    'voc': (3 + 4, 21),
    'pascal_context59': (3, 59),
    'isaid': (4, 16),
}


# ============================================================================ layouts
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layout_counts_and_samples(tmp_path, kind):
    cfg = make_layout(tmp_path, kind)
    ds = build_dataset(cfg)
    count, num_classes = KINDS[kind]
    assert len(ds) == count
    assert len(ds.CLASSES) == len(ds.PALETTE) == num_classes
    info = DATASET_INFO[kind]
    assert tuple(ds.CLASSES) == tuple(info['classes'])
    sample = ds[0]
    assert sample['img'].dtype == np.float32 and sample['img'].shape == (3, 24, 24)
    assert sample['gt_semantic_seg'].dtype == np.uint8 and sample['gt_semantic_seg'].shape == (24, 24)
    values = set(np.unique(sample['gt_semantic_seg']).tolist())
    assert all(v < num_classes or v == 255 for v in values)
    for key in ('filename', 'ann_filename', 'ori_shape', 'img_shape', 'flip', 'scale_factor'):
        assert key in sample
    assert sample['ori_shape'] == (H, W, 3)
    assert os.path.isfile(sample['filename']) and os.path.isfile(sample['ann_filename'])
    # every label path pairs with its image by name
    for img, ann in zip(ds.img_files, ds.ann_files):
        assert os.path.isfile(img) and os.path.isfile(ann)


def test_cityscapes_pairs_by_city_and_name(tmp_path):
    ds = build_dataset(make_layout(tmp_path, 'cityscapes'))
    for info, img, ann in zip(ds.img_infos, ds.img_files, ds.ann_files):
        city = info['filename'].split(os.sep)[0]
        assert city in ('aachen', 'bremen')
        assert os.path.basename(img).replace('_leftImg8bit.png', '') == os.path.basename(ann).replace(
            '_gtFine_labelTrainIds.png', ''
        )
        assert ann.endswith(os.path.join(city, os.path.basename(ann)))


def test_voc_aug_split_lists_match_ann_dirs(tmp_path):
    cfg = make_layout(tmp_path, 'voc')
    ds = build_dataset(cfg)
    assert [os.path.basename(os.path.dirname(a)) for a in ds.ann_files] == ['SegmentationClass'] * 3 + [
        'SegmentationClassAug'
    ] * 4
    val = build_dataset(dict(cfg, ann_dir='SegmentationClass', split='ImageSets/Segmentation/val.txt'))
    assert len(val) == 1
    with pytest.raises(ConfigError, match="split"):
        build_dataset(dict(cfg, split=None))


def test_voc_palette_png_read_as_indices(tmp_path):
    cfg = make_layout(tmp_path, 'voc', n=2)
    ds = build_dataset(dict(cfg, ann_dir='SegmentationClass', split='ImageSets/Segmentation/train.txt'))
    raw = np.array(Image.open(ds.ann_files[0]))
    assert Image.open(ds.ann_files[0]).mode == 'P'
    assert np.array_equal(ds.get_gt_seg_map(0), raw)


def test_reduce_zero_label_mapping(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=1)
    ds = build_dataset(cfg)
    label = np.zeros((H, W), np.uint8)
    label[:, :10] = 1
    label[:, 10:20] = 150
    label[:, 20:30] = 255
    label[:, 30:40] = 7
    write_png(ds.ann_files[0], label)
    gt = ds.get_gt_seg_map(0)
    assert (gt[:, :10] == 0).all() and (gt[:, 10:20] == 149).all() and (gt[:, 20:30] == 255).all()
    assert (gt[:, 30:40] == 6).all() and (gt[:, 40:] == 255).all()  # 0 -> 255
    # the sample path (LoadAnnotations) gives the same mapping
    plain = build_dataset(dict(cfg, pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]))
    assert np.array_equal(plain[0]['gt_semantic_seg'], gt)
    # without reduce_zero_label (Cityscapes), values are kept
    city = build_dataset(make_layout(tmp_path / 'c', 'cityscapes', n=1))
    raw = np.array(Image.open(city.ann_files[0]))
    assert np.array_equal(city.get_gt_seg_map(0), raw)


def test_reduce_zero_label_conflict_is_a_config_error(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=1)
    with pytest.raises(ConfigError, match="reduce_zero_label"):
        build_dataset(dict(cfg, pipeline=train_pipeline(False)))


def test_custom_dataset(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):  # images and masks in one folder
        write_png(f"{tmp_path}/data/img{i}.png", make_image(rng))
        write_png(f"{tmp_path}/data/img{i}_mask.png", make_label(rng, 3))
    cfg = dict(
        type='CustomDataset',
        data_root=str(tmp_path),
        img_dir='data',
        ann_dir='data',
        img_suffix='.png',
        seg_map_suffix='_mask.png',
        classes=['bg', 'cat', 'dog'],
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')],
    )
    ds = build_dataset(cfg)
    assert len(ds) == 3 and ds.CLASSES == ('bg', 'cat', 'dog') and len(ds.PALETTE) == 3
    assert not ds.reduce_zero_label
    assert ds[1]['gt_semantic_seg'].shape == (H, W)
    with pytest.raises(ConfigError, match="classes"):
        build_dataset({k: v for k, v in cfg.items() if k != 'classes'})
    with open(tmp_path / 'list.txt', 'w') as f:
        f.write("img2\nimg0\n")
    assert [os.path.basename(p) for p in build_dataset(dict(cfg, split='list.txt')).img_files] == [
        'img2.png',
        'img0.png',
    ]


def test_build_dataset_errors(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=1)
    with pytest.raises(ConfigError, match="unknown dataset type 'ADE20kDataset'.*ADE20KDataset"):
        build_dataset(dict(cfg, type='ADE20kDataset'))
    with pytest.raises(ConfigError, match="ann_dri"):
        build_dataset(dict(cfg, ann_dri='x'))
    with pytest.raises(ConfigError, match="unknown transform type 'RandomCorp'.*RandomCrop"):
        build_dataset(dict(cfg, pipeline=[dict(type='RandomCorp', crop_size=(4, 4))]))
    assert build_dataset(cfg, test_mode=True).test_mode
    assert set(DATASETS) >= {
        'ADE20KDataset',
        'CityscapesDataset',
        'COCOStuffDataset',
        'PascalVOCDataset',
        'PascalContextDataset59',
        'iSAIDDataset',
        'CustomDataset',
    }


# ============================================================================ pairing errors at construction
def test_image_without_label_names_the_file(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=3)
    os.remove(f"{tmp_path}/annotations/training/ADE_training_00000001.png")
    with pytest.raises(DataError, match=r"ADE_training_00000001\.jpg.*ADE_training_00000001\.png"):
        build_dataset(cfg)


def test_label_without_image_names_the_file(tmp_path):
    cfg = make_layout(tmp_path, 'cityscapes', n=3)
    os.remove(f"{tmp_path}/leftImg8bit/train/bremen/bremen_000001_000019_leftImg8bit.png")
    with pytest.raises(DataError, match=r"bremen_000001_000019_gtFine_labelTrainIds\.png"):
        build_dataset(cfg)


def test_split_entry_without_files_names_the_file(tmp_path):
    cfg = make_layout(tmp_path, 'pascal_context59', n=3)
    with open(f"{tmp_path}/ImageSets/SegmentationContext/train.txt", "a") as f:
        f.write("2010_999999\n")
    with pytest.raises(DataError, match=r"JPEGImages/2010_999999\.jpg"):
        build_dataset(cfg)


def test_missing_folder_and_empty_folder(tmp_path):
    cfg = make_layout(tmp_path, 'isaid', n=1)
    with pytest.raises(DataError, match="img_dir/nope"):
        build_dataset(dict(cfg, img_dir='img_dir/nope'))
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(DataError, match="no images ending with '.png'"):
        build_dataset(dict(cfg, img_dir='empty', ann_dir=None))


# ============================================================================ bad samples
def _corrupt_jpeg(ds, index):
    with open(ds.img_files[index], 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 this is not a jpeg at all' * 3)
    return ds.img_files[index]


def _truncated_jpeg(ds, index):
    path = ds.img_files[index]
    img = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    data = cv2.imencode('.jpg', img)[1].tobytes()
    with open(path, 'wb') as f:
        f.write(data[: len(data) // 2])
    return path


def _missing_label(ds, index):
    os.remove(ds.ann_files[index])
    return ds.ann_files[index]


def _wrong_size_label(ds, index):
    write_png(ds.ann_files[index], np.zeros((H + 3, W), np.uint8))
    return ds.ann_files[index]


def _label_out_of_range(ds, index):
    label = np.full((H, W), 3, np.uint8)
    label[0, 0] = 200  # ADE raw 200 -> 199 after reduce: not a class
    write_png(ds.ann_files[index], label)
    return ds.ann_files[index]


def _rgb_label(ds, index):
    write_png(ds.ann_files[index], np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))
    return ds.ann_files[index]


BAD = {
    'corrupt_jpeg': _corrupt_jpeg,
    'truncated_jpeg': _truncated_jpeg,
    'missing_label': _missing_label,
    'wrong_size_label': _wrong_size_label,
    'label_out_of_range': _label_out_of_range,
    'rgb_label': _rgb_label,
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sample_names_the_file(tmp_path, case):
    ds = build_dataset(make_layout(tmp_path, 'ade20k', n=3))
    path = BAD[case](ds, 1)
    with pytest.raises(DataError) as info:
        ds[1]
    assert os.path.basename(path) in str(info.value)
    if case != 'corrupt_jpeg' and case != 'truncated_jpeg':
        with pytest.raises(DataError, match=os.path.basename(path)):
            ds.get_gt_seg_map(1)
    # through the loader, main process
    build_dataloader(ds, batch_size=3, num_workers=0)
    with pytest.raises(DataError, match=os.path.basename(path)):
        list(ds)


def test_bad_sample_in_worker_raises_in_main_process(tmp_path):
    ds = build_dataset(make_layout(tmp_path, 'ade20k', n=6))
    path = _label_out_of_range(ds, 4)
    build_dataloader(ds, batch_size=2, num_workers=2, shuffle=False)
    seen = []
    with pytest.raises(DataError, match=os.path.basename(path)):
        for batch in ds:
            seen.append(batch['filename'])
    assert len(seen) <= 2
    assert not hasattr(ds, 'workers')  # stopped


def test_skip_bad_samples_warns_and_substitutes(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=4)
    ds = build_dataset(cfg, skip_bad_samples=True)
    path = _corrupt_jpeg(ds, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        sample = ds[1]
    assert sample['filename'] == ds.img_files[2]  # the next good sample
    assert any(issubclass(w.category, DataWarning) and os.path.basename(path) in str(w.message) for w in caught)
    build_dataloader(ds, batch_size=2, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        batches = list(ds)
    assert sum(len(b['filename']) for b in batches) == 4


# ============================================================================ loader
def _collect(ds):
    return [(b['img'].numpy(), b['gt_semantic_seg'].numpy(), list(b['filename'])) for b in ds]


def test_loader_workers_0_and_2_give_the_same_batches(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=6)
    runs = []
    for workers in (0, 2):
        ds = build_dataset(cfg)
        build_dataloader(ds, batch_size=2, shuffle=True, num_workers=workers, drop_last=True, seed=7)
        runs.append(_collect(ds))
    assert len(runs[0]) == len(runs[1]) == 3
    for (img0, gt0, f0), (img1, gt1, f1) in zip(*runs):
        assert f0 == f1
        assert img0.shape == (2, 3, 24, 24) and img0.dtype == np.float32
        assert gt0.shape == (2, 24, 24) and gt0.dtype == np.uint8
        np.testing.assert_array_equal(img0, img1)
        np.testing.assert_array_equal(gt0, gt1)


def test_loader_seed_and_epoch(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=4)
    ds = build_dataset(cfg)
    build_dataloader(ds, batch_size=2, shuffle=True, seed=1)
    first = _collect(ds)
    assert ds.epoch == 1  # a complete pass moves to the next epoch
    second = _collect(ds)
    ds.set_epoch(0)
    again = _collect(ds)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[2] == b[2]
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, second))
    other = build_dataset(cfg)
    build_dataloader(other, batch_size=2, shuffle=True, seed=2)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, _collect(other)))


def test_test_mode_batches_keep_variable_sizes(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=2)
    ds = build_dataset(cfg, pipeline=eval_pipeline_cfg(), test_mode=True)
    # make the second image another size (and its label to match)
    rng = np.random.default_rng(3)
    write_jpg(ds.img_files[1], make_image(rng, 30, 70))
    write_png(ds.ann_files[1], np.zeros((30, 70), np.uint8))
    one = ds.prepare_test_sample(1)
    assert one['img'].shape[1] % 8 == 0 and one['img'].shape[2] % 8 == 0
    batch = collate_batch([ds[0], ds[1]])
    assert isinstance(batch['img'], list) and len(batch['img']) == 2
    build_dataloader(ds, batch_size=1)
    shapes = [tuple(b['img'].shape) for b in ds]
    assert shapes[0][0] == 1 and shapes[0] != shapes[1]
    # a training dataset refuses mixed sizes with a clear message
    train = build_dataset(cfg, pipeline=eval_pipeline_cfg())
    build_dataloader(train, batch_size=2)
    with pytest.raises(DataError, match="different sizes"):
        list(train)


def test_gt_seg_map_and_evaluator_interface(tmp_path):
    ds = build_dataset(make_layout(tmp_path, 'isaid', n=2), pipeline=eval_pipeline_cfg())
    gt = ds.get_gt_seg_map(0)
    assert gt.shape == (H, W) and gt.dtype == np.uint8
    assert ds.img_path(0) == ds.img_files[0]
    assert ds.pipeline_cfg[1]['type'] == 'Resize'
    assert ds.img_infos[0]['filename'].endswith('.png')
    sample = ds.prepare_test_sample(0, [dict(type='LoadImageFromFile'), dict(type='Normalize', **NORM)])
    assert sample['img'].shape == (3, H, W)


# ============================================================================ the shipped configs
CONFIG_KINDS = {
    'ade20k': 'ade20k',
    'cityscapes': 'cityscapes',
    'cocostuff': 'coco_stuff164k',
    'voc': 'voc',
    'context': 'pascal_context59',
    'isaid': 'isaid',
}


@pytest.mark.parametrize("name", sorted(CONFIG_KINDS))
def test_shipped_config_builds_on_its_layout(tmp_path, name):
    from jsegnext.config import Config

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', f'segnext_t_{name}.py')
    assert os.path.exists(path), f"shipped config {path} is missing"
    cfg = Config.fromfile(path)
    kind = CONFIG_KINDS[name]
    make_layout(tmp_path, kind, n=3, split='train')
    make_layout(tmp_path, kind, n=3, split='val')
    train = build_dataset(cfg.data.train, data_root=str(tmp_path))
    val = build_dataset(cfg.data.val, data_root=str(tmp_path), test_mode=True)
    assert len(train) >= 2 and len(val) >= 1
    assert len(train.CLASSES) == cfg.model.decode_head.num_classes
    crop = tuple(cfg.crop_size)
    sample = train[0]
    assert sample['img'].shape == (3,) + crop and sample['gt_semantic_seg'].shape == crop
    test = val.prepare_test_sample(0)
    assert test['img'].shape[0] == 3 and val.get_gt_seg_map(0).shape == (H, W)


def test_loader_restarts_cleanly_after_break(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=6)
    ds = build_dataset(cfg)
    build_dataloader(ds, batch_size=2, shuffle=True, num_workers=2, seed=3)
    for batch in ds:
        break
    assert not hasattr(ds, 'workers') and ds.epoch == 0
    after_break = _collect(ds)
    fresh = build_dataset(cfg)
    build_dataloader(fresh, batch_size=2, shuffle=True, num_workers=0, seed=3)
    for a, b in zip(after_break, _collect(fresh)):
        assert a[2] == b[2]
        np.testing.assert_array_equal(a[0], b[0])


def test_set_attrs_shuffle_is_seeded(tmp_path):
    cfg = make_layout(tmp_path, 'ade20k', n=8)
    orders = []
    for seed in (5, 5, 6):
        ds = build_dataset(cfg, seed=seed)
        ds.set_attrs(batch_size=4, shuffle=True)
        orders.append([f for b in ds for f in b['filename']])
    assert orders[0] == orders[1] != orders[2]
    assert sorted(orders[0]) == sorted(build_dataset(cfg).img_files) != orders[0]
    ds = build_dataset(cfg)
    ds.set_attrs(batch_size=4)
    assert [f for b in ds for f in b['filename']] == ds.img_files
