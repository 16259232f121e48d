"""Prepare the environment and import Jittor the way jsegnext needs it.

Everything in jsegnext imports Jittor through ``from jsegnext.runtime import jt`` so that these
settings are in place before Jittor's first import. Each one is an environment variable that
Jittor reads, and each is set only where the user has not set that variable already (except
``nvcc_path=""`` when the CPU is chosen). :data:`SETTINGS` holds what was chosen and why;
``python -m jsegnext.warmup`` prints it. Under NumPy 2, arrays cross between NumPy and Jittor
through ``Var.data`` (:mod:`jsegnext.numpy_compat`): Jittor 1.3.11's own copies read wrong values there.

Always:

* ``use_parallel_op_compiler=0``: Jittor 1.3.11's parallel compiler races in its conv tuner and
  can segfault (or deadlock) on a cold cache.
* ``FIX_TORCH_ERROR=0``: keeps Jittor from importing PyTorch at start-up.
* ``GOMP_SPINCOUNT=10000``: an OpenMP thread waiting at a barrier spins 10,000 times (libgomp's
  default: 300,000) before it sleeps. With other processes on the 2 cores (load average ~2), the
  default made SegNeXt-T's 2-thread eval at 512² take 1.39 s (spinning threads held the core the
  thread they waited for needed), this 0.24 s (one thread: 0.18 s); on an idle machine the two
  were within run-to-run noise.
* ``python_config_path``: Jittor runs ``python3.X-config`` for the Python headers and knows only a
  few places for it (none inside a virtual environment made from pyenv or uv Pythons); where none
  of them exists but the interpreter's ``Python.h`` does, a small equivalent script is written to
  ``~/.cache/jsegnext/``.

Device: ``JSEGNEXT_DEVICE=cpu`` forces the CPU; ``cuda`` requires CUDA and fails loudly (naming
what is missing) if Jittor cannot use it; ``auto`` (default) uses CUDA where a GPU is present and
Jittor can use it there, else the CPU, saying why on stderr when a GPU goes unused.

* CPU: ``nvcc_path=""``. Machines with ``nvcc`` but no GPU driver would otherwise make Jittor
  load ``libcudart.so`` and crash.

CUDA (a GPU is present). Jittor's CUDA set-up (``jittor/compile_extern.py``) fails on a machine
with CUDA 13, cuDNN 9, the CUDA libraries from pip wheels and no network, for these reasons:

* ``nvcc_path``: Jittor takes the first ``nvcc`` on ``PATH`` and looks for ``libcudart.so`` in
  ``<its dir>/../lib64``; a wrapper script such as ``/usr/local/bin/nvcc`` makes that fail. The
  first ``nvcc`` (``$CUDA_HOME``, ``$CUDA_PATH``, ``PATH``, ``/usr/local/cuda``, ...) whose
  toolkit has ``libcudart.so`` is chosen. Jittor aborts unless it finds cuBLAS and cuRAND (header
  and ``lib*.so``) in that toolkit; where they come only from pip wheels (``site-packages/nvidia/
  */{include,lib}``, versioned names only, e.g. PyTorch's), a CUDA home made of symbolic links
  (toolkit + wheels, with unversioned library names) is written to ``~/.cache/jsegnext/cuda-*``
  and ``nvcc_path`` points at its ``bin/nvcc``. With CUDA 13 that ``nvcc`` is a wrapper that
  compiles C++17 where Jittor asks for C++14: CUDA 13's CUB/Thrust refuse C++14, and without
  them Jittor's CUB operators fail to build (a warning, retried at every start); and its
  ``include/helper_cuda.h``, found before Jittor's own, is Jittor's with ``cudaDeviceProp::
  computeMode`` and ``::clockRate`` (removed in CUDA 13: Jittor's core does not compile) read as
  device attributes. A toolkit with ``libcudart`` only in ``../lib`` gets such a home too.
* ``conv_opt=1`` where Jittor cannot use cuDNN: its cuDNN module is written for cuDNN 8 (it loads
  ``libcudnn_ops_infer.so`` and three other cuDNN 8 libraries, and calls the pre-v8 RNN API,
  e.g. ``cudnnRNNForwardTraining``, removed in cuDNN 9; Jittor issue #666) and a failure there
  aborts ``import jittor``. ``conv_opt=1`` makes Jittor load only cuBLAS and cuRAND (no cuDNN,
  cuFFT, cuSPARSE). Convolutions then run on Jittor's own CUDA code; jsegnext's 1x1 convolutions
  are cuBLAS products and its depthwise and strip convolutions its own kernels or Jittor's
  depthwise op, none of which needs cuDNN.
* ``use_cutt=0``, ``use_cutlass=0``: Jittor downloads (or unpacks from ``jittor_offline``) and
  compiles CUTT, a transpose library, and downloads CUTLASS, on first CUDA use; jsegnext needs
  neither (Jittor transposes with its own kernels; nothing in Jittor 1.3.11 uses CUTLASS).
* ``use_nccl=0`` outside MPI: a single process needs no NCCL, which Jittor would download.
* ``use_mkl=0`` where oneDNN is not available offline (no ``jittor_offline``, nothing cached):
  Jittor downloads its CPU convolution library at import; on a CUDA run nothing needs it.
"""

