"""Optimiser with mmcv's parameter-wise settings, and mmcv's poly learning-rate schedule.

Parameter groups — the rule of mmcv 1.x ``DefaultOptimizerConstructor.add_params``
(``mmcv/runner/optimizer/default_constructor.py``), reproduced exactly for ``custom_keys``:

1. The keys of ``paramwise_cfg['custom_keys']`` are ordered by
   ``sorted(sorted(keys), key=len, reverse=True)``: longest first, ties alphabetical.
2. For each parameter, the string tested is ``f'{prefix}.{name}'``: the full dotted name
   (``backbone.block1.0.norm1.weight``); a parameter of the root module is tested as ``.name``.
3. The FIRST key in that order that is a plain substring of the name wins (no word boundary,
   no regex); its ``lr_mult`` (default 1) and ``decay_mult`` (default 1) give
   ``lr = base_lr * lr_mult`` and ``weight_decay = base_wd * decay_mult``. A matched key
   overrides every other rule; an unmatched parameter keeps the optimiser's base lr and decay.
4. Parameters that do not take gradients are not trained: mmcv puts ``requires_grad=False``
   tensors in plain groups that PyTorch skips; here stop-grad Vars (BatchNorm running
   statistics, frozen weights) are left out of the optimiser altogether.

The SegNeXt recipe ``{'pos_block': decay 0, 'norm': decay 0, 'head': lr x10}`` is tried in the
order pos_block, head, norm, so for jsegnext's parameter names:

* everything under ``decode_head.`` matches 'head': lr x10 WITH weight decay 0.01 — its
  GroupNorm weights and biases (``decode_head.squeeze.gn.*``, named ``gn`` not ``norm``) and
  ``conv_seg`` included; 'head' would win over 'norm' even for a name holding both;
* ``backbone.block*.*.norm1/norm2.*`` (BN in blocks), ``backbone.norm1..4.*`` (stage LNs) and
  ``backbone.patch_embed2..4.norm.*`` (BN after the patch-embedding conv) match 'norm':
  base lr, no weight decay;
* the stem's BatchNorms ``backbone.patch_embed1.proj.1.*`` / ``proj.4.*`` have no 'norm' in
  their names: base lr and weight decay 0.01, as in the reference;
* ``layer_scale_1/2``, conv weights and biases: base lr and weight decay 0.01;
* 'pos_block' matches nothing in SegNeXt (a leftover from SegFormer's configs).

mmcv builds one PyTorch group per parameter; here parameters sharing the matched key are
grouped together (same lr and decay, same update). Groups are ordered by their first
parameter, so group 0 holds the model's first parameter — the lr mmcv logs.
``bias_lr_mult``, ``norm_decay_mult`` and the other type-based options of mmcv are not
implemented (SegNeXt does not use them) and are refused rather than ignored.

AdamW is Jittor's ``jt.optim.AdamW``, whose update equals PyTorch's: decoupled decay
``p *= 1 - lr*wd``, then ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g^2``,
``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)`` with ``t`` the step count
(tests/test_optim.py checks it against NumPy). One difference: a parameter that gets no
gradient from the loss receives a zero gradient in Jittor (so it still decays), where PyTorch
skips it; every SegNeXt parameter takes part in the loss.
"""

import math
from collections.abc import Mapping

from ..runtime import jt

_UNSUPPORTED_PARAMWISE = (
    "bias_lr_mult",
    "bias_decay_mult",
    "norm_decay_mult",
    "dwconv_decay_mult",
    "dcn_offset_lr_mult",
    "flat_decay_mult",
)


def sorted_custom_keys(custom_keys):
    """mmcv's order for trying custom keys: longest first, ties in alphabetical order."""
    return sorted(sorted(custom_keys), key=len, reverse=True)


def match_custom_key(name, sorted_keys):
    """The custom key that decides ``name`` (the first substring match in ``sorted_keys``), or None."""
    probe = name if "." in name else f".{name}"  # mmcv tests f'{prefix}.{name}'; prefix '' at the root
    for key in sorted_keys:
        if key in probe:
            return key
    return None


def trainable_parameters(model):
    """(name, Var) of the parameters that take gradients, in the model's order, each Var once."""
    if hasattr(model, "module"):
        model = model.module
    seen, out = set(), []
    for name, var in model.state_dict().items():
        if not isinstance(var, jt.Var) or var.is_stop_grad() or id(var) in seen:
            continue
        seen.add(id(var))
        out.append((name, var))
    return out


