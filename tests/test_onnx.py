"""ONNX export (jsegnext.deploy, tools/export_onnx.py) and the onnxruntime backend of the tools.

Parity is measured as in the fixture README: the largest |onnxruntime − jsegnext| relative to the
largest |jsegnext| logit, with the same NMF bases on both sides; float32 rounding alone gives
~1e-6 here, the acceptance bound is 1e-4.
"""

import json
import sys

import numpy as np
import pytest
from conftest import FIXTURES, ROOT, rel_err, tiny_model_cfg

onnx = pytest.importorskip("onnx", reason='onnx is not installed (pip install -e ".[deploy]")')
pytest.importorskip("onnxruntime", reason='onnxruntime is not installed (pip install -e ".[deploy]")')

import export_onnx as export_tool  # noqa: E402
import infer as infer_tool  # noqa: E402
import test as test_tool  # noqa: E402

from jsegnext.deploy import ExportError, OnnxModelError, OnnxSegmentor, export_onnx, init_onnx_model  # noqa: E402
from jsegnext.engine.checkpoint import save_checkpoint  # noqa: E402
from jsegnext.engine.evaluation import predict_probs  # noqa: E402
from jsegnext.models import build_segmentor  # noqa: E402
from jsegnext.runtime import jt  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from check_onnx import sensitive_weights_, variant_cfg  # noqa: E402

TOLERANCE = 1e-4
DEMO = str(ROOT / "configs" / "segnext_t_demo.py")
STANDARD_OPS = {
    "Conv",
    "Mul",
    "Add",
    "Sub",
    "Div",
    "Sqrt",
    "Erf",
    "Relu",
    "MatMul",
    "Transpose",
    "Reshape",
    "Concat",
    "Resize",
    "Softmax",
    "ReduceMean",
    "Shape",
    "Slice",
}


def tiny_model(seed=0, strip_conv="auto", **cfg_updates):
    cfg = tiny_model_cfg(num_classes=5, strip_conv=strip_conv)
    cfg["decode_head"]["ham_kwargs"]["seed"] = seed
    cfg.update(cfg_updates)
    jt.set_global_seed(seed or 0)  # the conv weights (Jittor's initialisation) too
    model = sensitive_weights_(build_segmentor(cfg))
    model.eval()
    return model


def jsegnext_logits(model, image):
    with jt.no_grad():
        return model.encode_decode(jt.array(image)).numpy()


def onnx_logits(path, image):
    return OnnxSegmentor(path).encode_decode(image).numpy()


def assert_parity(got, expected, what=""):
    err = rel_err(got, expected)
    assert err < TOLERANCE, f"{what} onnxruntime vs jsegnext: {err:.2e} of the largest logit"


def randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- the graph
def test_tiny_fixture_checks_and_matches_jsegnext(tmp_path, capsys):
    """The reference tiny SegNeXt (a .pth of mmseg weights) through tools/export_onnx.py --dynamic; batch 2."""
    path = next(
        (p for p in (ROOT / "tests" / "fixtures" / "segnext_tiny.pth", FIXTURES / "segnext_tiny.pth") if p.exists()),
        None,
    )
    if path is None:
        pytest.skip("tiny fixture segnext_tiny.pth is in neither tests/fixtures nor JSEGNEXT_FIXTURES")
    from jsegnext.apis import init_model

    options = {
        "model.backbone.embed_dims": [8, 16, 32, 64],
        "model.backbone.depths": [1, 1, 2, 1],
        "model.backbone.mlp_ratios": [8, 8, 4, 4],
        "model.decode_head.in_channels": [16, 32, 64],
        "model.decode_head.channels": 32,
        "model.decode_head.ham_channels": 32,
        "model.decode_head.num_classes": 7,
        "model.decode_head.ham_kwargs.MD_R": 8,
    }
    options = [f"{k}={v!r}" for k, v in options.items()]  # the demo config's seed: 0
    out = tmp_path / "tiny.onnx"
    assert (
        export_tool.main([DEMO, str(path), str(out), "--dynamic", "--shape", "96", "136", "--cfg-options", *options])
        == 0
    )
    assert "onnxruntime vs jsegnext at 96x136" in capsys.readouterr().out
    onnx.checker.check_model(str(out))
    image = np.load(path.parent / "segnext_tiny_input.npy")  # (2, 3, 96, 136)
    expected = jsegnext_logits(init_model(DEMO, path, options=options), image)
    assert_parity(onnx_logits(out, image), expected)