import dataclasses
import glob
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

DEVICE_ENV = "JSEGNEXT_DEVICE"
REQUIRED_CUDA_LIBS = ("cublas", "curand")  # Jittor aborts without them even with conv_opt=1
CONV_OPT_LIBS = ("cudnn", "cufft", "cusparse")  # what conv_opt=1 keeps Jittor from loading
CUDNN8_PARTS = ("cudnn_ops_infer", "cudnn_ops_train", "cudnn_cnn_infer", "cudnn_cnn_train")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "jsegnext")
_SHIM_FORMAT = 1  # bump when the generated CUDA home changes


# --------------------------------------------------------------------------------- facts
@dataclasses.dataclass
class CudaToolkit:
    """One nvcc and the directories Jittor searches when it uses it (``compile_extern.py``)."""

    nvcc: str
    version: tuple
    include_dirs: list
    lib_dirs: list
    cudart_dir: str = None  # where libcudart.so* is when not in lib_dirs[1] (e.g. a pip wheel's lib/)


@dataclasses.dataclass
class Facts:
    """What the decision in :func:`choose_settings` depends on, gathered by :func:`gather_facts`.

    ``toolkit_libs`` / ``wheel_libs``: for each of cublas, curand, cudnn, cufft, cusparse whether its
    header and library are where Jittor looks (in the toolkit; in pip's wheels), ``cudnn_major``
    (``CUDNN_MAJOR`` of that ``cudnn.h``) and ``cudnn8_parts`` (the four cuDNN 8 libraries Jittor
    loads besides ``libcudnn.so``)."""

    requested: str = "auto"  # JSEGNEXT_DEVICE
    gpu_present: bool = False
    toolkit: CudaToolkit = None  # the usable nvcc (its toolkit has libcudart.so), if any
    toolkit_libs: dict = dataclasses.field(default_factory=dict)
    wheel_dirs: list = dataclasses.field(default_factory=list)  # [(include, lib)] of nvidia/* wheels
    wheel_libs: dict = dataclasses.field(default_factory=dict)
    in_mpi: bool = False
    offline_package: bool = False  # jittor_offline importable
    onednn_cached: bool = False
    python_config_found: bool = True
    python_include: str = None  # directory holding Python.h, if any


@dataclasses.dataclass
class Plan:
    """Environment variables to set (name -> (value, reason)) and what to build first."""

    device: str
    settings: dict
    build_cuda_home: bool = False
    build_python_config: bool = False
    warning: str = None


def _gpu_present():
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    return shutil.which("nvidia-smi") is not None and os.path.exists("/proc/driver/nvidia")


def _resolve_links(path):
    while os.path.islink(path):  # Jittor follows symbolic links, not wrapper scripts
        path = os.path.realpath(path)
    return path


