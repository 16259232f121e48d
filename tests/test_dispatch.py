"""jsegnext.ops.dispatch: which implementation each op runs, by device, dtype, override and opt-in
(CUDA simulated by the device function: the rules need no GPU), and that the ops follow it."""

import importlib

import numpy as np
import pytest

from jsegnext.ops import dispatch
from jsegnext.ops.dispatch import IMPLS, op_impls, resolve
from jsegnext.runtime import jt

sc_mod = importlib.import_module("jsegnext.ops.strip_conv")  # the attribute jsegnext.ops.strip_conv is the function
OPS = ("strip_conv", "msca_strips", "depthwise_conv2d", "resize_bilinear", "resized_cross_entropy")


@pytest.fixture
def env(monkeypatch):
    for name in set(dispatch.ENV_OVERRIDES.values()) | {dispatch.EXPERIMENTAL_ENV}:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def on_cuda(env):
    env.setattr(dispatch, "device", lambda: "cuda")
    env.setattr(dispatch, "_warned", set())
    return env


def test_one_set_of_names():
    assert IMPLS == ("auto", "fused", "kernel", "meta", "conv2d")
    for op in OPS:
        assert set(op_impls(op)) <= set(IMPLS) and op_impls(op)[0] == "auto"
    assert op_impls("strip_conv") == ("auto", "kernel", "meta", "conv2d")
    assert op_impls("msca_strips") == IMPLS  # what MSCAN(strip_conv=...) accepts
    from jsegnext.models.mscan import MSCAN

    with pytest.raises(ValueError, match="strip_conv must be one of"):
        MSCAN(embed_dims=[8], depths=[1], mlp_ratios=[2], strip_conv="separate")


@pytest.mark.parametrize(
    "op,dtype,expected",
    [
        ("strip_conv", "float32", "kernel"),
        ("strip_conv", "float64", "kernel"),
        ("strip_conv", "float16", "meta"),
        ("msca_strips", "float32", "fused"),
        ("msca_strips", "float16", "meta"),
        ("depthwise_conv2d", "float32", "kernel"),
        ("depthwise_conv2d", "float16", "conv2d"),
        ("resize_bilinear", "float32", "kernel"),
        ("resize_bilinear", "float64", "meta"),
        ("resized_cross_entropy", "float32", "fused"),
        ("resized_cross_entropy", "float64", "meta"),
        ("conv1x1", "float32", "fused"),
        ("conv1x1", "float64", "meta"),
        ("resize_argmax", "float32", "fused"),
        ("pointwise_conv", "float32", "fused"),
        ("mlp_block", "float32", "fused"),
        ("nmf", "float64", "meta"),
    ],
)
def test_auto_on_the_cpu(env, op, dtype, expected):
    if jt.flags.use_cuda:
        pytest.skip("CPU rules")
    assert resolve(op, "auto", dtype) == expected


@pytest.mark.parametrize(
    "op,expected",
    [
        ("strip_conv", "conv2d"),
        ("msca_strips", "conv2d"),
        ("depthwise_conv2d", "conv2d"),
        ("resize_bilinear", "meta"),
        ("resized_cross_entropy", "meta"),
        ("conv1x1", "meta"),
        ("resize_argmax", "meta"),
        ("pointwise_conv", "meta"),
        ("mlp_block", "meta"),
        ("group_norm", "meta"),
        ("nmf", "meta"),
    ],
)
def test_auto_on_cuda_keeps_jittors_own_ops(on_cuda, op, expected):
    assert resolve(op, "auto", "float32") == expected
    assert dispatch.auto_impls(op)["cuda"] == expected


