"""Dataset converters (tools/dataset_converters): tiny inputs in each official download
format -> the mmseg layout, label mapping, counts, resumability and error reporting."""

import ast
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONV_DIR = ROOT / "tools" / "dataset_converters"
CONVERTERS = ("cityscapes", "voc_aug", "pascal_context", "coco_stuff164k", "isaid")


def load(name):
    spec = importlib.util.spec_from_file_location(f"_jsegnext_converter_{name}", CONV_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # lets pool workers find the task functions
    spec.loader.exec_module(mod)
    return mod


def read(path):
    with Image.open(path) as im:
        return np.array(im)


def mtimes(paths):
    return {str(p): os.stat(p).st_mtime_ns for p in paths}


def corrupt(path):
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def save(arr, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)


# --------------------------------------------------------------------------------------
# general
# --------------------------------------------------------------------------------------
def test_converters_do_not_import_jittor():
    for name in CONVERTERS + ("_common",):
        tree = ast.parse((CONV_DIR / f"{name}.py").read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            assert not any(m.split(".")[0] in ("jittor", "jsegnext", "torch") for m in mods), (name, mods)


# --------------------------------------------------------------------------------------
# Cityscapes
# --------------------------------------------------------------------------------------
def _rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _cs_json(path, objects, w=8, h=6):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"imgWidth": w, "imgHeight": h, "objects": objects}))


