"""The PyTorch SegNeXt of benchmarks/torch_segnext.py (the benchmarks' PyTorch column) against the
reference fixture and against jsegnext. Skipped where PyTorch is not installed."""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, fixture_path

from jsegnext.models import build_segmentor  # jsegnext first: it sets FIX_TORCH_ERROR=0 etc. before Jittor loads
from jsegnext.weights import load_checkpoint

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import check_torch_segnext as check  # noqa: E402
from torch_segnext import build_torch_segnext, count_params, load_reference_checkpoint  # noqa: E402

PUBLISHED_PARAMS_M = {"t": 4.26, "s": 13.93, "b": 27.64, "l": 48.93}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("variant", ["t", "s", "b", "l"])
def test_torch_parameter_counts_match_published(variant):
    n = count_params(build_torch_segnext(variant)) / 1e6
    assert abs(n - PUBLISHED_PARAMS_M[variant]) / PUBLISHED_PARAMS_M[variant] < 0.005, n


@pytest.fixture(scope="module")
def fixture_model():
    model = build_torch_segnext("t", num_classes=150)
    result = load_reference_checkpoint(model, fixture_path("segnext_t_ade.pth"), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    model.set_nmf_bases(np.load(fixture_path("segnext_t_ade_bases.npy")))
    return model


@pytest.mark.timeout(300)
def test_torch_model_reproduces_reference_fixture(fixture_model):
    out = check.eval_outputs_torch(fixture_model, np.load(fixture_path("segnext_t_ade_input.npy")))
    errors = check.compare_with_fixture(out, FIXTURES)
    for key, err in errors.items():
        assert err < (1e-3 if key.startswith(("feats", "ham_in")) else 2e-4), (key, err)


@pytest.mark.timeout(300)
def test_torch_model_is_sensitive_to_nmf_steps(fixture_model):
    """Negative control: one NMF update fewer must show far above the tolerance."""
    img = np.load(fixture_path("segnext_t_ade_input.npy"))
    ham = fixture_model.decode_head.hamburger.ham
    ham.eval_steps = 6
    try:
        out = check.eval_outputs_torch(fixture_model, img)
    finally:
        ham.eval_steps = 7
    assert check.rel_err(out["head_logits"], np.load(fixture_path("segnext_t_ade_head_logits.npy"))) > 1e-3


@pytest.mark.timeout(300)
def test_torch_and_jittor_agree_on_reference_checkpoint(fixture_model):
    img = np.load(fixture_path("segnext_t_ade_input.npy"))
    bases = np.load(fixture_path("segnext_t_ade_bases.npy"))
    j_model = build_segmentor(check.jittor_cfg("t"))
    load_checkpoint(j_model, fixture_path("segnext_t_ade.pth"), require_head=True)
    j_model.eval()
    check.fix_bases(fixture_model, j_model, bases)
    errors = check.compare_outputs(
        check.eval_outputs_jittor(j_model, img), check.eval_outputs_torch(fixture_model, img)
    )
    assert set(errors) == {"feats_0", "feats_1", "feats_2", "feats_3", "head_logits", "full"}
    for key, err in errors.items():
        assert err < (1e-3 if key.startswith("feats") else 2e-4), (key, err)


@pytest.fixture(scope="module")
def random_pair():
    """SegNeXt-T with random (sensitive) weights in PyTorch, copied into jsegnext; no dropout."""
    torch.manual_seed(0)
    t_model = check.randomize_(build_torch_segnext("t", num_classes=150, dropout_ratio=0.0), seed=1)
    j_model = check.jittor_from_torch(t_model, check.jittor_cfg("t", dropout_ratio=0.0))
    check.fix_bases(t_model, j_model, check.nmf_bases(256, 16, seed=2))
    return t_model, j_model


@pytest.mark.timeout(300)
def test_torch_and_jittor_agree_with_random_weights_eval(random_pair):
    t_model, j_model = random_pair
    t_model.eval()
    j_model.eval()
    img = np.random.default_rng(3).standard_normal((1, 3, 64, 96)).astype(np.float32)
    errors = check.compare_outputs(check.eval_outputs_jittor(j_model, img), check.eval_outputs_torch(t_model, img))
    assert len(errors) == 6
    for key, err in errors.items():
        assert err < (1e-3 if key.startswith("feats") else 2e-4), (key, err)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("grad_mode", ["unrolled", "one_step"])
def test_torch_and_jittor_agree_in_training(random_pair, grad_mode):
    """Training mode: BN batch statistics, 6 NMF steps, loss and every parameter gradient."""
    t_model, j_model = random_pair
    t_model.decode_head.hamburger.ham.grad_mode = grad_mode
    j_model.decode_head.hamburger.ham.grad_mode = grad_mode
    try:
        img, label = check.random_batch((2, 3, 64, 64), 150, seed=4)
        errors, worst, t_loss, j_loss = check.compare_training(t_model, j_model, img, label)
    finally:
        t_model.decode_head.hamburger.ham.grad_mode = "unrolled"
        j_model.decode_head.hamburger.ham.grad_mode = "unrolled"
    assert np.isfinite(t_loss) and errors["loss"] < 1e-5, (t_loss, j_loss)
    assert errors["grad_worst"] < 1e-3, (worst, errors)
    assert errors["bn_fed_bias_grad"] < 1e-4, errors


@pytest.mark.timeout(300)
def test_torch_training_backward_with_dropout_and_random_bases():
    torch.manual_seed(0)
    model = build_torch_segnext("t", num_classes=150, drop_path_rate=0.1)
    img, label = check.random_batch((2, 3, 64, 64), 150, seed=5)
    loss, ok = check.smoke_backward(model, img, label)
    assert np.isfinite(loss) and ok
    assert model.decode_head.hamburger.ham.fixed_bases is None  # random bases drawn every forward
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(img[:1])
        assert tuple(model(x).shape) == (1, 150, 8, 8)
        assert tuple(model.forward_full(x).shape) == (1, 150, 64, 64)
        assert [tuple(f.shape[1:]) for f in model.encoder_features(x)] == [
            (32, 16, 16),
            (64, 8, 8),
            (160, 4, 4),
            (256, 2, 2),
        ]
