"""jsegnext.runtime: the Jittor settings chosen from the machine's facts (a GPU machine with CUDA 13,
cuDNN 9 and the CUDA libraries from pip wheels, as on the project's GPU machine, among others), the
fact gathering on a fake file system, and the files it writes (CUDA home of links, nvcc wrapper,
python3.X-config)."""

import os
import subprocess
import sys
import sysconfig

import pytest

from jsegnext import runtime as rt

TARGET_TOOLKIT = rt.CudaToolkit(
    "/usr/local/cuda/bin/nvcc",
    (13, 0, 88),
    ["/usr/local/cuda/include"],
    ["/usr/local/cuda/bin", "/usr/local/cuda/lib64"],
)
NO_LIBS = {
    "cublas": False,
    "curand": False,
    "cudnn": False,
    "cufft": False,
    "cusparse": False,
    "cudnn_major": None,
    "cudnn8_parts": False,
}


def facts(**kw):
    """The H200 machine's facts: CUDA 13 toolkit with nvcc and cudart only; cuBLAS, cuRAND, cuFFT,
    cuSPARSE and cuDNN 9 from pip's nvidia-* wheels (PyTorch's); no jittor_offline; one process."""
    wheel = dict(NO_LIBS, cublas=True, curand=True, cufft=True, cusparse=True, cudnn=True, cudnn_major=9)
    base = dict(
        requested="auto",
        gpu_present=True,
        toolkit=TARGET_TOOLKIT,
        toolkit_libs=dict(NO_LIBS),
        wheel_dirs=[("/site/nvidia/cu13/include", "/site/nvidia/cu13/lib")],
        wheel_libs=wheel,
    )
    base.update(kw)
    return rt.Facts(**base)


def values(plan):
    return {k: v for k, (v, _) in plan.settings.items()}


def test_target_gpu_machine():
    plan = rt.choose_settings(facts(), {})
    v = values(plan)
    assert plan.device == "cuda" and plan.build_cuda_home and plan.warning is None
    assert v["nvcc_path"] == os.path.join(rt.cuda_home_dir(facts()), "bin", "nvcc")
    assert v["conv_opt"] == "1" and "cuDNN 9" in plan.settings["conv_opt"][1]
    assert v["use_cutt"] == v["use_cutlass"] == v["use_nccl"] == v["use_mkl"] == "0"
    assert v["use_parallel_op_compiler"] == "0" and v["FIX_TORCH_ERROR"] == "0"


def test_complete_cuda12_toolkit_with_cudnn8_keeps_cudnn():
    libs = dict(
        NO_LIBS, cublas=True, curand=True, cufft=True, cusparse=True, cudnn=True, cudnn_major=8, cudnn8_parts=True
    )
    toolkit = rt.CudaToolkit("/opt/cuda-12.4/bin/nvcc", (12, 4, 131), [], [])
    plan = rt.choose_settings(
        facts(toolkit=toolkit, toolkit_libs=libs, wheel_dirs=[], wheel_libs=dict(NO_LIBS), offline_package=True), {}
    )
    v = values(plan)
    assert plan.device == "cuda" and not plan.build_cuda_home
    assert v["nvcc_path"] == "/opt/cuda-12.4/bin/nvcc"
    assert "conv_opt" not in v and "use_mkl" not in v  # cuDNN usable; oneDNN comes from jittor_offline
    # cuDNN 8 header without its four component libraries: Jittor would abort
    plan = rt.choose_settings(facts(toolkit=toolkit, toolkit_libs=dict(libs, cudnn8_parts=False)), {})
    assert values(plan)["conv_opt"] == "1"
    # no cuFFT in the toolkit: Jittor aborts on it too, conv_opt=1 skips it
    plan = rt.choose_settings(facts(toolkit=toolkit, toolkit_libs=dict(libs, cufft=False)), {})
    assert "cufft" in plan.settings["conv_opt"][1]


def test_inside_mpi_nccl_is_left_to_jittor():
    assert "use_nccl" not in values(rt.choose_settings(facts(in_mpi=True), {}))


def test_user_settings_are_kept():
    user = {"conv_opt": "0", "use_cutt": "1", "nvcc_path": "/my/cuda/bin/nvcc"}
    plan = rt.choose_settings(facts(), user)
    assert not set(user) & set(plan.settings)
    assert not plan.build_cuda_home  # the user's nvcc is used as it is
    env = dict(user)
    rt.apply(plan, facts(), env)
    assert {k: env[k] for k in user} == user and env["use_cutlass"] == "0"


