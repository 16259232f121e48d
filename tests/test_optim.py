import numpy as np
import pytest

from jsegnext.engine.optim import (
    PolyLrSchedule,
    build_optimizer,
    build_param_groups,
    describe_param_groups,
    match_custom_key,
    sorted_custom_keys,
)
from jsegnext.runtime import jt

nn = jt.nn

SEGNEXT_OPTIM = dict(
    type="AdamW",
    lr=6e-5,
    betas=(0.9, 0.999),
    weight_decay=0.01,
    paramwise_cfg=dict(
        custom_keys={"pos_block": dict(decay_mult=0.0), "norm": dict(decay_mult=0.0), "head": dict(lr_mult=10.0)}
    ),
)


class Named(nn.Module):
    def __init__(self, **children):
        for k, v in children.items():
            setattr(self, k, v)


class Block(nn.Module):
    def __init__(self, c):
        self.layer_scale_1 = jt.ones(c) * 1e-2
        self.norm1 = nn.BatchNorm2d(c)
        self.proj_1 = nn.Conv2d(c, c, 1)


class TinySegNeXtNames(nn.Module):
    """Parameter names like the real model's, a few of each kind."""

    def __init__(self, c=4):
        self.backbone = Named(
            patch_embed1=Named(proj=nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c))),
            block1=nn.Sequential(Block(c)),
            norm1=nn.LayerNorm(c),
            patch_embed2=Named(proj=nn.Conv2d(c, c, 3, padding=1), norm=nn.BatchNorm2d(c)),
        )
        self.decode_head = Named(
            squeeze=Named(conv=nn.Conv2d(c, c, 1, bias=False), gn=nn.GroupNorm(2, c)),
            norm_extra=nn.LayerNorm(c),  # holds 'head' and 'norm': 'head' wins
            conv_seg=nn.Conv2d(c, 3, 1),
        )


def group_of(optimizer, name):
    for group in optimizer.param_groups:
        if name in group["param_names"]:
            return group
    raise KeyError(name)


def test_mmcv_key_order_and_first_match():
    keys = {"norm": {}, "head": {}, "pos_block": {}, "ab": {}, "bc": {}, "norm1": {}}
    order = sorted_custom_keys(keys)
    assert order == ["pos_block", "norm1", "head", "norm", "ab", "bc"]  # longest first, ties alphabetical
    assert match_custom_key("decode_head.x.norm.weight", order) == "head"
    assert match_custom_key("backbone.block1.0.norm1.weight", order) == "norm1"
    assert match_custom_key("xabc", order) == "ab"
    assert match_custom_key("norm", ["norm"]) == "norm"  # root parameter, tested as '.norm'
    assert match_custom_key(".weight", ["weight"]) == "weight"


def test_segnext_groups():
    model = TinySegNeXtNames()
    opt = build_optimizer(model, SEGNEXT_OPTIM)
    assert isinstance(opt, jt.optim.AdamW)
    base = dict(lr=6e-5, weight_decay=0.01)
    expect = {
        "backbone.patch_embed1.proj.0.weight": base,
        "backbone.patch_embed1.proj.1.weight": base,  # stem BN: no 'norm' in its name -> decayed
        "backbone.patch_embed1.proj.1.bias": base,
        "backbone.block1.0.layer_scale_1": base,  # layer scale decayed
        "backbone.block1.0.proj_1.bias": base,
        "backbone.block1.0.norm1.weight": dict(lr=6e-5, weight_decay=0.0),
        "backbone.norm1.bias": dict(lr=6e-5, weight_decay=0.0),
        "backbone.patch_embed2.norm.weight": dict(lr=6e-5, weight_decay=0.0),
        "decode_head.squeeze.gn.weight": dict(lr=6e-4, weight_decay=0.01),  # head GN: lr x10 with decay
        "decode_head.norm_extra.weight": dict(lr=6e-4, weight_decay=0.01),
        "decode_head.conv_seg.weight": dict(lr=6e-4, weight_decay=0.01),
    }
    for name, want in expect.items():
        group = group_of(opt, name)
        assert group["lr"] == pytest.approx(want["lr"], rel=1e-12, abs=0), name
        assert group["weight_decay"] == pytest.approx(want["weight_decay"], rel=1e-12), name
    names = [n for g in opt.param_groups for n in g["param_names"]]
    assert not any("running_" in n for n in names)  # stop-grad BN statistics are not optimised
    assert len(names) == len(set(names)) == sum(1 for v in model.state_dict().values() if not v.is_stop_grad())
    assert opt.param_groups[0]["param_names"][0] == "backbone.patch_embed1.proj.0.weight"
    assert [g["custom_key"] for g in opt.param_groups] == [None, "norm", "head"]
    text = describe_param_groups(opt)
    assert "custom key 'head'" in text and "0.0006" in text


