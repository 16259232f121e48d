"""The kernel sources in jsegnext/ops/csrc: they compile on their own (g++; nvcc where installed), the
CUDA calls strip_conv.py hands to jt.code compile with nvcc, and an installed (non-editable) package
finds them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jsegnext.ops._source import CSRC, source
from jsegnext.ops.strip_conv import kernel_source

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not installed: the CUDA sources are not compiled")


def _compile(cmd, cwd):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}"


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ (Jittor needs one to compile its kernels)")
@pytest.mark.parametrize("unit", ["strip_conv.cc", "depthwise_conv.cc", "resize.cc", "pointwise.cc"])
def test_cpu_sources_compile_on_their_own(unit):
    # Jittor's C++ flags for its CPU kernels; -fsyntax-only still instantiates every template used
    _compile(["g++", "-std=c++14", "-march=native", "-fopenmp", "-Wall", "-fsyntax-only", unit], CSRC)


def test_jt_code_gets_one_self_contained_header():
    text = source("strip_conv.h")
    assert '#include "' not in text  # local includes are inlined...
    assert text.count("#define JSN_SIMD_H") == 1  # ...once
    assert "namespace jsn_strip" in text and "namespace jsn {" in text
    for name in ("strip_conv.h", "depthwise_conv.h", "resize.h", "pointwise.h", "gelu.h", "strip_conv.cuh"):
        assert "@" not in source(name), name  # Jittor's jit templates would read it as a macro


@needs_nvcc
def test_cuda_sources_compile_on_their_own(tmp_path):
    _compile(
        [
            NVCC,
            "-std=c++14",
            "-gencode",
            "arch=compute_80,code=sm_80",
            "-gencode",
            "arch=compute_90,code=sm_90",
            "-c",
            "strip_conv.cu",
            "-o",
            str(tmp_path / "strip_conv.o"),
        ],
        CSRC,
    )


@needs_nvcc
def test_cuda_calls_of_strip_conv_compile(tmp_path):
    """The header and bodies strip_conv.py gives jt.code on CUDA, each body in a function taking
    jt.code's arguments (inN_p, outN_p, in0_shape0..3), for every data type and orientation."""
    header = None
    functions = []
    for dtype, acc in (("__half", "float"), ("float", "float"), ("double", "double")):
        for orientation in "hv":
            for function, types in (
                ("forward", ([dtype] * 3, [dtype])),
                ("backward", ([dtype] * 3, [dtype, acc, acc])),
            ):
                header, body = kernel_source(function, 7, orientation, len(types[0]), len(types[1]), cuda=True)
                params = (
                    [f"{t}* __restrict__ in{i}_p" for i, t in enumerate(types[0])]
                    + [f"{t}* __restrict__ out{i}_p" for i, t in enumerate(types[1])]
                    + [f"int64_t in0_shape{d}" for d in range(4)]
                )
                functions.append(f"void op{len(functions)}({', '.join(params)}) {{\n    {body}\n}}")
    unit = tmp_path / "calls.cu"
    unit.write_text(header + "\n" + "\n".join(functions) + "\n")
    _compile([NVCC, "-std=c++14", "-arch=sm_80", "-c", str(unit), "-o", str(tmp_path / "calls.o")], tmp_path)


def test_installed_package_finds_the_sources(tmp_path):
    """``pip install .`` (not editable) ships csrc/ as package data and the ops read it from there."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "jsegnext", tree / "jsegnext", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "MANIFEST.in"):
        shutil.copy(ROOT / name, tree / name)
    target = tmp_path / "site"
    _compile(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(tree),
        ],
        tmp_path,
    )
    installed = target / "jsegnext" / "ops" / "csrc"
    assert sorted(p.name for p in installed.iterdir()) == sorted(p.name for p in CSRC.iterdir())
    check = (
        "import jsegnext.ops._source as s; "
        "assert s.CSRC.parent.parent.parent == __import__('pathlib').Path(r'%s'); "
        "print(len(s.source('strip_conv.h')), len(s.source('depthwise_conv.h')))" % target
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HOME": str(Path.home())},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [str(len(source("strip_conv.h"))), str(len(source("depthwise_conv.h")))]
