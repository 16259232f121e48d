import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Shipped with the repository (tests/fixtures/README.md): always present.
REPO_FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: The larger reference fixtures live outside the repository: JSEGNEXT_FIXTURES, else ../shared/fixtures.
FIXTURES = Path(os.environ.get("JSEGNEXT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/torch_format.py
sys.path.insert(0, str(ROOT / "tools"))


def fixture_path(name):
    """Path of an outside reference fixture; the test is skipped when it is not there.

    A fresh clone has only the tiny fixture in tests/fixtures; the 24 MB SegNeXt-T/ADE20K one is
    used where present. If ``JSEGNEXT_FIXTURES`` is set, the file must be there (a typo fails).
    """
    path = FIXTURES / name
    if not path.exists():
        if "JSEGNEXT_FIXTURES" in os.environ:
            pytest.fail(f"reference fixture {path} is missing from JSEGNEXT_FIXTURES={FIXTURES}")
        pytest.skip(
            f"outside reference fixture {name} not found in {FIXTURES} (kept out of the repository; "
            "set JSEGNEXT_FIXTURES to the folder holding it to run this test)"
        )
    return path


def repo_fixture(name):
    """Path of a fixture shipped in tests/fixtures (missing means a broken checkout: the test fails)."""
    path = REPO_FIXTURES / name
    if not path.exists():
        pytest.fail(f"{path} is missing: tests/fixtures is part of the repository")
    return path


def tiny_model_cfg(num_classes=5, ham_channels=32, rank=4, **backbone):
    """A small SegNeXt config (real code paths, tiny widths) for fast tests."""
    bb = dict(embed_dims=[8, 16, 32, 32], depths=[1, 1, 2, 1], mlp_ratios=[2, 2, 2, 2], drop_path_rate=0.1)
    bb.update(backbone)
    return dict(
        backbone=bb,
        decode_head=dict(
            in_channels=bb["embed_dims"][1:],
            channels=ham_channels,
            ham_channels=ham_channels,
            num_classes=num_classes,
            norm_groups=8,
            ham_kwargs=dict(MD_R=rank),
        ),
    )


def require_impl(op, impl, dtype="float32"):
    """Skip where ``op`` has no ``impl`` on this device (the CPU-only fused kernels on CUDA, ...)."""
    from jsegnext.ops import dispatch

    if not dispatch.available(op, impl, dtype):
        pytest.skip(f"{op} has no {impl!r} implementation on {dispatch.device()} for {dtype}")


def rel_err(out, ref):
    return float(np.abs(np.asarray(out) - ref).max() / np.abs(ref).max())
