"""Write checkpoints in PyTorch's serialisation formats without PyTorch installed.

Tests use it to build reference-style ``.pth`` files in every layout the importer must read:
the zip format (``torch.save`` since 1.6: a zip with ``<name>/data.pkl`` whose tensors point at
``<name>/data/<key>`` storages through pickle persistent ids) and the legacy format
(``_use_new_zipfile_serialization=False``: magic number, protocol, system info, the pickle, the
storage keys, then each storage as an int64 element count and its bytes).
"""

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.float16): "HalfStorage",
}


@contextlib.contextmanager
def _fake_torch():
    """Importable stand-ins so pickle can write the globals torch's format names."""
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is written
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for storage in _STORAGE_NAMES.values():
        setattr(torch, storage, type(storage, (), {"__module__": "torch", "__qualname__": storage}))
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Tensor:
    def __init__(self, array, key):
        self.array, self.key = np.ascontiguousarray(array), key


class _Pickler(pickle.Pickler):
    def __init__(self, file, torch, legacy=False):
        super().__init__(file, protocol=2)
        self.torch, self.legacy = torch, legacy

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            storage_type = getattr(self.torch, _STORAGE_NAMES[obj.tensor.array.dtype])
            pid = ("storage", storage_type, str(obj.tensor.key), "cpu", obj.tensor.array.size)
            return pid + (None,) if self.legacy else pid  # legacy ids end with the view metadata
        return None

    def reducer_override(self, obj):
        if isinstance(obj, _Tensor):
            shape = obj.array.shape
            stride = tuple(int(s // obj.array.itemsize) for s in obj.array.strides)
            return (
                self.torch._utils._rebuild_tensor_v2,
                (_Storage(obj), 0, shape, stride, False, collections.OrderedDict()),
            )
        return NotImplemented


class _Storage:
    def __init__(self, tensor):
        self.tensor = tensor


def _with_tensors(obj):
    """``obj`` with its arrays replaced by tensors to pickle, and the list of those tensors."""
    tensors = []

    def convert(value):
        if isinstance(value, np.ndarray):
            tensors.append(_Tensor(value, len(tensors)))
            return tensors[-1]
        if isinstance(value, dict):
            return collections.OrderedDict((k, convert(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        return value

    return convert(obj), tensors


def save_torch_checkpoint(obj, path, archive_name="archive"):
    """Save nested dicts/lists whose leaves may be NumPy arrays as a PyTorch ``.pth`` zip file."""
    converted, tensors = _with_tensors(obj)
    buffer = io.BytesIO()
    with _fake_torch() as torch:
        _Pickler(buffer, torch).dump(converted)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{archive_name}/data.pkl", buffer.getvalue())
        archive.writestr(f"{archive_name}/byteorder", "little")
        for tensor in tensors:
            archive.writestr(f"{archive_name}/data/{tensor.key}", tensor.array.tobytes())
        archive.writestr(f"{archive_name}/version", "3\n")


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def save_torch_legacy_checkpoint(obj, path):
    """Save like ``torch.save(obj, path, _use_new_zipfile_serialization=False)``."""
    converted, tensors = _with_tensors(obj)
    sys_info = dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4))
    with open(path, "wb") as f, _fake_torch() as torch:
        for header in (LEGACY_MAGIC, 1001, sys_info):
            pickle.dump(header, f, protocol=2)
        _Pickler(f, torch, legacy=True).dump(converted)
        pickle.dump(sorted(str(t.key) for t in tensors), f, protocol=2)
        for tensor in sorted(tensors, key=lambda t: str(t.key)):
            f.write(struct.pack("<q", tensor.array.size))
            f.write(tensor.array.tobytes())
