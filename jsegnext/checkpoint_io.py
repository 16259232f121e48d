"""Checkpoint and weight files: the one place that reads and writes them.

**Reading** (:func:`load`) recognises the format from the file's content, never its name:

* safetensors — what jsegnext writes (see below), or any other safetensors file (a state dict);
* jsegnext / Jittor ``.pkl`` (``jt.save``, jsegnext before safetensors): ``pickle + sha1(pickle) + b"HCAJSLHD"``;
* a plain pickle;
* PyTorch zip ``.pth`` (``torch.save`` since 1.6): ``<archive>/data.pkl`` whose tensors point, through
  persistent ids, at raw storages ``<archive>/data/<key>``;
* legacy PyTorch ``.pth``: pickled magic number, protocol and system info, the main pickle, the list
  of storage keys, then each storage raw (int64 element count + bytes).

Every pickle is read by one restricted unpickler. It knows only what real checkpoints contain —
dicts and ``OrderedDict``, lists, tuples, sets, strings, numbers, ``None``; NumPy arrays, dtypes and
scalars (the ``numpy.core`` and ``numpy._core`` spellings, so NumPy 1 and 2 files both load);
``_codecs.encode`` (how protocol-2 pickles store bytes); PyTorch's tensor and parameter rebuild
functions and storage types, and ``jittor.Var``, which are interpreted here as plain data and become
NumPy arrays (neither PyTorch nor Jittor is asked to build anything); mmengine's ``HistoryBuffer``,
kept as an inert record. Any other
global is refused before anything is built: ``evil.pth: refused: it references posix.system,
which no checkpoint contains``. Nothing in a file is ever called.

**Writing** (:func:`save`): a safetensors file (``safetensors`` package, NumPy API), which cannot
carry code, whatever the name (jsegnext keeps its ``.pkl`` names: ``iter_N.pkl``, ``latest.pkl``,
``out.pkl``). For an object ``{'state_dict': {...}, 'meta': {...}, 'optimizer': {...}}``:

* tensors: the state dict under its own names (any safetensors reader sees a plain state dict);
  other arrays of the object (optimiser moments, NumPy's RNG key) under ``@<path>`` names;
* ``__metadata__``: ``format = "jsegnext"``, ``format_version``, ``jsegnext`` = JSON of the object
  without its state dict, each array replaced by ``{"@tensor": name}`` (tuples come back as lists),
  and ``sha256`` = digest of every tensor's name, dtype, shape and bytes, checked on reading, so a
  truncated or damaged file is reported, never half-loaded.

Files are written atomically (:func:`atomic_write_bytes`: temporary file, fsync, rename, fsync of
the folder): a reader sees the old file or the complete new one.
"""

import collections
import hashlib
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np

from .errors import CheckpointError

FORMAT_VERSION = 2
JITTOR_TRAILER = b"HCAJSLHD"  # jt.save: pickle + sha1 + this
_SHA1 = 20
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TENSOR_REF = "@tensor"
_MAX_HEADER = 100 << 20

__all__ = [
    "load",
    "save",
    "read_metadata",
    "is_complete",
    "detect_format",
    "atomic_write_bytes",
    "temp_name",
    "fsync_dir",
    "CheckpointError",
]


