"""``CustomDataset``: image/label pairs on disk -> samples, as a Jittor dataset.

Layout (mmsegmentation's): ``data_root/img_dir/<name><img_suffix>`` with its label
``data_root/ann_dir/<name><seg_map_suffix>``; ``<name>`` may contain sub-folders (Cityscapes
cities). Without ``split`` every image under ``img_dir`` (recursively) is used; with ``split`` (a
text file of names, one a line, or a list of such files) only the listed ones. With a list of
splits, ``ann_dir`` (and ``img_dir``) may be lists matched per split (VOC + SBD aug).

Pairs are checked when the dataset is built: an image without label, a label without image, a
name in a split file without its files - each is a :class:`DataError` naming the files.
Per sample, a corrupt or truncated image, a missing label, a label of another size than its image
or with values outside the classes (other than 255) raise :class:`DataError` naming the file - in
the main process, also when loading runs in Jittor workers (a worker that raises would kill the
whole program). With ``skip_bad_samples=True`` such a sample is reported as a warning naming the
file and replaced by the next good one.
"""

import os
import traceback
import warnings

import cv2
import numpy as np
from PIL import Image

from ..config import ConfigError
from ..runtime import jt
from .classes import IGNORE_INDEX
from .errors import DataError, DataWarning
from .loader import ERROR_KEY, SeededSampler, collate_batch
from .transforms import (
    LoadAnnotations,
    build_pipeline,
    check_label_values,
    read_label,
    to_sample,
)
from .transforms import (
    reduce_zero_label as _reduce_zero_label,
)

MAX_LISTED = 10
MAX_SUBSTITUTE_TRIES = 100


def _listing(items, total=None):
    total = len(items) if total is None else total
    shown = "\n  ".join(str(i) for i in items[:MAX_LISTED])
    more = f"\n  ... and {total - MAX_LISTED} more" if total > MAX_LISTED else ""
    return f"\n  {shown}{more}"


