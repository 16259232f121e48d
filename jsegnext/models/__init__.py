"""SegNeXt models and the builder that turns a config's ``model`` dict into one."""

import jittor as jt

from ..config import ConfigError, check_kwargs, did_you_mean
from .ham_head import NMF2D, Hamburger, LightHamHead
from .mscan import MSCAN, MSCAN_SETTINGS
from .segmentor import EncoderDecoder, check_test_cfg, cross_entropy, run_inference, slide_inference, slide_windows

__all__ = [
    "build_segmentor",
    "EncoderDecoder",
    "MSCAN",
    "MSCAN_SETTINGS",
    "LightHamHead",
    "Hamburger",
    "NMF2D",
    "cross_entropy",
    "slide_windows",
    "slide_inference",
    "run_inference",
    "check_test_cfg",
]

_TYPES = {"EncoderDecoder": EncoderDecoder, "MSCAN": MSCAN, "LightHamHead": LightHamHead}


def _strip_type(cfg, expected, where):
    cfg = dict(cfg)
    name = cfg.pop("type", expected)
    if name != expected:
        raise ConfigError(f"{where}.type must be {expected!r}, got {name!r}{did_you_mean(name, _TYPES)}")
    return cfg


def build_segmentor(model_cfg):
    """Build an EncoderDecoder from ``dict(type='EncoderDecoder', backbone=..., decode_head=..., test_cfg=...)``.

    Every key is checked against the class it configures, so a typo names itself.
    """
    cfg = _strip_type(model_cfg, "EncoderDecoder", "model")
    check_kwargs(EncoderDecoder.__init__, cfg, "model")
    for key in ("backbone", "decode_head"):
        if key not in cfg:
            raise ConfigError(f"config key 'model.{key}' is missing")
    backbone = _strip_type(cfg["backbone"], "MSCAN", "model.backbone")
    head = _strip_type(cfg["decode_head"], "LightHamHead", "model.decode_head")
    check_kwargs(MSCAN.__init__, backbone, "model.backbone")
    check_kwargs(LightHamHead.__init__, head, "model.decode_head")
    check_kwargs(NMF2D.__init__, head.get("ham_kwargs") or {}, "model.decode_head.ham_kwargs")
    try:
        model = EncoderDecoder(backbone, head, cfg.get("test_cfg"))
    except ConfigError:
        raise
    except ValueError as err:  # a value the classes refuse (strip_conv, test_cfg.mode ...): a config problem
        raise ConfigError(f"model config: {err}") from None
    # Jittor draws random initial weights lazily, at their first use. Materialise them now so they
    # come from the seed set before construction, not from whatever seed is current at the first
    # forward (which differs per MPI rank and iteration in training).
    jt.sync(list(model.state_dict().values()))
    return model