# ------------------------------------------------------------------------------------ writing
def fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_name(path):
    """The hidden temporary name ``path`` is written under first: ``.NAME.tmp-PID`` beside it."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}")


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one."""
    path = os.fspath(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def _tensor_digest(tensors):
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = tensors[name]
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


def _storable(array):
    """``array`` as safetensors stores it (little-endian, contiguous), or None for JSON (objects, text)."""
    if array.dtype.kind not in "biuf":
        return None
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _to_json(value, path, tensors):
    """JSON-ready copy of ``value``; arrays go into ``tensors`` under ``@path`` and leave a reference."""
    if isinstance(value, np.ndarray):
        stored = _storable(value)
        if stored is None:
            return _to_json(value.tolist(), path, tensors)
        name = "@" + "/".join(path)
        tensors[name] = stored
        return {_TENSOR_REF: name}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _to_json(v, path + (str(k),), tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v, path + (str(i),), tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)  # e.g. a Path in a config: kept readable


def encode(obj):
    """The safetensors bytes of ``obj`` (a dict with a ``state_dict`` of arrays; see the module docstring)."""
    from safetensors.numpy import save as safetensors_bytes

    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise TypeError("a checkpoint to save is a dict with a 'state_dict' dict of arrays")
    tensors = {}
    for name, array in obj["state_dict"].items():
        stored = _storable(np.asarray(array))
        if stored is None or str(name).startswith("@"):
            raise TypeError(f"state_dict[{name!r}]: a checkpoint holds numeric arrays under plain names")
        tensors[str(name)] = stored
    rest = _to_json({k: v for k, v in obj.items() if k != "state_dict"}, (), tensors)
    metadata = {
        "format": "jsegnext",
        "format_version": str(FORMAT_VERSION),
        "jsegnext": json.dumps(rest),
        "sha256": _tensor_digest(tensors),
    }
    return safetensors_bytes(tensors, metadata=metadata)


def save(path, obj):
    """Write ``obj`` to ``path`` as safetensors + JSON, atomically (the folder must exist)."""
    atomic_write_bytes(path, encode(obj))
    return os.fspath(path)


# ------------------------------------------------------------------------------------ format detection
def _safetensors_header_size(data):
    if len(data) < 9 or data[8:9] != b"{":
        return None
    size = struct.unpack("<Q", data[:8])[0]
    return size if size <= _MAX_HEADER else None


def detect_format(data):
    """'safetensors', 'torch-zip', 'jittor-pkl', 'torch-legacy', 'pickle' or 'unknown' for a file's bytes."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "torch-zip"
    if _safetensors_header_size(data) is not None:
        return "safetensors"
    if len(data) > _SHA1 + len(JITTOR_TRAILER) and data.endswith(JITTOR_TRAILER):
        return "jittor-pkl"
    if data[:2] == b"\x80\x02" and data[2:15] == b"\x8a\x0a" + _TORCH_LEGACY_MAGIC.to_bytes(10, "little") + b".":
        return "torch-legacy"
    if data[:1] == b"\x80":
        return "pickle"
    return "unknown"


# ------------------------------------------------------------------------------------ restricted unpickler
class _Refused(Exception):
    def __init__(self, name):
        super().__init__(name)
        self.name = name


# A PyTorch storage class named in a pickle (``torch.FloatStorage`` ...): only its element type.
# What find_class hands out is immutable (or a function), so no file can alter it for the next one.
_StorageType = collections.namedtuple("_StorageType", "name dtype")


_TORCH_STORAGES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class _Storage:
    """A storage named by a persistent id; its bytes are attached once read (``array``)."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.array = key, dtype, numel, None


class _StorageView:
    """Legacy PyTorch: a view ``[offset, offset + size)`` into another storage."""

    def __init__(self, base, offset, size):
        self.base, self.offset, self.size = base, offset, size


class _Tensor:
    """What ``torch._utils._rebuild_tensor_v2`` would build, kept as data until the storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, (_Storage, _StorageView)):
        raise pickle.UnpicklingError("a tensor without a storage")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_rebuild_tensor, _rebuild_parameter):
        raise pickle.UnpicklingError("unexpected tensor rebuild function")
    return func(*args)


_TENSOR_TYPE = collections.namedtuple("_Marker", "name")("Tensor")  # torch.Tensor / Parameter, as named
# by _rebuild_from_type_v2


def _torch_size(*args):
    return tuple(*args)


def _jittor_var(data):  # jt.save / Module.save pickle a Var as jittor.Var(ndarray)
    if not isinstance(data, np.ndarray):
        raise pickle.UnpicklingError("a jittor.Var without an array")
    return data


def _latin1(text, encoding):
    # protocol-2 pickles store bytes as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return text.encode("latin1")


def _ndarray_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain NumPy arrays are read")
    return _NP_RECONSTRUCT(subtype, shape, dtype)


class _Inert:
    """A data-only object of another library (mmengine's HistoryBuffer): its state is kept, nothing runs."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


class HistoryBuffer(_Inert):
    pass


_NP_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_NP_SCALAR = np.float64(0).__reduce__()[0]
_NP_FROMBUFFER = np.zeros(2).__reduce_ex__(5)[0]

_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _latin1,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _TENSOR_TYPE,
    ("torch", "Size"): _torch_size,
    ("jittor", "Var"): _jittor_var,
    ("jittor", "jittor_core.Var"): _jittor_var,
    ("mmengine.logging.history_buffer", "HistoryBuffer"): HistoryBuffer,
}
for _core in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _ndarray_reconstruct
    _SAFE_GLOBALS[(f"{_core}.multiarray", "scalar")] = _NP_SCALAR
    _SAFE_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _NP_FROMBUFFER
for _name, _dtype in _TORCH_STORAGES.items():
    _SAFE_GLOBALS[("torch", _name)] = _StorageType(_name, _dtype)
_SAFE_GLOBALS[("torch.storage", "UntypedStorage")] = _SAFE_GLOBALS[("torch", "UntypedStorage")]
_PY2_NAMES = {
    ("__builtin__", "set"): ("builtins", "set"),
    ("__builtin__", "frozenset"): ("builtins", "frozenset"),
    ("__builtin__", "complex"): ("builtins", "complex"),
}


class _Unpickler(pickle.Unpickler):
    """The only unpickler jsegnext uses: globals from the allow-list above, nothing else."""

    def __init__(self, file, storages=None):
        super().__init__(file)
        self.storages = storages  # key -> _Storage, for PyTorch files; None: persistent ids not expected

    def find_class(self, module, name):
        module, name = _PY2_NAMES.get((module, name), (module, name))
        found = _SAFE_GLOBALS.get((module, name))
        if found is None and module == "numpy.dtypes" and name.endswith("DType"):
            found = getattr(getattr(np, "dtypes", None), name, None)
            found = found if isinstance(found, type) and issubclass(found, np.dtype) else None
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        if self.storages is None:
            raise pickle.UnpicklingError("it uses persistent ids but is not a PyTorch checkpoint")
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[4], int)
        ):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        key = str(pid[2])
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, pid[1].dtype, pid[4])
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy files: (view key, offset, size) into the root storage
            _, offset, size = view
            return _StorageView(storage, int(offset), int(size))
        return storage


