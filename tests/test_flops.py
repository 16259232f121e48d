"""jsegnext.flops: published GFLOPs, hand-checked counts, and a count measured on a real forward."""
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_model_cfg

from jsegnext.apis import load_config
from jsegnext.flops import (CONVENTIONS, count_conv, count_flops, count_flops_config, count_nmf,
                            count_parameters, main)
from jsegnext.models import NMF2D, build_segmentor
from jsegnext.models.layers import Conv1x1
from jsegnext.runtime import jt

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# variant, dataset config, (H, W), published GFLOPs (thesis / paper tables)
PUBLISHED = [
    ("t", "ade20k", (512, 512), 6.6),
    ("s", "ade20k", (512, 512), 15.9),
    ("b", "ade20k", (512, 512), 34.9),
    ("l", "ade20k", (512, 512), 70.0),
    ("t", "cityscapes", (1024, 2048), 50.5),  # 2048x1024 figures are the Cityscapes models (19 classes)
]
PUBLISHED_PARAMS_M = {"t": 4.26, "s": 13.93, "b": 27.64, "l": 48.93}


@pytest.mark.parametrize("variant,dataset,shape,published", PUBLISHED,
                         ids=[f"{v}-{d}-{s[1]}x{s[0]}" for v, d, s, _ in PUBLISHED])
def test_published_gflops(variant, dataset, shape, published):
    fc = count_flops_config(CONFIGS / f"segnext_{variant}_{dataset}.py", shape)
    assert fc.nmf_steps == 7  # eval: eval_steps
    assert fc.gflops == pytest.approx(published, rel=0.05)
    # the convention actually lands much closer than the 5 % the task asks for
    assert fc.gflops == pytest.approx(published, rel=0.01), f"{fc.gflops:.3f} vs {published}"


@pytest.mark.parametrize("variant", "tsbl")
def test_published_parameters(variant):
    model = build_segmentor(load_config(CONFIGS / f"segnext_{variant}_ade20k.py").model)
    assert count_parameters(model) / 1e6 == pytest.approx(PUBLISHED_PARAMS_M[variant], abs=0.006)


def test_hand_checked_convolutions():
    # dense 3x3, stride 2, pad 1: 8x8 -> 4x4; 8 outputs channels x 16 positions x (3 in x 9 taps)
    fc = count_conv(jt.nn.Conv2d(3, 8, 3, stride=2, padding=1), (1, 3, 8, 8))
    assert fc.by_kind()["conv"] == 8 * 16 * 27 == 3456
    assert fc.by_kind()["bias"] == 128
    # depthwise 1x7 strip, 'same' padding: 2*4*5*6 outputs x 7 taps
    fc = count_conv(jt.nn.Conv2d(4, 4, (1, 7), padding=(0, 3), groups=4), (2, 4, 5, 6))
    assert fc.by_kind()["dwconv"] == 240 * 7 == 1680
    # a strip conv that only exposes its weight [C,1,k,1] (jsegnext.ops.StripConv): stride 1, same size
    class Strip:
        weight, bias = jt.zeros((4, 1, 7, 1)), None
    fc = count_conv(Strip(), (1, 4, 5, 6))
    assert fc.by_kind()["dwconv"] == 120 * 7 and fc.by_kind()["bias"] == 0
    # 1x1 as matrix product: (6x4) @ (4x9) per image, 2 images
    fc = count_conv(Conv1x1(4, 6), (2, 4, 3, 3))
    assert fc.by_kind()["pwconv"] == 2 * 6 * 4 * 9 == 432


def test_hand_checked_nmf():
    # D=4, N=2*3=6, R=2, one update: init xᵀB 6*4*2=48; coef update (twice: in the step and the
    # final one) xᵀB 48 + BᵀB 2*4*2=16 + coef·BᵀB 6*2*2=24 = 88; bases update x·coef 4*6*2=48 +
    # coefᵀcoef 2*6*2=24 + B·(coefᵀcoef) 4*2*2=16 = 88; reconstruction B·coefᵀ 4*2*6=48
    ham = NMF2D(MD_R=2, train_steps=1, eval_steps=1)
    fc = count_nmf(ham, (1, 4, 2, 3))
    assert fc.by_kind()["matmul"] == 48 + 2 * 88 + 88 + 48 == 360
    # element-wise: inv_t 12, coef*num 12 (x2), bases*num 8
    assert fc.by_kind()["mul"] == 12 + 2 * 12 + 8
    fc_train = count_nmf(NMF2D(MD_R=2, train_steps=3, eval_steps=1), (2, 4, 2, 3), training=True)
    assert fc_train.by_kind()["matmul"] == 2 * (48 + 4 * 88 + 3 * 88 + 48)


class _MatmulCounter:
    """Wraps jt.matmul: adds prod(output shape) * inner dimension for every call."""

    def __init__(self, original):
        self.original, self.macs = original, 0

    def __call__(self, a, b):
        out = self.original(a, b)
        self.macs += int(math.prod(out.shape)) * int(a.shape[-1])
        return out


def test_nmf_count_matches_the_products_it_runs(monkeypatch):
    counter = _MatmulCounter(jt.matmul)
    monkeypatch.setattr(jt, "matmul", counter)
    ham = NMF2D(MD_R=2, train_steps=1, eval_steps=1, seed=0)
    ham.eval()
    ham(jt.rand((1, 4, 2, 3)))  # graph only: shapes are known without running it
    assert counter.macs == 360 == count_nmf(ham, (1, 4, 2, 3)).by_kind()["matmul"]


def test_tiny_model_count_matches_a_real_forward(monkeypatch):
    """Analytic count == MACs read off a real (lazy, not executed) forward of a tiny model.

    Strips as ``nn.Conv2d`` so that forward hooks see every convolution (the strip-conv operator
    and the fused MSCA strips run as functions); the count does not depend on the implementation.
    """
    model = build_segmentor(tiny_model_cfg(strip_conv="conv2d"))
    assert count_flops(model, (64, 96)).total("all") == \
        count_flops(build_segmentor(tiny_model_cfg()), (64, 96)).total("all")
    model.eval()
    counter = _MatmulCounter(jt.matmul)
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
    fc = count_flops(model, (64, 96), batch=2)
    kinds = fc.by_kind()
    # extract_feat and encode_decode both ran the backbone: its convs were hooked twice
    backbone_conv = sum(c for n, p, k, c in fc.ops if k in ("conv", "dwconv"))
    assert sum(conv_macs) == 2 * backbone_conv
    backbone_pw = sum(c for n, p, k, c in fc.ops if k == "pwconv" and p.startswith("backbone"))
    assert counter.macs == 2 * backbone_pw + kinds["pwconv"] - backbone_pw + kinds["matmul"]
    assert [tuple(f.shape) for f in feats] == [fc.shapes[f"backbone.stage{i}"] for i in range(1, 5)]
    assert tuple(logits.shape) == fc.shapes["logits"] == (2, 5, 64, 96)
    # per image: the batch-1 count is half
    assert count_flops(model, (64, 96), batch=1).total() * 2 == fc.total()


def test_breakdown_and_conventions():
    cfg = load_config(CONFIGS / "segnext_t_ade20k.py")
    model = build_segmentor(cfg.model)
    fc = count_flops(model, (512, 512))
    assert sum(fc.by_part().values()) == fc.total()
    assert list(fc.summary()) == ["backbone.stage1", "backbone.stage2", "backbone.stage3", "backbone.stage4",
                                  "head (w/o NMF)", "head.nmf", "resize"]
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