def _nvcc_version(nvcc):
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"V(\d+)\.(\d+)\.(\d+)", out) or re.search(r"release (\d+)\.(\d+)", out)
    return tuple(int(v) for v in m.groups()) if m else None


def jittor_cuda_dirs(nvcc):
    """(include dirs, lib dirs) that Jittor searches when ``nvcc_path`` is ``nvcc``."""
    bin_dir = os.path.dirname(_resolve_links(os.path.abspath(nvcc)))
    home = os.path.dirname(bin_dir)
    lib = "/usr/lib/x86_64-linux-gnu" if nvcc == "/usr/bin/nvcc" else os.path.join(home, "lib64")
    include = os.path.join(home, "include")
    target = "targets/x86_64-linux"
    return (
        [include, os.path.normpath(os.path.join(include, "..", target, "include")), "/usr/include"],
        [
            bin_dir,
            lib,
            os.path.normpath(os.path.join(lib, "..", target, "lib")),
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib",
        ],
    )


def nvcc_candidates(environ):
    names = [os.path.join(environ[k], "bin", "nvcc") for k in ("CUDA_HOME", "CUDA_PATH") if environ.get(k)]
    names += [os.path.join(d, "nvcc") for d in environ.get("PATH", "").split(os.pathsep) if d]
    names += ["/usr/local/cuda/bin/nvcc", "/usr/bin/nvcc", "/opt/cuda/bin/nvcc"]
    seen = []
    for name in names:
        if name and name not in seen and os.path.isfile(name) and os.access(name, os.X_OK):
            seen.append(name)
    return seen


def find_toolkit(environ):
    """The CUDA toolkit Jittor can use: ``nvcc_path`` if the user set it, else the first candidate
    whose toolkit has ``libcudart.so`` where Jittor loads it from (``<bin>/../lib64``), else the
    first with ``libcudart.so*`` in ``<bin>/../lib`` (its CUDA home then gets a ``lib64``)."""
    names = [environ["nvcc_path"]] if environ.get("nvcc_path") else nvcc_candidates(environ)
    fallback = None
    for nvcc in names:
        include_dirs, lib_dirs = jittor_cuda_dirs(nvcc)
        if os.path.isfile(os.path.join(lib_dirs[1], "libcudart.so")):
            version = _nvcc_version(nvcc)
            if version:
                return CudaToolkit(nvcc, version, include_dirs, lib_dirs)
        lib = os.path.join(os.path.dirname(lib_dirs[0]), "lib")
        if fallback is None and _has_file([lib], "libcudart.so", versioned=True):
            version = _nvcc_version(nvcc)
            if version:
                fallback = CudaToolkit(nvcc, version, include_dirs, lib_dirs, cudart_dir=lib)
    return fallback


def _has_file(dirs, name, versioned=False):
    for d in dirs:
        if os.path.isfile(os.path.join(d, name)) or (versioned and glob.glob(os.path.join(d, name + ".[0-9]*"))):
            return True
    return False


def _libs_found(include_dirs, lib_dirs, versioned):
    """See :class:`Facts`. ``versioned``: ``libX.so.N`` counts (the CUDA home gets unversioned links)."""
    found = {
        n: _has_file(include_dirs, n + ".h") and _has_file(lib_dirs, f"lib{n}.so", versioned)
        for n in REQUIRED_CUDA_LIBS + CONV_OPT_LIBS
    }
    found["cudnn_major"] = _cudnn_major(include_dirs)
    found["cudnn8_parts"] = all(_has_file(lib_dirs, f"lib{n}.so", versioned) for n in CUDNN8_PARTS)
    return found


def wheel_cuda_dirs(paths=None):
    """(include, lib) of each ``nvidia/<name>`` package (pip's CUDA wheels) on ``sys.path``."""
    found = []
    for p in paths if paths is not None else sys.path:
        for d in sorted(glob.glob(os.path.join(p or ".", "nvidia", "*", ""))):
            pair = (os.path.join(d, "include"), os.path.join(d, "lib"))
            if os.path.isdir(pair[1]) and pair not in found:
                found.append(pair)
    return found


