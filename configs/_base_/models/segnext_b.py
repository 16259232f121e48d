"""SegNeXt-B: MSCAN-B encoder + LightHamHead (512 channels, NMF rank 64), 27.64 M parameters at 150 classes.

Leaf configs set ``model.decode_head.num_classes`` (and ``model.test_cfg`` for a sliding-window test).
"""

model = dict(
    type='EncoderDecoder',
    backbone=dict(
        type='MSCAN',
        embed_dims=[64, 128, 320, 512],
        depths=[3, 3, 12, 3],
        mlp_ratios=[8, 8, 4, 4],
        drop_rate=0.0,
        drop_path_rate=0.1,
        strip_conv='auto',  # depthwise strips: 'auto' (fastest measured), 'conv2d', 'meta', 'kernel', 'fused'
    ),
    decode_head=dict(
        type='LightHamHead',
        in_channels=[128, 320, 512],
        in_index=[1, 2, 3],
        channels=512,
        ham_channels=512,
        num_classes=150,
        dropout_ratio=0.1,
        norm_groups=32,
        # NMF2D (see its docstring): grad_mode 'unrolled' as the reference or 'one_step' as HamNet;
        # seed=<int> fixes the random bases (repeatable inference).
        ham_kwargs=dict(
            MD_S=1, MD_R=64, train_steps=6, eval_steps=7, inv_t=1, rand_init=True, grad_mode='unrolled', seed=None
        ),
    ),
    test_cfg=dict(mode='whole'),
)
# ImageNet-pretrained MSCAN-B that initialises the encoder (reference .pth or jsegnext .pkl).
pretrained = 'pretrained/mscan_b.pth'
