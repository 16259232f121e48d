"""Prepare the environment and import Jittor the way jsegnext needs it.

Everything in jsegnext imports Jittor through ``from jsegnext.runtime import jt``
so that these settings are in place before Jittor's first import:

* CPU-only machines that have ``nvcc`` but no CUDA driver: Jittor would try to load
  ``libcudart.so`` and crash, so CUDA is switched off (``nvcc_path=""``) unless a GPU is present.
* ``use_parallel_op_compiler=0``: Jittor 1.3.11's parallel compiler races in its conv tuner
  and can segfault (or deadlock) on a cold cache.
* ``FIX_TORCH_ERROR=0``: keeps Jittor from importing PyTorch at start-up.
* ``GOMP_SPINCOUNT=10000``: an OpenMP thread waiting at a barrier spins 10,000 times (libgomp's
  default: 300,000) before it sleeps. With other processes on the 2 cores (load average ~2), the
  default made SegNeXt-T's 2-thread eval at 512² take 1.39 s (spinning threads held the core the
  thread they waited for needed), this 0.24 s (one thread: 0.18 s); on an idle machine the two
  were within run-to-run noise.

Each setting is applied only where the user has not set the variable already.
``JSEGNEXT_DEVICE=cpu`` forces the CPU even where a GPU is present; ``JSEGNEXT_DEVICE=cuda``
requires CUDA and fails loudly if Jittor cannot use it.
"""
import glob
import os
import shutil

DEVICE_ENV = "JSEGNEXT_DEVICE"


def _gpu_present():
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    return shutil.which("nvidia-smi") is not None and os.path.exists("/proc/driver/nvidia")


def _prepare_environment():
    requested = os.environ.get(DEVICE_ENV, "auto").lower()
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{DEVICE_ENV} must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    if requested == "cpu" or (requested == "auto" and not _gpu_present()):
        os.environ["nvcc_path"] = ""
    os.environ.setdefault("use_parallel_op_compiler", "0")
    os.environ.setdefault("FIX_TORCH_ERROR", "0")
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    os.environ.setdefault("log_silent", "1")
    return requested


_requested_device = _prepare_environment()

import jittor as jt  # noqa: E402  (must follow the environment set-up)

if _requested_device == "cuda" and not jt.has_cuda:
    raise RuntimeError(f"{DEVICE_ENV}=cuda but Jittor found no usable CUDA installation")
jt.flags.use_cuda = 1 if (jt.has_cuda and _requested_device != "cpu") else 0


def device_name():
    """'cuda' or 'cpu': where Jittor runs now."""
    return "cuda" if jt.flags.use_cuda else "cpu"