def _cudnn_major(include_dirs):
    for d in include_dirs:
        for name in ("cudnn_version.h", "cudnn.h"):
            path = os.path.join(d, name)
            if os.path.isfile(path):
                with open(path, errors="replace") as f:
                    m = re.search(r"#define\s+CUDNN_MAJOR\s+(\d+)", f.read())
                if m:
                    return int(m.group(1))
    return None


def _python_config_found(environ):
    """Whether one of the ``python3.X-config`` paths Jittor tries exists (``jittor_utils``)."""
    minor = sys.version_info.minor
    exe_dir = os.path.dirname(sys.executable)
    names = [
        environ.get("python_config_path", ""),
        f"{exe_dir}/python3.{minor}-config",
        sys.executable + "-config",
        f"/usr/bin/python3.{minor}-config",
        f"/usr/local/bin/python3.{minor}-config",
        f"{exe_dir}/python3-config",
    ]
    return any(n and os.path.isfile(n) for n in names)


def _python_include():
    include = sysconfig.get_paths().get("include")
    return include if include and os.path.isfile(os.path.join(include, "Python.h")) else None


def gather_facts(environ=None, gpu_present=None, sys_path=None):
    """Look at the machine (``gpu_present`` and ``sys_path`` may be given, e.g. to plan for another)."""
    environ = os.environ if environ is None else environ
    requested = environ.get(DEVICE_ENV, "auto").lower()
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{DEVICE_ENV} must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    facts = Facts(
        requested=requested,
        gpu_present=_gpu_present() if gpu_present is None else gpu_present,
        in_mpi="OMPI_COMM_WORLD_SIZE" in environ,
        python_config_found=_python_config_found(environ),
        python_include=_python_include(),
    )
    if requested == "cpu" or not facts.gpu_present:
        return facts
    facts.offline_package = importlib.util.find_spec("jittor_offline") is not None
    facts.onednn_cached = bool(
        glob.glob(os.path.join(os.path.expanduser("~"), ".cache", "jittor", "mkl", "dnnl*", "lib", "libmkldnn.so"))
    )
    facts.toolkit = find_toolkit(environ)
    if facts.toolkit:
        facts.toolkit_libs = _libs_found(
            facts.toolkit.include_dirs, facts.toolkit.lib_dirs, versioned=facts.toolkit.version[0] == 11
        )  # Jittor: cuDNN .8 names
    facts.wheel_dirs = wheel_cuda_dirs(sys_path)
    facts.wheel_libs = _libs_found(
        [d for d, _ in facts.wheel_dirs], [lib for _, lib in facts.wheel_dirs], versioned=True
    )
    return facts


# --------------------------------------------------------------------------------- decision
def _cuda_problem(f):
    """Why Jittor cannot use CUDA here (None if it can)."""
    if f.toolkit is None:
        return "no usable CUDA toolkit: no nvcc with libcudart.so in its ../lib64 (set CUDA_HOME or nvcc_path)"
    missing = [n for n in REQUIRED_CUDA_LIBS if not (f.toolkit_libs.get(n) or f.wheel_libs.get(n))]
    if missing:
        return (
            f"{', '.join(missing)} (header and library) not found in the CUDA toolkit of {f.toolkit.nvcc} "
            f"or in pip's nvidia-* packages; Jittor needs them for CUDA"
        )
    return None


def needs_cuda_home(f):
    """Whether the toolkit must be completed from pip's wheels or its nvcc wrapped (see the module doc)."""
    from_wheels = any(not f.toolkit_libs.get(n) for n in REQUIRED_CUDA_LIBS)
    return from_wheels or f.toolkit.version[0] >= 13 or f.toolkit.cudart_dir is not None


