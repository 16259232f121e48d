"""Parity with mmsegmentation's own SegNeXt on the tiny fixture shipped in tests/fixtures.

Eval: the four stage outputs, the stride-8 head logits and the full-size logits. Training: the
loss and the gradient of every parameter, through all unrolled NMF updates, batch 2 with one set
of initial bases per sample. Every strip-conv implementation is checked. Tolerances are the
fixture's (tests/fixtures/README.md).
"""

import re

import numpy as np
import pytest
from conftest import rel_err, repo_fixture, require_impl

from jsegnext.models import build_segmentor
from jsegnext.ops.dispatch import IMPLS as STRIP_IMPLS
from jsegnext.runtime import jt
from jsegnext.weights import load_checkpoint

TINY_CFG = dict(
    backbone=dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 2, 1], mlp_ratios=[8, 8, 4, 4], drop_path_rate=0.0),
    decode_head=dict(
        in_channels=[16, 32, 64],
        channels=32,
        ham_channels=32,
        num_classes=7,
        norm_groups=32,
        dropout_ratio=0.0,
        ham_kwargs=dict(MD_S=1, MD_R=8, train_steps=6, eval_steps=7),
    ),
)
NUM_PARAMETERS = 201
#: Biases of convolutions that feed a BatchNorm (the stem's two, each patch embedding's): their true
#: gradient is exactly 0 (BN subtracts the mean), so both sides hold rounding noise of about 1e-6 of
#: the largest gradient, which sits at the fixture's floor. They are checked to be noise-sized.
BN_FED_BIAS = re.compile(r"backbone\.patch_embed\d\.proj(\.[03])?\.bias$")
NOISE = 1e-5  # of the largest gradient


@pytest.fixture(scope="module")
def data():
    return {name: np.load(repo_fixture(f"segnext_tiny_{name}.npy")) for name in ("input", "label", "bases")}


def tiny_reference_model(strip_conv, bases):
    """The fixture's model with its weights, and NMF started from the fixture's per-sample bases."""
    cfg = {k: dict(v) for k, v in TINY_CFG.items()}
    cfg["backbone"]["strip_conv"] = strip_conv
    model = build_segmentor(cfg)
    report = load_checkpoint(model, repo_fixture("segnext_tiny.pth"), require_head=True)
    assert report.ok and not report.missing
    fixed = jt.array(bases)

    def build_bases(B, S, D, R):
        assert (B * S, D, R) == tuple(bases.shape)
        return fixed

    model.decode_head.hamburger.ham._build_bases = build_bases
    return model


@pytest.mark.parametrize("strip_conv", STRIP_IMPLS)
def test_eval_outputs_match_reference(strip_conv, data):
    require_impl("msca_strips", strip_conv)
    ref = np.load(repo_fixture("segnext_tiny_eval.npz"))
    model = tiny_reference_model(strip_conv, data["bases"])
    model.eval()
    img = jt.array(data["input"])
    with jt.no_grad():
        feats = model.extract_feat(img)
        for i, feat in enumerate(feats):
            assert rel_err(feat.numpy(), ref[f"feats_{i}"]) < 1e-3, i
        assert rel_err(model.decode_head(feats).numpy(), ref["head_logits"]) < 2e-4
        full = model.encode_decode(img).numpy()
    assert full.shape == ref["logits"].shape
    assert rel_err(full, ref["logits"]) < 2e-4


def largest_gradient(grads, ref):
    return max(np.abs(ref[f"grad/{name}"]).max() for name in grads)


def gradient_errors(grads, ref):
    """Per-parameter error: max |g - ref| over max(max |ref|, 1e-3 · largest gradient of all)
    (the BN-fed biases, whose true gradient is 0, are left to :func:`noise_sized`)."""
    floor = 1e-3 * largest_gradient(grads, ref)
    return {
        name: float(np.abs(g - ref[f"grad/{name}"]).max() / max(np.abs(ref[f"grad/{name}"]).max(), floor))
        for name, g in grads.items()
        if not BN_FED_BIAS.search(name)
    }


def noise_sized(grads, ref):
    """max |g| of each BN-fed bias over the largest gradient (0 in exact arithmetic)."""
    largest = largest_gradient(grads, ref)
    return {name: float(np.abs(g).max() / largest) for name, g in grads.items() if BN_FED_BIAS.search(name)}


@pytest.mark.parametrize("strip_conv", STRIP_IMPLS)
def test_training_loss_and_every_gradient_match_reference(strip_conv, data):
    require_impl("msca_strips", strip_conv)
    ref = np.load(repo_fixture("segnext_tiny_train.npz"))
    model = tiny_reference_model(strip_conv, data["bases"])
    model.train()
    params = {name: v for name, v in model.named_parameters() if not v.is_stop_grad()}  # what training updates
    assert len(params) == NUM_PARAMETERS
    assert sorted(params) == sorted(k[len("grad/") :] for k in ref if k.startswith("grad/"))
    img, label = jt.array(data["input"]), jt.array(data["label"].astype(np.int32))
    head_logits = model.decode_head(model.extract_feat(img))
    assert rel_err(head_logits.numpy(), ref["head_logits"]) < 2e-4  # batch statistics, 6 NMF steps
    loss = model.loss(img, label)
    assert abs(loss.item() - float(ref["loss"])) / abs(float(ref["loss"])) < 1e-5
    names = sorted(params)
    grads = dict(zip(names, (g.numpy() for g in jt.grad(loss, [params[n] for n in names]))))
    errors = gradient_errors(grads, ref)
    worst = sorted(errors.items(), key=lambda kv: -kv[1])[:5]
    assert max(errors.values()) < 1e-3, worst
    noise = noise_sized(grads, ref)
    assert len(noise) == 5 and max(noise.values()) < NOISE, noise
