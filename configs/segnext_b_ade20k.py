"""SegNeXt-B on ADE20K: 150 classes, crop 512x512, batch 16 (total), 160k iterations.

Published mIoU (single-scale / multi-scale + flip): 48.5 / 49.9.
See every resolved setting with: python tools/print_config.py configs/segnext_b_ade20k.py
"""

_base_ = [
    '_base_/models/segnext_b.py',
    '_base_/datasets/ade20k.py',
    '_base_/schedules/adamw_poly.py',
    '_base_/schedules/schedule_160k.py',
    '_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=150))
