"""The inference fast path (jsegnext/models/fuse.py): same outputs as the model it was fused from, on
random sensitive weights for every strip-conv implementation and on the reference fixtures; the
default for init_model / tools / validation and how to switch it off; the fused model refuses to
train or be saved, and fusing leaves the training model as it was."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, ROOT, rel_err, tiny_model_cfg
from test_tiny_reference import TINY_CFG

from jsegnext.apis import init_model
from jsegnext.engine.checkpoint import CheckpointManager, save_checkpoint
from jsegnext.engine.evaluation import evaluate
from jsegnext.models import EncoderDecoder, build_segmentor
from jsegnext.models.fuse import FusedSegmentor, fuse_segmentor, is_fused
from jsegnext.ops.dispatch import IMPLS
from jsegnext.runtime import jt
from jsegnext.weights import load_checkpoint

STRIP_IMPLS = IMPLS  # auto, fused, kernel, meta, conv2d


def sensitive(model, seed=0):
    """Random weights that make every fold matter: BN statistics and affines far from identity,
    non-zero biases, layer scales of 0.05-0.5 (as the reference fixtures are made)."""
    rng = np.random.default_rng(seed)
    for name, var in model.state_dict().items():
        shape = tuple(var.shape)
        if name.endswith("running_var"):
            value = rng.random(shape) + 0.5
        elif name.endswith("running_mean"):
            value = 0.3 * rng.standard_normal(shape)
        elif "layer_scale" in name:
            value = rng.random(shape) * 0.45 + 0.05
        elif name.endswith("bias"):
            value = 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            value = rng.random(shape) + 0.5
        else:
            continue
        var.update(jt.array(value.astype(np.float32)))
    return model


def tiny(strip_conv="auto", **test_cfg):
    cfg = tiny_model_cfg(num_classes=5, strip_conv=strip_conv)
    cfg["decode_head"]["ham_kwargs"]["seed"] = 0  # the same NMF bases on every forward
    if test_cfg:
        cfg["test_cfg"] = test_cfg
    jt.set_global_seed(0)
    model = sensitive(build_segmentor(cfg))
    model.eval()
    return model


def outputs(net, img):
    with jt.no_grad():
        feats = [f.numpy() for f in net.extract_feat(img)]
        head = net.decode_head(net.extract_feat(img)).numpy()
        full = net.encode_decode(img).numpy()
        resized = net.inference(img, out_size=(53, 61)).numpy()
    return feats, head, full, resized


def assert_same_outputs(fused, model, img, tol=1e-5):
    for got, want in zip(outputs(fused, img), outputs(model, img)):
        for g, w in zip(got, want) if isinstance(got, list) else [(got, want)]:
            assert rel_err(g, w) < tol, rel_err(g, w)


@pytest.mark.parametrize("strip_conv", STRIP_IMPLS)
def test_fused_equals_unfused_for_every_strip_impl(strip_conv):
    model = tiny(strip_conv)
    img = jt.randn((2, 3, 70, 90))
    assert_same_outputs(fuse_segmentor(model), model, img)


@pytest.mark.parametrize("ops", ["fused", "meta"])
def test_fused_kernels_and_their_portable_form(monkeypatch, ops):
    """The folded model with the CPU kernels and with the Jittor-op form the other devices run."""
    monkeypatch.setenv("JSEGNEXT_FUSED_IMPL", ops)
    model = tiny()
    assert_same_outputs(fuse_segmentor(model), model, jt.randn((1, 3, 64, 48)))


def test_fused_slide_inference_and_labels():
    model = tiny(mode="slide", crop_size=(48, 48), stride=(32, 32))
    fused = fuse_segmentor(model)
    img = jt.randn((1, 3, 70, 90))
    with jt.no_grad():
        np.testing.assert_allclose(fused.inference(img).numpy(), model.inference(img).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(fused.predict_labels(img).numpy(), model.predict_labels(img).numpy())


@pytest.mark.parametrize("out_size", [None, (70, 90), (45, 130)])
def test_fused_labels_are_the_argmax_of_the_logits(out_size):
    """Whole-image labels come from the fused resize+argmax kernel, through both resizes."""
    model = tiny()
    fused = fuse_segmentor(model)
    img = jt.randn((2, 3, 70, 90))
    with jt.no_grad():
        labels = fused.predict_labels(img, out_size).numpy()
        logits = model.inference(img, out_size).numpy()
    ranked = np.sort(logits, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] > 1e-4 * np.abs(logits).max()
    assert labels.shape == logits[:, 0].shape and clear.mean() > 0.98
    np.testing.assert_array_equal(labels[clear], logits.argmax(axis=1)[clear])


def test_fusing_leaves_the_training_model_as_it_was():
    model = tiny()
    model.train()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    grads = {id(p): p.requires_grad for p in model.parameters()}
    fused = fuse_segmentor(model)
    assert fused is not model and is_fused(fused) and not is_fused(model)
    assert model.is_training() and model.decode_head.hamburger.ham.is_train
    assert all(p.requires_grad == grads[id(p)] for p in model.parameters())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    # the fused copy is a snapshot: training the model further does not change it
    img = jt.randn((1, 3, 48, 48))
    with jt.no_grad():
        out_before = fused.encode_decode(img).numpy()
    optimizer = jt.optim.AdamW(model.parameters(), lr=1e-2)
    optimizer.step(model.loss(jt.randn((2, 3, 48, 48)), jt.zeros((2, 48, 48), dtype="int32")))
    with jt.no_grad():
        np.testing.assert_array_equal(fused.encode_decode(img).numpy(), out_before)


def test_fused_model_refuses_to_train_or_be_saved(tmp_path):
    fused = fuse_segmentor(tiny())
    img, label = jt.randn((2, 3, 32, 32)), jt.zeros((2, 32, 32), dtype="int32")
    with pytest.raises(RuntimeError, match="inference only"):
        fused.loss(img, label)
    with pytest.raises(RuntimeError, match="no checkpoint state"):
        save_checkpoint(tmp_path / "x.pkl", fused)
    with pytest.raises(RuntimeError, match="no checkpoint state"):
        CheckpointManager(tmp_path).save("iter_1.pkl", fused)
    assert not list(tmp_path.iterdir())
    fused.train()
    assert not fused.is_training()
    assert fuse_segmentor(fused) is fused


def test_init_model_fuses_by_default_and_fuse_false_gives_the_old_path(tmp_path):
    cfg = dict(model=dict(type="EncoderDecoder", **tiny_model_cfg(num_classes=5)))
    cfg["model"]["decode_head"]["ham_kwargs"]["seed"] = 0
    source = build_segmentor(cfg["model"])
    sensitive(source)
    path = tmp_path / "w.pkl"
    save_checkpoint(path, source)
    fast, plain = init_model(cfg, str(path)), init_model(cfg, str(path), fuse=False)
    assert isinstance(fast, FusedSegmentor) and fast.cfg is not None
    assert type(plain) is EncoderDecoder and not plain.is_training()
    source.eval()
    img = jt.randn((1, 3, 40, 56))
    with jt.no_grad():
        np.testing.assert_array_equal(plain.encode_decode(img).numpy(), source.encode_decode(img).numpy())
        assert rel_err(fast.encode_decode(img).numpy(), plain.encode_decode(img).numpy()) < 1e-5


def test_evaluate_fuses_a_copy_unless_told_not_to(monkeypatch):
    from jsegnext.engine import evaluation

    calls = []
    real = evaluation.fuse_segmentor
    monkeypatch.setattr(evaluation, "fuse_segmentor", lambda m: calls.append(m) or real(m))

    class Data:  # two images of random content, the interface evaluate() reads
        CLASSES, PALETTE = tuple("abcde"), [[0, 0, 0]] * 5
        ignore_index = 255
        img_dir, img_files, img_suffix = ".", ["a.png", "b.png"], ".png"

        def __len__(self):
            return 2

        def get_gt_seg_map(self, i):
            return np.random.default_rng(i).integers(0, 5, (40, 52))

        def prepare_test_sample(self, i, pipeline):
            return {"img": np.random.default_rng(10 + i).standard_normal((3, 40, 52)).astype(np.float32)}

    model = tiny()
    model.train()
    fused_metrics = evaluate(model, Data(), progress=False)
    assert calls == [model] and model.is_training()
    plain_metrics = evaluate(model, Data(), progress=False, fuse=False)
    assert len(calls) == 1
    assert fused_metrics["mIoU"] == pytest.approx(plain_metrics["mIoU"], abs=1e-6)


def test_tools_take_no_fuse():
    import infer as infer_tool
    import test as test_tool

    assert test_tool.parse_args(["c.py", "w.pkl", "--no-fuse"]).no_fuse
    assert not test_tool.parse_args(["c.py", "w.pkl"]).no_fuse
    assert infer_tool.parse_args(["c.py", "w.pkl", "x.png", "--no-fuse"]).no_fuse


# ------------------------------------------------------------------------- reference fixtures
def fixture_or_skip(name):
    for folder in (ROOT / "tests" / "fixtures", FIXTURES):
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"reference fixture {name} not found in tests/fixtures or {FIXTURES} (set JSEGNEXT_FIXTURES)")


def with_bases(model, bases):
    bases = jt.array(bases)
    model.decode_head.hamburger.ham._build_bases = lambda B, S, D, R: bases
    return model


@pytest.mark.parametrize("strip_conv", STRIP_IMPLS)
def test_fused_t_ade_parity_with_reference_pytorch(strip_conv):
    """tests/test_models.py's parity test on the fast path: the reference PyTorch outputs of
    SegNeXt-T (random sensitive weights) within the same tolerances."""
    path = fixture_or_skip("segnext_t_ade.pth")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_models import variant_cfg

    cfg = variant_cfg("t")
    cfg["backbone"]["strip_conv"] = strip_conv
    model = build_segmentor(cfg)
    load_checkpoint(model, path, require_head=True)
    model.eval()
    fused = fuse_segmentor(with_bases(model, np.load(fixture_or_skip("segnext_t_ade_bases.npy"))))
    img = jt.array(np.load(fixture_or_skip("segnext_t_ade_input.npy")))
    with jt.no_grad():
        feats = fused.extract_feat(img)
        for i, feat in enumerate(feats):
            assert rel_err(feat.numpy(), np.load(fixture_or_skip(f"segnext_t_ade_feats_{i}.npy"))) < 1e-3
        head = fused.decode_head(feats).numpy()
        full = fused.encode_decode(img).numpy()
    assert rel_err(head, np.load(fixture_or_skip("segnext_t_ade_head_logits.npy"))) < 2e-4
    sub = np.load(fixture_or_skip("segnext_t_ade_logits_sub.npz"))
    assert rel_err(full[:, :, sub["rows"]][:, :, :, sub["cols"]], sub["logits"]) < 2e-4


def test_fused_tiny_fixture_parity():
    """The mmsegmentation-made tiny fixture (batch 2, one set of NMF bases per sample) on the fast path."""
    path = fixture_or_skip("segnext_tiny.pth")
    model = build_segmentor(TINY_CFG)  # the fixture's architecture
    load_checkpoint(model, path, require_head=True)
    model.eval()
    fused = fuse_segmentor(with_bases(model, np.load(fixture_or_skip("segnext_tiny_bases.npy"))))
    ref = np.load(fixture_or_skip("segnext_tiny_eval.npz"))
    img = jt.array(np.load(fixture_or_skip("segnext_tiny_input.npy")))
    with jt.no_grad():
        feats = fused.extract_feat(img)
        for i, feat in enumerate(feats):
            assert rel_err(feat.numpy(), ref[f"feats_{i}"]) < 1e-3
        assert rel_err(fused.decode_head(feats).numpy(), ref["head_logits"]) < 2e-4
        assert rel_err(fused.encode_decode(img).numpy(), ref["logits"]) < 2e-4


def test_validation_in_training_fuses_a_copy_and_leaves_training_unchanged(tmp_path):
    """The trainer's periodic validation runs a fused copy: the run's losses are exactly those of a run
    whose validation used the model itself (validation does not disturb training), and the metrics
    agree up to the few pixels float rounding can flip on a barely trained model."""
    from test_training import tiny_options, write_boxes_config, write_boxes_dataset

    from jsegnext.apis import load_config
    from jsegnext.engine import Trainer

    write_boxes_dataset(tmp_path / "data", np.random.default_rng(0), counts=(("train", 8), ("val", 2)))
    config = write_boxes_config(tmp_path / "boxes.py", tmp_path / "data")
    runs = {}
    for fuse in (True, False):
        options = tiny_options(**{"runner.max_iters": 4, "evaluation.interval": 2, "checkpoint_config.interval": 4})
        options.append(f"evaluation.fuse={fuse}")
        trainer = Trainer(load_config(config, options), tmp_path / f"run_{fuse}", progress=False)
        trainer.train()
        records = [json.loads(line) for line in (tmp_path / f"run_{fuse}" / "log.jsonl").read_text().splitlines()]
        runs[fuse] = (
            [r["loss"] for r in records if r["mode"] == "train"],
            [r["mIoU"] for r in records if r["mode"] == "val"],
        )
    assert len(runs[True][1]) == 2
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-6)
    np.testing.assert_allclose(runs[True][1], runs[False][1], atol=0.5)