def _refuse_unpaired(name, stems, found, expected, problem):
    """DataError listing the files ``found`` = (dir, suffix) of ``stems`` whose ``expected`` partner is missing."""
    if stems:
        (found_dir, found_suffix), (expected_dir, expected_suffix) = found, expected
        raise DataError(
            f"{name}: {problem}:"
            + _listing(
                [
                    f"{os.path.join(found_dir, s + found_suffix)} -> {os.path.join(expected_dir, s + expected_suffix)}"
                    for s in stems
                ]
            ),
            os.path.join(found_dir, stems[0] + found_suffix),
        )


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def scan_files(root, suffix, exclude_suffix=None):
    """Paths relative to ``root`` of the files ending with ``suffix`` (recursive, sorted)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if name.endswith(suffix) and not (exclude_suffix and name.endswith(exclude_suffix)):
                found.append(name if rel_dir == '.' else os.path.join(rel_dir, name))
    return sorted(found)


def default_palette(num_classes, seed=42):
    """A fixed pseudo-random RGB palette (for user datasets without one)."""
    rng = np.random.default_rng(seed)
    return tuple(tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(num_classes))


class CustomDataset(jt.dataset.Dataset):
    """Semantic segmentation dataset: image/label pairs matched by name.

    Args (all keyword):
        img_dir: image folder (relative to ``data_root`` unless absolute); a list with a list ``split``.
        ann_dir: label folder, or a list matched per split file; None for images without labels.
        pipeline: list of transform dicts (see :mod:`jsegnext.datasets.transforms`).
        data_root: prefix of the relative folders and split files.
        img_suffix / seg_map_suffix: image ``<name><img_suffix>`` <-> label ``<name><seg_map_suffix>``.
        split: text file(s) of names (one a line, no suffix), relative to ``data_root``.
        classes / palette: class names and RGB colours (required for CustomDataset itself; the named
            datasets have theirs and only accept a same-length renaming).
        reduce_zero_label: label 0 -> 255 (ignored), others -1 (ADE20K, Pascal Context 59).
            None: the dataset type's default (for CustomDataset: the pipeline's LoadAnnotations
            setting, else False). An explicit LoadAnnotations setting must agree.
        ignore_index: label value excluded from loss and metrics (255).
        test_mode: samples of different sizes may be batched (as lists).
        skip_bad_samples: warn about a bad sample (naming its file) and use the next good one instead
            of raising DataError.
        seed: seed of the shuffle order and of every sample's augmentation ``(seed, epoch, index)``.
    """

    CLASSES = None
    PALETTE = None
    IMG_SUFFIX = '.jpg'
    SEG_MAP_SUFFIX = '.png'
    REDUCE_ZERO_LABEL = None  # None: decided by the pipeline (CustomDataset only)
    SPLIT_REQUIRED = False

    def __init__(
        self,
        *,
        img_dir,
        pipeline=None,
        ann_dir=None,
        data_root=None,
        img_suffix=None,
        seg_map_suffix=None,
        split=None,
        classes=None,
        palette=None,
        reduce_zero_label=None,
        ignore_index=IGNORE_INDEX,
        test_mode=False,
        skip_bad_samples=False,
        seed=0,
    ):
        super().__init__(batch_size=1, shuffle=False, drop_last=False, num_workers=0)
        self.data_root = data_root
        self.img_suffix = self.IMG_SUFFIX if img_suffix is None else img_suffix
        self.seg_map_suffix = self.SEG_MAP_SUFFIX if seg_map_suffix is None else seg_map_suffix
        self.ignore_index = ignore_index
        self.test_mode = bool(test_mode)
        self.skip_bad_samples = bool(skip_bad_samples)
        self.seed = int(seed)
        self.epoch = 0
        self._in_worker = False
        self._bad = set()
        self.num_skipped = 0
        self.auto_buffer_size = True
        self._sample_bytes = None
        self.CLASSES, self.PALETTE = self._resolve_classes(classes, palette)

        if pipeline is None:
            pipeline = [dict(type='LoadImageFromFile')] + ([dict(type='LoadAnnotations')] if ann_dir else [])
        self.pipeline_cfg = [dict(t) if isinstance(t, dict) else t for t in pipeline]
        self.pipeline = build_pipeline(pipeline)
        self.reduce_zero_label = self._resolve_reduce_zero_label(reduce_zero_label)

        self.img_dir = self._join(img_dir)
        self.ann_dir = self._join(ann_dir)
        self.split = self._join(split)
        if self.SPLIT_REQUIRED and split is None:
            raise ConfigError(f"{type(self).__name__} needs `split` (the list of image names)")
        self.img_infos, self.img_files, self.ann_files = self._load_annotations()
        self.total_len = len(self.img_files)
        self.sampler = SeededSampler(self, shuffle=False)

    # ------------------------------------------------------------------ set-up
    def _join(self, path):
        if path is None:
            return None
        if isinstance(path, (list, tuple)):
            return [self._join(p) for p in path]
        path = os.fspath(path)
        if self.data_root is not None and not os.path.isabs(path):
            return os.path.join(self.data_root, path)
        return path

    def _resolve_classes(self, classes, palette):
        name = type(self).__name__
        if self.CLASSES is None:  # CustomDataset: the user's classes
            if classes is None:
                raise ConfigError(f"{name}: `classes` (the list of class names) is required")
            classes = tuple(classes)
            if palette is None:
                palette = default_palette(len(classes))
        else:
            if classes is not None and len(classes) != len(self.CLASSES):
                raise ConfigError(
                    f"{name}: `classes` must rename all {len(self.CLASSES)} classes "
                    f"(got {len(classes)}); use CustomDataset for another class set"
                )
            classes = tuple(classes) if classes is not None else tuple(self.CLASSES)
            palette = palette if palette is not None else self.PALETTE
        palette = tuple(tuple(int(c) for c in colour) for colour in palette)
        if len(palette) != len(classes) or any(len(c) != 3 for c in palette):
            raise ConfigError(
                f"{name}: `palette` needs one RGB triple per class ({len(classes)}), got {len(palette)} entries"
            )
        return classes, palette

    def _resolve_reduce_zero_label(self, value):
        """The dataset's reduce_zero_label; an explicit LoadAnnotations setting must agree with it."""
        explicit = [
            t.reduce_zero_label
            for t in self.pipeline
            if isinstance(t, LoadAnnotations) and t.reduce_zero_label is not None
        ]
        if value is None:
            value = self.REDUCE_ZERO_LABEL
        if value is None:  # CustomDataset without a setting: the pipeline's
            value = explicit[0] if explicit else False
        for setting in explicit:
            if bool(setting) != bool(value):
                raise ConfigError(
                    f"{type(self).__name__}: LoadAnnotations(reduce_zero_label={setting}) in the pipeline "
                    f"contradicts the dataset's reduce_zero_label={value}; they must agree (the dataset's "
                    "setting is also used to read the ground truth for evaluation)"
                )
        return bool(value)

    @property
    def num_classes(self):
        return len(self.CLASSES)

    def _load_annotations(self):
        for d in _as_list(self.img_dir):
            if not os.path.isdir(d):
                raise DataError(f"{type(self).__name__}: image folder not found: {d}", d)
        for d in _as_list(self.ann_dir) if self.ann_dir is not None else []:
            if not os.path.isdir(d):
                raise DataError(f"{type(self).__name__}: label folder not found: {d}", d)
        if self.split is not None:
            return self._load_split()
        if isinstance(self.img_dir, list) or isinstance(self.ann_dir, list):
            raise ConfigError(f"{type(self).__name__}: lists of img_dir/ann_dir need a list `split` to match")
        return self._scan_dirs()

    def _scan_dirs(self):
        name = type(self).__name__
        same_dir = self.ann_dir is not None and os.path.abspath(self.ann_dir) == os.path.abspath(self.img_dir)
        images = scan_files(self.img_dir, self.img_suffix, exclude_suffix=self.seg_map_suffix if same_dir else None)
        if not images:
            raise DataError(f"{name}: no images ending with {self.img_suffix!r} under {self.img_dir}", self.img_dir)
        stems = [f[: -len(self.img_suffix)] for f in images]
        infos, img_files, ann_files = [], [], []
        if self.ann_dir is not None:
            labels = scan_files(self.ann_dir, self.seg_map_suffix)
            label_stems = {f[: -len(self.seg_map_suffix)] for f in labels}
            missing = [s for s in stems if s not in label_stems]
            _refuse_unpaired(
                name,
                missing,
                (self.img_dir, self.img_suffix),
                (self.ann_dir, self.seg_map_suffix),
                f"{len(missing)} of {len(stems)} images have no label (image -> expected label)",
            )
            image_stems = set(stems)
            orphans = [s for s in sorted(label_stems) if s not in image_stems]
            _refuse_unpaired(
                name,
                orphans,
                (self.ann_dir, self.seg_map_suffix),
                (self.img_dir, self.img_suffix),
                f"{len(orphans)} labels have no image (label -> expected image)",
            )
        for stem in stems:
            info = dict(filename=stem + self.img_suffix)
            img_files.append(os.path.join(self.img_dir, stem + self.img_suffix))
            if self.ann_dir is not None:
                info['ann'] = dict(seg_map=stem + self.seg_map_suffix)
                ann_files.append(os.path.join(self.ann_dir, stem + self.seg_map_suffix))
            else:
                ann_files.append(None)
            infos.append(info)
        return infos, img_files, ann_files

    def _load_split(self):
        name = type(self).__name__
        splits = _as_list(self.split)
        img_dirs = _as_list(self.img_dir)
        ann_dirs = _as_list(self.ann_dir) if self.ann_dir is not None else [None]
        for what, dirs in (('img_dir', img_dirs), ('ann_dir', ann_dirs)):
            if len(dirs) not in (1, len(splits)):
                raise ConfigError(
                    f"{name}: {len(dirs)} {what} for {len(splits)} split files; give one, or one per split file"
                )
        infos, img_files, ann_files, missing = [], [], [], []
        for k, split_file in enumerate(splits):
            img_dir = img_dirs[k if len(img_dirs) > 1 else 0]
            ann_dir = ann_dirs[k if len(ann_dirs) > 1 else 0]
            try:
                with open(split_file) as f:
                    names = [line.strip() for line in f if line.strip()]
            except OSError as err:
                raise DataError(
                    f"{name}: cannot read split file {split_file}: {err.strerror or err}", split_file
                ) from None
            if not names:
                raise DataError(f"{name}: split file {split_file} lists no images", split_file)
            for stem in names:
                stem = stem.split()[0]
                if stem.endswith(self.img_suffix):
                    stem = stem[: -len(self.img_suffix)]
                img = os.path.join(img_dir, stem + self.img_suffix)
                ann = os.path.join(ann_dir, stem + self.seg_map_suffix) if ann_dir is not None else None
                if not os.path.isfile(img):
                    missing.append(f"{img} (image of {stem!r} listed in {split_file})")
                if ann is not None and not os.path.isfile(ann):
                    missing.append(f"{ann} (label of {stem!r} listed in {split_file})")
                info = dict(filename=os.path.relpath(img, img_dir))
                if ann is not None:
                    info['ann'] = dict(seg_map=os.path.relpath(ann, ann_dir))
                infos.append(info)
                img_files.append(img)
                ann_files.append(ann)
        if missing:
            raise DataError(
                f"{name}: {len(missing)} files listed in the split file(s) do not exist:" + _listing(missing),
                missing[0].split(' (')[0],
            )
        return infos, img_files, ann_files

    # ------------------------------------------------------------------ access
    def __len__(self):
        """Number of images (not batches; see ``num_batches``)."""
        return len(self.img_files)

    def num_batches(self):
        return self.__batch_len__()

    def img_path(self, index):
        return self.img_files[index]

    def ann_path(self, index):
        return self.ann_files[index]

    def set_epoch(self, epoch):
        """Select the epoch: shuffle order and augmentations follow (seed, epoch)."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            if hasattr(self, 'workers'):
                self.reset()  # workers hold a copy of the dataset: restart them with the new epoch

    def sample_rng(self, index):
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def _results(self, index):
        return dict(
            filename=self.img_files[index],
            ann_filename=self.ann_files[index],
            reduce_zero_label=self.reduce_zero_label,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            seg_fields=[],
        )

    def prepare_sample(self, index, pipeline=None):
        """The sample of ``index`` through ``pipeline`` (default: the dataset's), as the loader sees it."""
        pipeline = self.pipeline if pipeline is None else build_pipeline(pipeline)
        return to_sample(pipeline(self._results(index), self.sample_rng(index)))

    prepare_train_sample = prepare_sample

    def prepare_test_sample(self, index, pipeline=None):
        """Like ``prepare_sample`` (the evaluator passes its rescaled pipelines here)."""
        return self.prepare_sample(index, pipeline)

    def get_gt_seg_map(self, index):
        """The label of ``index`` as used for evaluation: (H, W) uint8, reduce_zero_label applied, checked."""
        path = self.ann_files[index]
        if path is None:
            raise DataError(f"{type(self).__name__} has no labels (ann_dir is None)", self.img_files[index])
        label = read_label(path)
        try:
            with Image.open(self.img_files[index]) as im:
                w, h = im.size
        except (OSError, ValueError):
            w = h = None  # an unreadable image is reported when it is loaded
        if w is not None and label.shape != (h, w):
            raise DataError(
                f"label {path} is {label.shape[1]}x{label.shape[0]} but its image "
                f"{self.img_files[index]} is {w}x{h} (width x height)",
                path,
            )
        if self.reduce_zero_label:
            label = _reduce_zero_label(label)
        check_label_values(label, self.num_classes, path, self.ignore_index, reduced=self.reduce_zero_label)
        return label

    # ------------------------------------------------------------------ Jittor loading
    def __getitem__(self, index):
        index = int(index)
        try:
            return self.prepare_sample(index)
        except Exception as err:  # noqa: BLE001 - reported with the file name, see _bad_sample
            return self._bad_sample(index, err)

    def _describe(self, index, err):
        if isinstance(err, DataError):
            return err
        detail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-3:]).rstrip()
        ann = self.ann_files[index]
        return DataError(
            f"error while loading {self.img_files[index]}"
            + (f" (label {ann})" if ann else "")
            + f": {type(err).__name__}: {err}\n{detail}",
            self.img_files[index],
        )

    def _bad_sample(self, index, err):
        err = self._describe(index, err)
        if self.skip_bad_samples:
            n = len(self)
            self._warn_skip(err)
            self._bad.add(index)
            for k in range(1, min(n, MAX_SUBSTITUTE_TRIES + 1)):
                j = (index + k) % n
                if j in self._bad:
                    continue
                try:
                    return self.prepare_sample(j)
                except Exception as err2:  # noqa: BLE001
                    self._warn_skip(self._describe(j, err2))
                    self._bad.add(j)
            err = DataError(
                f"skip_bad_samples: no usable sample found near index {index}; last problem: {err}", err.path
            )
        if self._in_worker:
            return {ERROR_KEY: str(err)}
        raise err

    def _warn_skip(self, err):
        self.num_skipped += 1
        warnings.warn(f"skipping bad sample: {err}", DataWarning, stacklevel=3)

    def collate_batch(self, batch):
        out = collate_batch(batch)
        if ERROR_KEY not in out and not self.test_mode and isinstance(out['img'], list):
            shapes = sorted({tuple(s['img'].shape[1:]) for s in batch})
            message = (
                f"{type(self).__name__}: training batch with images of different sizes {shapes} "
                f"(files: {', '.join(str(s.get('filename')) for s in batch[:4])} ...); the training "
                "pipeline must end at one size (RandomCrop + Pad to crop_size), or build the dataset "
                "with test_mode=True for variable-size batches"
            )
            if self._in_worker:
                return {ERROR_KEY: [message]}
            raise DataError(message)
        if self._in_worker and ERROR_KEY not in out:
            message = self._check_batch_bytes(out)
            if message:
                return {ERROR_KEY: [message]}
        return out

    # ------------------------------------------------------------------ worker buffers
    def set_attrs(self, **kw):
        """Jittor's ``set_attrs`` (batch_size, shuffle, num_workers, drop_last, buffer_size, ...).

        ``shuffle`` uses the seeded sampler: a permutation from ``(seed, epoch)``.
        """
        if 'buffer_size' in kw:
            self.auto_buffer_size = False  # the user's choice
        if 'shuffle' in kw and isinstance(self.sampler, SeededSampler):
            self.sampler.shuffle = bool(kw['shuffle'])
        return super().set_attrs(**kw)

    def _init_workers(self, index_list):
        if self.auto_buffer_size and len(index_list):
            self.buffer_size = self._estimate_buffer_size(int(index_list[0]))
        # Fork the workers with OpenCV's thread pool shut down: each worker then runs cv2 on one
        # thread (no oversubscription), and never touches a pool copied mid-use (changing the thread
        # count inside a forked child can deadlock).
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return super()._init_workers(index_list)
        finally:
            cv2.setNumThreads(threads)

    def _estimate_buffer_size(self, index):
        """Bytes of each worker's ring buffer: two batches like the sample ``index`` (x4 for variable sizes).

        Jittor's default is 512 MB per worker, zeroed at start-up (seconds per epoch); a batch larger
        than the buffer would kill the program, so :meth:`collate_batch` checks the size too.
        """
        if self._sample_bytes is None:
            sample = self[index]  # in the main process: a bad first sample raises DataError here
            self._sample_bytes = sum(v.nbytes for v in sample.values() if isinstance(v, np.ndarray)) + 4096
        per_sample = self._sample_bytes
        per_batch = per_sample * max(int(getattr(self, 'real_batch_size', self.batch_size)), 1)
        if self.test_mode:
            per_batch *= 4
        return int(max(32 << 20, 2 * per_batch + (4 << 20)))

    def _check_batch_bytes(self, out):
        nbytes = sum(v.nbytes for v in out.values() if isinstance(v, np.ndarray))
        nbytes += sum(a.nbytes for v in out.values() if isinstance(v, list) for a in v if isinstance(a, np.ndarray))
        if nbytes + (1 << 20) > self.buffer_size:
            files = ', '.join(map(str, out.get('filename', [])[:4]))
            return (
                f"{type(self).__name__}: a batch of {nbytes / 2**20:.1f} MB does not fit the worker buffer "
                f"of {self.buffer_size / 2**20:.1f} MB (files: {files}); "
                "set a larger buffer_size (build_dataloader(..., buffer_size=BYTES) or set_attrs)"
            )
        return None

    def _worker_main(self, worker_id, buffer, status):
        self._in_worker = True  # this is a forked copy: errors are sent to the main process
        return super()._worker_main(worker_id, buffer, status)

    def __iter__(self):
        completed = False
        try:
            for batch in super().__iter__():
                if isinstance(batch, dict) and ERROR_KEY in batch:
                    self._stop_workers()
                    messages = batch[ERROR_KEY]
                    raise DataError(
                        messages[0]
                        if len(messages) == 1
                        else f"{len(messages)} bad samples in one batch:\n" + "\n".join(messages)
                    )
                yield batch
            completed = True
        finally:
            if completed and not self.endless:
                self.set_epoch(self.epoch + 1)
            elif not completed:
                # left early (break, error): Jittor's workers would go on with this epoch's batches
                # and hand them to the next iteration - stop them
                self._stop_workers()

    def _stop_workers(self):
        if hasattr(self, 'workers'):
            try:
                self.reset()
            except Exception:  # noqa: BLE001 - best effort before reporting the data error
                self.terminate()

    def __repr__(self):
        return (
            f"{type(self).__name__}({len(self)} images, {self.num_classes} classes, img_dir={self.img_dir!r}, "
            f"ann_dir={self.ann_dir!r}, reduce_zero_label={self.reduce_zero_label})"
        )
