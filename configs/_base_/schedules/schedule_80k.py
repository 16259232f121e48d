"""80k iterations; a checkpoint and an evaluation every 8k."""

runner = dict(max_iters=80000)
checkpoint_config = dict(interval=8000, max_keep_ckpts=3)
evaluation = dict(interval=8000, metric='mIoU', save_best='mIoU', fuse=True)  # fuse: validate a fused inference copy
