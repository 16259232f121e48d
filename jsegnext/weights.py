"""Weights: the layouts of published and jsegnext checkpoints, and loading them into a model.

Files are read by :mod:`jsegnext.checkpoint_io` (any format, detected from the content, no code
from the file ever runs). Layouts recognised, without PyTorch installed:

* mmcv checkpoints ``{'meta', 'state_dict'[, 'optimizer']}`` as released with SegNeXt;
* bare state dicts, and ``module.``-prefixed ones saved from (Distributed)DataParallel;
* mmsegmentation 1.x files, where ``mlp.dwconv.dwconv.`` is named ``mlp.dwconv.``;
* ImageNet-pretrained MSCAN files (``mscan_t.pth`` ...): no ``backbone.`` prefix and a
  classifier (``head.*``) that a segmentor has no use for;
* jsegnext files (``{'meta', 'state_dict'}``: weights from ``convert_weights.py``, training checkpoints).

One rule for values: a tensor is copied into the model cast to the dtype of the model's variable
(a float16 or float64 checkpoint loads into a float32 model), for ``pretrained``, ``load_from``,
``--resume`` and :func:`jsegnext.apis.init_model` alike (all go through :func:`load_state`).
"""

import numpy as np

from . import checkpoint_io
from .errors import CheckpointError
from .runtime import jt

DROPPED_SUFFIXES = ("num_batches_tracked",)

__all__ = [
    "CheckpointError",
    "read_checkpoint",
    "normalise_keys",
    "is_backbone_only",
    "model_state",
    "LoadReport",
    "match_state",
    "load_state",
    "load_checkpoint",
    "infer_model_cfg",
    "save_weights",
]


def read_checkpoint(path):
    """Return ``(state_dict, meta)`` with NumPy values, whatever the file's format and layout."""
    path = str(path)
    obj = checkpoint_io.load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(obj).__name__}, not a dict of tensors)")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    state = obj.get("state_dict", obj.get("model", obj))
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: not a checkpoint (no state dict found)")
    arrays = {str(k): v for k, v in state.items() if isinstance(v, np.ndarray)}  # other entries: not weights
    if not arrays:
        raise CheckpointError(f"{path}: not a checkpoint (it holds no tensors)")
    return arrays, meta


def is_backbone_only(state_dict):
    """True for ImageNet-pretrained MSCAN files: encoder keys without the ``backbone.`` prefix."""
    return not any(k.startswith(("backbone.", "decode_head.")) for k in state_dict) and any(
        k.startswith("patch_embed1.") for k in state_dict
    )


def normalise_keys(state_dict, backbone_only=None):
    """Map any recognised layout onto jsegnext's names (those of the reference 0.x checkpoints).

    Returns ``(state_dict, dropped)`` where ``dropped`` lists keys that have no place in a
    segmentor (BN ``num_batches_tracked``, an ImageNet classifier).
    """
    out, dropped = {}, []
    if all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    if backbone_only is None:
        backbone_only = is_backbone_only(state_dict)
    for key, value in state_dict.items():
        if key.endswith(DROPPED_SUFFIXES):
            dropped.append(key)
            continue
        if backbone_only:
            if not key.startswith(("patch_embed", "block", "norm")):
                dropped.append(key)  # the ImageNet classification head
                continue
            key = "backbone." + key
        if ".mlp.dwconv." in key and ".mlp.dwconv.dwconv." not in key:
            key = key.replace(".mlp.dwconv.", ".mlp.dwconv.dwconv.")  # mmsegmentation 1.x naming
        out[key] = value
    return out, dropped


def model_state(model):
    """Name → Var of every tensor a checkpoint holds for ``model`` (parameters and BN statistics)."""
    return {name: var for name, var in model.state_dict().items() if isinstance(var, jt.Var)}


class LoadReport:
    """What loading a state dict into a model did, key by key."""

    def __init__(self, loaded, missing, unexpected, mismatched, dropped=()):
        self.loaded, self.missing, self.unexpected = loaded, missing, unexpected
        self.mismatched, self.dropped = mismatched, list(dropped)

    @property
    def ok(self):
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit=10):
        lines = [f"loaded {len(self.loaded)} tensors"]
        for title, items in (
            ("missing from the checkpoint", self.missing),
            ("unexpected (not in the model)", self.unexpected),
            ("shape mismatch", self.mismatched),
            ("dropped (no use in a segmentor)", self.dropped),
        ):
            if items:
                shown = ", ".join(str(i) for i in items[:limit])
                more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
                lines.append(f"{len(items)} {title}: {shown}{more}")
        return "; ".join(lines)


