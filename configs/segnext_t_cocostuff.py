"""SegNeXt-T on COCO-Stuff 164k: 171 classes, crop 512x512, batch 16 (total), 80k iterations.

Published mIoU (single-scale / multi-scale + flip): 38.7 / 39.1.
See every resolved setting with: python tools/print_config.py configs/segnext_t_cocostuff.py
"""

_base_ = [
    '_base_/models/segnext_t.py',
    '_base_/datasets/cocostuff.py',
    '_base_/schedules/adamw_poly.py',
    '_base_/schedules/schedule_80k.py',
    '_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=171))
