"""SegNeXt-B on Pascal VOC 2012 + SBD aug: 21 classes, crop 512x512, batch 16 (total), 80k iterations.

Published mIoU (single-scale / multi-scale + flip): 87.5 (test).
See every resolved setting with: python tools/print_config.py configs/segnext_b_voc.py
"""

_base_ = [
    '_base_/models/segnext_b.py',
    '_base_/datasets/voc.py',
    '_base_/schedules/adamw_poly.py',
    '_base_/schedules/schedule_80k.py',
    '_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=21))
