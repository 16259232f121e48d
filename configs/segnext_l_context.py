"""SegNeXt-L on Pascal Context 59: 59 classes, crop 480x480, batch 16 (total), 80k iterations.

Published mIoU (single-scale / multi-scale + flip): 58.7 / 60.3.
See every resolved setting with: python tools/print_config.py configs/segnext_l_context.py
"""

_base_ = [
    '_base_/models/segnext_l.py',
    '_base_/datasets/context.py',
    '_base_/schedules/adamw_poly.py',
    '_base_/schedules/schedule_80k.py',
    '_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=59), test_cfg=dict(mode='slide', crop_size=(480, 480), stride=(320, 320)))