def test_cuda_kernels_need_an_explicit_opt_in(on_cuda):
    with pytest.warns(UserWarning, match="not been tested on a GPU"):
        assert resolve("strip_conv", "kernel", "float16") == "kernel"  # naming it opts in
    on_cuda.setenv(dispatch.EXPERIMENTAL_ENV, "1")
    assert resolve("strip_conv", "auto", "float32") == "kernel"
    with pytest.warns(UserWarning):
        assert resolve("msca_strips", "auto", "float32") == "kernel"  # separate CUDA strips; no fused one
    assert resolve("depthwise_conv2d", "auto", "float32") == "conv2d"  # no CUDA kernel at all
    on_cuda.setenv(dispatch.EXPERIMENTAL_ENV, "0")
    assert resolve("strip_conv", "auto", "float32") == "conv2d"
    on_cuda.setenv("JSEGNEXT_STRIP_IMPL", "kernel")  # naming it in the override opts in too
    assert resolve("strip_conv", "auto", "float32") == "kernel"


def test_explicit_choices_that_cannot_run_raise(on_cuda):
    with pytest.raises(TypeError, match="msca_strips impl='fused' has no cuda"):
        resolve("msca_strips", "fused", "float32")
    with pytest.raises(TypeError, match="depthwise_conv2d impl='kernel' has no cuda"):
        resolve("depthwise_conv2d", "kernel", "float32")
    on_cuda.setattr(dispatch, "device", lambda: "cpu")
    with pytest.raises(TypeError, match="float16"):
        resolve("strip_conv", "kernel", "float16")
    with pytest.raises(ValueError, match="must be one of"):
        resolve("strip_conv", "fused", "float32")  # not an implementation of a single strip
    with pytest.raises(ValueError):
        resolve("depthwise_conv2d", "meta", "float32")


def test_environment_overrides(env):
    env.setattr(dispatch, "device", lambda: "cpu")
    env.setenv("JSEGNEXT_STRIP_IMPL", "meta")
    assert resolve("strip_conv") == "meta" and resolve("msca_strips") == "meta"
    assert resolve("strip_conv", "kernel") == "kernel"  # an explicit impl wins
    env.setenv("JSEGNEXT_STRIP_IMPL", "fused")  # only msca_strips has it; strip_conv keeps its order
    assert resolve("msca_strips") == "fused" and resolve("strip_conv") == "kernel"
    env.setenv("JSEGNEXT_DW_IMPL", "kernel")
    assert resolve("depthwise_conv2d", "auto", "float16") == "conv2d"  # unsupported dtype: fallback
    env.setenv("JSEGNEXT_DW_IMPL", "cudnn")
    with pytest.raises(ValueError, match="JSEGNEXT_DW_IMPL must be one of"):
        resolve("depthwise_conv2d")


def test_msca_strips_follows_the_override(env):
    """With JSEGNEXT_STRIP_IMPL=meta the MSCA strip sum runs separate meta-operator strips, not the
    fused kernel, and gives the same result."""
    rng = np.random.default_rng(0)
    a = jt.array(rng.standard_normal((1, 2, 9, 11)).astype("float32"))
    params = [
        tuple(jt.array(rng.standard_normal(s).astype("float32")) for s in ([2, 1, 1, k], [2], [2, 1, k, 1], [2]))
        for k in (7, 11, 21)
    ]
    fused = sc_mod.msca_strips(a, params).numpy()
    env.setenv("JSEGNEXT_STRIP_IMPL", "meta")

    def no_fused(*args, **kwargs):
        raise AssertionError("the fused kernel ran")

    env.setattr(sc_mod, "_MscaStripsFunction", no_fused)
    meta = sc_mod.msca_strips(a, params).numpy()
    assert np.abs(meta - fused).max() <= 1e-5 * np.abs(fused).max()


def test_available_tells_what_a_device_can_run(on_cuda):
    """What the op tests skip on a GPU: the CPU-only kernels; the experimental CUDA ones stay."""
    assert not dispatch.available("msca_strips", "fused") and not dispatch.available("depthwise_conv2d", "kernel")
    assert dispatch.available("strip_conv", "kernel") and dispatch.available("strip_conv", "kernel", "float16")
    assert dispatch.available("depthwise_conv2d", "conv2d") and dispatch.available("msca_strips", "auto")
    on_cuda.setattr(dispatch, "device", lambda: "cpu")
    assert dispatch.available("msca_strips", "fused") and not dispatch.available("strip_conv", "kernel", "float16")
    with pytest.raises(ValueError):
        dispatch.available("strip_conv", "fused")  # not a name strip_conv has
