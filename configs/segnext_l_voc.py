"""SegNeXt-L on Pascal VOC 2012 + SBD aug: 21 classes, crop 512x512, batch 16 (total), 80k iterations.

Published mIoU (single-scale / multi-scale + flip): 90.6 (test, COCO pre-trained).
Every setting is written out here; nothing is inherited from another file.
"""

# ----------------------------------------------------------------------------- model
model = dict(
    type='EncoderDecoder',
    backbone=dict(
        type='MSCAN',
        embed_dims=[64, 128, 320, 512],
        depths=[3, 5, 27, 3],
        mlp_ratios=[8, 8, 4, 4],
        drop_rate=0.0,
        drop_path_rate=0.3,
        # depthwise strip convolutions: 'auto' (fastest measured), 'conv2d' (Jittor's
        # nn.Conv2d(groups=C)), 'meta', 'kernel' or 'fused' (all of MSCA's strips in one op)
        strip_conv='auto',
    ),
    decode_head=dict(
        type='LightHamHead',
        in_channels=[128, 320, 512],
        in_index=[1, 2, 3],
        channels=1024,
        ham_channels=1024,
        num_classes=21,
        dropout_ratio=0.1,
        norm_groups=32,
        # NMF2D: rank R, 6 updates in training and 7 in eval; inv_t is 1 (the reference
        # NMF2D fixes it to 1 whatever its config says). grad_mode='unrolled' back-propagates
        # through every update like the reference; 'one_step' is HamNet's one-step gradient.
        # seed=<int> makes inference repeatable (fixed NMF bases).
        ham_kwargs=dict(MD_S=1, MD_R=64, train_steps=6, eval_steps=7, inv_t=1, rand_init=True,
                        grad_mode='unrolled', seed=None),
    ),
    test_cfg=dict(mode='whole'),
)
# ImageNet-pretrained MSCAN used to initialise the encoder (reference .pth or jsegnext .pkl).
pretrained = 'pretrained/mscan_l.pth'

# ----------------------------------------------------------------------------- data
dataset_type = 'PascalVOCDataset'
data_root = 'data/VOCdevkit/VOC2012'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='Resize', img_scale=(2048, 512), ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size=crop_size, pad_val=0, seg_pad_val=255),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', img_scale=(2048, 512), keep_ratio=True, size_divisor=32),
    dict(type='Normalize', **img_norm_cfg),
]
data = dict(
    batch_size=16,  # total over all processes (mpirun -np N splits it)
    num_workers=4,
    train=dict(
        type=dataset_type, data_root=data_root,
        img_dir='JPEGImages', ann_dir=['SegmentationClass', 'SegmentationClassAug'],
        split=['ImageSets/Segmentation/train.txt', 'ImageSets/Segmentation/aug.txt'],
        pipeline=train_pipeline),
    val=dict(
        type=dataset_type, data_root=data_root,
        img_dir='JPEGImages', ann_dir='SegmentationClass', split='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline),
)

# ----------------------------------------------------------------------------- schedule
# AdamW; parameter names containing 'head' get lr x10, names containing 'norm' no weight decay
# (mmcv's custom_keys rule, see jsegnext/engine/optim.py).
optimizer = dict(
    type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01,
    paramwise_cfg=dict(custom_keys={
        'pos_block': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0),
        'head': dict(lr_mult=10.0),
    }),
)
lr_config = dict(policy='poly', power=1.0, min_lr=0.0, warmup='linear', warmup_iters=1500, warmup_ratio=1e-6)
runner = dict(max_iters=80000)
checkpoint_config = dict(interval=8000, max_keep_ckpts=3)
evaluation = dict(interval=8000, metric='mIoU', save_best='mIoU')
log_config = dict(interval=50)
seed = 0