def test_frozen_params_skipped_and_bad_options():
    model = TinySegNeXtNames()
    model.backbone.block1[0].layer_scale_1.stop_grad()
    groups = build_param_groups(model, 1.0, 0.1)
    assert "backbone.block1.0.layer_scale_1" not in [n for g in groups for n in g["param_names"]]
    with pytest.raises(NotImplementedError):
        build_optimizer(model, dict(type="AdamW", lr=1.0, paramwise_cfg=dict(norm_decay_mult=0.0)))
    with pytest.raises(ValueError):
        build_optimizer(model, dict(type="Adam", lr=1.0))
    with pytest.raises(ValueError):
        build_optimizer(model, dict(type="AdamW", lr=1.0, momentum=0.9))


def test_poly_schedule_hand_values():
    model = TinySegNeXtNames()
    opt = build_optimizer(model, SEGNEXT_OPTIM)
    sched = PolyLrSchedule(
        opt, max_iters=160000, power=1.0, min_lr=0.0, warmup="linear", warmup_iters=1500, warmup_ratio=1e-6
    )
    # (it, backbone lr); the 'norm' group has the same lr, the 'head' group 10x
    table = [
        (0, 6e-11),  # 6e-5 * 1e-6
        (1, 4.005970962525067e-08),  # 6e-5 * (159999/160000) * (1 - (1499/1500) * (1 - 1e-6))
        (1499, 5.939824978962525e-05),  # 6e-5 * (158501/160000) * (1 - (1/1500) * (1 - 1e-6))
        (1500, 5.94375e-05),  # 6e-5 * 158500/160000, warm-up over
        (80000, 3e-05),
        (159999, 3.75e-10),
    ]  # 6e-5 / 160000
    for it, lr in table:
        returned = sched.apply(it)
        assert returned == pytest.approx(lr, rel=1e-9, abs=0), it
        assert group_of(opt, "backbone.norm1.weight")["lr"] == pytest.approx(lr, rel=1e-9, abs=0)
        assert group_of(opt, "decode_head.conv_seg.weight")["lr"] == pytest.approx(10 * lr, rel=1e-9, abs=0)
    # list form + apply(optimizer, it); power and min_lr
    other = PolyLrSchedule([1.0, 10.0, 1.0], max_iters=100, power=0.9, min_lr=1e-4, warmup=None)
    other.apply(opt, 50)
    assert opt.param_groups[2]["lr"] == pytest.approx((1.0 - 1e-4) * 0.5**0.9 + 1e-4)
    assert opt.param_groups[1]["lr"] == pytest.approx((10.0 - 1e-4) * 0.5**0.9 + 1e-4)


def test_adamw_step_matches_numpy_reference():
    jt.set_seed(0)
    a = jt.array(np.array([0.5, -1.0, 2.0], np.float32))
    b = jt.array(np.array([[1.5, -0.25], [0.75, 3.0]], np.float32))
    ca, cb = np.array([0.3, -2.0, 0.01], np.float32), np.array([[1.0, -0.5], [0.2, 4.0]], np.float32)
    lr, wds, betas, eps = [1e-2, 5e-2], [0.1, 0.0], (0.9, 0.999), 1e-8
    opt = jt.optim.AdamW(
        [{"params": [a], "lr": lr[0], "weight_decay": wds[0]}, {"params": [b], "lr": lr[1], "weight_decay": wds[1]}],
        lr[0],
        eps=eps,
        betas=betas,
    )
    ref = [a.numpy().astype(np.float64), b.numpy().astype(np.float64)]
    m = [np.zeros_like(r) for r in ref]
    v = [np.zeros_like(r) for r in ref]
    for t in range(1, 4):
        scale = 0.5 * t  # the lr changes between steps like under the schedule
        for g, lr_g in zip(opt.param_groups, lr):
            g["lr"] = lr_g * scale
        # loss = sum(c * p) + 0.5 * sum(p^2): gradient c + p
        loss = (a * jt.array(ca)).sum() + (b * jt.array(cb)).sum() + 0.5 * ((a * a).sum() + (b * b).sum())
        grads = [ca + ref[0], cb + ref[1]]
        opt.step(loss)
        for i in range(2):
            lr_t = lr[i] * scale
            ref[i] = ref[i] * (1 - lr_t * wds[i])
            m[i] = betas[0] * m[i] + (1 - betas[0]) * grads[i]
            v[i] = betas[1] * v[i] + (1 - betas[1]) * grads[i] ** 2
            denom = np.sqrt(v[i]) / np.sqrt(1 - betas[1] ** t) + eps
            ref[i] = ref[i] - lr_t / (1 - betas[0] ** t) * m[i] / denom
        np.testing.assert_allclose(a.numpy(), ref[0], rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(b.numpy(), ref[1], rtol=2e-6, atol=1e-7)
