"""SegNeXt-T on the built-in demo dataset: the README's first command.

    python tools/train.py configs/segnext_t_demo.py

The data (procedural scenes: striped discs, checkered boxes, dotted triangles and rings on
cluttered backgrounds, colours random — see jsegnext/datasets/demo.py) is generated into
data/demo on first use. Trains from scratch (no ImageNet weights are needed) in about 10 minutes
on 2 CPU cores, with a higher learning rate and a short schedule instead of the benchmark recipe.

Self-contained on purpose (no _base_): it shares only the SegNeXt-T architecture with the
benchmark configs, and it is the file to copy and edit for your own data, wherever you put it.
"""

# ----------------------------------------------------------------------------- model
model = dict(
    type='EncoderDecoder',
    backbone=dict(
        type='MSCAN',
        embed_dims=[32, 64, 160, 256],
        depths=[3, 3, 5, 2],
        mlp_ratios=[8, 8, 4, 4],
        drop_rate=0.0,
        drop_path_rate=0.1,
        strip_conv='auto',
    ),
    decode_head=dict(
        type='LightHamHead',
        in_channels=[64, 160, 256],
        in_index=[1, 2, 3],
        channels=256,
        ham_channels=256,
        num_classes=5,
        dropout_ratio=0.1,
        norm_groups=32,
        ham_kwargs=dict(
            MD_S=1, MD_R=16, train_steps=6, eval_steps=7, inv_t=1, rand_init=True, grad_mode='unrolled', seed=0
        ),
    ),
    test_cfg=dict(mode='whole'),
)
pretrained = None  # from scratch

# ----------------------------------------------------------------------------- data
dataset_type = 'DemoDataset'
data_root = 'data/demo'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
crop_size = (96, 96)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='Resize', img_scale=(128, 128), ratio_range=(0.75, 1.5)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size=crop_size, pad_val=0, seg_pad_val=255),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', img_scale=(128, 128), keep_ratio=True),
    dict(type='Normalize', **img_norm_cfg),
]
data = dict(
    batch_size=8,
    num_workers=2,
    # num_train / num_val / image_size: what is generated into data_root on first use
    train=dict(
        type=dataset_type,
        data_root=data_root,
        img_dir='images/train',
        ann_dir='annotations/train',
        num_train=400,
        num_val=60,
        image_size=128,
        pipeline=train_pipeline,
    ),
    val=dict(
        type=dataset_type,
        data_root=data_root,
        img_dir='images/val',
        ann_dir='annotations/val',
        num_train=400,
        num_val=60,
        image_size=128,
        pipeline=test_pipeline,
    ),
)

# ----------------------------------------------------------------------------- schedule
optimizer = dict(
    type='AdamW',
    lr=2e-3,
    betas=(0.9, 0.999),
    weight_decay=0.01,
    paramwise_cfg=dict(
        custom_keys={
            'pos_block': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),
            'head': dict(lr_mult=1.0),
        }
    ),
)
lr_config = dict(policy='poly', power=1.0, min_lr=0.0, warmup='linear', warmup_iters=50, warmup_ratio=1e-3)
runner = dict(max_iters=700)
checkpoint_config = dict(interval=100, max_keep_ckpts=2)
evaluation = dict(interval=350, metric='mIoU', save_best='mIoU', fuse=True)  # fuse: validate a fused inference copy
log_config = dict(interval=10)
seed = 0
