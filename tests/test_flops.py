"""jsegnext.flops: published GFLOPs, hand-checked counts, a count checked against MACs measured on a real
forward, and counting that follows (and leaves unchanged) the model it is given."""

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_model_cfg

from jsegnext.apis import load_config
from jsegnext.flops import CONVENTIONS, count_flops, count_flops_config, count_module, count_parameters, main
from jsegnext.models import NMF2D, build_segmentor
from jsegnext.models.layers import Conv1x1
from jsegnext.ops import DepthwiseConv2d, StripConv
from jsegnext.runtime import jt

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# variant, dataset config, (H, W), published GFLOPs (thesis / paper tables), our count: the same number of
# operations as the analytic walker that preceded the hook-based count
PUBLISHED = [
    ("t", "ade20k", (512, 512), 6.6, 6_591_836_160),
    ("s", "ade20k", (512, 512), 15.9, 15_850_696_704),
    ("b", "ade20k", (512, 512), 34.9, 34_893_824_000),
    ("l", "ade20k", (512, 512), 70.0, 69_953_191_936),
    ("t", "cityscapes", (1024, 2048), 50.5, 50_529_792_000),  # 2048x1024: the Cityscapes models (19 classes)
]
PUBLISHED_PARAMS_M = {"t": 4.26, "s": 13.93, "b": 27.64, "l": 48.93}


@pytest.mark.parametrize(
    "variant,dataset,shape,published,counted", PUBLISHED, ids=[f"{v}-{d}-{s[1]}x{s[0]}" for v, d, s, _, _ in PUBLISHED]
)
def test_published_gflops(variant, dataset, shape, published, counted):
    fc = count_flops_config(CONFIGS / f"segnext_{variant}_{dataset}.py", shape)
    assert fc.nmf_steps == 7  # eval: eval_steps
    assert fc.gflops == pytest.approx(published, rel=0.005), f"{fc.gflops:.3f} vs {published}"
    assert fc.total() == counted


@pytest.mark.parametrize("variant", "tsbl")
def test_published_parameters(variant):
    model = build_segmentor(load_config(CONFIGS / f"segnext_{variant}_ade20k.py").model)
    assert count_parameters(model) / 1e6 == pytest.approx(PUBLISHED_PARAMS_M[variant], abs=0.006)


def test_hand_checked_convolutions():
    # dense 3x3, stride 2, pad 1: 8x8 -> 4x4; 8 outputs channels x 16 positions x (3 in x 9 taps)
    fc = count_module(jt.nn.Conv2d(3, 8, 3, stride=2, padding=1), (1, 3, 8, 8), "all")
    assert fc.by_kind()["conv"] == 8 * 16 * 27 == 3456
    assert fc.by_kind()["bias"] == 128
    # depthwise 1x7 strip, 'same' padding: 2*4*5*6 outputs x 7 taps
    fc = count_module(jt.nn.Conv2d(4, 4, (1, 7), padding=(0, 3), groups=4), (2, 4, 5, 6))
    assert fc.by_kind()["dwconv"] == 240 * 7 == 1680
    # jsegnext's strip conv (7x1, no bias) and square depthwise conv (5x5)
    fc = count_module(StripConv(4, 7, "v", bias=False), (1, 4, 5, 6))
    assert fc.by_kind()["dwconv"] == 120 * 7 and fc.by_kind()["bias"] == 0
    assert count_module(DepthwiseConv2d(4, 5), (1, 4, 5, 6)).by_kind()["dwconv"] == 120 * 25
    # 1x1 as matrix product: (6x4) @ (4x9) per image, 2 images
    fc = count_module(Conv1x1(4, 6), (2, 4, 3, 3))
    assert fc.by_kind()["pwconv"] == 2 * 6 * 4 * 9 == 432