def choose_settings(f, environ):
    """The plan for ``f`` (pure: no file is read or written). Variables in ``environ`` are kept."""
    settings = {
        "use_parallel_op_compiler": ("0", "Jittor 1.3.11's parallel op compiler can segfault"),
        "FIX_TORCH_ERROR": ("0", "do not import PyTorch at Jittor's start"),
        "GOMP_SPINCOUNT": ("10000", "OpenMP threads sleep sooner at barriers (other processes on the cores)"),
        "log_silent": ("1", "Jittor's info messages off"),
    }
    plan = Plan(device="cpu", settings=settings)
    if not f.python_config_found and f.python_include:
        key = hashlib.sha1(f.python_include.encode()).hexdigest()[:8]  # one per interpreter
        settings["python_config_path"] = (
            os.path.join(CACHE_DIR, f"python3.{sys.version_info.minor}-config-{key}"),
            "none of the python3.X-config paths Jittor knows exists",
        )
        plan.build_python_config = "python_config_path" not in environ
    if f.requested == "cpu" or not f.gpu_present:
        why = f"{DEVICE_ENV}=cpu" if f.requested == "cpu" else "no GPU present"
        settings["nvcc_path"] = ("", f"{why}: Jittor must not load the CUDA runtime")
        return _keep_user_values(plan, environ, force=("nvcc_path",))
    problem = _cuda_problem(f)
    if problem:
        if f.requested == "cuda":
            raise RuntimeError(f"{DEVICE_ENV}=cuda but Jittor cannot use CUDA here: {problem}")
        settings["nvcc_path"] = ("", f"GPU present but {problem}")
        plan.warning = f"jsegnext: a GPU is present but Jittor cannot use it ({problem}); running on the CPU"
        return _keep_user_values(plan, environ, force=("nvcc_path",))
    plan.device = "cuda"
    libs = f.toolkit_libs
    if needs_cuda_home(f) and "nvcc_path" not in environ:
        settings["nvcc_path"] = (
            os.path.join(cuda_home_dir(f), "bin", "nvcc"),
            "CUDA home of links: toolkit + pip's nvidia-* wheels; C++17 for CUDA 13",
        )
        plan.build_cuda_home = True
        libs = {n: f.toolkit_libs.get(n) or f.wheel_libs.get(n) for n in REQUIRED_CUDA_LIBS + CONV_OPT_LIBS}
        use_wheel_cudnn = not f.toolkit_libs.get("cudnn") and f.wheel_libs.get("cudnn")
        for key in ("cudnn_major", "cudnn8_parts"):
            libs[key] = (f.wheel_libs if use_wheel_cudnn else f.toolkit_libs).get(key)
    else:
        settings["nvcc_path"] = (f.toolkit.nvcc, "the first nvcc whose toolkit has libcudart.so")
    unusable = [n for n in CONV_OPT_LIBS if not libs.get(n)]
    if libs.get("cudnn") and not (libs.get("cudnn_major") == 8 and libs.get("cudnn8_parts")):
        unusable.append(f"cuDNN {libs.get('cudnn_major')} (Jittor's cuDNN code is for cuDNN 8)")
    if unusable:
        settings["conv_opt"] = ("1", f"Jittor would abort loading {', '.join(unusable)}")
    settings["use_cutt"] = ("0", "CUTT would be downloaded and compiled; Jittor transposes without it")
    settings["use_cutlass"] = ("0", "CUTLASS would be downloaded; nothing uses it")
    if not f.in_mpi:
        settings["use_nccl"] = ("0", "one process needs no NCCL (it would be downloaded)")
    if not (f.offline_package or f.onednn_cached):
        settings["use_mkl"] = ("0", "oneDNN (CPU convolutions) would be downloaded; not needed on CUDA")
    return _keep_user_values(plan, environ, force=())


def _keep_user_values(plan, environ, force):
    plan.settings = {k: v for k, v in plan.settings.items() if k in force or k not in environ}
    return plan


# --------------------------------------------------------------------------------- files
def cuda_home_dir(f):
    key = repr((_SHIM_FORMAT, f.toolkit.nvcc, f.toolkit.version, f.wheel_dirs)).encode()
    return os.path.join(CACHE_DIR, "cuda-" + hashlib.sha1(key).hexdigest()[:12])


