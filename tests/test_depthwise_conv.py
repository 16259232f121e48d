"""Square depthwise convolution (jsegnext.ops.depthwise_conv): the CPU kernels and the conv2d path
against jt.nn.Conv2d(C, C, k, padding=k//2, groups=C) and a float64 NumPy reference, forward and
all three gradients; the DepthwiseConv2d module as a drop-in for nn.Conv2d; the MSCAN wiring."""

import numpy as np
import pytest
from conftest import require_impl

from jsegnext.ops.depthwise_conv import DepthwiseConv2d, depthwise_conv2d, resolve_impl
from jsegnext.runtime import jt

IMPLS = ("kernel", "conv2d", "auto")
# (N, C, H, W): batch > 1, odd and even sizes, planes smaller than k (2×3, 1×1), rows shorter and
# longer than one vector (16 floats with AVX-512) with and without a partial last vector, the conv
# kernels' 4-row blocks with 1-3 leftover rows, and more than 32 rows (the weight-gradient chunks)
SHAPES = (
    (2, 3, 7, 10),
    (3, 2, 2, 3),
    (2, 1, 1, 1),
    (2, 2, 12, 9),
    (2, 2, 23, 71),
    (1, 3, 33, 40),
    (2, 2, 37, 16),
    (2, 2, 6, 130),
)


def _rel(out, ref):
    """max |out - ref| / max |ref|: a relative error that near-zero entries cannot blow up."""
    ref = np.asarray(ref)
    return float(np.abs(np.asarray(out) - ref).max() / max(np.abs(ref).max(), 1e-30))


def _run(fn, x, w, b, gy):
    y = fn(x, w, b)
    grads = jt.grad((y * gy).sum(), [x, w, b])
    return [y.numpy()] + [g.numpy() for g in grads]