def _unpickle(data, storages=None):
    unpickler = _Unpickler(io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data, storages)
    return unpickler.load()


# ------------------------------------------------------------------------------------ PyTorch storages → NumPy
def _element(dtype, big_endian=False):
    base = np.dtype(np.uint16 if dtype == "bfloat16" else dtype)
    return base.newbyteorder(">" if big_endian else "<")


def _attach(storage, raw, big_endian, path):
    element = _element(storage.dtype, big_endian)
    if len(raw) % element.itemsize:
        raise CheckpointError(
            f"{path}: damaged checkpoint: storage {storage.key} has {len(raw)} bytes, "
            f"not a whole number of {element.itemsize}-byte elements"
        )
    storage.array = np.frombuffer(raw, dtype=element)


def _tensor_array(tensor, path):
    storage, offset = tensor.storage, int(tensor.offset)
    if isinstance(storage, _StorageView):
        offset += storage.offset
        storage = storage.base
    if storage.array is None:
        raise CheckpointError(f"{path}: damaged checkpoint: the data of storage {storage.key} is missing")
    size, stride = tuple(int(s) for s in tensor.size), tuple(int(s) for s in tensor.stride)
    if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
        raise CheckpointError(f"{path}: damaged checkpoint: tensor of size {size} and stride {stride}")
    flat = storage.array
    if 0 in size:
        array = np.zeros(size, flat.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:
            raise CheckpointError(
                f"{path}: damaged checkpoint: a tensor of size {size} reaches past the end "
                f"of storage {storage.key} ({flat.size} elements)"
            )
        array = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride)
        ).copy()
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    if storage.dtype == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _materialise(obj, path):
    """Replace every rebuilt tensor in ``obj`` by its NumPy array."""
    if isinstance(obj, _Tensor):
        return _tensor_array(obj, path)
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialise(value, path)
        return out
    if isinstance(obj, list):
        return [_materialise(v, path) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v, path) for v in obj)
    return obj


