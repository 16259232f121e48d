"""What a config may hold, checked before any work: section keys (with did-you-mean), value types
and ranges, and which keys an override may add.

* :func:`validate_config` — every key of the sections the trainer reads (``data``, ``optimizer``,
  ``lr_config``, ``runner``, ``checkpoint_config``, ``evaluation``, ``log_config``) must be one it
  knows, and the values it uses must have the right type and range (``data.batch_size=-2`` is an
  error naming the key, not an endless loader). ``model``, dataset and pipeline dicts are checked
  the same way by their builders. A top-level name close to a known one (``evalution``) warns.
* :func:`accepted_keys` — the keys a config dict may take: ``--cfg-options`` may add one that is
  missing from the file but accepted by what the dict configures (``data.train.skip_bad_samples``
  for a dataset, ``model.backbone.in_channels`` ...), not only change existing ones.
"""

import inspect
import numbers
import warnings

from .config import ConfigError, did_you_mean
from .errors import ConfigWarning

TOP_LEVEL = (
    "model",
    "pretrained",
    "data",
    "optimizer",
    "lr_config",
    "runner",
    "checkpoint_config",
    "evaluation",
    "log_config",
    "seed",
    "train_pipeline",
    "test_pipeline",
    "img_norm_cfg",
    "crop_size",
    "dataset_type",
    "data_root",
    "norm_cfg",
    "ham_norm_cfg",
    "filename",
)
SECTIONS = {
    "data": ("batch_size", "num_workers", "train", "val", "test"),
    "runner": ("type", "max_iters"),
    "checkpoint_config": ("interval", "max_keep_ckpts", "by_epoch"),
    "evaluation": ("interval", "metric", "save_best", "fuse", "by_epoch"),
    "log_config": ("interval",),
    "lr_config": ("policy", "power", "min_lr", "warmup", "warmup_iters", "warmup_ratio", "by_epoch"),
    "optimizer.paramwise_cfg": ("custom_keys", "bypass_duplicate"),
    "model.test_cfg": ("mode", "crop_size", "stride"),
}
OPTIMIZERS = {
    "AdamW": ("type", "lr", "betas", "eps", "weight_decay", "amsgrad", "paramwise_cfg"),
    "SGD": ("type", "lr", "momentum", "weight_decay", "nesterov", "dampening", "paramwise_cfg"),
}
HINTS = {
    "data.samples_per_gpu": "jsegnext uses data.batch_size, the total over all processes",
    "data.workers_per_gpu": "jsegnext uses data.num_workers",
}
REQUIRED_FOR_TRAINING = ("data.train", "data.batch_size", "runner.max_iters", "optimizer", "lr_config")


def init_params(cls):
    """Keyword names ``cls(...)`` accepts, following ``**kwargs`` up the class hierarchy."""
    names = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def _model_classes():
    from .models import MSCAN, NMF2D, EncoderDecoder, LightHamHead

    return {
        "model": EncoderDecoder,
        "model.backbone": MSCAN,
        "model.decode_head": LightHamHead,
        "model.decode_head.ham_kwargs": NMF2D,
    }


def accepted_keys(path, node):
    """Names the dict ``node`` at dotted ``path`` may hold, or None when unknown (then only existing keys)."""
    from .datasets import DATASETS, TRANSFORMS

    kind = node.get("type") if isinstance(node, dict) else None
    if path == "":
        return list(TOP_LEVEL)
    if path in SECTIONS:
        return list(SECTIONS[path])
    if path == "optimizer":
        return list(OPTIMIZERS.get(kind, ()))
    classes = _model_classes()
    if path in classes:
        return init_params(classes[path]) + (["type"] if path != "model.decode_head.ham_kwargs" else [])
    if isinstance(kind, str) and kind in DATASETS:
        return init_params(DATASETS[kind]) + ["type"]
    if isinstance(kind, str) and kind in TRANSFORMS:
        return init_params(TRANSFORMS[kind]) + ["type"]
    return None


# ------------------------------------------------------------------------------------ validation
def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, False
        node = node[part]
    return node, True