def build_param_groups(model, base_lr, base_wd=None, paramwise_cfg=None):
    """Param groups (list of dicts) following mmcv's custom_keys rule (see the module docstring).

    Each group: params, param_names, lr, initial_lr, weight_decay, lr_mult, decay_mult, custom_key.
    """
    paramwise_cfg = dict(paramwise_cfg or {})
    bad = [k for k in paramwise_cfg if k in _UNSUPPORTED_PARAMWISE]
    if bad:
        raise NotImplementedError(f"paramwise_cfg options {bad} are not supported (only custom_keys)")
    unknown = [k for k in paramwise_cfg if k not in ("custom_keys", "bypass_duplicate")]
    if unknown:
        raise ValueError(f"unknown paramwise_cfg options {unknown}")
    custom_keys = {str(k): dict(v) for k, v in dict(paramwise_cfg.get("custom_keys") or {}).items()}
    for key, opts in custom_keys.items():
        extra = set(opts) - {"lr_mult", "decay_mult"}
        if extra:
            raise ValueError(f"custom_keys[{key!r}] has unsupported fields {sorted(extra)} (lr_mult, decay_mult)")
        if "decay_mult" in opts and base_wd is None:
            raise ValueError("custom_keys set decay_mult but the optimizer has no weight_decay")
    order = sorted_custom_keys(custom_keys)
    groups, by_key = [], {}
    for name, var in trainable_parameters(model):
        key = match_custom_key(name, order)
        if key not in by_key:
            opts = custom_keys.get(key, {})
            lr_mult, decay_mult = float(opts.get("lr_mult", 1.0)), float(opts.get("decay_mult", 1.0))
            group = {
                "params": [],
                "param_names": [],
                "custom_key": key,
                "lr_mult": lr_mult,
                "decay_mult": decay_mult,
                "lr": base_lr * lr_mult,
                "initial_lr": base_lr * lr_mult,
                "weight_decay": (base_wd or 0.0) * decay_mult,
            }
            by_key[key] = group
            groups.append(group)
        by_key[key]["params"].append(var)
        by_key[key]["param_names"].append(name)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return groups


