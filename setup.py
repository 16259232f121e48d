import sys

from setuptools import find_packages, setup

# pip checks python_requires only after resolving (and downloading) every dependency; say it at once.
if sys.version_info >= (3, 13):
    sys.exit(
        f"jsegnext needs Python 3.8-3.12, not {sys.version.split()[0]}: Jittor 1.3.11 does not run on "
        "Python 3.13 or later. Create the environment with python3.12 (or 3.8-3.11)."
    )

setup(
    name="jsegnext",
    version="0.1.0",
    description="SegNeXt semantic segmentation (MSCAN + LightHamHead) native to Jittor",
    packages=find_packages(include=["jsegnext", "jsegnext.*"]),
    # the C++/CUDA kernel sources, read at run time and compiled by jt.code
    package_data={"jsegnext.ops": ["csrc/*.h", "csrc/*.cc", "csrc/*.cuh", "csrc/*.cu", "csrc/.clang-format"]},
    # Jittor 1.3.11 does not import on Python 3.13 (its compiler relies on the pre-3.13 locals()).
    python_requires=">=3.8,<3.13",
    install_requires=[
        # 1.3.11 is the release the numerics, kernels and work-arounds were checked against.
        "jittor==1.3.11.0",
        # Ships the oneDNN CPU library that Jittor otherwise downloads on first import.
        "jittor_offline",
        # Jittor itself asks for numpy<2; where another package brings NumPy 2, jsegnext moves arrays
        # in and out of Jittor another way (jsegnext/numpy_compat.py; README, "NumPy 2").
        "numpy",
        "safetensors>=0.4",  # the file format of weights and checkpoints jsegnext writes (NumPy API)
        "pillow",
        "opencv-python-headless",
        "tqdm",
        "scipy",  # reads SBD .mat files (VOC aug converter)
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "matplotlib", "ruff>=0.6"],
        "cityscapes": ["cityscapesscripts"],
        "plot": ["matplotlib"],
        # ONNX export (tools/export_onnx.py) and --backend onnxruntime; never imported by the core package
        "deploy": ["onnx>=1.14", "onnxruntime>=1.16"],
    },
)