def _check_keys(section, node, allowed):
    if not isinstance(node, dict):
        raise ConfigError(f"config key '{section}' must be a dict, got {type(node).__name__}")
    for key in node:
        if key not in allowed:
            where = f"{section}.{key}"
            hint = f"; {HINTS[where]}" if where in HINTS else ""
            raise ConfigError(f"unknown config key '{where}'{did_you_mean(str(key), allowed)}{hint}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _require(cfg, dotted, ok, expected):
    value, present = _get(cfg, dotted)
    if present and not ok(value):
        raise ConfigError(f"config key '{dotted}' must be {expected}, got {value!r}")


_RULES = (  # key, test, what it must be
    ("data.batch_size", lambda v: _is_int(v) and v >= 1, "a positive integer (the total over all processes)"),
    ("data.num_workers", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    ("runner.max_iters", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    ("runner.type", lambda v: v == "IterBasedRunner", "'IterBasedRunner' (training is by iteration)"),
    ("checkpoint_config.interval", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    ("checkpoint_config.max_keep_ckpts", _is_int, "an integer (<= 0 keeps all)"),
    ("evaluation.interval", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    (
        "evaluation.metric",
        lambda v: v in ("mIoU", ["mIoU"], ("mIoU",)),
        "'mIoU' (with aAcc and mAcc, what is computed)",
    ),
    ("evaluation.save_best", lambda v: v in (None, "mIoU", "auto"), "'mIoU' or None"),
    ("evaluation.fuse", lambda v: isinstance(v, bool), "True (validate a fused inference copy) or False"),
    ("log_config.interval", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    ("lr_config.policy", lambda v: v == "poly", "'poly' (the schedule jsegnext implements)"),
    ("lr_config.power", _is_number, "a number"),
    ("lr_config.min_lr", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("lr_config.warmup", lambda v: v in (None, "constant", "linear", "exp"), "None, 'constant', 'linear' or 'exp'"),
    ("lr_config.warmup_iters", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    ("lr_config.warmup_ratio", lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    ("optimizer.type", lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    ("optimizer.lr", lambda v: _is_number(v) and v > 0, "a positive number"),
    ("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("optimizer.eps", lambda v: _is_number(v) and v > 0, "a positive number"),
    ("optimizer.momentum", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    (
        "optimizer.betas",
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
        "two numbers in [0, 1)",
    ),
    ("seed", lambda v: v is None or _is_int(v), "an integer"),
    ("pretrained", lambda v: v is None or isinstance(v, str), "a file path or None"),
)
for _flag in ("checkpoint_config.by_epoch", "evaluation.by_epoch", "lr_config.by_epoch"):
    _RULES += ((_flag, lambda v: not v, "False (training is by iteration)"),)


def validate_config(cfg, training=False, warn=True):
    """Raise :class:`ConfigError` naming the first unusable key; warn about likely top-level typos.

    ``training``: also require what the trainer needs (``data.train``, ``data.batch_size``,
    ``runner.max_iters``, ``optimizer``, ``lr_config``).
    """
    for name in cfg if warn else ():
        if name not in TOP_LEVEL and not str(name).startswith("_"):
            hint = did_you_mean(str(name), TOP_LEVEL)
            if hint:
                warnings.warn(f"config name '{name}' is not used by jsegnext{hint}", ConfigWarning, stacklevel=2)
    for section, allowed in SECTIONS.items():
        node, present = _get(cfg, section)
        if present and node is not None:
            _check_keys(section, node, allowed)
    optimizer, present = _get(cfg, "optimizer")
    if present:
        if not isinstance(optimizer, dict) or "type" not in optimizer:
            raise ConfigError(f"config key 'optimizer' must be a dict with a 'type' ({', '.join(OPTIMIZERS)})")
        _require(cfg, "optimizer.type", lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}")
        _check_keys("optimizer", optimizer, OPTIMIZERS[optimizer["type"]])
    for key, ok, expected in _RULES:
        _require(cfg, key, ok, expected)
    for split in ("train", "val", "test"):
        _require(cfg, f"data.{split}", lambda v: isinstance(v, dict) and "type" in v, "a dataset dict with a 'type'")
    if training:
        for key in REQUIRED_FOR_TRAINING:
            if not _get(cfg, key)[1]:
                raise ConfigError(f"config key '{key}' is missing (training needs it)")


def check_class_count(num_classes, dataset, split):
    """Raise :class:`ConfigError` unless the model's ``num_classes`` is the dataset's class count.

    A head with fewer classes than the labels would train on out-of-range targets; one with more
    would predict classes the dataset has no names or IoU for. ``num_classes`` None (an exported
    graph that does not say) is not checked.
    """
    classes = len(dataset.CLASSES)
    if num_classes is not None and int(num_classes) != classes:
        raise ConfigError(
            f"model.decode_head.num_classes={num_classes} but data.{split} ({type(dataset).__name__}) has "
            f"{classes} classes: set model.decode_head.num_classes={classes}, or the dataset's classes"
        )