_NVCC_WRAPPER = """#!/bin/sh
# Written by jsegnext (runtime.py): runs {nvcc}{dialect_note}.
for a do
    shift
    {rewrite}set -- "$@" "$a"
done
exec "{nvcc}" "$@"
"""


def _link_dir_entries(src_dirs, dst, unversioned=False):
    for src in src_dirs:
        if not src or not os.path.isdir(src):
            continue
        for name in sorted(os.listdir(src)):
            target = os.path.join(src, name)
            names = [name]
            m = re.match(r"(lib.+\.so)\.\d+$", name) if unversioned else None
            if m:  # libcublas.so.13 -> also libcublas.so
                names.append(m.group(1))
            for n in names:
                if not os.path.lexists(os.path.join(dst, n)):
                    os.symlink(target, os.path.join(dst, n))


def build_cuda_home(f, path=None):
    """Write the CUDA home of symbolic links described in the module doc (atomically; kept if present)."""
    path = path or cuda_home_dir(f)
    if os.path.isfile(os.path.join(path, "bin", "nvcc")):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".cuda-tmp-", dir=os.path.dirname(path))
    for sub in ("bin", "include", "lib64"):
        os.makedirs(os.path.join(tmp, sub))
    tk = f.toolkit
    _link_dir_entries(tk.include_dirs[:2] + [inc for inc, _ in f.wheel_dirs], os.path.join(tmp, "include"))
    libs = tk.lib_dirs[1:3] + [tk.cudart_dir] + [lib for _, lib in f.wheel_dirs]
    _link_dir_entries(libs, os.path.join(tmp, "lib64"), unversioned=True)
    cxx17 = tk.version[0] >= 13
    if cxx17:
        header = cuda13_helper_header()
        if header:
            with open(os.path.join(tmp, "include", "helper_cuda.h"), "w") as fh:
                fh.write(header)
    wrapper = _NVCC_WRAPPER.format(
        nvcc=_resolve_links(os.path.abspath(tk.nvcc)),
        dialect_note=", compiling C++17 where C++14 is asked for (CUDA 13's CUB and Thrust need C++17)"
        if cxx17
        else "",
        rewrite='case "$a" in -std=c++14) a=-std=c++17 ;; esac\n    ' if cxx17 else "",
    )
    nvcc = os.path.join(tmp, "bin", "nvcc")
    with open(nvcc, "w") as fh:
        fh.write(wrapper)
    os.chmod(nvcc, 0o755)
    try:
        os.rename(tmp, path)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def cuda13_helper_header(text=None):
    """Jittor's ``extern/cuda/inc/helper_cuda.h`` with the ``cudaDeviceProp`` fields CUDA 13 removed
    (``computeMode``, ``clockRate``) read through ``cudaDeviceGetAttribute``; None if the file is not
    the one of Jittor 1.3.11. Every Jittor source includes it by name, so the copy in the CUDA home's
    ``include`` (searched before Jittor's own directory) is the one compiled."""
    if text is None:
        spec = importlib.util.find_spec("jittor")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = os.path.join(spec.submodule_search_locations[0], "extern", "cuda", "inc", "helper_cuda.h")
        if not os.path.isfile(path):
            return None
        with open(path) as fh:
            text = fh.read()
    head, sep, tail = text.partition("inline int gpuGetMaxGflopsDeviceId()")
    if (
        not sep
        or head.count("deviceProp.computeMode") != 1
        or tail.count("deviceProp.computeMode") != 2
        or "deviceProp.clockRate" in head
        or tail.count("deviceProp.clockRate") != 1
    ):
        return None
    attr = "jsn_device_attribute({}, {})"
    head = head.replace("deviceProp.computeMode", attr.format("cudaDevAttrComputeMode", "devID"))
    tail = tail.replace("deviceProp.computeMode", attr.format("cudaDevAttrComputeMode", "current_device"))
    tail = tail.replace("deviceProp.clockRate", attr.format("cudaDevAttrClockRate", "current_device"))
    return (
        "// Written by jsegnext (runtime.py) from Jittor's helper_cuda.h: CUDA 13 removed\n"
        "// cudaDeviceProp::computeMode and ::clockRate; they are read as device attributes.\n"
        "#include <cuda_runtime.h>\n"
        "static inline int jsn_device_attribute(cudaDeviceAttr attr, int dev) {\n"
        "  int value = 0;\n  cudaDeviceGetAttribute(&value, attr, dev);\n  return value;\n}\n" + head + sep + tail
    )