def _read_torch_zip(data, path):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (a damaged or truncated zip archive: {err})"
        ) from None
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(f"{path}: not a checkpoint (a zip archive without a PyTorch data.pkl)")
    prefix = pickles[0][: -len("data.pkl")]
    big_endian = f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() == b"big"
    storages = {}
    with archive:
        obj = _unpickle(archive.read(pickles[0]), storages)
        for key, storage in storages.items():
            entry = f"{prefix}data/{key}"
            try:
                info = archive.getinfo(entry)
            except KeyError:
                raise CheckpointError(f"{path}: damaged checkpoint: storage {entry} is missing") from None
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > 1000 * max(info.compress_size, 1 << 20):
                raise CheckpointError(
                    f"{path}: refused: storage {entry} expands {info.file_size} bytes from "
                    f"{info.compress_size} (not how PyTorch writes checkpoints)"
                )
            _attach(storage, archive.read(entry), big_endian, path)
    return obj


def _read_torch_legacy(data, path):
    stream = io.BytesIO(data)
    magic, protocol, sys_info = _unpickle(stream), _unpickle(stream), _unpickle(stream)
    if magic != _TORCH_LEGACY_MAGIC or protocol != 1001 or not isinstance(sys_info, dict):
        raise CheckpointError(f"{path}: not a readable checkpoint (unknown legacy PyTorch header)")
    big_endian = not sys_info.get("little_endian", True)
    storages = {}
    obj = _unpickle(stream, storages)
    keys = _unpickle(stream)
    if not isinstance(keys, list):
        raise CheckpointError(f"{path}: damaged checkpoint: no list of storages after the pickle")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointError(f"{path}: damaged checkpoint: storage {key} is listed but never used")
        head = stream.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated checkpoint: storage {key} is missing")
        count = struct.unpack(">q" if big_endian else "<q", head)[0]
        nbytes = count * _element(storage.dtype).itemsize
        raw = stream.read(nbytes) if 0 <= count else b""
        if count < 0 or len(raw) != nbytes:
            raise CheckpointError(f"{path}: truncated checkpoint: storage {key} has {len(raw)} of {nbytes} bytes")
        _attach(storage, raw, big_endian, path)
    return obj


def _read_jittor_pkl(data, path):
    payload, digest = data[: -_SHA1 - len(JITTOR_TRAILER)], data[-_SHA1 - len(JITTOR_TRAILER) : -len(JITTOR_TRAILER)]
    if hashlib.sha1(payload).digest() != digest:
        raise CheckpointError(f"{path}: corrupt checkpoint (checksum mismatch); delete it and use an older one")
    return _unpickle(payload)


# ------------------------------------------------------------------------------------ safetensors
def _safetensors_parts(data, path):
    """(header dict, metadata dict) of safetensors bytes; CheckpointError when truncated or malformed."""
    size = _safetensors_header_size(data)
    if size is None or len(data) < 8 + size:
        raise CheckpointError(f"{path}: truncated checkpoint (the safetensors header is cut off)")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:
        raise CheckpointError(f"{path}: damaged checkpoint (its safetensors header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: damaged checkpoint (its safetensors header is not a table)")
    metadata = header.pop("__metadata__", None) or {}
    ends = [info.get("data_offsets", [0, 0])[1] for info in header.values() if isinstance(info, dict)]
    expected = 8 + size + max(ends, default=0)
    if len(data) < expected:
        raise CheckpointError(
            f"{path}: truncated checkpoint ({len(data)} of {expected} bytes; an interrupted write or copy)"
        )
    return header, metadata


def _from_json(value, tensors, path):
    if isinstance(value, dict):
        if set(value) == {_TENSOR_REF}:
            if value[_TENSOR_REF] not in tensors:
                raise CheckpointError(f"{path}: damaged checkpoint: tensor {value[_TENSOR_REF]} is missing")
            return tensors[value[_TENSOR_REF]]
        return {k: _from_json(v, tensors, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v, tensors, path) for v in value]
    return value


