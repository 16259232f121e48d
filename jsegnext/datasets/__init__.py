"""Datasets, transforms and loading (mmsegmentation 0.x vocabulary).

* :func:`build_dataset` (``dict(type='ADE20KDataset', ...)``), :class:`CustomDataset` and the named datasets;
* :func:`build_pipeline` and the transforms (:mod:`.transforms`);
* :func:`build_dataloader`, :func:`collate_batch` (:mod:`.loader`);
* :class:`DataError` for bad data (always names the file);
* class names and palettes in :mod:`.classes`.
"""

from .builder import DATASETS, build_dataset, register_dataset
from .builtin import (
    ADE20KDataset,
    CityscapesDataset,
    COCOStuffDataset,
    PascalContextDataset,
    PascalContextDataset59,
    PascalVOCDataset,
    iSAIDDataset,
)
from .classes import DATASET_INFO, IGNORE_INDEX
from .custom import CustomDataset
from .errors import DataError, DataWarning
from .loader import SeededSampler, build_dataloader, collate_batch
from .transforms import (
    TRANSFORMS,
    Compose,
    build_pipeline,
    read_image,
    read_label,
    reduce_zero_label,
    register_transform,
    to_sample,
)

__all__ = [
    'DATASETS',
    'build_dataset',
    'register_dataset',
    'CustomDataset',
    'ADE20KDataset',
    'CityscapesDataset',
    'COCOStuffDataset',
    'PascalVOCDataset',
    'PascalContextDataset',
    'PascalContextDataset59',
    'iSAIDDataset',
    'DATASET_INFO',
    'IGNORE_INDEX',
    'DataError',
    'DataWarning',
    'SeededSampler',
    'build_dataloader',
    'collate_batch',
    'TRANSFORMS',
    'Compose',
    'build_pipeline',
    'read_image',
    'read_label',
    'reduce_zero_label',
    'register_transform',
    'to_sample',
]
from .demo import DemoDataset  # noqa: E402,F401  (registers the built-in demo dataset)