def test_cpu_without_gpu_or_when_asked():
    for f in (facts(gpu_present=False), facts(requested="cpu")):
        plan = rt.choose_settings(f, {"nvcc_path": "/usr/local/cuda/bin/nvcc"})
        assert plan.device == "cpu" and values(plan)["nvcc_path"] == ""  # forced: no CUDA runtime
        assert not {"conv_opt", "use_cutt", "use_mkl"} & set(plan.settings)


def test_gpu_jittor_cannot_use():
    no_blas = facts(wheel_libs=dict(NO_LIBS, curand=True))
    plan = rt.choose_settings(no_blas, {})
    assert plan.device == "cpu" and values(plan)["nvcc_path"] == ""
    assert "cublas" in plan.warning and "CPU" in plan.warning
    with pytest.raises(RuntimeError, match="cublas"):
        rt.choose_settings(facts(requested="cuda", wheel_libs=dict(NO_LIBS, curand=True)), {})
    plan = rt.choose_settings(facts(toolkit=None), {})
    assert plan.device == "cpu" and "no usable CUDA toolkit" in plan.warning
    with pytest.raises(RuntimeError, match="toolkit"):
        rt.choose_settings(facts(requested="cuda", toolkit=None), {})


def test_python_config_written_only_where_jittor_finds_none():
    plan = rt.choose_settings(facts(gpu_present=False, python_config_found=False, python_include="/inc"), {})
    assert plan.build_python_config and "python_config_path" in plan.settings
    plan = rt.choose_settings(facts(gpu_present=False), {})
    assert not plan.build_python_config and "python_config_path" not in plan.settings


