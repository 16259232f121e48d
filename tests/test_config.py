import textwrap

import pytest
from conftest import ROOT
from print_config import format_config
from print_config import main as print_config

from jsegnext.apis import load_config
from jsegnext.config import Config, ConfigError
from jsegnext.models import build_segmentor

CONFIGS = ROOT / "configs"
LEAVES = sorted(CONFIGS.glob("segnext_*.py"))


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_overrides_apply_and_parse_literals():
    cfg = load_config(
        str(CONFIGS / "segnext_t_ade20k.py"),
        [
            "model.decode_head.dropout_ratio=0.2",
            "data.batch_size=4",
            "model.test_cfg.mode=slide",
            "crop_size=(256, 256)",
            "train_pipeline.2.ratio_range=(1.0,1.0)",
        ],
    )
    assert cfg.model.decode_head.dropout_ratio == 0.2 and cfg.data.batch_size == 4
    assert cfg.model.test_cfg.mode == "slide" and cfg.crop_size == (256, 256)
    assert cfg.train_pipeline[2].ratio_range == (1.0, 1.0)


@pytest.mark.parametrize(
    "option,message",
    [
        ("model.decode_head.dropout_rate=0.2", "did you mean 'dropout_ratio'"),
        ("model.backbon.depths=[1,1,1,1]", "did you mean 'backbone'"),
        ("train_pipeline.12.prob=1", "not an index"),
        ("data.batch_size", "key=value"),
    ],
)
def test_unknown_override_keys_are_rejected(option, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(CONFIGS / "segnext_t_ade20k.py"), [option])


def test_typo_inside_a_config_file_names_the_key(tmp_path):
    base = CONFIGS / "_base_" / "models" / "segnext_t.py"
    path = write(
        tmp_path / "typo.py",
        f"""
        _base_ = [{str(base)!r}]
        model = dict(backbone=dict(drop_path_rat=0.2))
    """,
    )
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


# ============================================================================ _base_ files
def test_bases_merge_dicts_key_by_key_and_replace_other_values(tmp_path, monkeypatch):
    write(
        tmp_path / "bases" / "model.py",
        """
        model = dict(head=dict(classes=150, channels=256), test_cfg=dict(mode='whole'))
        pretrained = 'a.pth'
        _private = 1
    """,
    )
    write(
        tmp_path / "bases" / "data.py",
        """
        import os
        pipeline = [dict(type='Load'), dict(type='Flip')]
        data = dict(batch_size=16, train=dict(root='data/a', pipeline=pipeline))
    """,
    )
    leaf = write(
        tmp_path / "leaf.py",
        """
        _base_ = ['bases/model.py', 'bases/data.py']
        model = dict(head=dict(classes=19), test_cfg=dict(mode='slide', stride=(768, 768)))
        data = dict(train=dict(pipeline=[dict(type='Load')]))
        pretrained = None
        seed = 3
    """,
    )
    monkeypatch.chdir(tmp_path / "bases")  # _base_ paths are relative to the file, not the working directory
    cfg = Config.fromfile(leaf).to_dict()
    assert cfg == {
        "model": {"head": {"classes": 19, "channels": 256}, "test_cfg": {"mode": "slide", "stride": (768, 768)}},
        "pretrained": None,
        "pipeline": [{"type": "Load"}, {"type": "Flip"}],
        "data": {"batch_size": 16, "train": {"root": "data/a", "pipeline": [{"type": "Load"}]}},
        "seed": 3,
        "filename": str(leaf),
    }
    assert list(cfg) == ["model", "pretrained", "pipeline", "data", "seed", "filename"]  # bases first, in order


def test_a_single_base_may_be_a_string(tmp_path):
    write(tmp_path / "base.py", "a = dict(b=1, c=2)\n")
    leaf = write(tmp_path / "leaf.py", "_base_ = 'base.py'\na = dict(c=3)\n")
    assert Config.fromfile(leaf).a == {"b": 1, "c": 3}


@pytest.mark.parametrize(
    "files,message",
    [
        (
            {"base.py": "_base_ = ['other.py']\nx = 1\n", "other.py": "y = 1\n"},
            r"base\.py: a base config cannot have a _base_ of its own \(bases are one level deep\)",
        ),
        (
            {"base.py": "x = dict(a=1)\n", "other.py": "x = dict(b=1)\n"},
            r"leaf\.py: key 'x' is set by two bases, .*base\.py and .*other\.py",
        ),
        ({"base.py": "x = 1\n"}, r"leaf\.py: base config not found: .*other\.py"),
    ],
)
def test_base_errors_name_the_files(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    leaf = write(tmp_path / "leaf.py", "_base_ = ['base.py', 'other.py']\n")
    with pytest.raises(ConfigError, match=message):
        Config.fromfile(leaf)


@pytest.mark.parametrize(
    "leaf_text,message",
    [
        ("x = dict(a=dict(_delete_=True, c=1))\n", r"'x\.a\._delete_' is not supported"),
        ("x = dict(b=dict(c=1))\n", r"'x\.b' is a dict here but a int in the base"),
        ("_base_ = 3\n", "_base_ must be a path or a list of paths, got 3"),
    ],
)
def test_merge_errors_name_the_key(tmp_path, leaf_text, message):
    write(tmp_path / "base.py", "x = dict(a=dict(b=1), b=2)\n")
    leaf = write(tmp_path / "leaf.py", "_base_ = ['base.py']\n" + leaf_text)
    with pytest.raises(ConfigError, match=message):
        Config.fromfile(leaf)


# ============================================================================ tools/print_config.py
@pytest.mark.parametrize("path", LEAVES, ids=[p.stem for p in LEAVES])
def test_printed_config_reads_back_as_the_same_config(tmp_path, path):
    cfg = load_config(str(path))
    printed = write(tmp_path / "printed.py", format_config(cfg))
    again = Config.fromfile(printed).to_dict()
    assert again.pop("filename") == str(printed)
    expected = cfg.to_dict()
    expected.pop("filename")
    assert again == expected
    assert "_base_" not in printed.read_text()


def test_print_config_applies_overrides_and_rejects_typos(capsys):
    config = str(CONFIGS / "segnext_b_context.py")
    assert print_config([config, "--cfg-options", "data.batch_size=4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {config}, bases merged")
    assert "\ndata = {'batch_size': 4,\n" in out and "'test_cfg': {'mode': 'slide', 'crop_size': (480, 480)" in out
    assert print_config([config, "--cfg-options", "data.batch_sise=4"]) == 1
    assert capsys.readouterr().err == "error: unknown config key 'data.batch_sise' (did you mean 'batch_size'?)\n"
