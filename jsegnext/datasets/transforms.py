"""Data pipeline: loading and augmentation transforms with mmsegmentation 0.x semantics.

A pipeline is a list of config dicts, built into one callable::

    pipeline = build_pipeline([dict(type='LoadImageFromFile'), dict(type='Resize', img_scale=(2048, 512),
                               ratio_range=(0.5, 2.0)), ...])
    results = pipeline(dict(filename='a.jpg', ann_filename='a.png'), rng=np.random.default_rng(0))

``results`` is a plain dict passed through every transform; the keys follow mmseg:
``img`` (H, W, 3; uint8 BGR as loaded with cv2, float32 after ``Normalize``), ``gt_semantic_seg``
(H, W uint8), ``seg_fields``, ``filename``, ``ann_filename``, ``ori_shape``, ``img_shape``,
``pad_shape``, ``scale_factor`` (w, h, w, h), ``flip``, ``flip_direction``, ``img_norm_cfg``.
The dataset also puts ``reduce_zero_label``, ``num_classes`` and ``ignore_index`` there so that
``LoadAnnotations`` can map and check the labels.

Every random draw comes from the ``numpy.random.Generator`` passed to the pipeline, in a fixed
order, so a sample is reproducible from its generator's seed (the dataset seeds it with
``(seed, epoch, index)``). Labels are only ever resized with nearest-neighbour interpolation and
padded with 255, so no transform invents label values.
"""

import copy
import io

import cv2
import numpy as np
from PIL import Image

from ..config import ConfigError, check_kwargs, did_you_mean
from .classes import IGNORE_INDEX
from .errors import DataError

TRANSFORMS = {}

_JPEG_EOI_WINDOW = 4096  # a complete JPEG has its end-of-image marker within this many final bytes


def register_transform(cls=None, name=None):
    """Class decorator: make ``cls`` available as ``dict(type=name or cls.__name__)``."""

    def wrap(c):
        TRANSFORMS[name or c.__name__] = c
        return c

    return wrap(cls) if cls is not None else wrap


# ============================================================================ file reading
def _read_bytes(path, kind):
    """The bytes of a ``kind`` ('image' or 'label') file, or a DataError naming it."""
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{kind} file not found: {path}", path) from None
    except OSError as err:
        raise DataError(f"cannot read {kind} file {path}: {err}", path) from None


def read_image(path):
    """An image file as an (H, W, 3) uint8 BGR array (cv2; EXIF orientation ignored, like the labels).

    Raises DataError naming ``path`` for a missing, unreadable, undecodable or truncated file.
    """
    data = _read_bytes(path, "image")
    if data.size == 0:
        raise DataError(f"image file is empty: {path}", path)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise DataError(f"cannot decode image {path}: corrupt or truncated file, or not an image", path)
    if data.size >= 2 and data[0] == 0xFF and data[1] == 0xD8:  # JPEG: cv2 silently fills a truncated file with grey
        tail = data[-_JPEG_EOI_WINDOW:].tobytes()
        if b"\xff\xd9" not in tail:
            raise DataError(f"truncated JPEG {path}: no end-of-image marker (incomplete download or copy?)", path)
    return img


def _is_gray8_png(data):
    """True for an 8-bit greyscale PNG (IHDR bit depth 8, colour type 0): cv2 reads it exactly and fast."""
    return (
        data.size > 26
        and data[:8].tobytes() == b"\x89PNG\r\n\x1a\n"
        and data[12:16].tobytes() == b"IHDR"
        and data[24] == 8
        and data[25] == 0
    )


def read_label(path):
    """A label PNG as an (H, W) uint8 array of class ids (palette PNGs give their indices, like mmseg).

    Raises DataError naming ``path`` for a missing or unreadable file, a colour-coded (RGB) label,
    or values above 255.
    """
    data = _read_bytes(path, "label")
    if _is_gray8_png(data):
        label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if label is not None and label.ndim == 2 and label.dtype == np.uint8:
            return label
    try:  # palette, 16-bit, RGB, other formats - and the error message for a broken file
        with Image.open(io.BytesIO(data.tobytes())) as im:
            mode = im.mode
            label = np.array(im)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot decode label {path}: {err}", path) from None
    if label.ndim == 3:
        if label.shape[2] >= 3 and (
            np.array_equal(label[..., 0], label[..., 1]) and np.array_equal(label[..., 0], label[..., 2])
        ):
            label = label[..., 0]  # a grey label saved as RGB
        elif label.shape[2] == 2:  # LA
            label = label[..., 0]
        else:
            raise DataError(
                f"label {path} is a colour image (mode {mode}); labels must be single-channel "
                "class ids - run the dataset converter (tools/dataset_converters/) first",
                path,
            )
    if label.ndim != 2:
        raise DataError(f"label {path} has unexpected shape {label.shape}", path)
    if label.dtype == bool:
        label = label.astype(np.uint8)
    elif label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise DataError(
                f"label {path} has values outside 0..255 (min {label.min()}, max {label.max()}, mode {mode})", path
            )
        label = label.astype(np.uint8)
    return np.ascontiguousarray(label)


