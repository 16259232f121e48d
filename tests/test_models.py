import numpy as np
import pytest
from conftest import fixture_path, rel_err, require_impl, tiny_model_cfg

from jsegnext.models import MSCAN_SETTINGS, NMF2D, build_segmentor, cross_entropy, slide_windows
from jsegnext.models.layers import BatchNorm2d, ChannelLayerNorm, Conv1x1, GroupNorm, resize_bilinear
from jsegnext.runtime import jt
from jsegnext.weights import load_checkpoint, model_state, read_checkpoint

PUBLISHED_PARAMS_M = {"t": 4.26, "s": 13.93, "b": 27.64, "l": 48.93}
HEAD = {"t": (256, 16), "s": (256, 16), "b": (512, 64), "l": (1024, 64)}


def variant_cfg(variant, num_classes=150):
    s = MSCAN_SETTINGS[variant]
    ch, rank = HEAD[variant]
    return dict(
        backbone=dict(s, strip_conv="conv2d"),
        decode_head=dict(
            in_channels=s["embed_dims"][1:],
            channels=ch,
            ham_channels=ch,
            num_classes=num_classes,
            ham_kwargs=dict(MD_R=rank),
        ),
    )


def count_params(model):
    return sum(v.numel() for k, v in model_state(model).items() if "running_" not in k)


@pytest.mark.parametrize("variant", ["t", "s", "b", "l"])
def test_parameter_counts_match_published(variant):
    n = count_params(build_segmentor(variant_cfg(variant))) / 1e6
    assert abs(n - PUBLISHED_PARAMS_M[variant]) / PUBLISHED_PARAMS_M[variant] < 0.005, n


def test_initial_weights_come_from_the_seed_at_construction():
    """Jittor initialises lazily; the builder must not let a later seed (per rank, per iteration) decide."""
    weights = []
    for later_seed in (1, 2):
        jt.set_global_seed(0)
        model = build_segmentor(dict(type="EncoderDecoder", **tiny_model_cfg()))
        jt.set_seed(later_seed)
        weights.append({k: v.numpy() for k, v in model.state_dict().items()})
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_state_keys_follow_reference_checkpoint():
    raw, _ = read_checkpoint(fixture_path("segnext_t_ade.pth"))  # not jt.load: its .pth reader fails under NumPy 2
    reference = {k for k in raw if not k.endswith("num_batches_tracked")}
    ours = set(model_state(build_segmentor(variant_cfg("t"))))
    assert ours == reference
    assert "backbone.block1.0.attn.spatial_gating_unit.conv2_1.weight" in ours


@pytest.mark.parametrize("size", [(64, 96), (70, 90)])
def test_shapes_through_the_pipeline(size):
    model = build_segmentor(tiny_model_cfg(num_classes=5))
    model.eval()
    img = jt.randn((2, 3) + size)
    feats = model.extract_feat(img)
    h, w = size
    for i, (f, dim) in enumerate(zip(feats, [8, 16, 32, 32])):
        for _ in range(2 if i == 0 else 1):
            h, w = (h + 1) // 2, (w + 1) // 2  # stride-2 conv with padding 1
        assert f.shape == [2, dim, h, w]
    head = model.decode_head(feats)
    assert head.shape == [2, 5] + list(feats[1].shape[2:])
    assert model.encode_decode(img).shape == [2, 5, size[0], size[1]]


@pytest.fixture(scope="module", params=["auto", "conv2d", "kernel", "fused", "meta"])
def reference_model(request):
    require_impl("msca_strips", request.param)
    cfg = variant_cfg("t")
    cfg["backbone"]["strip_conv"] = request.param
    model = build_segmentor(cfg)
    load_checkpoint(model, fixture_path("segnext_t_ade.pth"), require_head=True)
    model.eval()
    bases = jt.array(np.load(fixture_path("segnext_t_ade_bases.npy")))
    model.decode_head.hamburger.ham._build_bases = lambda B, S, D, R: bases
    return model


