"""Write checkpoints in PyTorch's zip serialisation format without PyTorch installed.

Tests use it to build reference-style ``.pth`` files in every layout the importer must read
(the real format: a zip with ``<name>/data.pkl`` whose tensors point at ``<name>/data/<key>``
storages through pickle persistent ids).
"""
import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile

import numpy as np

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
                  np.dtype(np.float16): "HalfStorage"}


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
    def __init__(self, file, torch):
        super().__init__(file, protocol=2)
        self.torch = torch

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            storage_type = getattr(self.torch, _STORAGE_NAMES[obj.tensor.array.dtype])
            return ("storage", storage_type, str(obj.tensor.key), "cpu", obj.tensor.array.size)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, _Tensor):
            shape = obj.array.shape
            stride = tuple(int(s // obj.array.itemsize) for s in obj.array.strides)
            return (self.torch._utils._rebuild_tensor_v2,
                    (_Storage(obj), 0, shape, stride, False, collections.OrderedDict()))
        return NotImplemented


class _Storage:
    def __init__(self, tensor):
        self.tensor = tensor


def save_torch_checkpoint(obj, path, archive_name="archive"):
    """Save nested dicts/lists whose leaves may be NumPy arrays as a PyTorch ``.pth`` zip file."""
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

    converted = convert(obj)
    buffer = io.BytesIO()
    with _fake_torch() as torch:
        _Pickler(buffer, torch).dump(converted)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{archive_name}/data.pkl", buffer.getvalue())
        archive.writestr(f"{archive_name}/byteorder", "little")
        for tensor in tensors:
            archive.writestr(f"{archive_name}/data/{tensor.key}", tensor.array.tobytes())
        archive.writestr(f"{archive_name}/version", "3\n")
