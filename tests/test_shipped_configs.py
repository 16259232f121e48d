"""Contract tests over the 24 shipped configs (as timm tests every registered model).

Each config must build its model with the parameter count the architecture gives for its class
count, predict as many classes as its dataset has, and carry the published recipe for its dataset.
"""

import itertools

import pytest
from conftest import ROOT

from jsegnext.apis import load_config
from jsegnext.datasets import DATASETS
from jsegnext.flops import count_parameters
from jsegnext.models import build_segmentor

CONFIGS = ROOT / "configs"
VARIANTS = "tsbl"
PUBLISHED_PARAMS_M = {"t": 4.26, "s": 13.93, "b": 27.64, "l": 48.93}  # at 150 classes (ADE20K)
# Exact counts at 150 classes, summed layer by layer from the architecture (MSCAN stem, patch embeds,
# blocks and stage norms; LightHamHead squeeze, hamburger, align, conv_seg); they round to the above.
PARAMS_AT_150 = {"t": 4_263_414, "s": 13_932_886, "b": 27_636_310, "l": 48_926_550}
DECODER_CHANNELS = {"t": 256, "s": 256, "b": 512, "l": 1024}  # conv_seg is channels x classes + bias

# The published recipe per dataset: type, crop, sliding-window test (crop, stride) or None for
# whole-image, total batch, iterations, reduce_zero_label.
RECIPES = {
    "ade20k": ("ADE20KDataset", 512, None, 16, 160000, True),
    "cityscapes": ("CityscapesDataset", 1024, (1024, 768), 8, 160000, False),
    "cocostuff": ("COCOStuffDataset", 512, None, 16, 80000, False),
    "voc": ("PascalVOCDataset", 512, None, 16, 80000, False),
    "context": ("PascalContextDataset59", 480, (480, 320), 16, 80000, True),
    "isaid": ("iSAIDDataset", 896, None, 16, 160000, False),
}
ALL = list(itertools.product(VARIANTS, RECIPES))


def leaf(variant, dataset):
    return load_config(CONFIGS / f"segnext_{variant}_{dataset}.py")


def test_shipped_configs_are_exactly_the_24():
    names = sorted(p.stem for p in CONFIGS.glob("segnext_*.py") if p.stem != "segnext_t_demo")
    assert names == sorted(f"segnext_{v}_{d}" for v, d in ALL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_exact_counts_round_to_the_published_ones(variant):
    assert round(PARAMS_AT_150[variant] / 1e6, 2) == PUBLISHED_PARAMS_M[variant]


@pytest.mark.parametrize("variant,dataset", ALL)
def test_config_builds_its_model_for_its_dataset(variant, dataset):
    cfg = leaf(variant, dataset)
    classes = len(DATASETS[cfg.data.train.type].CLASSES)
    model = build_segmentor(cfg.model)
    assert model.num_classes == classes
    expected = PARAMS_AT_150[variant] + (DECODER_CHANNELS[variant] + 1) * (classes - 150)
    assert count_parameters(model) == expected
    assert cfg.pretrained == f"pretrained/mscan_{variant}.pth"


@pytest.mark.parametrize("variant,dataset", ALL)
def test_config_carries_its_datasets_recipe(variant, dataset):
    cfg = leaf(variant, dataset)
    kind, crop, slide, batch, iters, reduce_zero = RECIPES[dataset]
    assert cfg.data.train.type == cfg.data.val.type == kind
    assert cfg.crop_size == (crop, crop)
    if slide is None:
        assert cfg.model.test_cfg == {"mode": "whole"}
    else:
        size, stride = slide
        assert cfg.model.test_cfg == {"mode": "slide", "crop_size": (size, size), "stride": (stride, stride)}
    assert cfg.data.batch_size == batch and cfg.runner.max_iters == iters
    assert cfg.checkpoint_config.interval == cfg.evaluation.interval == iters // 10
    assert cfg.data.train.pipeline[1] == {"type": "LoadAnnotations", "reduce_zero_label": reduce_zero}
    # AdamW 6e-5, wd 0.01, decoder lr x10; poly (power 1) after 1500 linear warm-up iterations from 1e-6
    assert (cfg.optimizer.type, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("AdamW", 6e-5, 0.01)
    assert cfg.optimizer.paramwise_cfg.custom_keys.head == {"lr_mult": 10.0}
    assert (cfg.lr_config.power, cfg.lr_config.warmup_iters, cfg.lr_config.warmup_ratio) == (1.0, 1500, 1e-6)


def test_demo_trains_segnext_t_on_five_classes():
    """The demo config is self-contained; its model is SegNeXt-T's but for its class count and NMF seed."""
    demo = load_config(CONFIGS / "segnext_t_demo.py").model.to_dict()
    tiny = load_config(CONFIGS / "_base_" / "models" / "segnext_t.py").model.to_dict()
    tiny["decode_head"]["num_classes"] = 5
    tiny["decode_head"]["ham_kwargs"]["seed"] = 0
    assert demo == tiny