@pytest.fixture(scope="module", params=["t", "s", "b", "l"])
def variant_export(request, tmp_path_factory):
    """SegNeXt-T/S/B/L with random (sensitive) weights and a 150-class head, exported once with --dynamic."""
    jt.set_global_seed(1)
    model = sensitive_weights_(build_segmentor(variant_cfg(request.param)), seed=1)
    model.eval()
    path = tmp_path_factory.mktemp("onnx") / f"segnext_{request.param}.onnx"
    export_onnx(model, path, dynamic=True)
    yield model, path
    path.unlink()  # SegNeXt-L's file is 196 MB


@pytest.mark.timeout(900)
def test_variants_match_jsegnext_at_512_and_an_odd_size(variant_export):
    """One --dynamic file per variant serves 512×512 and 200×328 (stride-2 convs round up: 200 → 25 at stride 8)."""
    model, path = variant_export
    onnx.checker.check_model(str(path))
    session = OnnxSegmentor(path)
    for size in ((512, 512), (200, 328)):
        image = randn((1, 3) + size, seed=size[0])
        got = session.encode_decode(image).numpy()
        assert got.shape == (1, 150) + size
        assert_parity(got, jsegnext_logits(model, image), size)


@pytest.mark.parametrize("strip_conv,opset", [("auto", 13), ("auto", 17), ("conv2d", 18), ("conv2d", 21)])
def test_every_module_path_and_opset_matches(tmp_path, strip_conv, opset):
    """Strip/depthwise convs as jsegnext's ops ('auto') and as nn.Conv2d ('conv2d'); ReduceMean's
    axes as an attribute (opset < 18) and as an input (>= 18)."""
    model = tiny_model(seed=4, strip_conv=strip_conv)
    out = tmp_path / "m.onnx"
    export_onnx(model, out, dynamic=True, opset=opset)
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == opset
    image = randn((1, 3, 45, 61))
    assert_parity(onnx_logits(out, image), jsegnext_logits(model, image))