_REDUCE_LUT = np.concatenate([[255], np.arange(255)]).astype(np.uint8)  # 0 -> 255, v -> v - 1
_REDUCE_LUT[255] = 255


def reduce_zero_label(label):
    """mmseg's ``reduce_zero_label``: 0 -> 255, others -1, 255 stays 255 (returns a new array)."""
    return cv2.LUT(np.ascontiguousarray(label, dtype=np.uint8), _REDUCE_LUT).reshape(label.shape)


def label_histogram(label):
    """Pixel count (int64) of every value 0..255 of a uint8 label."""
    label = np.ascontiguousarray(label)
    if label.size < (1 << 24):  # float32 counts are exact below 2**24
        return cv2.calcHist([label], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return np.bincount(label.ravel(), minlength=256)


def _values_ok(label, num_classes, ignore_index):
    """Fast check that all values are < num_classes or == ignore_index (uint8 label)."""
    top = int(label.max()) if label.size else 0
    if top < num_classes:
        return True
    if ignore_index == 255 and top == 255:
        return int((label + np.uint8(1)).max()) - 1 < num_classes  # 255 wraps to 0
    return False


def describe_outside_values(hist, num_classes, ignore_index=IGNORE_INDEX, reduced=False):
    """``None`` if a label with value histogram ``hist`` holds only classes and ``ignore_index``;
    else what is wrong, in the values **of the file**: with ``reduced`` (``hist`` counted after
    ``reduce_zero_label``) a value v < 255 was v + 1 in the file."""
    bad = [int(v) for v in np.nonzero(hist)[0] if v >= num_classes and v != ignore_index]
    if not bad:
        return None
    pixels = int(np.asarray(hist)[bad].sum())
    more = " ..." if len(bad) > 10 else ""
    if not reduced:
        shown = ", ".join(str(v) for v in bad[:10])
        return f"values {shown}{more} ({pixels} pixels) are not in 0..{num_classes - 1} or {ignore_index}"
    shown = ", ".join("0 or 255" if v == 255 else str(v + 1) for v in bad[:10])
    return (
        f"file values {shown}{more} ({pixels} pixels) are not classes: with reduce_zero_label (applied by "
        f"this check) file value v is class v-1 and 0 becomes 255, so a label file holds 1..{num_classes} "
        f"for the classes" + (" and 0 or 255 for ignored pixels" if ignore_index == 255 else "")
    )


def check_label_values(label, num_classes, path, ignore_index=IGNORE_INDEX, hist=None, reduced=False):
    """Raise DataError naming ``path`` if ``label`` has values outside 0..num_classes-1 and ignore_index
    (``reduced``: ``label`` is after reduce_zero_label; the message gives the file's values)."""
    if num_classes is None or (hist is None and _values_ok(label, num_classes, ignore_index)):
        return
    hist = label_histogram(label) if hist is None else hist
    problem = describe_outside_values(hist, num_classes, ignore_index, reduced)
    if problem:
        raise DataError(
            f"label {path}: {problem}. Wrong dataset type, an unconverted label, or reduce_zero_label set wrongly?",
            path,
        )


# ============================================================================ loading
@register_transform
class LoadImageFromFile:
    """Read ``results['filename']`` with cv2 (BGR, uint8 unless ``to_float32``)."""

    def __init__(self, to_float32=False, color_type='color'):
        if color_type != 'color':
            raise ConfigError(f"LoadImageFromFile: only color_type='color' is supported, got {color_type!r}")
        self.to_float32 = to_float32

    def __call__(self, results, rng=None):
        img = read_image(results['filename'])
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape
        results['ori_shape'] = img.shape
        results['pad_shape'] = img.shape
        results['scale_factor'] = (1.0, 1.0, 1.0, 1.0)
        return results


@register_transform
class LoadAnnotations:
    """Read ``results['ann_filename']`` into ``gt_semantic_seg`` (uint8), optionally reducing the zero label.

    Checks that the label has the image's size and no value outside the classes and 255.
    ``reduce_zero_label=None`` takes the dataset's setting.
    """

    def __init__(self, reduce_zero_label=None):
        self.reduce_zero_label = reduce_zero_label

    def __call__(self, results, rng=None):
        path = results.get('ann_filename')
        if path is None:
            raise DataError(
                f"no label for image {results.get('filename')} (the dataset has no ann_dir)", results.get('filename')
            )
        label = read_label(path)
        # the image as loaded (also when LoadAnnotations comes after Resize, as in mmseg 1.x test pipelines)
        shape = results.get('ori_shape') or (results['img'].shape if 'img' in results else None)
        if shape is not None and label.shape != tuple(shape[:2]):
            raise DataError(
                f"label {path} is {label.shape[1]}x{label.shape[0]} but its image "
                f"{results.get('filename')} is {shape[1]}x{shape[0]} (width x height)",
                path,
            )
        reduce = self.reduce_zero_label
        if reduce is None:
            reduce = results.get('reduce_zero_label', False)
        if reduce:
            label = reduce_zero_label(label)
        check_label_values(
            label, results.get('num_classes'), path, results.get('ignore_index', IGNORE_INDEX), reduced=bool(reduce)
        )
        results['gt_semantic_seg'] = label
        if 'gt_semantic_seg' not in results.setdefault('seg_fields', []):
            results['seg_fields'].append('gt_semantic_seg')
        return results


# ============================================================================ geometry
def rescale_size(w, h, scale):
    """mmcv.rescale_size: fit (w, h) in ``scale`` (long edge <= max(scale), short edge <= min(scale))."""
    if isinstance(scale, (int, float)):
        factor = float(scale)
    else:
        long_edge, short_edge = max(scale), min(scale)
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


_INTERP = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
    'lanczos': cv2.INTER_LANCZOS4,
}


