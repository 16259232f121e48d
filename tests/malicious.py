"""Hand-made hostile checkpoints: a plausible state dict plus an object whose unpickling calls
``os.system`` to create a marker file, in each format a checkpoint reader meets.

:func:`unsafe_load` reads them the way an unrestricted reader would (``pickle``'s default
globals, as ``jt.load`` and ``torch.load(weights_only=False)`` do): tests use it to show that the
files really run their payload, so a marker that does not appear means the reader refused it.
"""

import hashlib
import io
import os
import pickle
import shlex
import shutil
import zipfile

import numpy as np
from torch_format import LEGACY_MAGIC, save_torch_checkpoint, save_torch_legacy_checkpoint

FORMATS = ("jittor_pkl", "torch_zip", "torch_legacy", "torch_zip_named_pkl")
REFUSED = "posix.system"  # how pickle names os.system on Linux


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def _checkpoint(marker):
    return {
        "meta": {"iter": 4, "CLASSES": ("a", "b")},
        "state_dict": {
            "backbone.patch_embed1.proj.0.weight": np.zeros((4, 3, 3, 3), np.float32),
            "decode_head.conv_seg.bias": Payload(marker),
        },
    }


def write_malicious(folder, kind, marker, name=None):
    """Write a hostile checkpoint of ``kind`` (one of FORMATS) into ``folder``; return its path."""
    folder = str(folder)
    obj = _checkpoint(marker)
    if kind == "jittor_pkl":
        path = os.path.join(folder, name or "evil.pkl")
        payload = pickle.dumps(obj, 4)
        with open(path, "wb") as f:  # jt.save's layout: pickle + sha1 + trailer (checksum right)
            f.write(payload + hashlib.sha1(payload).digest() + b"HCAJSLHD")
    elif kind in ("torch_zip", "torch_zip_named_pkl"):
        path = os.path.join(folder, name or "evil.pth")
        save_torch_checkpoint(obj, path)
        if kind == "torch_zip_named_pkl":
            renamed = os.path.join(folder, name or "evil_renamed.pkl")
            shutil.move(path, renamed)
            path = renamed
    elif kind == "torch_legacy":
        path = os.path.join(folder, name or "evil_legacy.pth")
        save_torch_legacy_checkpoint(obj, path)
    else:
        raise ValueError(kind)
    return path


class _AnyStorage(pickle.Unpickler):
    """pickle's own globals lookup; PyTorch's names (not installed here) become no-ops."""

    def find_class(self, module, name):
        if module.split(".")[0] == "torch":
            return lambda *args, **kwargs: None
        return super().find_class(module, name)

    def persistent_load(self, pid):
        return None


def unsafe_load(path):
    """Unpickle ``path`` as an unrestricted reader would (runs whatever the file says)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            return _AnyStorage(io.BytesIO(archive.read(name))).load()
    stream = io.BytesIO(data[:-28] if data.endswith(b"HCAJSLHD") else data)
    first = _AnyStorage(stream).load()
    if first == LEGACY_MAGIC:
        _AnyStorage(stream).load(), _AnyStorage(stream).load()  # protocol, system info
        return _AnyStorage(stream).load()
    return first