def test_parity_with_reference_pytorch(reference_model):
    img = jt.array(np.load(fixture_path("segnext_t_ade_input.npy")))
    feats = reference_model.extract_feat(img)
    for i, feat in enumerate(feats):
        assert rel_err(feat.numpy(), np.load(fixture_path(f"segnext_t_ade_feats_{i}.npy"))) < 1e-3
    head = reference_model.decode_head(feats).numpy()
    assert rel_err(head, np.load(fixture_path("segnext_t_ade_head_logits.npy"))) < 2e-4
    full = reference_model.encode_decode(img).numpy()
    sub = np.load(fixture_path("segnext_t_ade_logits_sub.npz"))
    assert full.shape == tuple(sub["shape"])
    assert rel_err(full[:, :, sub["rows"]][:, :, :, sub["cols"]], sub["logits"]) < 2e-4


def test_nmf_reproduces_reference_decomposition(reference_model):
    ham = reference_model.decode_head.hamburger.ham
    out = ham(jt.array(np.load(fixture_path("segnext_t_ade_ham_in.npy")))).numpy()
    assert rel_err(out, np.load(fixture_path("segnext_t_ade_ham_out.npy"))) < 2e-4


def test_nmf_steps_differ_between_train_and_eval():
    x = jt.rand((1, 16, 4, 5))
    nmf = NMF2D(MD_R=4, seed=3)
    nmf.eval()
    evaluated = nmf(x).numpy()
    nmf.train()
    trained = nmf(x).numpy()
    assert not np.allclose(evaluated, trained)  # 7 vs 6 multiplicative updates


def test_nmf_seed_makes_inference_repeatable():
    x = jt.rand((2, 16, 4, 5))
    seeded = NMF2D(MD_R=4, seed=7)
    seeded.eval()
    np.testing.assert_array_equal(seeded(x).numpy(), seeded(x).numpy())
    # a sample's bases depend neither on the batch it is in nor on its place there
    batched = seeded(x).numpy()
    for i in range(2):
        np.testing.assert_allclose(seeded(x[i : i + 1]).numpy(), batched[i : i + 1], rtol=1e-5, atol=1e-6)
    free = NMF2D(MD_R=4)
    free.eval()
    assert not np.allclose(free(x).numpy(), free(x).numpy())


def test_nmf_gradient_modes():
    x = jt.rand((1, 16, 4, 5))
    grads = {}
    for mode in ("unrolled", "one_step"):
        nmf = NMF2D(MD_R=4, seed=1, grad_mode=mode)
        out = nmf(x)
        grads[mode] = jt.grad((out * out).sum(), x).numpy()
        assert np.isfinite(grads[mode]).all() and np.abs(grads[mode]).max() > 0
    assert not np.allclose(grads["unrolled"], grads["one_step"])
    with pytest.raises(ValueError, match="grad_mode"):
        NMF2D(grad_mode="sometimes")


def test_unrolled_nmf_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x0 = (rng.random((1, 8, 3, 3)) + 0.5).astype(np.float32)
    weight = jt.array(rng.standard_normal((1, 8, 3, 3)).astype(np.float32))
    nmf = NMF2D(MD_R=3, seed=2, train_steps=2)
    f = lambda v: float((nmf(jt.array(v)) * weight).sum().item())
    x = jt.array(x0)
    analytic = jt.grad((nmf(x) * weight).sum(), x).numpy()
    nmf.grad_mode = "one_step"
    one_step = jt.grad((nmf(x) * weight).sum(), x).numpy()
    nmf.grad_mode = "unrolled"
    errors = {"unrolled": 0.0, "one_step": 0.0}
    for idx in [(0, 0, 0, 0), (0, 3, 1, 2), (0, 7, 2, 1), (0, 5, 0, 2)]:
        step = np.zeros_like(x0)
        step[idx] = 1e-2
        numeric = (f(x0 + step) - f(x0 - step)) / 2e-2
        errors["unrolled"] = max(errors["unrolled"], abs(numeric - analytic[idx]))
        errors["one_step"] = max(errors["one_step"], abs(numeric - one_step[idx]))
    assert errors["unrolled"] < 2e-2
    assert errors["one_step"] > 5 * errors["unrolled"]  # the one-step gradient is an approximation


