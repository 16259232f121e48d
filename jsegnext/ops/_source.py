"""The C++/CUDA sources of the kernels (``csrc/``), as the text ``jt.code`` compiles.

The files are package data: they are read on first use, from next to this module, and each
local ``#include "x.h"`` is replaced by the text of ``x.h`` (once), so that ``jt.code`` gets one
self-contained header while the files still compile on their own (``csrc/*.cc``, ``csrc/*.cu``).
"""

import functools
import re
from pathlib import Path

CSRC = Path(__file__).resolve().with_name("csrc")
_LOCAL_INCLUDE = re.compile(r'^#include "([^"]+)"\s*$', re.MULTILINE)


def _read(name):
    path = CSRC / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: kernel source missing from the jsegnext installation (csrc/ is package data; reinstall jsegnext)"
        ) from None


def _inline(name, seen):
    if name in seen:
        return ""
    seen.add(name)
    return _LOCAL_INCLUDE.sub(lambda m: _inline(m.group(1), seen), _read(name))


@functools.lru_cache(maxsize=None)
def source(name):
    """Text of ``csrc/<name>`` with its local includes inlined."""
    return _inline(name, set())


def call(function, args, template_args=()):
    """The C++ statement ``function<template_args>(args);``: the body handed to ``jt.code``."""
    targs = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in template_args)
    return f"{function}{f'<{targs}>' if targs else ''}({', '.join(args)});"


#: ``jt.code`` names of input 0's NCHW sizes
NCHW = ("in0_shape0", "in0_shape1", "in0_shape2", "in0_shape3")