def _read_safetensors(data, path):
    from safetensors.numpy import load as safetensors_load

    _, metadata = _safetensors_parts(data, path)
    try:
        tensors = safetensors_load(bytes(data))
    except Exception as err:  # noqa: BLE001 - the library's own errors (SafetensorError ...)
        raise CheckpointError(f"{path}: damaged checkpoint (safetensors: {_first_line(err)})") from None
    if metadata.get("format") != "jsegnext":  # someone else's safetensors: a state dict
        return {"meta": dict(metadata), "state_dict": tensors}
    if metadata.get("sha256") != _tensor_digest(tensors):
        raise CheckpointError(f"{path}: corrupt checkpoint (checksum mismatch); delete it and use an older one")
    try:
        rest = json.loads(metadata.get("jsegnext", "{}"))
    except ValueError:
        raise CheckpointError(f"{path}: damaged checkpoint (its jsegnext metadata is not JSON)") from None
    obj = _from_json(rest, tensors, path)
    obj["state_dict"] = {k: v for k, v in tensors.items() if not k.startswith("@")}
    return obj


# ------------------------------------------------------------------------------------ public reading API
def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read_bytes(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read checkpoint ({err.strerror or err})") from None
    if not data:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    return data


def load(path):
    """The object stored in a checkpoint file, tensors as NumPy arrays, whatever the format.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated, corrupt, not a
    checkpoint, or refers to anything outside the allow-list (then nothing in it was run).
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    kind = detect_format(data)
    try:
        if kind == "safetensors":
            return _read_safetensors(data, path)
        if kind in ("torch-zip", "torch-legacy"):
            obj = (_read_torch_zip if kind == "torch-zip" else _read_torch_legacy)(data, path)
            return _materialise(obj, path)
        if kind == "jittor-pkl":
            return _unpickle_or_explain(lambda: _read_jittor_pkl(data, path), path)
        # a plain pickle, or unknown bytes (a protocol-0 pickle still has its globals refused)
        return _unpickle_or_explain(lambda: _unpickle(data), path, known=kind == "pickle")
    except _Refused as refused:
        raise CheckpointError(f"{path}: refused: it references {refused.name}, which no checkpoint contains") from None
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure inside a PyTorch pickle: not a usable file
        raise CheckpointError(f"{path}: not a readable checkpoint ({kind} file: {_first_line(err)})") from None


def _unpickle_or_explain(read, path, known=True):
    try:
        return read()
    except (_Refused, CheckpointError):
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
        if not known:
            raise CheckpointError(
                f"{path}: not a readable checkpoint: unknown format (neither safetensors, a pickle nor a PyTorch file)"
            ) from None
        cut = isinstance(err, EOFError) or "truncated" in str(err)
        hint = " (truncated, e.g. an interrupted copy or download)" if cut else ""
        raise CheckpointError(f"{path}: not a readable checkpoint{hint}: {_first_line(err)}") from None


def read_metadata(path):
    """The non-tensor part of a jsegnext safetensors file (``meta`` ...) from its header alone, or None
    for any other file (or one whose header cannot be read)."""
    try:
        with open(path, "rb") as f:
            size = _safetensors_header_size(f.read(9))
            if size is None:
                return None
            f.seek(8)
            header = json.loads(f.read(size))
        metadata = header.get("__metadata__") or {}
        if metadata.get("format") != "jsegnext":
            return None
        return _strip_refs(json.loads(metadata.get("jsegnext", "{}")))
    except (OSError, ValueError, AttributeError):
        return None


def _strip_refs(value):
    if isinstance(value, dict):
        return None if set(value) == {_TENSOR_REF} else {k: _strip_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_refs(v) for v in value]
    return value


def is_complete(path):
    """True when ``path`` is a whole checkpoint written by jsegnext (safetensors, checksum right) or
    by Jittor / older jsegnext (pickle trailer present, checksum right)."""
    try:
        data = _read_bytes(path)
        kind = detect_format(data)
        if kind == "jittor-pkl":
            payload = data[: -_SHA1 - len(JITTOR_TRAILER)]
            return hashlib.sha1(payload).digest() == data[-_SHA1 - len(JITTOR_TRAILER) : -len(JITTOR_TRAILER)]
        if kind == "safetensors":
            _read_safetensors(data, path)
            return True
    except CheckpointError:
        pass
    return False