def _numpy_resize_axis(x, axis, out):
    n = x.shape[axis]
    src = np.maximum((np.arange(out) + 0.5) * (n / out) - 0.5, 0)
    lo = np.minimum(src.astype(int), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = src - lo
    shape = [1] * x.ndim
    shape[axis] = out
    return np.take(x, lo, axis) * (1 - frac.reshape(shape)) + np.take(x, hi, axis) * frac.reshape(shape)


@pytest.mark.parametrize("size", [(13, 29), (4, 5), (7, 7)])
def test_resize_bilinear_matches_pytorch_semantics(size):
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 9)).astype(np.float32)
    ref = _numpy_resize_axis(_numpy_resize_axis(x, 3, size[1]), 2, size[0])
    np.testing.assert_allclose(resize_bilinear(jt.array(x), size).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_cross_entropy_ignores_255_and_averages_over_all_pixels():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    label = rng.integers(0, 4, (2, 3, 5))
    label[0, 0, :3] = 255
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    picked = np.take_along_axis(p, np.where(label == 255, 0, label)[:, None], 1)[:, 0]
    expected = np.where(label == 255, 0, -np.log(picked)).sum() / label.size
    got = cross_entropy(jt.array(logits), jt.array(label.astype(np.int32))).item()
    assert abs(got - expected) < 1e-5


def test_norms_use_centred_variance_on_large_values():
    x = (1000.0 + np.random.default_rng(2).standard_normal((2, 8, 5, 5))).astype(np.float32)
    ln = ChannelLayerNorm(8)(jt.array(x)).numpy()
    ref = (x - x.mean(1, keepdims=True)) / np.sqrt(x.astype(np.float64).var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln, ref, atol=2e-3)
    gn = GroupNorm(2, 8)(jt.array(x)).numpy()
    g = x.reshape(2, 2, -1).astype(np.float64)
    ref = ((g - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True) + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(gn, ref, atol=2e-3)


def test_batchnorm_keeps_unbiased_running_variance():
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 4)).astype(np.float32)
    bn = BatchNorm2d(3, momentum=1.0)
    bn.train()
    bn(jt.array(x)).sync()
    np.testing.assert_allclose(bn.running_var.numpy(), x.var(axis=(0, 2, 3), ddof=1), rtol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), x.mean(axis=(0, 2, 3)), atol=1e-5)


def test_conv1x1_equals_conv2d():
    conv = jt.nn.Conv2d(6, 4, 1)
    ours = Conv1x1(6, 4)
    ours.weight.update(conv.weight)
    ours.bias.update(conv.bias)
    x = jt.randn((3, 6, 5, 7))
    np.testing.assert_allclose(ours(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h,w,crop,stride", [(10, 10, 4, 3), (7, 12, 8, 5), (5, 5, 8, 6)])
def test_slide_windows_cover_the_image(h, w, crop, stride):
    cover = np.zeros((h, w), int)
    for y1, x1, y2, x2 in slide_windows(h, w, crop, crop, stride, stride):
        assert y2 - y1 == min(crop, h) and x2 - x1 == min(crop, w)
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1


def test_slide_inference_with_one_window_equals_whole():
    cfg = tiny_model_cfg()
    cfg["decode_head"]["ham_kwargs"]["seed"] = 0
    whole = build_segmentor(cfg)
    whole.eval()
    img = jt.randn((1, 3, 48, 64))
    cfg["test_cfg"] = dict(mode="slide", crop_size=(64, 64), stride=(32, 32))
    slide = build_segmentor(cfg)
    slide.load_state_dict(whole.state_dict())
    slide.eval()
    np.testing.assert_allclose(slide.inference(img).numpy(), whole.inference(img).numpy(), rtol=1e-5, atol=1e-5)
    cfg["test_cfg"] = dict(mode="slide", crop_size=(32, 32), stride=(16, 16))
    overlapping = build_segmentor(cfg)
    overlapping.load_state_dict(whole.state_dict())
    overlapping.eval()
    assert overlapping.inference(img, out_size=(24, 32)).shape == [1, 5, 24, 32]


def test_training_step_lowers_the_loss():
    model = build_segmentor(tiny_model_cfg(num_classes=3))
    model.train()
    opt = jt.optim.AdamW(model.parameters(), lr=1e-3)
    img = jt.randn((2, 3, 32, 32))
    label = jt.array((np.arange(32)[None, :, None] // 11).repeat(2, 0).repeat(32, 2).astype(np.int32))
    losses = []
    for _ in range(8):
        loss = model.loss(img, label)
        opt.step(loss)
        losses.append(loss.item())
    assert losses[-1] < losses[0]