def _as_scale(value, what):
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{what} must be a pair of numbers, got {value!r}")


@register_transform
class Resize:
    """Resize image and labels (mmseg ``Resize`` / SegNeXt's ``AlignResize``).

    * ``ratio_range=(lo, hi)``: scale = ``img_scale`` x U(lo, hi) (``int`` of each side), then, with
      ``keep_ratio``, the image is rescaled keeping its aspect ratio to fit in that scale
      (long edge <= max(scale), short edge <= min(scale)). ``img_scale=None`` uses the image's own size.
    * a list of two ``img_scale``: ``multiscale_mode='range'`` draws long and short edge between them,
      ``'value'`` picks one of the list.
    * one ``img_scale`` and no ``ratio_range``: fixed target (test).
    * ``keep_ratio=False`` resizes to exactly ``(w, h) = scale``.
    * ``size_divisor``: after resizing, the image is resized again (bilinear; labels nearest) to the next
      multiple of ``size_divisor`` on each side (SegNeXt's AlignResize for whole-image test).
    """

    def __init__(
        self,
        img_scale=None,
        ratio_range=None,
        keep_ratio=True,
        size_divisor=None,
        multiscale_mode='range',
        interpolation='bilinear',
    ):
        if img_scale is None:
            self.img_scale = None
        elif isinstance(img_scale, list) and img_scale and isinstance(img_scale[0], (list, tuple)):
            self.img_scale = [_as_scale(s, 'Resize.img_scale') for s in img_scale]
        else:
            self.img_scale = [_as_scale(img_scale, 'Resize.img_scale')]
        if ratio_range is not None:
            try:
                lo, hi = (float(r) for r in ratio_range)
            except (TypeError, ValueError):
                raise ConfigError(f"Resize.ratio_range must be (min, max), got {ratio_range!r}") from None
            if not 0 < lo <= hi:
                raise ConfigError(f"Resize.ratio_range must be (min, max) with 0 < min <= max, got {ratio_range!r}")
            if self.img_scale is not None and len(self.img_scale) != 1:
                raise ConfigError("Resize: ratio_range needs a single img_scale")
            self.ratio_range = (lo, hi)
        else:
            if self.img_scale is None:
                raise ConfigError("Resize needs img_scale (or ratio_range)")
            if multiscale_mode not in ('range', 'value'):
                raise ConfigError(f"Resize.multiscale_mode must be 'range' or 'value', got {multiscale_mode!r}")
            if multiscale_mode == 'range' and len(self.img_scale) not in (1, 2):
                raise ConfigError("Resize: multiscale_mode='range' takes two img_scale (lower and upper bound)")
            self.ratio_range = None
        if interpolation not in _INTERP:
            raise ConfigError(f"Resize.interpolation must be one of {sorted(_INTERP)}, got {interpolation!r}")
        if size_divisor is not None and int(size_divisor) <= 0:
            raise ConfigError(f"Resize.size_divisor must be positive, got {size_divisor!r}")
        self.keep_ratio = bool(keep_ratio)
        self.size_divisor = None if size_divisor is None else int(size_divisor)
        self.multiscale_mode = multiscale_mode
        self.interpolation = _INTERP[interpolation]

    def random_scale(self, results, rng):
        if self.ratio_range is not None:
            lo, hi = self.ratio_range
            ratio = rng.random() * (hi - lo) + lo
            if self.img_scale is None:
                h, w = results['img'].shape[:2]
                base = (w, h)
            else:
                base = self.img_scale[0]
            return int(base[0] * ratio), int(base[1] * ratio)
        if len(self.img_scale) == 1:
            return self.img_scale[0]
        if self.multiscale_mode == 'range':
            longs = [max(s) for s in self.img_scale]
            shorts = [min(s) for s in self.img_scale]
            return (int(rng.integers(min(longs), max(longs) + 1)), int(rng.integers(min(shorts), max(shorts) + 1)))
        return self.img_scale[int(rng.integers(len(self.img_scale)))]

    def _align(self, w, h):
        d = self.size_divisor
        return int(np.ceil(w / d)) * d, int(np.ceil(h / d)) * d

    def __call__(self, results, rng=None):
        scale = self.random_scale(results, rng)
        results['scale'] = scale
        h, w = results['img'].shape[:2]
        if self.keep_ratio:
            new_w, new_h = rescale_size(w, h, scale)
        else:
            new_w, new_h = int(scale[0]), int(scale[1])
        if new_w < 1 or new_h < 1:
            raise DataError(
                f"Resize: {results.get('filename')} ({w}x{h}) would become {new_w}x{new_h}", results.get('filename')
            )
        steps = [(new_w, new_h)]
        if self.size_divisor:
            aligned = self._align(new_w, new_h)
            if aligned != (new_w, new_h):
                steps.append(aligned)
        img = results['img']
        for size in steps:
            if size != (img.shape[1], img.shape[0]):
                img = cv2.resize(img, size, interpolation=self.interpolation)
        results['img'] = img
        for key in results.get('seg_fields', []):
            seg = results[key]
            for size in steps:
                if size != (seg.shape[1], seg.shape[0]):
                    seg = cv2.resize(seg, size, interpolation=cv2.INTER_NEAREST)
            results[key] = seg
        out_h, out_w = img.shape[:2]
        results['img_shape'] = img.shape
        results['pad_shape'] = img.shape
        results['scale_factor'] = (out_w / w, out_h / h, out_w / w, out_h / h)
        results['keep_ratio'] = self.keep_ratio
        return results


