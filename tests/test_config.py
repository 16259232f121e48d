import itertools

import pytest
from conftest import ROOT

from jsegnext.apis import load_config
from jsegnext.config import Config, ConfigError
from jsegnext.models import build_segmentor

DATASETS = {  # classes, test mode, batch, iterations, crop (SPEC sections 2-3)
    "ade20k": (150, "whole", 16, 160000, (512, 512)),
    "cityscapes": (19, "slide", 8, 160000, (1024, 1024)),
    "cocostuff": (171, "whole", 16, 80000, (512, 512)),
    "voc": (21, "whole", 16, 80000, (512, 512)),
    "context": (59, "slide", 16, 80000, (480, 480)),
    "isaid": (16, "whole", 16, 160000, (896, 896)),
}
HEAD = {"t": (256, 16, 0.1), "s": (256, 16, 0.1), "b": (512, 64, 0.1), "l": (1024, 64, 0.3)}


@pytest.mark.parametrize("variant,dataset", itertools.product("tsbl", DATASETS))
def test_configs_carry_the_reference_settings(variant, dataset):
    cfg = load_config(str(ROOT / "configs" / f"segnext_{variant}_{dataset}.py"))
    classes, mode, batch, iters, crop = DATASETS[dataset]
    channels, rank, drop_path = HEAD[variant]
    head = cfg.model.decode_head
    assert head.num_classes == classes and cfg.model.test_cfg.mode == mode
    assert head.channels == head.ham_channels == channels and head.ham_kwargs.MD_R == rank
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.data.batch_size == batch and cfg.runner.max_iters == iters and cfg.crop_size == crop
    assert cfg.optimizer.lr == 6e-5 and cfg.optimizer.weight_decay == 0.01
    assert cfg.lr_config.warmup_iters == 1500 and cfg.lr_config.power == 1.0
    if mode == "slide":
        assert cfg.model.test_cfg.crop_size == crop
    reduce_zero = dataset in ("ade20k", "context")
    assert cfg.train_pipeline[1].reduce_zero_label is reduce_zero


@pytest.mark.parametrize("dataset", DATASETS)
def test_tiny_variant_configs_build(dataset):
    cfg = load_config(str(ROOT / "configs" / f"segnext_t_{dataset}.py"))
    assert build_segmentor(cfg.model).num_classes == DATASETS[dataset][0]


def test_overrides_apply_and_parse_literals():
    cfg = load_config(str(ROOT / "configs" / "segnext_t_ade20k.py"),
                      ["model.decode_head.dropout_ratio=0.2", "data.batch_size=4",
                       "model.test_cfg.mode=slide", "crop_size=(256, 256)", "train_pipeline.2.ratio_range=(1.0,1.0)"])
    assert cfg.model.decode_head.dropout_ratio == 0.2 and cfg.data.batch_size == 4
    assert cfg.model.test_cfg.mode == "slide" and cfg.crop_size == (256, 256)
    assert cfg.train_pipeline[2].ratio_range == (1.0, 1.0)


@pytest.mark.parametrize("option,message", [
    ("model.decode_head.dropout_rate=0.2", "did you mean 'dropout_ratio'"),
    ("model.backbon.depths=[1,1,1,1]", "did you mean 'backbone'"),
    ("train_pipeline.12.prob=1", "not an index"),
    ("data.batch_size", "key=value"),
])
def test_unknown_override_keys_are_rejected(option, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(ROOT / "configs" / "segnext_t_ade20k.py"), [option])


def test_typo_inside_a_config_file_names_the_key(tmp_path):
    text = (ROOT / "configs" / "segnext_t_ade20k.py").read_text().replace("drop_path_rate=", "drop_path_rat=")
    path = tmp_path / "typo.py"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"model\.backbone\.drop_path_rat.*did you mean 'drop_path_rate'"):
        build_segmentor(load_config(str(path)).model)


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Config.fromfile(tmp_path / "nope.py")
    broken = tmp_path / "broken.py"
    broken.write_text("model = dict(\n")
    with pytest.raises(ConfigError, match="syntax error"):
        Config.fromfile(broken)


def test_attribute_access_and_plain_dict_export():
    cfg = Config(dict(a=dict(b=[dict(c=1)])))
    assert cfg.a.b[0].c == 1
    assert type(cfg.to_dict()["a"]) is dict
    with pytest.raises(AttributeError, match="did you mean 'a'"):
        cfg.aa