def test_graph_is_standard_ops_with_pytorch_resize(tmp_path):
    model = tiny_model()
    proto = export_onnx(model, tmp_path / "m.onnx", dynamic=True)
    ops = [node.op_type for node in proto.graph.node]
    assert set(ops) <= STANDARD_OPS, set(ops) - STANDARD_OPS
    resizes = [node for node in proto.graph.node if node.op_type == "Resize"]
    assert len(resizes) == 3  # stages 3 and 4 to stage 2's size, logits to the input's size
    for node in resizes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"mode": b"linear", "coordinate_transformation_mode": b"half_pixel"}
    depthwise = [
        n for n in proto.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    assert len(depthwise) == 5 * 8  # per block: 5x5, three 1xk + kx1 strips, the Mlp's 3x3
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert inputs == {"image": ["batch", 3, "height", "width"]}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["nmf_seed"] == "0" and meta["num_classes"] == "5"


def test_nmf_bases_are_the_seeded_ones_and_batch_position_free(tmp_path):
    """The graph's bases are NMF2D.seeded_bases(seed); every sample gets them whatever its place in the batch,
    in the graph and in jsegnext's seeded mode alike."""
    model = tiny_model(seed=5)
    proto = export_onnx(model, tmp_path / "m.onnx", dynamic=True)
    ham = model.decode_head.hamburger.ham
    bases = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    np.testing.assert_array_equal(bases["decode_head.hamburger.ham.bases"], ham.seeded_bases(32, seed=5)[None])
    images = randn((3, 3, 40, 56), seed=2)
    batched = onnx_logits(tmp_path / "m.onnx", images)
    reference = jsegnext_logits(model, images)
    for i in range(3):
        alone = onnx_logits(tmp_path / "m.onnx", images[i : i + 1])
        np.testing.assert_allclose(batched[i : i + 1], alone, rtol=0, atol=1e-5 * np.abs(alone).max())
        np.testing.assert_allclose(
            jsegnext_logits(model, images[i : i + 1]), reference[i : i + 1], rtol=0, atol=1e-5 * np.abs(alone).max()
        )
    assert_parity(batched, reference)


def test_nmf_seed_defaults_and_overrides(tmp_path):
    model = tiny_model(seed=None)
    meta = {p.key: p.value for p in export_onnx(model, tmp_path / "a.onnx", dynamic=True).metadata_props}
    assert meta["nmf_seed"] == "0"  # DEFAULT_NMF_SEED when the config sets none
    export_onnx(model, tmp_path / "b.onnx", dynamic=True, nmf_seed=9)
    model.decode_head.hamburger.ham.seed = 9
    image = randn((1, 3, 32, 48))
    assert_parity(onnx_logits(tmp_path / "b.onnx", image), jsegnext_logits(model, image))
    assert rel_err(onnx_logits(tmp_path / "a.onnx", image), jsegnext_logits(model, image)) > 1e-3


def test_static_export_fixes_the_input_and_says_so(tmp_path):
    model = tiny_model()
    out = tmp_path / "static.onnx"
    export_onnx(model, out, input_shape=(48, 64))
    session = OnnxSegmentor(out)
    assert session.input_shape == [1, 3, 48, 64]
    image = randn((1, 3, 48, 64))
    assert_parity(session.encode_decode(image).numpy(), jsegnext_logits(model, image))
    with pytest.raises(OnnxModelError, match="exported for input 1x3x48x64 .* --dynamic"):
        session.encode_decode(randn((1, 3, 40, 64)))


def test_unknown_module_and_bad_arguments_name_themselves(tmp_path):
    class Mystery(jt.nn.Module):
        def execute(self, x):
            return x

    model = tiny_model()
    model.backbone.block2[0].mlp.fc2 = Mystery()
    with pytest.raises(ExportError, match=r"no ONNX emitter for Mystery \(at 'backbone.block2.0.mlp.fc2'\)"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="opset 11 is not supported"):
        export_onnx(tiny_model(), tmp_path / "m.onnx", opset=11)
    from jsegnext.models.fuse import fuse_segmentor

    with pytest.raises(ExportError, match=r"fused inference copy .* fuse=False"):
        export_onnx(fuse_segmentor(tiny_model()), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ----------------------------------------------------------------------------- the runner and the tools
def test_slide_and_flip_run_around_the_graph_as_around_the_model(tmp_path):
    """The same inference code (run_inference: windows, resize; predict_probs: views, flips) on both backends."""
    slide = dict(mode="slide", crop_size=(32, 40), stride=(20, 24))
    model = tiny_model(test_cfg=slide)
    out = tmp_path / "m.onnx"
    export_onnx(model, out, dynamic=True)
    session = OnnxSegmentor(out, test_cfg=slide)
    image = jt.array(randn((1, 3, 50, 70), seed=3))
    with jt.no_grad():
        expected = model.inference(image, out_size=(60, 84)).numpy()
        got = session.inference(image, out_size=(60, 84)).numpy()
        assert_parity(got, expected, "slide")
        views = [randn((3, 50, 70), seed=4), randn((3, 36, 52), seed=5)]
        expected = predict_probs(model, views, (50, 70), flip=True).numpy()
        got = predict_probs(session, views, (50, 70), flip=True).numpy()
    assert_parity(got, expected, "ms-flip probabilities")


def demo_options(data_root):
    """The demo config shrunk to a tiny model and four 64×64 validation images in ``data_root``."""
    options = {
        "model.backbone.embed_dims": [8, 16, 32, 32],
        "model.backbone.depths": [1, 1, 1, 1],
        "model.backbone.mlp_ratios": [2, 2, 2, 2],
        "model.decode_head.in_channels": [16, 32, 32],
        "model.decode_head.channels": 32,
        "model.decode_head.ham_channels": 32,
        "model.decode_head.norm_groups": 8,
        "model.decode_head.ham_kwargs.MD_R": 4,
        "data.val.data_root": str(data_root),
        "data.val.num_train": 0,
        "data.val.num_val": 4,
        "data.val.image_size": 64,
        "data.val.pipeline.1.img_scale": (64, 64),
        "data.num_workers": 0,
    }
    return [f"{k}={v!r}" for k, v in options.items()]


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """A random-weight checkpoint of the shrunk demo model (NMF seed 0, as the demo config) and its export."""
    from jsegnext.apis import init_model

    root = tmp_path_factory.mktemp("demo")
    options = demo_options(root / "data")
    jt.set_global_seed(2)
    model = sensitive_weights_(init_model(DEMO, options=options, fuse=False), seed=2)
    checkpoint = save_checkpoint(root / "random.pkl", model)
    onnx_path = root / "demo.onnx"
    assert export_tool.main([DEMO, checkpoint, str(onnx_path), "--dynamic", "--cfg-options", *options]) == 0
    return root, checkpoint, onnx_path, options


@pytest.mark.timeout(900)
@pytest.mark.parametrize("ms_flip", [False, True], ids=["single-scale", "ms-flip"])
def test_test_tool_onnxruntime_reports_the_jittor_miou(demo_export, ms_flip):
    import cv2

    root, checkpoint, onnx_path, options = demo_export
    results, preds = {}, {}
    for backend, weights in (("jittor", checkpoint), ("onnxruntime", onnx_path)):
        out, pred_dir = root / f"{backend}_{ms_flip}.json", root / f"preds_{backend}_{ms_flip}"
        argv = [
            DEMO,
            str(weights),
            "--backend",
            backend,
            "--out",
            str(out),
            "--save-preds",
            str(pred_dir),
            "--cfg-options",
            *options,
        ]
        assert test_tool.main(argv + (["--ms-flip"] if ms_flip else [])) == 0
        results[backend] = json.loads(out.read_text())
        preds[backend] = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(pred_dir.glob("*.png"))])
    for key in ("mIoU", "aAcc", "mAcc"):
        assert results["onnxruntime"][key] == pytest.approx(results["jittor"][key], abs=0.01), key
    assert preds["jittor"].shape == (4, 64, 64) and len(np.unique(preds["jittor"])) >= 2  # not one class
    assert (preds["jittor"] == preds["onnxruntime"]).mean() > 0.999