@register_transform(name='AlignResize')
class AlignResize(Resize):
    """SegNeXt's AlignResize: :class:`Resize` with ``size_divisor`` defaulting to 32."""

    def __init__(
        self,
        img_scale=None,
        ratio_range=None,
        keep_ratio=True,
        size_divisor=32,
        multiscale_mode='range',
        interpolation='bilinear',
    ):
        super().__init__(img_scale, ratio_range, keep_ratio, size_divisor, multiscale_mode, interpolation)


def _crop_size(value, what):
    if isinstance(value, int):
        return (value, value)
    h, w = _as_scale(value, what)
    if h <= 0 or w <= 0:
        raise ConfigError(f"{what} must be positive, got {value!r}")
    return (h, w)


@register_transform
class RandomCrop:
    """Random ``crop_size`` = (h, w) window (the whole side where the image is smaller).

    With ``cat_max_ratio < 1`` the window is redrawn, up to 10 times, while a single class covers
    ``cat_max_ratio`` or more of its labelled pixels (``ignore_index`` not counted) or only one class
    is present - mmseg's rule; after 10 failed checks the next draw is used as it is.
    """

    def __init__(self, crop_size, cat_max_ratio=1.0, ignore_index=IGNORE_INDEX):
        self.crop_size = _crop_size(crop_size, 'RandomCrop.crop_size')
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = ignore_index

    def get_crop_bbox(self, img, rng):
        margin_h = max(img.shape[0] - self.crop_size[0], 0)
        margin_w = max(img.shape[1] - self.crop_size[1], 0)
        y = int(rng.integers(0, margin_h + 1))
        x = int(rng.integers(0, margin_w + 1))
        return y, y + self.crop_size[0], x, x + self.crop_size[1]

    @staticmethod
    def crop(img, bbox):
        y1, y2, x1, x2 = bbox
        return img[y1:y2, x1:x2, ...]

    def accept(self, seg):
        """True when the crop passes the cat_max_ratio rule."""
        if seg.dtype == np.uint8:
            cnt = label_histogram(seg)
            if 0 <= self.ignore_index < 256:
                cnt[self.ignore_index] = 0
            cnt = cnt[cnt > 0]
        else:
            values, cnt = np.unique(seg, return_counts=True)
            cnt = cnt[values != self.ignore_index]
        return len(cnt) > 1 and cnt.max() / cnt.sum() < self.cat_max_ratio

    def __call__(self, results, rng=None):
        img = results['img']
        bbox = self.get_crop_bbox(img, rng)
        if self.cat_max_ratio < 1.0 and 'gt_semantic_seg' in results:
            for _ in range(10):
                if self.accept(self.crop(results['gt_semantic_seg'], bbox)):
                    break
                bbox = self.get_crop_bbox(img, rng)
        img = np.ascontiguousarray(self.crop(img, bbox))
        results['img'] = img
        results['img_shape'] = img.shape
        results['pad_shape'] = img.shape
        for key in results.get('seg_fields', []):
            results[key] = np.ascontiguousarray(self.crop(results[key], bbox))
        return results