def test_hand_checked_nmf():
    # D=4, N=2*3=6, R=2, one update: init xᵀB 6*4*2=48; coef update (twice: in the step and the
    # final one) xᵀB 48 + BᵀB 2*4*2=16 + coef·BᵀB 6*2*2=24 = 88; bases update x·coef 4*6*2=48 +
    # coefᵀcoef 2*6*2=24 + B·(coefᵀcoef) 4*2*2=16 = 88; reconstruction B·coefᵀ 4*2*6=48
    ham = NMF2D(MD_R=2, train_steps=1, eval_steps=1)
    fc = count_module(ham, (1, 4, 2, 3))
    assert fc.by_kind()["matmul"] == 48 + 2 * 88 + 88 + 48 == 360
    # element-wise: inv_t 12, coef*num 12 (x2), bases*num 8
    assert fc.by_kind()["mul"] == 12 + 2 * 12 + 8
    fc_train = count_module(NMF2D(MD_R=2, train_steps=3, eval_steps=1), (2, 4, 2, 3), training=True)
    assert fc_train.by_kind()["matmul"] == 2 * (48 + 4 * 88 + 3 * 88 + 48)


class _MatmulCounter:
    """Wraps a matrix product ``(a, b, trans_a=False, trans_b=False)`` (jt.matmul takes the first
    two): adds prod(output shape) * inner dimension for every call."""

    def __init__(self, original):
        self.original, self.macs = original, 0

    def __call__(self, a, b, trans_a=False, trans_b=False):
        out = self.original(a, b, trans_a, trans_b) if (trans_a or trans_b) else self.original(a, b)
        self.macs += int(math.prod(out.shape)) * int(a.shape[0] if trans_a else a.shape[-1])
        return out


def test_nmf_count_matches_the_products_it_runs(monkeypatch):
    from jsegnext.models import ham_head

    counter = _MatmulCounter(ham_head.matmul)  # NMF2D's products (MKL with transpose flags on CPU)
    monkeypatch.setattr(ham_head, "matmul", counter)
    ham = NMF2D(MD_R=2, train_steps=1, eval_steps=1, seed=0)
    ham.eval()
    ham(jt.rand((1, 4, 2, 3)))  # graph only: shapes are known without running it
    measured = counter.macs
    assert measured == 360 == count_module(ham, (1, 4, 2, 3)).by_kind()["matmul"]


def test_tiny_model_count_matches_a_real_forward(monkeypatch):
    """The count == MACs read off a real (lazy, not executed) forward of a tiny model by independent
    hooks on its convolutions and a wrapper of jt.matmul.

    Strips as ``nn.Conv2d`` so that those hooks see every convolution (the fused MSCA strips run as
    one function); the count does not depend on the implementation.
    """
    model = build_segmentor(tiny_model_cfg(strip_conv="conv2d"))
    for impl in ("auto", "kernel", "meta"):
        assert (
            count_flops(model, (64, 96)).by_kind()
            == count_flops(build_segmentor(tiny_model_cfg(strip_conv=impl)), (64, 96)).by_kind()
        )
    model.eval()
    from jsegnext.models import ham_head

    # the 1x1 convs through per-image jt.matmul (not their CPU kernels), NMF2D's products counted too
    monkeypatch.setenv("JSEGNEXT_FUSED_IMPL", "meta")
    counter = _MatmulCounter(jt.matmul)
    monkeypatch.setattr(
        ham_head,
        "matmul",
        lambda a, b, ta=False, tb=False: counter(a.transpose() if ta else a, b.transpose() if tb else b),
    )
    conv_macs = []

    def hook(module, inputs, output):
        conv_macs.append(int(math.prod(output.shape)) * int(math.prod(module.weight.shape[1:])))

    for _, module in model.named_modules():
        if isinstance(module, jt.nn.Conv):
            module.register_forward_hook(hook)
    monkeypatch.setattr(jt, "matmul", counter)
    img = jt.zeros((2, 3, 64, 96))
    feats = model.extract_feat(img)
    logits = model.encode_decode(img)
    measured_conv, measured_matmul = sum(conv_macs), counter.macs
    fc = count_flops(model, (64, 96), batch=2)
    assert sum(conv_macs) == measured_conv  # the count's forward did not reach these hooks...
    model.extract_feat(img)
    assert sum(conv_macs) == 3 * measured_conv // 2  # ...which are still in place
    kinds = fc.by_kind()
    # extract_feat and encode_decode both ran the backbone: its convs were hooked twice
    backbone_conv = sum(c for n, p, k, c in fc.ops if k in ("conv", "dwconv"))
    assert measured_conv == 2 * backbone_conv
    backbone_pw = sum(c for n, p, k, c in fc.ops if k == "pwconv" and p.startswith("backbone"))
    assert measured_matmul == 2 * backbone_pw + kinds["pwconv"] - backbone_pw + kinds["matmul"]
    assert fc.shapes["backbone"] == [tuple(f.shape) for f in feats]
    assert tuple(logits.shape) == fc.shapes[""] == (2, 5, 64, 96)
    # per image: the batch-1 count is half
    assert count_flops(model, (64, 96), batch=1).total() * 2 == fc.total()