# ----------------------------------------------------------------------------- fake file system
def _write(path, text="", mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


FAKE_NVCC = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "Cuda compilation tools, release 13.0, V13.0.88"; exit 0; fi
echo "ARGS: $*"
"""


@pytest.fixture
def machine(tmp_path):
    """A CUDA 13 toolkit with nvcc and cudart only, an nvcc wrapper script first on PATH (as on the
    project's machines), and pip wheels with cuBLAS, cuRAND and cuDNN 9 (versioned names only)."""
    cuda = tmp_path / "cuda-13.0"
    _write(cuda / "bin" / "nvcc", FAKE_NVCC, 0o755)
    _write(cuda / "lib64" / "libcudart.so")
    _write(cuda / "include" / "cuda_runtime.h")
    wrapper = _write(tmp_path / "usr-local-bin" / "nvcc", f'#!/bin/sh\nexec "{cuda}/bin/nvcc" "$@"\n', 0o755)
    site = tmp_path / "site-packages"
    cu13 = site / "nvidia" / "cu13"
    for name, lib in (("cublas", "libcublas.so.13"), ("curand", "libcurand.so.10")):
        _write(cu13 / "include" / f"{name}.h")
        _write(cu13 / "lib" / lib, name)
    _write(cu13 / "lib" / "libcublasLt.so.13")
    cudnn = site / "nvidia" / "cudnn"
    _write(cudnn / "include" / "cudnn.h", '#include "cudnn_version.h"\n')
    _write(cudnn / "include" / "cudnn_version.h", "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 13\n")
    _write(cudnn / "lib" / "libcudnn.so.9")
    _write(cudnn / "lib" / "libcudnn_ops.so.9")
    environ = {"PATH": f"{wrapper.parent}:{cuda / 'bin'}"}
    return dict(cuda=cuda, wrapper=wrapper, site=site, environ=environ, tmp=tmp_path)


def test_gather_facts_skips_wrapper_and_finds_wheels(machine):
    f = rt.gather_facts(machine["environ"], gpu_present=True, sys_path=[str(machine["site"])])
    assert f.toolkit.nvcc == str(machine["cuda"] / "bin" / "nvcc")  # not the wrapper Jittor would take
    assert f.toolkit.version == (13, 0, 88)
    assert not f.toolkit_libs["cublas"] and not f.toolkit_libs["cudnn"]
    assert f.wheel_libs["cublas"] and f.wheel_libs["curand"] and f.wheel_libs["cudnn"]
    assert f.wheel_libs["cudnn_major"] == 9 and not f.wheel_libs["cudnn8_parts"]
    plan = rt.choose_settings(f, machine["environ"])
    assert plan.device == "cuda" and values(plan)["conv_opt"] == "1"
    assert "cuDNN 9" in plan.settings["conv_opt"][1] and "cufft" in plan.settings["conv_opt"][1]
    # only the wrapper: no toolkit Jittor can use
    only_wrapper = {"PATH": str(machine["wrapper"].parent)}
    assert rt.find_toolkit(only_wrapper) is None or rt.find_toolkit(only_wrapper).nvcc != str(machine["wrapper"])


def test_cuda_home_is_what_jittor_needs(machine):
    f = rt.gather_facts(machine["environ"], gpu_present=True, sys_path=[str(machine["site"])])
    home = rt.build_cuda_home(f, str(machine["tmp"] / "home"))
    nvcc = os.path.join(home, "bin", "nvcc")
    # Jittor, given this nvcc, finds cudart, cuBLAS and cuRAND under their unversioned names
    include_dirs, lib_dirs = rt.jittor_cuda_dirs(nvcc)
    cudart = os.path.realpath(os.path.join(lib_dirs[1], "libcudart.so"))
    assert cudart == str(machine["cuda"] / "lib64" / "libcudart.so")
    found = rt._libs_found(include_dirs, lib_dirs, versioned=False)
    assert found["cublas"] and found["curand"]
    with open(os.path.join(lib_dirs[1], "libcublas.so")) as fh:
        assert fh.read() == "cublas"
    assert os.path.exists(os.path.join(lib_dirs[1], "libcublasLt.so.13"))  # the SONAME the loader asks for
    assert os.path.isfile(os.path.join(include_dirs[0], "cuda_runtime.h"))
    # the wrapper runs the real nvcc (not a link: Jittor would follow a link back to the toolkit)
    # and asks for C++17 where Jittor asks for C++14
    assert not os.path.islink(nvcc)
    out = subprocess.run([nvcc, "-x", "cu", "-std=c++14", "-O2", "a b.cu"], capture_output=True, text=True).stdout
    assert out.strip() == "ARGS: -x cu -std=c++17 -O2 a b.cu"
    assert "V13.0.88" in subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    # written once, then reused
    assert rt.build_cuda_home(f, home) == home


def test_nvcc_12_keeps_the_dialect(machine):
    f = rt.gather_facts(machine["environ"], gpu_present=True, sys_path=[str(machine["site"])])
    f.toolkit.version = (12, 8, 93)
    nvcc = os.path.join(rt.build_cuda_home(f, str(machine["tmp"] / "home12")), "bin", "nvcc")
    out = subprocess.run([nvcc, "-std=c++14", "x.cu"], capture_output=True, text=True).stdout
    assert out.strip() == "ARGS: -std=c++14 x.cu"


def test_python_config_script(tmp_path):
    path = rt.build_python_config(str(tmp_path / "python3-config"))
    run = lambda arg: subprocess.run([path, arg], capture_output=True, text=True, check=True).stdout.strip()
    assert f"-I{sysconfig.get_paths()['include']}" in run("--includes").split()
    assert run("--extension-suffix") == sysconfig.get_config_var("EXT_SUFFIX")
    assert subprocess.run([path, "--bogus"], capture_output=True).returncode != 0


def test_import_reports_its_settings():
    out = subprocess.run(
        [sys.executable, "-c", "import jsegnext.runtime as r; print(r.describe())"],
        capture_output=True,
        text=True,
        env=dict(os.environ, JSEGNEXT_DEVICE="cpu"),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "device: cpu (requested cpu" in out.stdout and "nvcc_path='': JSEGNEXT_DEVICE=cpu" in out.stdout


def test_toolkit_with_cudart_in_lib_gets_a_lib64(tmp_path, monkeypatch):
    """An nvcc whose runtime sits in ``../lib`` with a versioned name only (a pip-installed toolkit)."""
    home = tmp_path / "nvidia" / "cu13"
    _write(home / "bin" / "nvcc", FAKE_NVCC, 0o755)
    _write(home / "lib" / "libcudart.so.13", "cudart")
    _write(home / "include" / "cuda_runtime.h")
    for name, lib in (("cublas", "libcublas.so.13"), ("curand", "libcurand.so.10")):
        _write(home / "include" / f"{name}.h")
        _write(home / "lib" / lib)
    monkeypatch.setattr(rt, "nvcc_candidates", lambda environ: [str(home / "bin" / "nvcc")])  # not this machine's
    f = rt.gather_facts({}, gpu_present=True, sys_path=[])
    assert f.toolkit.nvcc == str(home / "bin" / "nvcc") and f.toolkit.cudart_dir == str(home / "lib")
    new_home = rt.build_cuda_home(f, str(tmp_path / "home"))
    with open(os.path.join(new_home, "lib64", "libcudart.so")) as fh:
        assert fh.read() == "cudart"
    # such a toolkit needs the CUDA home even where nothing else would
    complete = dict(NO_LIBS, cublas=True, curand=True)
    tk12 = rt.CudaToolkit("/x/bin/nvcc", (12, 4, 0), [], [])
    assert not rt.needs_cuda_home(facts(toolkit=tk12, toolkit_libs=complete))
    tk12.cudart_dir = "/x/lib"
    assert rt.needs_cuda_home(facts(toolkit=tk12, toolkit_libs=complete))
