"""SegNeXt-L on iSAID: 16 classes, crop 896x896, batch 16 (total), 160k iterations.

Published mIoU (single-scale / multi-scale + flip): 70.3 (SS).
See every resolved setting with: python tools/print_config.py configs/segnext_l_isaid.py
"""

_base_ = [
    '_base_/models/segnext_l.py',
    '_base_/datasets/isaid.py',
    '_base_/schedules/adamw_poly.py',
    '_base_/schedules/schedule_160k.py',
    '_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=16))