def test_counts_the_modules_the_model_runs():
    """Folding a BatchNorm into the conv before it (as an inference fast path would) removes its
    norm operations from the count; a module without a rule counts nothing itself, its submodules
    still count."""

    class Identity(jt.nn.Module):
        def execute(self, x):
            return x

    class Wrapper(jt.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def execute(self, x):
            return self.inner(x)

    model = build_segmentor(tiny_model_cfg())
    before = count_flops(model, (64, 64))
    block = model.backbone.block1[0]
    block.norm1 = Identity()
    after = count_flops(model, (64, 64))
    folded = 8 * 16 * 16  # block1.0.norm1: 8 channels at stride 4
    assert before.by_kind()["norm"] - after.by_kind()["norm"] == folded
    assert before.total() - after.total() == folded
    model.decode_head.conv_seg = Wrapper(model.decode_head.conv_seg)
    assert count_flops(model, (64, 64)).by_kind() == after.by_kind()


def test_counting_leaves_the_model_as_it_was():
    model = build_segmentor(tiny_model_cfg())
    model.train()
    model.decode_head.dropout.is_train = False  # a mixed state, to be kept as it is
    modes = {path: m.__dict__.get("is_train") for path, m in model.named_modules()}
    bn = model.backbone.block1[0].norm1
    running = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    calls = []
    model.decode_head.register_forward_hook(lambda m, i, o: calls.append(1))
    count_flops(model, (64, 64), training=True)
    assert {path: m.__dict__.get("is_train") for path, m in model.named_modules()} == modes
    np.testing.assert_array_equal(bn.running_mean.numpy(), running[0])
    np.testing.assert_array_equal(bn.running_var.numpy(), running[1])
    assert not calls
    model.eval()
    model(jt.zeros((1, 3, 64, 64)))
    assert calls == [1]  # the user's hook is back


def test_breakdown_and_conventions():
    cfg = load_config(CONFIGS / "segnext_t_ade20k.py")
    model = build_segmentor(cfg.model)
    fc = count_flops(model, (512, 512))
    assert sum(fc.by_part().values()) == fc.total()
    assert list(fc.summary()) == [
        "backbone.stage1",
        "backbone.stage2",
        "backbone.stage3",
        "backbone.stage4",
        "head (w/o NMF)",
        "head.nmf",
        "resize",
    ]
    assert fc.total("macs") < fc.total("published") < fc.total("all")
    assert set(CONVENTIONS["macs"]) < set(CONVENTIONS["published"]) < set(CONVENTIONS["all"])
    # NMF: 7 eval updates; training uses train_steps=6, so fewer products
    train = count_flops(model, (512, 512), training=True)
    assert train.nmf_steps == 6 and train.by_part()["head.nmf"] < fc.by_part()["head.nmf"]
    assert train.by_part()["backbone.stage1"] == fc.by_part()["backbone.stage1"]
    d = fc.to_dict()
    assert d["gflops"] == pytest.approx(fc.gflops) and d["by_part"]["head.nmf"] > 0
    assert "head.nmf" in fc.table()
    with pytest.raises(ValueError):
        count_flops(model, (512, 512), convention="nope")


def test_cli(capsys):
    assert main([str(CONFIGS / "segnext_t_ade20k.py"), "--shape", "512"]) == 0
    out = capsys.readouterr().out
    assert "4.26 M parameters" in out and "total" in out
    total = float(next(line.split()[1] for line in out.splitlines() if line.startswith("total")))
    assert total == pytest.approx(6.6, rel=0.01)
    assert np.isfinite(total)
