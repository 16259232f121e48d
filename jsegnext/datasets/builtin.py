"""The six datasets of the SegNeXt paper, in mmsegmentation's prepared layouts.

=======================  =======  ===========  ===================  ==============================  =====
type                     classes  reduce zero  image                label                           split
=======================  =======  ===========  ===================  ==============================  =====
ADE20KDataset            150      yes          ``*.jpg``            ``*.png``                       no
CityscapesDataset        19       no           ``*_leftImg8bit.png``  ``*_gtFine_labelTrainIds.png``  no
COCOStuffDataset         171      no           ``*.jpg``            ``*_labelTrainIds.png``         no
PascalVOCDataset         21       no           ``*.jpg``            ``*.png``                       yes
PascalContextDataset59   59       yes          ``*.jpg``            ``*.png``                       yes
PascalContextDataset     60       no           ``*.jpg``            ``*.png``                       yes
iSAIDDataset             16       no           ``*.png`` (patches)  ``*_instance_color_RGB.png``    no
=======================  =======  ===========  ===================  ==============================  =====

Suffixes can be overridden (``img_suffix=``, ``seg_map_suffix=``) like any CustomDataset argument.
"""

from . import classes as C
from .custom import CustomDataset


class ADE20KDataset(CustomDataset):
    """ADE20K (SceneParsing, ADEChallengeData2016): label 0 = 'other', dropped by reduce_zero_label."""

    CLASSES, PALETTE = C.ADE20K_CLASSES, C.ADE20K_PALETTE
    IMG_SUFFIX, SEG_MAP_SUFFIX = '.jpg', '.png'
    REDUCE_ZERO_LABEL = True


class CityscapesDataset(CustomDataset):
    """Cityscapes fine annotations; labels are the converter's ``*_gtFine_labelTrainIds.png`` (0..18, 255)."""

    CLASSES, PALETTE = C.CITYSCAPES_CLASSES, C.CITYSCAPES_PALETTE
    IMG_SUFFIX, SEG_MAP_SUFFIX = '_leftImg8bit.png', '_gtFine_labelTrainIds.png'
    REDUCE_ZERO_LABEL = False


class COCOStuffDataset(CustomDataset):
    """COCO-Stuff 164k; labels are the converter's ``*_labelTrainIds.png`` (0..170, 255)."""

    CLASSES, PALETTE = C.COCO_STUFF_CLASSES, C.COCO_STUFF_PALETTE
    IMG_SUFFIX, SEG_MAP_SUFFIX = '.jpg', '_labelTrainIds.png'
    REDUCE_ZERO_LABEL = False


class PascalVOCDataset(CustomDataset):
    """Pascal VOC 2012 (+ SBD aug: ``split=[train.txt, aug.txt]``, ``ann_dir=[SegmentationClass,
    SegmentationClassAug]``). Palette PNG labels are read as their indices."""

    CLASSES, PALETTE = C.VOC_CLASSES, C.VOC_PALETTE
    IMG_SUFFIX, SEG_MAP_SUFFIX = '.jpg', '.png'
    REDUCE_ZERO_LABEL = False
    SPLIT_REQUIRED = True


class PascalContextDataset(CustomDataset):
    """Pascal Context with background (60 classes)."""

    CLASSES, PALETTE = C.PASCAL_CONTEXT_CLASSES, C.PASCAL_CONTEXT_PALETTE
    IMG_SUFFIX, SEG_MAP_SUFFIX = '.jpg', '.png'
    REDUCE_ZERO_LABEL = False
    SPLIT_REQUIRED = True


class PascalContextDataset59(CustomDataset):
    """Pascal Context 59: the converter's 0..59 labels with background (0) ignored via reduce_zero_label."""

    CLASSES, PALETTE = C.PASCAL_CONTEXT59_CLASSES, C.PASCAL_CONTEXT59_PALETTE
    IMG_SUFFIX, SEG_MAP_SUFFIX = '.jpg', '.png'
    REDUCE_ZERO_LABEL = True
    SPLIT_REQUIRED = True


class iSAIDDataset(CustomDataset):  # noqa: N801 - mmseg's name
    """iSAID 896x896 patches: ``P0000_<y0>_<y1>_<x0>_<x1>.png`` <-> ``..._instance_color_RGB.png`` (ids 0..15)."""

    CLASSES, PALETTE = C.ISAID_CLASSES, C.ISAID_PALETTE
    IMG_SUFFIX, SEG_MAP_SUFFIX = '.png', '_instance_color_RGB.png'
    REDUCE_ZERO_LABEL = False


#: the benchmark datasets above, each available by its class name as ``dict(type=...)``
BUILTIN_DATASETS = (
    ADE20KDataset,
    CityscapesDataset,
    COCOStuffDataset,
    PascalVOCDataset,
    PascalContextDataset,
    PascalContextDataset59,
    iSAIDDataset,
)