def match_state(model, state_dict, scope=""):
    """Compare a normalised state dict with the model (restricted to keys starting with ``scope``)."""
    target = {k: v for k, v in model_state(model).items() if k.startswith(scope)}
    loaded, mismatched = [], []
    for key, value in state_dict.items():
        if key in target:
            want = tuple(target[key].shape)
            if tuple(value.shape) == want:
                loaded.append(key)
            else:
                mismatched.append(f"{key} {tuple(value.shape)} vs model {want}")
    unexpected = [k for k in state_dict if k not in target]
    missing = [k for k in target if k not in state_dict]
    return LoadReport(loaded, missing, unexpected, mismatched)


def load_state(model, state_dict, allow_partial=False, scope="", dropped=(), source="checkpoint"):
    """Copy matching tensors into ``model``; raise CheckpointError on any mismatch unless allowed."""
    report = match_state(model, state_dict, scope)
    report.dropped = list(dropped)
    if not report.ok and not allow_partial:
        raise CheckpointError(f"{source} does not fit the model: {report.summary()}")
    target = model_state(model)
    for key in report.loaded:
        var = target[key]
        var.update(jt.array(np.ascontiguousarray(state_dict[key]).astype(str(var.dtype), copy=False)))
    return report


def load_checkpoint(model, path, allow_partial=False, backbone_only=None, require_head=False):
    """Load any recognised checkpoint file into a segmentor. Returns the LoadReport.

    A checkpoint holding only encoder weights (an ImageNet MSCAN, or one converted from it)
    fills ``model.backbone`` only — unless ``require_head`` asks for a complete segmentor.
    """
    raw, _ = read_checkpoint(path)
    state, dropped = normalise_keys(raw, backbone_only)
    encoder_only = all(k.startswith("backbone.") for k in state)
    if encoder_only and require_head:
        raise CheckpointError(
            f"{path}: holds encoder (backbone) weights only, no decode head; "
            "use it as the config's `pretrained` for training, or give a segmentor checkpoint"
        )
    scope = "backbone." if encoder_only else ""
    return load_state(model, state, allow_partial, scope, dropped, source=str(path))


def infer_model_cfg(state_dict):
    """The SegNeXt architecture a normalised state dict was saved from (NMF rank excepted)."""

    def shape(key):
        if key not in state_dict:
            raise CheckpointError(f"not a SegNeXt checkpoint: key {key!r} is missing")
        return state_dict[key].shape

    embed_dims, depths, mlp_ratios = [], [], []
    stage = 1
    while f"backbone.norm{stage}.weight" in state_dict:
        dim = shape(f"backbone.norm{stage}.weight")[0]
        depth = len({k.split(".")[2] for k in state_dict if k.startswith(f"backbone.block{stage}.")})
        hidden = shape(f"backbone.block{stage}.0.mlp.fc1.weight")[0]
        embed_dims.append(int(dim))
        depths.append(depth)
        mlp_ratios.append(hidden // dim)
        stage += 1
    if not embed_dims:
        raise CheckpointError("not a SegNeXt checkpoint: no MSCAN stages (backbone.norm1.weight) found")
    cfg = dict(backbone=dict(embed_dims=embed_dims, depths=depths, mlp_ratios=mlp_ratios))
    if "decode_head.conv_seg.weight" in state_dict:
        num_classes, channels = shape("decode_head.conv_seg.weight")[:2]
        ham_channels, in_total = shape("decode_head.squeeze.conv.weight")[:2]
        in_channels = []
        for index in range(len(embed_dims) - 1, -1, -1):  # the head reads the last stages
            if sum(in_channels) == in_total:
                break
            in_channels.insert(0, embed_dims[index])
        cfg["decode_head"] = dict(
            in_channels=in_channels,
            in_index=list(range(len(embed_dims) - len(in_channels), len(embed_dims))),
            channels=int(channels),
            ham_channels=int(ham_channels),
            num_classes=int(num_classes),
        )
    return cfg


def save_weights(path, state_dict, meta=None):
    """Write a jsegnext weight file (``{'meta', 'state_dict'}``, safetensors + JSON) atomically."""
    obj = {"meta": dict(meta or {}), "state_dict": {k: np.asarray(v) for k, v in state_dict.items()}}
    return checkpoint_io.save(str(path), obj)
