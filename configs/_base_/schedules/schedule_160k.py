"""160k iterations; a checkpoint and an evaluation every 16k."""

runner = dict(max_iters=160000)
checkpoint_config = dict(interval=16000, max_keep_ckpts=3)
evaluation = dict(interval=16000, metric='mIoU', save_best='mIoU', fuse=True)  # fuse: validate a fused inference copy