def test_infer_tool_onnxruntime_writes_the_jittor_labels(demo_export, tmp_path):
    import cv2

    root, checkpoint, onnx_path, options = demo_export
    image = str(root / "data" / "images" / "val" / "val_0000.png")
    for backend, weights in (("jittor", checkpoint), ("onnxruntime", onnx_path)):
        assert (
            infer_tool.main(
                [
                    DEMO,
                    str(weights),
                    image,
                    "--backend",
                    backend,
                    "--out",
                    str(tmp_path / backend),
                    "--cfg-options",
                    *options,
                ]
            )
            == 0
        )
    labels = [
        cv2.imread(str(tmp_path / b / "labels" / "val_0000.png"), cv2.IMREAD_UNCHANGED)
        for b in ("jittor", "onnxruntime")
    ]
    assert labels[0].shape == (64, 64) and (labels[0] == labels[1]).mean() > 0.999


def test_tools_report_bad_onnx_input_in_one_line(demo_export, tmp_path, capsys):
    root, checkpoint, onnx_path, options = demo_export
    assert (
        test_tool.main([DEMO, str(tmp_path / "missing.onnx"), "--backend", "onnxruntime", "--cfg-options", *options])
        == 1
    )
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.onnx'}: no such ONNX file"
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    assert test_tool.main([DEMO, str(garbage), "--backend", "onnxruntime", "--cfg-options", *options]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {garbage}: onnxruntime cannot load it") and "\n" not in err
    with pytest.raises(OnnxModelError, match="predicts 5 classes but the config's model.decode_head.num_classes is 7"):
        init_onnx_model(DEMO, onnx_path, options + ["model.decode_head.num_classes=7"])
    assert (
        export_tool.main([DEMO, checkpoint, str(tmp_path / "x.onnx"), "--opset", "9", "--cfg-options", *options]) == 1
    )
    assert "opset 9 is not supported" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_without_onnxruntime_the_tools_say_what_to_install(demo_export, monkeypatch, capsys):
    root, checkpoint, onnx_path, options = demo_export
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert test_tool.main([DEMO, str(onnx_path), "--backend", "onnxruntime", "--cfg-options", *options]) == 1
    assert capsys.readouterr().err.strip() == (
        'error: --backend onnxruntime needs the "onnxruntime" package: '
        'pip install -e ".[deploy]" (or pip install onnxruntime)'
    )


def test_core_package_and_tools_do_not_import_onnx():
    import subprocess

    code = (
        "import sys; sys.path.insert(0, 'tools'); import jsegnext.apis, jsegnext.engine.evaluation, "
        "jsegnext.engine.trainer, test, infer; "
        "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
