"""Prepare the environment and import Jittor the way jsegnext needs it.

Everything in jsegnext imports Jittor through ``from jsegnext.runtime import jt``
so that these settings are in place before Jittor's first import:

* CPU-only machines that have ``nvcc`` but no CUDA driver: Jittor would try to load
  ``libcudart.so`` and crash, so CUDA is switched off (``nvcc_path=""``) unless a GPU is present.
* ``use_parallel_op_compiler=0``: Jittor 1.3.11's parallel compiler races in its conv tuner
  and can segfault (or deadlock) on a cold cache.
* ``FIX_TORCH_ERROR=0``: keeps Jittor from importing PyTorch at start-up.
* ``python_config_path``: Jittor looks for ``python3.X-config`` only beside the running executable
  and in /usr/bin, /usr/local/bin, so a virtual environment made from a pyenv or python.org
  Python fails to import; where it would not find one, the base interpreter's is given.

Each setting is applied only where the user has not set the variable already.
``JSEGNEXT_DEVICE=cpu`` forces the CPU even where a GPU is present; ``JSEGNEXT_DEVICE=cuda``
requires CUDA and fails loudly if Jittor cannot use it.

NumPy 2 is refused here, before Jittor loads: Jittor 1.3.11 reads NumPy arrays through its own copy
of NumPy 1.x's C structures (``src/pyjt/numpy.h``), so under NumPy 2 arrays passed between the two
come back with wrong values (measured: ``jt.array(np.arange(4)).numpy()`` gives garbage), silently.
"""
import glob
import os
import shutil
import sys

DEVICE_ENV = "JSEGNEXT_DEVICE"


def _gpu_present():
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    return shutil.which("nvidia-smi") is not None and os.path.exists("/proc/driver/nvidia")


def _base_python_config():
    """The base interpreter's python3.X-config where Jittor's own search would find none, else None."""
    name = f"python3.{sys.version_info.minor}-config"
    here = os.path.dirname(sys.executable)
    jittor_looks_at = [os.path.join(here, name), sys.executable + "-config", f"/usr/bin/{name}",
                       f"/usr/local/bin/{name}", os.path.join(here, "python3-config")]
    if any(os.path.isfile(p) for p in jittor_looks_at):
        return None
    base = os.path.join(sys.base_prefix, "bin", name)
    return base if os.path.isfile(base) else None


def _refuse_numpy_2():
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise ImportError(
            f"jsegnext cannot run with NumPy {numpy.__version__}: Jittor 1.3.11 exchanges arrays with NumPy "
            "through NumPy 1.x's memory layout and returns wrong values under NumPy 2. Install NumPy 1.x in "
            "this environment: pip install 'numpy<2'")


def _prepare_environment():
    _refuse_numpy_2()
    requested = os.environ.get(DEVICE_ENV, "auto").lower()
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{DEVICE_ENV} must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    if requested == "cpu" or (requested == "auto" and not _gpu_present()):
        os.environ["nvcc_path"] = ""
    os.environ.setdefault("use_parallel_op_compiler", "0")
    os.environ.setdefault("FIX_TORCH_ERROR", "0")
    os.environ.setdefault("log_silent", "1")
    if "python_config_path" not in os.environ and _base_python_config():
        os.environ["python_config_path"] = _base_python_config()
    return requested


_requested_device = _prepare_environment()

import jittor as jt  # noqa: E402  (must follow the environment set-up)

if _requested_device == "cuda" and not jt.has_cuda:
    raise RuntimeError(f"{DEVICE_ENV}=cuda but Jittor found no usable CUDA installation")
jt.flags.use_cuda = 1 if (jt.has_cuda and _requested_device != "cpu") else 0


def device_name():
    """'cuda' or 'cpu': where Jittor runs now."""
    return "cuda" if jt.flags.use_cuda else "cpu"
