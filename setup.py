from setuptools import find_packages, setup

setup(
    name="jsegnext",
    version="0.1.0",
    description="SegNeXt semantic segmentation (MSCAN + LightHamHead) native to Jittor",
    packages=find_packages(include=["jsegnext", "jsegnext.*"]),
    # the C++/CUDA kernel sources, read at run time and compiled by jt.code
    package_data={"jsegnext.ops": ["csrc/*.h", "csrc/*.cc", "csrc/*.cuh", "csrc/*.cu", "csrc/.clang-format"]},
    python_requires=">=3.8",
    install_requires=[
        # 1.3.11 is the release the numerics, kernels and work-arounds were checked against.
        "jittor==1.3.11.0",
        # Ships the oneDNN CPU library that Jittor otherwise downloads on first import.
        "jittor_offline",
        "numpy<2",  # Jittor 1.3.11 is built against the NumPy 1.x ABI
        "safetensors>=0.4",  # the file format of weights and checkpoints jsegnext writes (NumPy API)
        "pillow",
        "opencv-python-headless",
        "tqdm",
        "scipy",  # reads SBD .mat files (VOC aug converter)
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "matplotlib"],
        "cityscapes": ["cityscapesscripts"],
        "plot": ["matplotlib"],
        # ONNX export (tools/export_onnx.py) and --backend onnxruntime; never imported by the core package
        "deploy": ["onnx>=1.14", "onnxruntime>=1.16"],
    },
)