def build_optimizer(model, cfg):
    """A Jittor optimiser from an mmcv-style config dict, e.g.

    ``dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01, paramwise_cfg=dict(custom_keys=...))``.
    Types: 'AdamW' (lr, betas, eps=1e-8, weight_decay=0.01 as in PyTorch) and 'SGD' (lr, momentum,
    weight_decay, nesterov; dampening must be 0 — Jittor's first-step dampening differs from PyTorch's).
    """
    cfg = dict(cfg.items()) if isinstance(cfg, Mapping) else dict(cfg)
    kind = cfg.pop("type", None)
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    if "lr" not in cfg:
        raise ValueError("optimizer config needs an 'lr'")
    lr = float(cfg.pop("lr"))
    if kind == "AdamW":
        wd = float(cfg.pop("weight_decay", 0.01))
        betas = tuple(float(b) for b in cfg.pop("betas", (0.9, 0.999)))
        eps = float(cfg.pop("eps", 1e-8))
        if cfg.pop("amsgrad", False):
            raise NotImplementedError("AdamW(amsgrad=True) is not supported")
        _no_leftovers(kind, cfg)
        groups = build_param_groups(model, lr, wd, paramwise_cfg)
        optimizer = jt.optim.AdamW(groups, lr, eps=eps, betas=betas, weight_decay=wd)
    elif kind == "SGD":
        wd = float(cfg.pop("weight_decay", 0.0))
        momentum = float(cfg.pop("momentum", 0.0))
        nesterov = bool(cfg.pop("nesterov", False))
        if float(cfg.pop("dampening", 0.0)) != 0.0:
            raise NotImplementedError("SGD(dampening != 0) is not supported")
        _no_leftovers(kind, cfg)
        groups = build_param_groups(model, lr, wd, paramwise_cfg)
        optimizer = jt.optim.SGD(groups, lr, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    else:
        raise ValueError(f"optimizer type {kind!r} is not supported (AdamW, SGD)")
    optimizer.jsegnext_type = kind
    return optimizer


def _no_leftovers(kind, cfg):
    if cfg:
        raise ValueError(f"{kind}: unsupported optimizer options {sorted(cfg)}")


def describe_param_groups(optimizer, examples=3):
    """A few readable lines: per group, the rule that made it, lr, weight decay, sizes, examples."""
    lines = [
        f"optimizer {getattr(optimizer, 'jsegnext_type', type(optimizer).__name__)}: "
        f"{len(optimizer.param_groups)} parameter groups"
    ]
    for i, group in enumerate(optimizer.param_groups):
        names = group.get("param_names", [])
        numel = sum(int(math.prod(p.shape)) for p in group["params"])
        key = group.get("custom_key")
        rule = f"custom key {key!r}" if key is not None else "default"
        shown = ", ".join(names[:examples]) + (f", ... ({len(names) - examples} more)" if len(names) > examples else "")
        lines.append(
            f"  group {i} [{rule}]: lr {group.get('initial_lr', group.get('lr', optimizer.lr)):.3g} "
            f"(x{group.get('lr_mult', 1.0):g}), weight_decay {group.get('weight_decay', 0.0):g} "
            f"(x{group.get('decay_mult', 1.0):g}), {len(group['params'])} tensors, {numel:,} values: {shown}"
        )
    return "\n".join(lines)


class PolyLrSchedule:
    """mmcv's ``PolyLrUpdaterHook`` (by iteration) with its warm-up, as a plain object.

    At iteration ``it`` (0-based: the number of updates already done; set before the update):

    * regular lr of a group: ``(base_lr - min_lr) * (1 - it / max_iters) ** power + min_lr``, with
      ``base_lr`` the group's initial lr (``initial_lr``, set by :func:`build_optimizer`);
    * while ``it < warmup_iters``: 'linear' multiplies it by
      ``1 - (1 - it / warmup_iters) * (1 - warmup_ratio)``; 'constant' by ``warmup_ratio``;
      'exp' by ``warmup_ratio ** (1 - it / warmup_iters)``; ``warmup=None`` disables warm-up.

    ``base_lrs`` is the optimiser itself or a list with one base lr per group.
    ``apply(it)`` / ``apply(optimizer, it)`` writes the lrs into the groups and returns group 0's lr.
    """

    def __init__(
        self,
        base_lrs,
        max_iters,
        power=1.0,
        min_lr=0.0,
        warmup="linear",
        warmup_iters=1500,
        warmup_ratio=1e-6,
        by_epoch=False,
    ):
        if by_epoch:
            raise NotImplementedError("only iteration-based schedules (by_epoch=False) are supported")
        if warmup is not None:
            if warmup not in ("constant", "linear", "exp"):
                raise ValueError(f"warmup {warmup!r} is not one of None, 'constant', 'linear', 'exp'")
            if not warmup_iters > 0:
                raise ValueError("warmup_iters must be positive")
            if not 0 < warmup_ratio <= 1.0:
                raise ValueError("warmup_ratio must be in (0, 1]")
        if max_iters <= 0:
            raise ValueError("max_iters must be positive")
        self.optimizer = None
        if hasattr(base_lrs, "param_groups"):
            self.optimizer = base_lrs
            groups = base_lrs.param_groups
            for group in groups:
                group.setdefault("initial_lr", group.get("lr", base_lrs.lr))
            base_lrs = [group["initial_lr"] for group in groups]
        self.base_lrs = [float(lr) for lr in base_lrs]
        self.max_iters, self.power, self.min_lr = int(max_iters), float(power), float(min_lr)
        self.warmup, self.warmup_iters, self.warmup_ratio = warmup, warmup_iters, float(warmup_ratio)

    def regular_lrs(self, it):
        coeff = (1 - it / self.max_iters) ** self.power
        return [(base - self.min_lr) * coeff + self.min_lr for base in self.base_lrs]

    def lrs(self, it):
        """The lr of every group at iteration ``it``."""
        regular = self.regular_lrs(it)
        if self.warmup is None or it >= self.warmup_iters:
            return regular
        if self.warmup == "constant":
            factor = self.warmup_ratio
        elif self.warmup == "linear":
            factor = 1 - (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
        else:  # exp
            factor = self.warmup_ratio ** (1 - it / self.warmup_iters)
        return [lr * factor for lr in regular]

    def apply(self, optimizer_or_it, it=None):
        optimizer = self.optimizer if it is None else optimizer_or_it
        it = optimizer_or_it if it is None else it
        if optimizer is None:
            raise ValueError("PolyLrSchedule built from a list of lrs: call apply(optimizer, it)")
        lrs = self.lrs(it)
        if len(lrs) != len(optimizer.param_groups):
            raise ValueError(f"{len(lrs)} base lrs for {len(optimizer.param_groups)} parameter groups")
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        return lrs[0]