def _np_dwconv(x, w, b):
    """float64 reference: y, and the vector-Jacobian product function."""
    N, C, H, W = x.shape
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, [(0, 0), (0, 0), (p, p), (p, p)])
    win = lambda a, i, j: a[:, :, i : i + H, j : j + W]
    y = b[None, :, None, None] + sum(
        w[None, :, 0, i, j, None, None] * win(xp, i, j) for i in range(k) for j in range(k)
    )

    def vjp(g):
        gp = np.pad(g, [(0, 0), (0, 0), (p, p), (p, p)])
        dx = sum(w[None, :, 0, i, j, None, None] * win(gp, 2 * p - i, 2 * p - j) for i in range(k) for j in range(k))
        dw = np.zeros_like(w)
        for i in range(k):
            for j in range(k):
                dw[:, 0, i, j] = (g * win(xp, i, j)).sum((0, 2, 3))
        return dx, dw, g.sum((0, 2, 3))

    return y, vjp


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k", [3, 5, 7])
def test_matches_conv2d(impl, k):
    require_impl("depthwise_conv2d", impl)
    rng = np.random.default_rng(k)
    for N, C, H, W in SHAPES:
        conv = jt.nn.Conv2d(C, C, k, padding=k // 2, groups=C)
        x = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
        gy = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
        w = jt.array(rng.standard_normal((C, 1, k, k)).astype("float32"))
        b = jt.array(rng.standard_normal(C).astype("float32"))
        conv.weight.assign(w)
        conv.bias.assign(b)
        ref = _run(lambda x_, w_, b_: conv(x_), x, conv.weight, conv.bias, gy)
        out = _run(lambda x_, w_, b_: depthwise_conv2d(x_, w_, b_, impl), x, w, b, gy)
        assert out[0].shape == (N, C, H, W)
        for name, o, r in zip(("y", "dx", "dw", "db"), out, ref):
            assert o.shape == r.shape, name
            assert _rel(o, r) < 1e-5, (name, (N, C, H, W), _rel(o, r))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k", [3, 5])
def test_without_bias(impl, k):
    require_impl("depthwise_conv2d", impl)
    rng = np.random.default_rng(10 + k)
    N, C, H, W = 2, 3, 9, 20
    conv = jt.nn.Conv2d(C, C, k, padding=k // 2, groups=C, bias=False)
    x = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
    gy = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
    w = jt.array(rng.standard_normal((C, 1, k, k)).astype("float32"))
    conv.weight.assign(w)
    yr = conv(x)
    ref = [yr.numpy()] + [g.numpy() for g in jt.grad((yr * gy).sum(), [x, conv.weight])]
    y = depthwise_conv2d(x, w, None, impl)
    out = [y.numpy()] + [g.numpy() for g in jt.grad((y * gy).sum(), [x, w])]
    for name, o, r in zip(("y", "dx", "dw"), out, ref):
        assert o.shape == r.shape and _rel(o, r) < 1e-5, (name, _rel(o, r))


def test_large_planes_and_streaming_stores():
    """Outputs of 8 MiB and more are written with streaming stores (forward y and backward dx)."""
    rng = np.random.default_rng(5)
    N, C, H, W, k = 2, 16, 256, 256, 3  # 8 MiB per tensor
    x = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
    gy = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
    w = jt.array(rng.standard_normal((C, 1, k, k)).astype("float32"))
    b = jt.array(rng.standard_normal(C).astype("float32"))
    ref = _run(lambda x_, w_, b_: depthwise_conv2d(x_, w_, b_, "conv2d"), x, w, b, gy)
    out = _run(lambda x_, w_, b_: depthwise_conv2d(x_, w_, b_, "kernel"), x, w, b, gy)
    for name, o, r in zip(("y", "dx", "dw", "db"), out, ref):
        assert _rel(o, r) < 1e-5, (name, _rel(o, r))


def test_float64_against_numpy():
    rng = np.random.default_rng(1)
    with jt.flag_scope(auto_convert_64_to_32=0):
        for k, (N, C, H, W) in ((3, (2, 2, 5, 8)), (5, (2, 3, 11, 19)), (7, (3, 2, 9, 33)), (9, (2, 2, 4, 3))):
            xn = rng.standard_normal((N, C, H, W))
            wn = rng.standard_normal((C, 1, k, k))
            bn = rng.standard_normal(C)
            gn = rng.standard_normal((N, C, H, W))
            yr, vjp = _np_dwconv(xn, wn, bn)
            dxr, dwr, dbr = vjp(gn)
            x, w, b, gy = (jt.array(a) for a in (xn, wn, bn, gn))
            y, dx, dw, db = _run(lambda x_, w_, b_: depthwise_conv2d(x_, w_, b_, "kernel"), x, w, b, gy)
            assert y.dtype == np.float64 and dw.dtype == np.float64
            for name, o, r in (("y", y, yr), ("dx", dx, dxr), ("dw", dw, dwr), ("db", db, dbr)):
                assert _rel(o, r) < 1e-12, (name, k, _rel(o, r))


@pytest.mark.parametrize("k", [9, 11])
def test_larger_odd_kernels(k):
    """k > 7: more taps than vector registers, the weight gradient runs in several passes."""
    rng = np.random.default_rng(k)
    N, C, H, W = 2, 2, 13, 37
    xn, gn = rng.standard_normal((2, N, C, H, W)).astype("float32")
    wn = rng.standard_normal((C, 1, k, k)).astype("float32")
    bn = rng.standard_normal(C).astype("float32")
    yr, vjp = _np_dwconv(xn.astype("float64"), wn.astype("float64"), bn.astype("float64"))
    refs = [yr, *vjp(gn.astype("float64"))]
    x, w, b, gy = (jt.array(a) for a in (xn, wn, bn, gn))
    out = _run(lambda x_, w_, b_: depthwise_conv2d(x_, w_, b_, "kernel"), x, w, b, gy)
    for name, o, r in zip(("y", "dx", "dw", "db"), out, refs):
        assert _rel(o, r) < 1e-5, (name, _rel(o, r))


def test_input_only_grad_and_no_grad():
    rng = np.random.default_rng(2)
    x = jt.array(rng.standard_normal((2, 3, 6, 7)).astype("float32"))
    w = jt.array(rng.standard_normal((3, 1, 5, 5)).astype("float32"))
    b = jt.array(rng.standard_normal(3).astype("float32"))
    y = depthwise_conv2d(x, w, b, "kernel")
    yr = depthwise_conv2d(x, w, b, "conv2d")
    assert _rel(y.numpy(), yr.numpy()) < 1e-6
    dx = jt.grad(y.sum(), x)  # weight gradient not requested
    assert _rel(dx.numpy(), jt.grad(yr.sum(), x).numpy()) < 1e-6
    m = DepthwiseConv2d(3, 3, impl="kernel")
    with jt.no_grad():
        out = m(x)
    assert _rel(out.numpy(), depthwise_conv2d(x, m.weight, m.bias, "conv2d").numpy()) < 1e-6


def test_invalid_arguments():
    x = jt.randn(1, 2, 5, 6)
    with pytest.raises(ValueError):
        depthwise_conv2d(x, jt.randn(2, 1, 4, 4), jt.randn(2))  # even k
    with pytest.raises(ValueError):
        depthwise_conv2d(x, jt.randn(2, 1, 3, 5), jt.randn(2))  # not square
    with pytest.raises(ValueError):
        depthwise_conv2d(x, jt.randn(3, 1, 3, 3), jt.randn(3))  # channel mismatch
    with pytest.raises(ValueError):
        depthwise_conv2d(x, jt.randn(2, 1, 3, 3), jt.randn(3))  # bias shape
    with pytest.raises(ValueError):
        depthwise_conv2d(x, jt.randn(2, 1, 3, 3), jt.randn(2), impl="cudnn")
    with pytest.raises(ValueError):
        DepthwiseConv2d(4, 4)
    with pytest.raises(ValueError):
        DepthwiseConv2d(4, (3, 5))


def test_auto_resolution(monkeypatch):
    monkeypatch.delenv("JSEGNEXT_DW_IMPL", raising=False)
    expected = "kernel" if not jt.flags.use_cuda else "conv2d"
    assert resolve_impl("auto", "float32") == expected
    assert resolve_impl("conv2d", "float32") == "conv2d"
    assert resolve_impl("auto", "float16") == "conv2d"  # no kernel for it: falls back
    monkeypatch.setenv("JSEGNEXT_DW_IMPL", "conv2d")
    assert resolve_impl("auto", "float32") == "conv2d"
    monkeypatch.setenv("JSEGNEXT_DW_IMPL", "bogus")
    with pytest.raises(ValueError):
        resolve_impl("auto", "float32")
    if not jt.flags.use_cuda:
        with pytest.raises(TypeError):
            resolve_impl("kernel", "float16")


def test_auto_resolution_on_cuda(monkeypatch):
    """There is no CUDA depthwise kernel: 'auto' must run nn.Conv2d there, and 'kernel' be refused."""
    from jsegnext.ops import dispatch

    monkeypatch.delenv("JSEGNEXT_DW_IMPL", raising=False)
    monkeypatch.setattr(dispatch, "device", lambda: "cuda")  # where every op's choice reads the device
    for dtype in ("float32", "float64"):
        assert resolve_impl("auto", dtype) == "conv2d"
        with pytest.raises(TypeError, match="has no cuda implementation"):
            resolve_impl("kernel", dtype)
    monkeypatch.setenv("JSEGNEXT_DW_IMPL", "kernel")  # asking for the kernel through the environment
    assert resolve_impl("auto", "float32") == "conv2d"


@pytest.mark.parametrize("k", [3, 5])
def test_module_is_a_conv2d_drop_in(k):
    C = 6
    m = DepthwiseConv2d(C, k)
    params = dict(m.named_parameters())
    assert sorted(params) == ["bias", "weight"]
    assert list(params["weight"].shape) == [C, 1, k, k] and list(params["bias"].shape) == [C]
    assert sorted(m.state_dict()) == ["bias", "weight"]
    conv = jt.nn.Conv2d(C, C, k, padding=k // 2, groups=C)
    assert {n: list(v.shape) for n, v in conv.state_dict().items()} == {
        n: list(v.shape) for n, v in m.state_dict().items()
    }
    # Conv2d's initialisation: bias ~ U(±1/sqrt(fan_in)), weight bounded by the same fan_in
    bound = 1 / np.sqrt(k * k)
    assert np.abs(m.bias.numpy()).max() <= bound
    assert np.abs(m.weight.numpy()).max() <= np.sqrt(3) * bound + 1e-6
    assert m.weight.numpy().std() > 0 and m.bias.numpy().std() > 0
    # an nn.Conv2d state dict (as a reference checkpoint delivers it) loads 1:1
    m.load_state_dict({n: v.numpy() for n, v in conv.state_dict().items()})
    np.testing.assert_array_equal(m.weight.numpy(), conv.weight.numpy())
    np.testing.assert_array_equal(m.bias.numpy(), conv.bias.numpy())
    x = jt.randn(2, C, 9, 14)
    m.impl = "conv2d"
    np.testing.assert_array_equal(m(x).numpy(), conv(x).numpy())
    for impl in ("auto", "kernel"):
        m.impl = impl
        assert _rel(m(x).numpy(), conv(x).numpy()) < 1e-6
    assert DepthwiseConv2d(C, k, bias=False).bias is None


@pytest.mark.parametrize("strip_conv", ["auto", "kernel", "fused", "meta", "conv2d"])
def test_mscan_uses_the_op_unless_conv2d(strip_conv):
    require_impl("msca_strips", strip_conv)
    from jsegnext.models.mscan import MSCAN

    bb = MSCAN(embed_dims=[8, 16], depths=[1, 1], mlp_ratios=[2, 2], strip_conv=strip_conv)
    blk = bb.block1[0]
    convs = (blk.attn.spatial_gating_unit.conv0, blk.mlp.dwconv.dwconv)
    want = jt.nn.Conv2d if strip_conv == "conv2d" else DepthwiseConv2d
    assert all(isinstance(c, want) for c in convs)
    if strip_conv != "conv2d":
        assert all(c.impl == "auto" for c in convs)
    keys = set(bb.state_dict())
    for key in (
        "block1.0.attn.spatial_gating_unit.conv0.weight",
        "block1.0.attn.spatial_gating_unit.conv0.bias",
        "block1.0.mlp.dwconv.dwconv.weight",
        "block1.0.mlp.dwconv.dwconv.bias",
    ):
        assert key in keys
    assert list(bb.state_dict()["block1.0.attn.spatial_gating_unit.conv0.weight"].shape) == [8, 1, 5, 5]
    assert list(bb.state_dict()["block1.0.mlp.dwconv.dwconv.weight"].shape) == [16, 1, 3, 3]