@register_transform
class RandomFlip:
    """Flip image and labels together with probability ``prob`` (``results['flip']`` forces it)."""

    def __init__(self, prob=None, direction='horizontal'):
        if prob is not None and not 0 <= prob <= 1:
            raise ConfigError(f"RandomFlip.prob must be in [0, 1], got {prob!r}")
        if direction not in ('horizontal', 'vertical'):
            raise ConfigError(f"RandomFlip.direction must be 'horizontal' or 'vertical', got {direction!r}")
        self.prob = prob
        self.direction = direction

    def __call__(self, results, rng=None):
        if 'flip' not in results:
            results['flip'] = bool(self.prob is not None and rng.random() < self.prob)
        results.setdefault('flip_direction', self.direction)
        if results['flip']:
            code = 1 if results['flip_direction'] == 'horizontal' else 0
            results['img'] = cv2.flip(results['img'], code)
            for key in results.get('seg_fields', []):
                results[key] = cv2.flip(results[key], code)
        return results


@register_transform
class Pad:
    """Pad bottom/right to ``size`` = (h, w) or to a multiple of ``size_divisor``; labels with ``seg_pad_val``."""

    def __init__(self, size=None, size_divisor=None, pad_val=0, seg_pad_val=IGNORE_INDEX):
        if (size is None) == (size_divisor is None):
            raise ConfigError("Pad takes exactly one of size and size_divisor")
        self.size = None if size is None else _crop_size(size, 'Pad.size')
        self.size_divisor = size_divisor
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val

    def __call__(self, results, rng=None):
        img = results['img']
        h, w = img.shape[:2]
        if self.size is not None:
            th, tw = self.size
            if h > th or w > tw:
                raise DataError(
                    f"Pad: {results.get('filename')} is {w}x{h} after the preceding transforms, "
                    f"larger than Pad.size {tw}x{th} (put RandomCrop before Pad)",
                    results.get('filename'),
                )
        else:
            d = self.size_divisor
            th, tw = int(np.ceil(h / d)) * d, int(np.ceil(w / d)) * d
        if (th, tw) != (h, w):
            img = cv2.copyMakeBorder(img, 0, th - h, 0, tw - w, cv2.BORDER_CONSTANT, value=[self.pad_val] * 4)
            if img.ndim == 2:
                img = img[:, :, None]
            for key in results.get('seg_fields', []):
                results[key] = cv2.copyMakeBorder(
                    results[key], 0, th - h, 0, tw - w, cv2.BORDER_CONSTANT, value=self.seg_pad_val
                )
        results['img'] = img
        results['pad_shape'] = img.shape
        results['pad_fixed_size'] = self.size
        results['pad_size_divisor'] = self.size_divisor
        return results


