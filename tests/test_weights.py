import subprocess
import sys

import convert_weights
import numpy as np
import pytest
from conftest import ROOT, fixture_path, tiny_model_cfg
from torch_format import save_torch_checkpoint

from jsegnext.apis import init_model
from jsegnext.models import build_segmentor
from jsegnext.runtime import jt
from jsegnext.weights import CheckpointError, load_checkpoint, model_state, read_checkpoint

T_CONFIG = str(ROOT / "configs" / "segnext_t_ade20k.py")
CFG_OPTS = ["model.backbone.strip_conv=conv2d"]


@pytest.fixture(scope="module")
def reference_state():
    raw, meta = read_checkpoint(fixture_path("segnext_t_ade.pth"))
    return raw, meta


def run_tool(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "convert_weights.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def outputs_equal(model_a, model_b, size=(64, 64)):
    img = jt.randn((1, 3) + size)
    for m in (model_a, model_b):
        m.eval()
        m.decode_head.hamburger.ham.seed = 0
    np.testing.assert_allclose(model_a(img).numpy(), model_b(img).numpy(), rtol=1e-5, atol=1e-5)


def test_reference_checkpoint_converts_and_loads(tmp_path, reference_state):
    dst = tmp_path / "t.pkl"
    report = convert_weights.convert(str(fixture_path("segnext_t_ade.pth")), str(dst))
    assert report.ok and len(report.loaded) == 519
    assert sum(k.endswith("num_batches_tracked") for k in report.dropped) == 31
    from_pkl = init_model(T_CONFIG, str(dst), options=CFG_OPTS, fuse=False)
    from_pth = init_model(T_CONFIG, str(fixture_path("segnext_t_ade.pth")), options=CFG_OPTS, fuse=False)
    raw, _ = reference_state
    name = "backbone.block2.0.attn.spatial_gating_unit.conv1_2.weight"
    np.testing.assert_array_equal(model_state(from_pkl)[name].numpy(), raw[name])
    outputs_equal(from_pkl, from_pth)


def _layouts(raw):
    state = {k: v for k, v in raw.items()}
    mmseg1x = {k.replace("mlp.dwconv.dwconv.", "mlp.dwconv."): v for k, v in state.items()}
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    backbone["head.weight"] = np.zeros((1000, 256), np.float32)
    backbone["head.bias"] = np.zeros(1000, np.float32)
    return {
        "mmcv": {"meta": {"mmseg_version": "0.24.1"}, "state_dict": state, "optimizer": {"state": {}}},
        "bare": state,
        "dataparallel": {"state_dict": {"module." + k: v for k, v in state.items()}},
        "mmseg1x": {"meta": {}, "state_dict": mmseg1x},
        "imagenet_backbone": {"state_dict": backbone},
    }


@pytest.mark.parametrize("layout", ["mmcv", "bare", "dataparallel", "mmseg1x", "imagenet_backbone"])
def test_every_layout_converts(tmp_path, reference_state, layout):
    raw, _ = reference_state
    src = tmp_path / f"{layout}.pth"
    save_torch_checkpoint(_layouts(raw)[layout], src)
    dst = tmp_path / f"{layout}.pkl"
    result = run_tool(src, dst)
    assert result.returncode == 0, result.stderr
    converted, meta = read_checkpoint(dst)
    expected = {k for k in raw if not k.endswith("num_batches_tracked")}
    if layout == "imagenet_backbone":
        expected = {k for k in expected if k.startswith("backbone.")}
        assert meta["backbone_only"] is True and "2 dropped" not in result.stdout
    assert set(converted) == expected
    for key in expected:
        np.testing.assert_array_equal(converted[key], raw[key])


def test_backbone_weights_fill_only_the_encoder(tmp_path, reference_state):
    raw, _ = reference_state
    src = tmp_path / "mscan_t.pth"
    save_torch_checkpoint(_layouts(raw)["imagenet_backbone"], src)
    model = build_segmentor(init_model(T_CONFIG, options=CFG_OPTS).cfg.model)
    head_before = model_state(model)["decode_head.conv_seg.weight"].numpy().copy()
    report = load_checkpoint(model, src)
    assert len(report.loaded) == sum(k.startswith("backbone.") for k in model_state(model))
    assert "head.weight" in report.dropped
    np.testing.assert_array_equal(model_state(model)["decode_head.conv_seg.weight"].numpy(), head_before)
    with pytest.raises(CheckpointError, match="encoder .backbone. weights only"):
        init_model(T_CONFIG, str(src), options=CFG_OPTS)


def test_unseen_variant_and_class_count_round_trip(tmp_path):
    cfg = tiny_model_cfg(num_classes=19, embed_dims=[16, 16, 32, 64], depths=[1, 2, 1, 1])
    source = build_segmentor(cfg)
    state = {k: v.numpy() for k, v in model_state(source).items()}
    state.update(
        {
            k.rsplit(".", 1)[0] + ".num_batches_tracked": np.array(5, np.int64)
            for k in state
            if k.endswith("running_mean")
        }
    )
    src = tmp_path / "other.pth"
    save_torch_checkpoint({"meta": {}, "state_dict": state}, src)
    dst = tmp_path / "other.pkl"
    assert run_tool(src, dst).returncode == 0
    target = build_segmentor(cfg)
    load_checkpoint(target, dst)
    outputs_equal(source, target, size=(50, 70))


def test_wrong_variant_is_one_clear_error(tmp_path):
    result = run_tool(
        fixture_path("segnext_t_ade.pth"), tmp_path / "x.pkl", "--config", ROOT / "configs" / "segnext_s_ade20k.py"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "shape mismatch" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.pkl").exists()


def test_class_count_mismatch_reported_by_name(tmp_path):
    result = run_tool(
        fixture_path("segnext_t_ade.pth"), tmp_path / "x.pkl", "--config", ROOT / "configs" / "segnext_t_cityscapes.py"
    )
    assert result.returncode == 1
    assert "decode_head.conv_seg.weight (150, 256, 1, 1) vs model (19, 256, 1, 1)" in result.stderr


def test_missing_keys_fail_unless_partial_allowed(tmp_path, reference_state):
    raw, _ = reference_state
    state = {k: v for k, v in raw.items() if "block4.1." not in k}
    state["backbone.extra.weight"] = np.zeros(3, np.float32)
    src = tmp_path / "partial.pth"
    save_torch_checkpoint({"state_dict": state}, src)
    result = run_tool(src, tmp_path / "p.pkl", "--config", T_CONFIG)
    assert result.returncode == 1
    assert "missing from the checkpoint" in result.stderr and "block4.1.norm1.weight" in result.stderr
    assert "backbone.extra.weight" in result.stderr
    result = run_tool(src, tmp_path / "p.pkl", "--config", T_CONFIG, "--allow-partial")
    assert result.returncode == 0 and (tmp_path / "p.pkl").exists()


@pytest.mark.parametrize("kind", ["truncated", "text", "missing", "not_a_dict"])
def test_bad_files_give_one_line_errors(tmp_path, kind):
    bad = tmp_path / f"{kind}.pth"
    if kind == "truncated":
        bad.write_bytes(fixture_path("segnext_t_ade.pth").read_bytes()[:100000])
    elif kind == "text":
        bad.write_text("this is not a checkpoint\n")
    elif kind == "not_a_dict":
        save_torch_checkpoint([np.zeros(3, np.float32)], bad)
    result = run_tool(bad, tmp_path / "out.pkl")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(CheckpointError):
        init_model(T_CONFIG, str(bad), options=CFG_OPTS)
