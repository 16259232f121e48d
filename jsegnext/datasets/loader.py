"""Batching: collate function, seeded sampler and ``build_dataloader``.

A jsegnext dataset is a ``jittor.dataset.Dataset`` and so is its own loader::

    loader = build_dataloader(dataset, batch_size=16, shuffle=True, num_workers=4, drop_last=True, seed=0)
    for epoch in range(3):
        loader.set_epoch(epoch)          # new order and new augmentations each epoch
        for batch in loader:
            batch['img']                 # jt.Var (N, 3, H, W) float32
            batch['gt_semantic_seg']     # jt.Var (N, H, W) uint8

``batch_size`` is the TOTAL over all MPI processes: Jittor cuts every global batch of the
(identical on every rank) index order into ``world_size`` consecutive slices of
``ceil(batch_size / world_size)`` (``jittor/dataset/dataset.py: _get_index_list``).
The order comes from (seed, epoch) and each sample's augmentation from (seed, epoch, index), so
batches are the same for any ``num_workers`` and across runs.
"""

import numpy as np

META_KEYS = ('filename', 'ann_filename', 'ori_shape', 'img_shape', 'pad_shape', 'flip', 'scale_factor')
ERROR_KEY = '_error'


def _stack_or_list(arrays):
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays, 0)
    return list(arrays)


def collate_batch(samples):
    """Samples (dicts from the dataset) -> one batch dict.

    ``img`` becomes (N, 3, H, W) float32 and ``gt_semantic_seg`` (N, H, W) when all samples have the
    same size (training, or test with batch 1); with different sizes (test batches) they stay lists
    of arrays. Meta keys become lists. A sample carrying an error (from a worker) makes the batch an
    error batch ``{'_error': [messages]}``.
    """
    errors = [s[ERROR_KEY] for s in samples if ERROR_KEY in s]
    if errors:
        return {ERROR_KEY: errors}
    batch = {'img': _stack_or_list([s['img'] for s in samples])}
    if all('gt_semantic_seg' in s for s in samples):
        batch['gt_semantic_seg'] = _stack_or_list([s['gt_semantic_seg'] for s in samples])
    for key in samples[0]:
        if key not in batch and key != 'gt_semantic_seg':
            batch[key] = [s.get(key) for s in samples]
    return batch


class SeededSampler:
    """Index order for one epoch: a permutation from ``(seed, epoch)`` (or 0..n-1 without shuffle).

    Reads the dataset's ``seed`` and ``epoch`` when iterated, so ``dataset.set_epoch(e)`` is all a
    training loop has to call. ``start`` skips the first indices (resuming mid-epoch).
    """

    def __init__(self, dataset, shuffle=True, start=0):
        self.dataset = dataset
        self.shuffle = shuffle
        self.start = start

    def indices(self):
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng([int(self.dataset.seed), int(self.dataset.epoch)]).permutation(n)
        else:
            order = np.arange(n)
        return order[self.start :]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return max(len(self.dataset) - self.start, 0)


def build_dataloader(
    dataset, batch_size=1, shuffle=False, num_workers=0, drop_last=False, seed=None, epoch=None, **attrs
):
    """Configure ``dataset`` (a jsegnext dataset) as a loader and return it.

    Args:
        batch_size: total over all MPI processes (each rank gets ``ceil(batch_size / world_size)``).
        shuffle: seeded shuffle, a new order every epoch (``dataset.set_epoch``).
        num_workers: Jittor worker processes (0 = load in the main process).
        drop_last: drop the last incomplete batch (training).
        seed: sets ``dataset.seed`` (order and augmentations); default keeps the dataset's.
        epoch: sets the current epoch.
        attrs: further Jittor ``Dataset.set_attrs`` keys (``buffer_size``, ``keep_numpy_array``, ...).
    """
    if seed is not None:
        dataset.seed = int(seed)
    if epoch is not None:
        dataset.set_epoch(epoch)
    dataset.sampler = SeededSampler(dataset, shuffle=shuffle)
    dataset.set_attrs(
        batch_size=int(batch_size),
        shuffle=bool(shuffle),
        num_workers=int(num_workers),
        drop_last=bool(drop_last),
        **attrs,
    )
    return dataset