# ============================================================================ photometric
def _convert(img, alpha=1.0, beta=0.0):
    img = img.astype(np.float32) * alpha + beta
    return np.clip(img, 0, 255).astype(np.uint8)


@register_transform
class PhotoMetricDistortion:
    """mmseg's photometric distortion of a uint8 BGR image; each step applied with probability 0.5.

    Order: brightness (+U(-delta, delta)); a coin picks the contrast mode - ``1``: contrast
    (x U(lo, hi)) now; saturation (HSV S x U(lo, hi)); hue (H + randint(-delta, delta), mod 180);
    mode ``0``: contrast last. Values are clipped to 0..255 after every step.
    """

    def __init__(self, brightness_delta=32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5), hue_delta=18):
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = int(hue_delta)

    def brightness(self, img, rng):
        if rng.integers(2):
            return _convert(img, beta=rng.uniform(-self.brightness_delta, self.brightness_delta))
        return img

    def contrast(self, img, rng):
        if rng.integers(2):
            return _convert(img, alpha=rng.uniform(self.contrast_lower, self.contrast_upper))
        return img

    def saturation(self, img, rng):
        if rng.integers(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=rng.uniform(self.saturation_lower, self.saturation_upper))
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def hue(self, img, rng):
        if rng.integers(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            shift = int(rng.integers(-self.hue_delta, self.hue_delta))  # numpy randint: high excluded
            hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int32) + shift) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def __call__(self, results, rng=None):
        img = results['img']
        if img.dtype != np.uint8:
            raise ConfigError(
                "PhotoMetricDistortion needs the uint8 image: put it before Normalize "
                "(and use LoadImageFromFile without to_float32)"
            )
        img = self.brightness(img, rng)
        mode = rng.integers(2)
        if mode == 1:
            img = self.contrast(img, rng)
        img = self.saturation(img, rng)
        img = self.hue(img, rng)
        if mode == 0:
            img = self.contrast(img, rng)
        results['img'] = img
        return results


@register_transform
class Normalize:
    """``(img - mean) / std`` in float32, converting BGR to RGB first when ``to_rgb``."""

    def __init__(self, mean, std, to_rgb=True):
        self.mean = np.array(mean, dtype=np.float32).reshape(1, 1, -1)
        self.std = np.array(std, dtype=np.float32).reshape(1, 1, -1)
        if self.mean.size != 3 or self.std.size != 3 or np.any(self.std == 0):
            raise ConfigError(f"Normalize needs 3 means and 3 non-zero stds, got mean={mean!r} std={std!r}")
        self.stdinv = (1.0 / self.std.astype(np.float64)).astype(np.float32)
        self.to_rgb = bool(to_rgb)

    def __call__(self, results, rng=None):
        img = results['img']
        if self.to_rgb:
            img = img[:, :, ::-1]
        out = np.empty(img.shape, np.float32)
        np.subtract(img, self.mean, out=out, dtype=np.float32)  # (img - mean) * (1 / std), like mmcv
        np.multiply(out, self.stdinv, out=out)
        results['img'] = out
        results['img_norm_cfg'] = dict(
            mean=self.mean.ravel().tolist(), std=self.std.ravel().tolist(), to_rgb=self.to_rgb
        )
        return results


# ============================================================================ mmseg compatibility no-ops
class _NoOp:
    """Accepted for configs copied from mmsegmentation; the dataset formats samples itself."""

    def __init__(self, **kwargs):
        pass

    def __call__(self, results, rng=None):
        return results


for _name in ('DefaultFormatBundle', 'ImageToTensor', 'Collect', 'ToTensor'):
    TRANSFORMS[_name] = type(_name, (_NoOp,), {'__doc__': _NoOp.__doc__})