_PYTHON_CONFIG = """#!/bin/sh
# Written by jsegnext (runtime.py): python3.X-config answers for {exe}, which Jittor asks.
case "$1" in
    --includes) echo "{includes}" ;;
    --cflags) echo "{includes}" ;;
    --extension-suffix) echo "{suffix}" ;;
    --ldflags) echo "{ldflags}" ;;
    *) echo "usage: $0 --includes|--cflags|--extension-suffix|--ldflags" >&2; exit 1 ;;
esac
"""


def build_python_config(path):
    paths = sysconfig.get_paths()
    includes = " ".join(f"-I{p}" for p in dict.fromkeys([paths["include"], paths["platinclude"]]))
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ldflags = f"-L{libdir} " + " ".join(filter(None, [sysconfig.get_config_var(v) for v in ("LIBS", "SYSLIBS")]))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(
            _PYTHON_CONFIG.format(
                exe=sys.executable,
                includes=includes,
                ldflags=ldflags.strip(),
                suffix=sysconfig.get_config_var("EXT_SUFFIX") or "",
            )
        )
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def apply(plan, facts, environ=None):
    environ = os.environ if environ is None else environ
    if plan.build_python_config:
        build_python_config(plan.settings["python_config_path"][0])
    if plan.build_cuda_home:
        build_cuda_home(facts, os.path.dirname(os.path.dirname(plan.settings["nvcc_path"][0])))
    for name, (value, _) in plan.settings.items():
        environ[name] = value
    if plan.warning:
        print(plan.warning, file=sys.stderr)


def _prepare_environment():
    facts = gather_facts()
    plan = choose_settings(facts, os.environ)
    apply(plan, facts)
    return facts, plan


FACTS, PLAN = _prepare_environment()
#: What :func:`_prepare_environment` set: variable -> (value, reason).
SETTINGS = PLAN.settings

import jittor as jt  # noqa: E402  (must follow the environment set-up)

from . import numpy_compat  # noqa: E402

numpy_compat.install(jt)  # under NumPy 2 only: arrays in and out through Var.data

if FACTS.requested == "cuda" and not jt.has_cuda:
    raise RuntimeError(f"{DEVICE_ENV}=cuda but Jittor found no usable CUDA installation")
jt.flags.use_cuda = 1 if (jt.has_cuda and PLAN.device == "cuda") else 0


def device_name():
    """'cuda' or 'cpu': where Jittor runs now."""
    return "cuda" if jt.flags.use_cuda else "cpu"


#: The Jittor variables this module may set (:func:`describe` reports each one that is set).
JITTOR_VARIABLES = (
    "nvcc_path",
    "conv_opt",
    "use_cutt",
    "use_cutlass",
    "use_nccl",
    "use_mkl",
    "use_parallel_op_compiler",
    "FIX_TORCH_ERROR",
    "GOMP_SPINCOUNT",
    "python_config_path",
    "log_silent",
)


def describe():
    """Where Jittor runs and each Jittor variable in the environment, with the reason where jsegnext
    set it (one line each, for logs)."""
    lines = [f"device: {device_name()} (requested {FACTS.requested}, GPU present: {FACTS.gpu_present})"]
    for name in JITTOR_VARIABLES:
        if name in os.environ:
            why = SETTINGS[name][1] if name in SETTINGS else "set before jsegnext was imported"
            lines.append(f"{name}={os.environ[name]!r}: {why}")
    return "\n".join(lines)
