"""SegNeXt's optimiser and learning-rate schedule (the released recipe), shared by every benchmark config."""

# AdamW; parameter names containing 'head' get lr x10, names containing 'norm' no weight decay
# (mmcv's custom_keys rule, see jsegnext/engine/optim.py).
optimizer = dict(
    type='AdamW',
    lr=6e-5,
    betas=(0.9, 0.999),
    weight_decay=0.01,
    paramwise_cfg=dict(
        custom_keys={
            'pos_block': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),
            'head': dict(lr_mult=10.0),
        }
    ),
)
lr_config = dict(policy='poly', power=1.0, min_lr=0.0, warmup='linear', warmup_iters=1500, warmup_ratio=1e-6)