def _cityscapes_tree(root):
    gt = root / "gtFine"
    train_json = gt / "train" / "aachen" / "aachen_000000_000019_gtFine_polygons.json"
    _cs_json(
        train_json,
        [
            {"label": "road", "polygon": _rect(0, 0, 7, 5)},
            {"label": "building", "polygon": _rect(0, 0, 7, 1)},
            {"label": "car", "polygon": _rect(0, 0, 7, 5), "deleted": 1},
            {"label": "cargroup", "polygon": _rect(1, 3, 3, 4)},
            {"label": "license plate", "polygon": _rect(2, 3, 2, 3)},
            {"label": "polegroup", "polygon": _rect(6, 2, 7, 5)},
            {"label": "rider", "polygon": _rect(6, 5, 7, 5)},
        ],
    )
    expected = np.full((6, 8), 255, np.uint8)
    expected[0:6, 0:8] = 0  # road
    expected[0:2, 0:8] = 2  # building over road
    expected[3:5, 1:4] = 13  # cargroup -> car; licence plate not drawn
    expected[2:6, 6:8] = 255  # polegroup is in the table (trainId 255)
    expected[5, 6:8] = 12  # rider, later over earlier
    _cs_json(
        gt / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_polygons.json",
        [{"label": "sky", "polygon": _rect(0, 0, 3, 2)}],
    )
    _cs_json(
        gt / "test" / "berlin" / "berlin_000000_000019_gtFine_polygons.json",
        [{"label": "ego vehicle", "polygon": _rect(0, 4, 7, 5)}],
    )
    (root / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    return train_json, expected


def test_cityscapes_rasterizer_and_layout(tmp_path, capsys):
    cs = load("cityscapes")
    assert cs.CLASSES[0] == "road" and cs.CLASSES[-1] == "bicycle"
    root = tmp_path / "cityscapes"
    train_json, expected = _cityscapes_tree(root)
    np.testing.assert_array_equal(cs.rasterize(json.loads(train_json.read_text())), expected)

    assert cs.main([str(root), "--nproc", "1", "--backend", "builtin"]) == 0
    out = root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png"
    lab = read(out)
    assert lab.dtype == np.uint8 and lab.ndim == 2
    np.testing.assert_array_equal(lab, expected)
    val = read(root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png")
    assert (val[:3, :4] == 10).all() and (val[3:] == 255).all()
    assert (root / "train.txt").read_text() == "aachen/aachen_000000_000019\n"
    assert (root / "val.txt").read_text() == "frankfurt/frankfurt_000000_000294\n"
    assert (root / "test.txt").read_text() == "berlin/berlin_000000_000019\n"
    text = capsys.readouterr().out
    assert "2975" in text and "differs from the official count" in text

    # resumable: untouched outputs are skipped, a corrupt one is redone
    outs = sorted(root.glob("gtFine/*/*/*_labelTrainIds.png"))
    before = mtimes(outs)
    corrupt(outs[1])
    assert cs.main([str(root), "--nproc", "1"]) == 0
    after = mtimes(outs)
    assert [before[str(p)] == after[str(p)] for p in outs] == [True, False, True]
    assert read(outs[1]).ndim == 2

    # a different output root: labels there, split lists there, images linked
    out_root = tmp_path / "out"
    assert cs.main([str(root), "-o", str(out_root), "--nproc", "1"]) == 0
    np.testing.assert_array_equal(
        read(out_root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"), expected
    )
    assert (out_root / "train.txt").exists() and (out_root / "leftImg8bit").is_symlink()


def test_cityscapes_bad_inputs_are_named(tmp_path, capsys):
    cs = load("cityscapes")
    root = tmp_path / "cityscapes"
    _cityscapes_tree(root)
    broken = root / "gtFine/train/aachen/aachen_000001_000019_gtFine_polygons.json"
    broken.write_text('{"imgWidth": 8, "imgHeight"')
    unknown = root / "gtFine/train/aachen/aachen_000002_000019_gtFine_polygons.json"
    _cs_json(unknown, [{"label": "unicorn", "polygon": _rect(0, 0, 1, 1)}])
    assert cs.main([str(root), "--nproc", "2"]) == 1
    text = capsys.readouterr().out
    assert str(broken) in text and str(unknown) in text and "unicorn" in text
    assert "2 input file(s) could not be converted" in text
    # the good files were still converted
    assert (root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png").exists()


def test_cityscapes_builtin_matches_cityscapesscripts(tmp_path):
    """Pixel parity of the built-in rasteriser with the official package (optional extra)."""
    pytest.importorskip("cityscapesscripts.preparation.json2labelImg")
    from cityscapesscripts.helpers.labels import labels
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    cs = load("cityscapes")
    assert {(l.name, l.id, l.trainId) for l in labels} == set(cs.LABELS)
    rng = np.random.default_rng(1)
    names = [n for n, _, _ in cs.LABELS] + ["cargroup", "persongroup", "bicyclegroup"]
    for t in range(10):
        objs = [
            {
                "label": str(rng.choice(names)),
                "deleted": int(rng.random() < 0.1),
                "polygon": rng.integers(-5, 105, (rng.integers(3, 20), 2)).tolist(),
            }
            for _ in range(rng.integers(1, 15))
        ]
        ann = {"imgWidth": 100, "imgHeight": 70, "objects": objs}
        (tmp_path / f"{t}.json").write_text(json.dumps(ann))
        json2labelImg(str(tmp_path / f"{t}.json"), str(tmp_path / f"{t}.png"), "trainIds")
        np.testing.assert_array_equal(cs.rasterize(ann), read(tmp_path / f"{t}.png"))


# --------------------------------------------------------------------------------------
# Pascal VOC + SBD
# --------------------------------------------------------------------------------------
def _palette_png(idx, path, voc):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.frombytes("P", (idx.shape[1], idx.shape[0]), np.ascontiguousarray(idx, np.uint8).tobytes())
    im.putpalette(voc.voc_palette().ravel().tolist())
    im.save(path)


def _sbd_mat(seg, path):
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(
        str(path),
        {
            "GTcls": {
                "Segmentation": np.asarray(seg, np.uint8),
                "CategoriesPresent": np.unique(seg[seg > 0]).astype(np.uint8),
            }
        },
    )


def _voc_tree(tmp_path, voc):
    rng = np.random.default_rng(0)
    devkit, aug = tmp_path / "VOCdevkit", tmp_path / "benchmark_RELEASE"
    v = devkit / "VOC2012"
    sets = v / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000001\n2007_000002\n")
    (sets / "val.txt").write_text("2007_000003\n")
    labels = {}
    for n in ("2007_000001", "2007_000002", "2007_000003"):
        lab = rng.integers(0, 21, (5, 7)).astype(np.uint8)
        lab[0] = 255  # object boundary
        labels[n] = lab
        if n == "2007_000002":  # a VOC label re-saved as RGB colours: mapped back via the palette
            save(voc.voc_palette()[lab], v / "SegmentationClass" / f"{n}.png")
        else:
            _palette_png(lab, v / "SegmentationClass" / f"{n}.png", voc)
    ds = aug / "dataset"
    for n in ("2007_000001", "2007_000003", "2008_000010", "2008_000011"):
        seg = rng.integers(0, 21, (5, 7)).astype(np.uint8)
        if n.startswith("2008"):
            labels[n] = seg
        _sbd_mat(seg, ds / "cls" / f"{n}.mat")
    (ds / "train.txt").write_text("2007_000001\n2008_000010\n")
    (ds / "val.txt").write_text("2007_000003\n2008_000011\n")
    return devkit, aug, labels


def test_voc_aug(tmp_path, capsys):
    voc = load("voc_aug")
    pal = voc.voc_palette()
    assert tuple(pal[1]) == (128, 0, 0) and tuple(pal[15]) == (192, 128, 128)
    assert tuple(pal[255]) == (224, 224, 192)
    devkit, aug, labels = _voc_tree(tmp_path, voc)
    assert voc.main([str(devkit), str(aug), "--nproc", "2"]) == 0
    v = devkit / "VOC2012"
    out = v / "SegmentationClassAug"
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(labels)
    for n, lab in labels.items():  # VOC's own annotation wins over SBD's for 2007_000001/3
        im = Image.open(out / f"{n}.png")
        assert im.mode == "L" and im.getpalette() is None
        np.testing.assert_array_equal(np.array(im), lab)
    sets = v / "ImageSets" / "Segmentation"
    assert (sets / "aug.txt").read_text().split() == ["2008_000010", "2008_000011"]
    assert (sets / "trainaug.txt").read_text().split() == ["2007_000001", "2007_000002", "2008_000010", "2008_000011"]
    text = capsys.readouterr().out
    assert "10582" in text and "9118" in text

    outs = sorted(out.glob("*.png"))
    before = mtimes(outs)
    corrupt(outs[-1])
    assert voc.main([str(devkit), str(aug), "--nproc", "1"]) == 0
    after = mtimes(outs)
    assert [before[str(p)] == after[str(p)] for p in outs] == [True] * (len(outs) - 1) + [False]
    np.testing.assert_array_equal(read(outs[-1]), labels[outs[-1].stem])

    # separate output root: lists copied, images linked
    o = tmp_path / "out"
    assert voc.main([str(devkit), str(aug), "-o", str(o), "--nproc", "1"]) == 0
    assert (o / "VOC2012/ImageSets/Segmentation/train.txt").exists()
    assert (o / "VOC2012/SegmentationClassAug/2008_000010.png").exists()
    assert (o / "VOC2012/SegmentationClass").is_symlink()


def test_voc_aug_bad_mat_is_named(tmp_path, capsys):
    voc = load("voc_aug")
    devkit, aug, _ = _voc_tree(tmp_path, voc)
    bad = aug / "dataset" / "cls" / "2008_000012.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    nostruct = aug / "dataset" / "cls" / "2008_000013.mat"
    from scipy.io import savemat

    savemat(str(nostruct), {"x": np.zeros((2, 2))})
    assert voc.main([str(devkit), str(aug), "--nproc", "1"]) == 1
    text = capsys.readouterr().out
    assert str(bad) in text and str(nostruct) in text and "GTcls" in text
    assert (devkit / "VOC2012/SegmentationClassAug/2008_000010.png").exists()


# --------------------------------------------------------------------------------------
# Pascal Context
# --------------------------------------------------------------------------------------
def test_coco_rle_codec():
    pc = load("pascal_context")
    # hand-worked vectors of COCO's compressed RLE
    assert pc.counts_to_rle_string([3, 2, 5]) == "325"
    assert pc.counts_to_rle_string([100]) == "T3"  # 100 = 4 + 3 * 32: two 5-bit groups
    assert pc.counts_to_rle_string([5, 100, 7, 90]) == "5T37F"  # 90 stored as 90 - 100 = -10
    assert pc.rle_string_to_counts("5T37F").tolist() == [5, 100, 7, 90]
    assert pc.rle_string_to_counts(b"T3").tolist() == [100]
    # column-major runs: a 2x3 mask with only (row 0, col 1) set is runs [2, 1, 3]
    m = np.zeros((2, 3), np.uint8)
    m[0, 1] = 1
    np.testing.assert_array_equal(pc.rle_decode({"size": [2, 3], "counts": "213"}), m)
    np.testing.assert_array_equal(pc.rle_decode({"size": [2, 3], "counts": [2, 1, 3]}), m)
    assert pc.rle_encode(m) == {"size": [2, 3], "counts": "213"}
    rng = np.random.default_rng(0)
    for h, w, p in [(1, 1, 0.5), (7, 5, 0.3), (40, 61, 0.02), (64, 64, 0.97), (300, 200, 0.5)]:
        mask = (rng.random((h, w)) < p).astype(np.uint8)
        if h == 300:  # long runs need multi-group numbers and large negative deltas
            mask[:] = 0
            mask[:, 50:120] = 1
        np.testing.assert_array_equal(pc.rle_decode(pc.rle_encode(mask)), mask)
    with pytest.raises(ValueError):
        pc.rle_decode({"size": [2, 3], "counts": "21"})  # covers 3 of 6 pixels


def _context_tree(tmp_path, pc):
    devkit = tmp_path / "VOCdevkit"
    jpeg = devkit / "VOC2010" / "JPEGImages"
    jpeg.mkdir(parents=True)
    for n in ("2008_000001", "2008_000002", "2008_000003"):
        (jpeg / f"{n}.jpg").write_bytes(b"")
    h, w = 5, 4
    a = np.zeros((h, w), np.uint8)
    a[0:3, :] = 1
    b = np.zeros((h, w), np.uint8)
    b[2:5, 1:3] = 1
    c = np.zeros((h, w), np.uint8)
    c[4, 3] = 1
    d = np.zeros((h, w), np.uint8)
    d[0, 0] = 1
    annos = [
        {"id": 1, "image_id": 2008000001, "category_id": 2, "segmentation": pc.rle_encode(a)},  # aeroplane
        {"id": 2, "image_id": 2008000002, "category_id": 360, "segmentation": pc.rle_encode(np.ones((3, 3), np.uint8))},
        {"id": 3, "image_id": 2008000001, "category_id": 458, "segmentation": pc.rle_encode(b)},  # wood, over a
        {"id": 4, "image_id": 2008000001, "category_id": 1, "segmentation": pc.rle_encode(c)},  # accordion: not in 59
        {
            "id": 5,
            "image_id": 2008000001,
            "category_id": 115,  # door, uncompressed RLE
            "segmentation": {"size": [h, w], "counts": [0, 1, h * w - 1]},
        },
        {"id": 6, "image_id": 2008000009, "category_id": 2, "segmentation": pc.rle_encode(d)},
    ]
    expected = np.zeros((h, w), np.uint8)
    expected[a == 1] = 1  # aeroplane -> 1
    expected[b == 1] = 59  # wood -> 59
    expected[c == 1] = 0  # outside the 60 -> background
    expected[0, 0] = 24  # door -> 24 (alphabetical position)
    data = {
        "info": {},
        "categories": [],
        "parts": [],
        "annos_occlusion": [],
        "images": [
            {"image_id": 2008000001, "file_name": "2008_000001.jpg", "height": h, "width": w, "phase": "train"},
            {"image_id": 2008000002, "file_name": "2008_000002.jpg", "height": 3, "width": 3, "phase": "val"},
            {"image_id": 2008000003, "file_name": "2008_000003.jpg", "height": 2, "width": 2, "phase": "train"},
            {"image_id": 2008000009, "file_name": "2008_000009.jpg", "height": h, "width": w, "phase": "test"},
        ],
        "annos_segmentation": annos,
    }
    js = devkit / "VOC2010" / "trainval_merged.json"
    js.write_text(json.dumps(data))
    return devkit, js, expected, data


def test_pascal_context(tmp_path, capsys):
    pc = load("pascal_context")
    assert pc.CLASSES[pc.CONTEXT59_RAW_IDS.tolist().index(2)] == "aeroplane"
    assert pc.CLASSES[pc.CONTEXT59_RAW_IDS.tolist().index(458)] == "wood"
    assert pc.CLASSES[pc.CONTEXT59_RAW_IDS.tolist().index(115)] == "door" == pc.CLASSES[24]
    devkit, js, expected, _ = _context_tree(tmp_path, pc)
    assert pc.main([str(devkit), str(js), "--nproc", "2"]) == 0
    v = devkit / "VOC2010"
    out = v / "SegmentationClassContext"
    assert sorted(p.name for p in out.glob("*.png")) == ["2008_000001.png", "2008_000002.png", "2008_000003.png"]
    np.testing.assert_array_equal(read(out / "2008_000001.png"), expected)
    assert (read(out / "2008_000002.png") == 47).all()  # sky (raw 360) -> 47
    np.testing.assert_array_equal(read(out / "2008_000003.png"), np.zeros((2, 2), np.uint8))
    sets = v / "ImageSets" / "SegmentationContext"
    assert (sets / "train.txt").read_text() == "2008_000001\n2008_000003\n"
    assert (sets / "val.txt").read_text() == "2008_000002\n"
    text = capsys.readouterr().out
    assert "4998" in text and "5105" in text
    assert "1 pixels in 1 images had a category outside the 59 classes" in text

    outs = sorted(out.glob("*.png"))
    before = mtimes(outs)
    corrupt(outs[0])
    assert pc.main([str(devkit), str(js), "--nproc", "1"]) == 0
    after = mtimes(outs)
    assert [before[str(p)] == after[str(p)] for p in outs] == [False, True, True]
    np.testing.assert_array_equal(read(outs[0]), expected)


def test_pascal_context_bad_annotation_is_named(tmp_path, capsys):
    pc = load("pascal_context")
    devkit, js, _, data = _context_tree(tmp_path, pc)
    data["annos_segmentation"].append(
        {"id": 7, "image_id": 2008000003, "category_id": 2, "segmentation": {"size": [2, 2], "counts": "3"}}
    )
    js.write_text(json.dumps(data))
    assert pc.main([str(devkit), str(js), "--nproc", "1"]) == 1
    text = capsys.readouterr().out
    assert "trainval_merged.json[2008_000003.jpg]" in text and "RLE" in text
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(SystemExit) as e:
        pc.main([str(devkit), str(broken)])
    assert e.value.code == 1 and str(broken) in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# COCO-Stuff 164k
# --------------------------------------------------------------------------------------
def test_coco_stuff164k(tmp_path, capsys):
    cs = load("coco_stuff164k")
    root = tmp_path / "coco_stuff164k"
    raw = np.array([list(range(182)) + [255]], np.uint8)
    save(raw, root / "annotations/train2017/000000000009.png")
    save(np.full((3, 4), 91, np.uint8), root / "annotations/val2017/000000000139.png")
    (root / "images" / "train2017").mkdir(parents=True)
    assert cs.main([str(root), "--nproc", "1"]) == 0
    out = read(root / "annotations/train2017/000000000009_labelTrainIds.png")[0]
    unused = [11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90]
    used = [i for i in range(182) if i not in unused]
    np.testing.assert_array_equal(out[used], np.arange(171))
    assert (out[unused] == 255).all() and out[182] == 255
    assert out[0] == 0 and out[12] == 11 and out[91] == 80 and out[181] == 170
    assert (read(root / "annotations/val2017/000000000139_labelTrainIds.png") == 80).all()
    text = capsys.readouterr().out
    assert "118287" in text and "11 pixels in 1 maps had a value outside" in text

    # in-place re-run: the *_labelTrainIds.png outputs are not taken as inputs, nothing redone
    outs = sorted(root.glob("annotations/*/*_labelTrainIds.png"))
    before = mtimes(outs)
    corrupt(outs[1])
    assert cs.main([str(root), "--nproc", "1"]) == 0
    assert sorted(root.glob("annotations/*/*_labelTrainIds.png")) == outs
    after = mtimes(outs)
    assert [before[str(p)] == after[str(p)] for p in outs] == [True, False]

    bad = root / "annotations/val2017/000000000285.png"
    bad.write_bytes(b"not a png")
    rgb = root / "annotations/val2017/000000000632.png"
    save(np.zeros((2, 2, 3)), rgb)
    assert cs.main([str(root), "--nproc", "1"]) == 1
    text = capsys.readouterr().out
    assert str(bad) in text and str(rgb) in text and "mode RGB" in text


def test_coco_stuff164k_command_line(tmp_path):
    """The script as users run it: its own process, with a process pool."""
    root = tmp_path / "coco"
    for i in range(3):
        save(np.full((2, 2), i, np.uint8), root / f"annotations/train2017/00000000000{i}.png")
    (root / "images").mkdir()
    res = subprocess.run(
        [sys.executable, str(CONV_DIR / "coco_stuff164k.py"), str(root), "-o", str(tmp_path / "out"), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "train2017 -> labelTrainIds: 3 written, 0 skipped" in res.stdout
    assert read(tmp_path / "out/annotations/train2017/000000000002_labelTrainIds.png").max() == 2
    assert (tmp_path / "out/images").is_symlink()


# --------------------------------------------------------------------------------------
# iSAID
# --------------------------------------------------------------------------------------
def _mmseg_windows(h, w, patch, overlap):
    """mmseg's slide loop (reference for the window positions): pad only dimensions
    smaller than the patch, start every patch - overlap, shift the last one back."""
    h, w = max(h, patch), max(w, patch)
    out = set()
    for x in range(0, w, patch - overlap):
        for y in range(0, h, patch - overlap):
            xs = x if x + patch <= w else w - patch
            ys = y if y + patch <= h else h - patch
            out.add((ys, xs))
    return out


def test_isaid_windows_match_mmseg():
    isaid = load("isaid")
    for h, w in [
        (896, 896),
        (500, 700),
        (896, 1000),
        (1000, 2000),
        (4000, 1024),
        (5502, 6573),
        (1408, 1409),
        (895, 4000),
    ]:
        wins = isaid.windows(h, w, 896, 384)
        assert set(wins) == _mmseg_windows(h, w, 896, 384) and len(wins) == len(set(wins))
        for y, x in wins:
            assert 0 <= y <= max(h, 896) - 896 and 0 <= x <= max(w, 896) - 896
    assert isaid.patch_names("P0001", 512, 0, 896) == (
        "P0001_512_1408_0_896.png",
        "P0001_512_1408_0_896_instance_color_RGB.png",
    )


def _isaid_tree(tmp_path, isaid, rng):
    root = tmp_path / "iSAID"
    pal = isaid.PALETTE.astype(np.uint8)
    specs = {"train": {"P0001": (13, 20), "P0002": (5, 6)}, "val": {"P0003": (4, 8)}}
    truth = {}
    for split, imgs in specs.items():
        for stem, (h, w) in imgs.items():
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            ids = rng.integers(0, 16, (h, w)).astype(np.uint8)
            mask = pal[ids]
            mask[0, 0] = (1, 2, 3)  # a colour outside the table
            ids[0, 0] = 255
            truth[stem] = (img, ids)
            if split == "train":  # zipped, as downloaded
                with (
                    zipfile.ZipFile(root / "train/images/part1.zip", "a") as z1,
                    zipfile.ZipFile(root / "train/Semantic_masks/images.zip", "a") as z2,
                ):
                    z1.writestr(f"images/{stem}.png", _png_bytes(img))
                    z2.writestr(f"images/{stem}_instance_color_RGB.png", _png_bytes(mask))
                    z2.writestr(f"images/{stem}_instance_id_RGB.png", _png_bytes(mask[..., ::-1]))
            else:  # unzipped
                save(img, root / split / "images" / f"{stem}.png")
                save(mask, root / split / "Semantic_masks" / "images" / f"{stem}_instance_color_RGB.png")
    save(rng.integers(0, 256, (3, 3, 3)), root / "test/images/P0009.png")
    return root, truth


def _png_bytes(arr):
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def isaid_root(tmp_path):
    isaid = load("isaid")
    for d in ("train/images", "train/Semantic_masks"):
        (tmp_path / "iSAID" / d).mkdir(parents=True)
    return (isaid,) + _isaid_tree(tmp_path, isaid, np.random.default_rng(0))


def test_isaid(isaid_root, tmp_path, capsys):
    isaid, root, truth = isaid_root
    out = tmp_path / "out"
    P, OV = 8, 3
    assert isaid.main([str(root), "-o", str(out), "--patch-size", str(P), "--overlap", str(OV), "--nproc", "2"]) == 0
    n_expected = {"train": 0, "val": 0}
    for stem, (img, ids) in truth.items():
        split = "val" if stem == "P0003" else "train"
        h, w = ids.shape
        img_p = np.pad(img, ((0, max(h, P) - h), (0, max(w, P) - w), (0, 0)))
        ids_p = np.pad(ids, ((0, max(h, P) - h), (0, max(w, P) - w)), constant_values=255)
        wins = isaid.windows(h, w, P, OV)
        n_expected[split] += len(wins)
        for y, x in wins:
            ni, na = isaid.patch_names(stem, y, x, P)
            np.testing.assert_array_equal(read(out / "img_dir" / split / ni), img_p[y : y + P, x : x + P])
            lab = read(out / "ann_dir" / split / na)
            assert lab.shape == (P, P) and lab.dtype == np.uint8
            np.testing.assert_array_equal(lab, ids_p[y : y + P, x : x + P])
    assert len(isaid.windows(13, 20, P, OV)) == 8  # x 0,5,10,12 (last one shifted) x y 0,5
    for split in ("train", "val"):
        assert len(list((out / "img_dir" / split).glob("*.png"))) == n_expected[split]
        assert len(list((out / "ann_dir" / split).glob("*_instance_color_RGB.png"))) == n_expected[split]
    assert (out / "img_dir/test/P0009.png").exists()
    text = capsys.readouterr().out
    assert "1411" in text and "had a colour outside the 16-class table" in text

    outs = sorted((out / "ann_dir" / "train").glob("*.png"))
    before = mtimes(outs)
    corrupt(outs[2])
    assert isaid.main([str(root), "-o", str(out), "--patch-size", str(P), "--overlap", str(OV), "--nproc", "1"]) == 0
    after = mtimes(outs)
    assert [before[str(p)] == after[str(p)] for p in outs] == [i != 2 for i in range(len(outs))]
    assert read(outs[2]).shape == (P, P)


def test_isaid_bad_mask_is_named(isaid_root, tmp_path, capsys):
    isaid, root, _ = isaid_root
    bad = root / "val/Semantic_masks/images/P0003_instance_color_RGB.png"
    bad.write_bytes(b"\x89PNG garbage")
    save(np.zeros((4, 4, 3)), root / "val/images/P0004.png")  # no mask: skipped with a warning
    assert (
        isaid.main(
            [str(root), "-o", str(tmp_path / "o"), "--patch-size", "8", "--overlap", "3", "--nproc", "1", "--skip-test"]
        )
        == 1
    )
    text = capsys.readouterr().out
    assert str(bad) in text and "1 images without a semantic mask" in text
    assert not (tmp_path / "o/img_dir/test").exists()


def test_isaid_converter_colours_are_the_datasets():
    """The converter runs without jsegnext (no Jittor), so it keeps its own copy of iSAID's classes
    and colours; they must be the dataset's, in the same order (class id = index)."""
    from jsegnext.datasets.classes import ISAID_CLASSES, ISAID_PALETTE

    isaid = load("isaid")
    assert tuple(isaid.CLASSES) == ISAID_CLASSES
    assert [tuple(c) for c in isaid.PALETTE.tolist()] == [tuple(c) for c in ISAID_PALETTE]
