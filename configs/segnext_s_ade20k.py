"""SegNeXt-S on ADE20K: 150 classes, crop 512x512, batch 16 (total), 160k iterations.

Published mIoU (single-scale / multi-scale + flip): 44.3 / 45.8.
See every resolved setting with: python tools/print_config.py configs/segnext_s_ade20k.py
"""

_base_ = [
    '_base_/models/segnext_s.py',
    '_base_/datasets/ade20k.py',
    '_base_/schedules/adamw_poly.py',
    '_base_/schedules/schedule_160k.py',
    '_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=150))
