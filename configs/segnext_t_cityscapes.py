"""SegNeXt-T on Cityscapes: 19 classes, crop 1024x1024, batch 8 (total), 160k iterations.

Published mIoU (single-scale / multi-scale + flip): 79.8 / 81.4.
See every resolved setting with: python tools/print_config.py configs/segnext_t_cityscapes.py
"""

_base_ = [
    '_base_/models/segnext_t.py',
    '_base_/datasets/cityscapes.py',
    '_base_/schedules/adamw_poly.py',
    '_base_/schedules/schedule_160k.py',
    '_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=19), test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)))