@register_transform
class MultiScaleFlipAug:
    """Single-scale form of mmseg's test wrapper: the inner ``transforms`` with Resize set to ``img_scale``.

    Multi-scale and flip testing is done by the evaluator (``tools/test.py --ms-flip``), not here.
    """

    def __init__(self, transforms, img_scale=None, img_ratios=None, flip=False, flip_direction='horizontal'):
        if (
            flip
            or (img_ratios is not None and list(np.atleast_1d(img_ratios)) != [1.0])
            or (isinstance(img_scale, list) and len(img_scale) > 1)
        ):
            raise ConfigError(
                "MultiScaleFlipAug: only the single-scale, no-flip form is supported in "
                "pipelines; use the evaluator's multi-scale + flip option (tools/test.py --ms-flip)"
            )
        if isinstance(img_scale, list):
            img_scale = img_scale[0]
        inner = copy.deepcopy([dict(t) for t in transforms])
        for t in inner:
            if t.get('type') in ('Resize', 'AlignResize') and img_scale is not None:
                t['img_scale'] = tuple(img_scale)  # the wrapper's scale wins, as in mmseg
        self.pipeline = build_pipeline(inner)

    def __call__(self, results, rng=None):
        return self.pipeline(results, rng)


# ============================================================================ building
class Compose:
    """A built pipeline: calls its transforms in order with the same generator."""

    def __init__(self, transforms, cfg=None):
        self.transforms = list(transforms)
        self.cfg = cfg

    def __call__(self, results, rng=None):
        if rng is None:
            rng = np.random.default_rng()
        for t in self.transforms:
            results = t(results, rng)
        return results

    def __iter__(self):
        return iter(self.transforms)

    def __len__(self):
        return len(self.transforms)

    def __repr__(self):
        return "Compose([" + ", ".join(type(t).__name__ for t in self.transforms) + "])"


def build_transform(cfg, where='pipeline'):
    """One transform from ``dict(type=..., **kwargs)`` (a callable is returned as it is)."""
    if callable(cfg) and not isinstance(cfg, dict):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ConfigError(f"{where}: a transform must be a dict with a 'type' key, got {cfg!r}")
    kwargs = dict(cfg)
    name = kwargs.pop('type')
    if name not in TRANSFORMS:
        raise ConfigError(
            f"{where}: unknown transform type {name!r}{did_you_mean(name, TRANSFORMS)}; "
            f"known: {', '.join(sorted(TRANSFORMS))}"
        )
    cls = TRANSFORMS[name]
    check_kwargs(cls.__init__, kwargs, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}.{name}: {err}") from None


def build_pipeline(cfg_list):
    """A :class:`Compose` from a list of transform dicts (or callables ``f(results, rng)``)."""
    if isinstance(cfg_list, Compose):
        return cfg_list
    if cfg_list is None:
        cfg_list = []
    if not isinstance(cfg_list, (list, tuple)):
        raise ConfigError(f"a pipeline must be a list of transform dicts, got {type(cfg_list).__name__}")
    transforms = [build_transform(c, f"pipeline[{i}]") for i, c in enumerate(cfg_list)]
    return Compose(transforms, cfg=[dict(c) if isinstance(c, dict) else c for c in cfg_list])


def to_sample(results):
    """Final formatting (mmseg's DefaultFormatBundle + Collect): the sample dict a dataset returns.

    ``img`` float32 (3, H, W); ``gt_semantic_seg`` uint8 (H, W) when labels were loaded; meta keys
    ``filename``, ``ann_filename``, ``ori_shape``, ``img_shape``, ``pad_shape``, ``flip``, ``scale_factor``.
    """
    img = results['img']
    if img.ndim == 2:
        img = img[:, :, None]
    sample = dict(img=np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
    if 'gt_semantic_seg' in results:
        sample['gt_semantic_seg'] = np.ascontiguousarray(results['gt_semantic_seg'], dtype=np.uint8)
    sample['filename'] = results.get('filename')
    sample['ann_filename'] = results.get('ann_filename')
    sample['ori_shape'] = tuple(int(s) for s in results.get('ori_shape', img.shape))
    sample['img_shape'] = tuple(int(s) for s in results.get('img_shape', img.shape))
    sample['pad_shape'] = tuple(int(s) for s in results.get('pad_shape', img.shape))
    sample['flip'] = bool(results.get('flip', False))
    sample['scale_factor'] = tuple(float(s) for s in results.get('scale_factor', (1.0, 1.0, 1.0, 1.0)))
    return sample
