"""``build_dataset``: a dataset from its config dict."""

import copy

from ..config import ConfigError, check_kwargs, did_you_mean
from .builtin import BUILTIN_DATASETS, PascalVOCDataset
from .custom import CustomDataset

DATASETS = {cls.__name__: cls for cls in (CustomDataset, *BUILTIN_DATASETS)}
DATASETS['VOCDataset'] = PascalVOCDataset  # older mmseg name


def register_dataset(cls=None, name=None):
    """Class decorator: make a CustomDataset subclass available as ``dict(type=name or cls.__name__)``."""

    def wrap(c):
        DATASETS[name or c.__name__] = c
        return c

    return wrap(cls) if cls is not None else wrap


def build_dataset(cfg, **overrides):
    """Build a dataset from ``dict(type='ADE20KDataset', data_root=..., img_dir=..., ann_dir=..., pipeline=[...])``.

    ``overrides`` replace keys of ``cfg`` (e.g. ``test_mode=True``, ``data_root=...``). Unknown types and
    unknown keys are a ConfigError naming them (with a suggestion).
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"a dataset config must be a dict with a 'type' key, got {type(cfg).__name__}")
    kwargs = {k: copy.deepcopy(v) for k, v in dict(cfg).items()}
    kwargs.update(overrides)
    if 'type' not in kwargs:
        raise ConfigError(f"dataset config has no 'type'; known types: {', '.join(sorted(DATASETS))}")
    name = kwargs.pop('type')
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset type {name!r}{did_you_mean(str(name), DATASETS)}; known: {', '.join(sorted(DATASETS))}"
        )
    cls = DATASETS[name]
    check_kwargs(cls, kwargs, name)
    if 'img_dir' not in kwargs:
        raise ConfigError(f"{name}: the config needs img_dir")
    return cls(**kwargs)
