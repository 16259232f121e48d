"""Depthwise strip convolution (jsegnext.ops.strip_conv): every implementation against
jt.nn.Conv2d(groups=C) and against an independent float64 NumPy reference, forward and all three
gradients; the StripConv module as a drop-in for nn.Conv2d; the fused MSCA strip sum."""

import importlib

import numpy as np
import pytest
from conftest import require_impl

from jsegnext.ops.strip_conv import StripConv, msca_strips, resolve_impl, strip_conv
from jsegnext.runtime import jt

sc_mod = importlib.import_module("jsegnext.ops.strip_conv")  # jsegnext.ops.strip_conv is the function

IMPLS = ("meta", "kernel", "conv2d", "auto")
# (N, C, H, W): batch > 1, odd and even sizes, H or W smaller than k for the larger kernels, and
# rows/columns long enough for the CPU kernels' vector blocks (4, 2, 1 vectors + scalar tail) and
# interior rows (H > k)
SHAPES = ((2, 3, 7, 10), (3, 2, 4, 5), (2, 2, 12, 9), (2, 2, 23, 71), (1, 3, 33, 40))


def _rel(out, ref):
    ref = np.asarray(ref)
    return float(np.abs(np.asarray(out) - ref).max() / max(np.abs(ref).max(), 1e-30))


def _wshape(C, k, o):
    return [C, 1, 1, k] if o == "h" else [C, 1, k, 1]


def _np_strip(x, w2, b, o):
    """float64 reference: y, and the vector-Jacobian product function."""
    k = w2.shape[1]
    p = k // 2
    ax = 3 if o == "h" else 2
    n = x.shape[ax]
    pads = [(0, 0)] * 4
    pads[ax] = (p, p)
    xp = np.pad(x, pads)
    take = lambda a, j: a[..., j : j + n] if ax == 3 else a[:, :, j : j + n, :]
    y = b[None, :, None, None] + sum(w2[None, :, j, None, None] * take(xp, j) for j in range(k))

    def vjp(g):
        gp = np.pad(g, pads)
        dx = sum(w2[None, :, j, None, None] * take(gp, 2 * p - j) for j in range(k))
        dw = np.stack([(g * take(xp, j)).sum((0, 2, 3)) for j in range(k)], 1)
        return dx, dw, g.sum((0, 2, 3))

    return y, vjp


def _run(fn, x, w, b, gy):
    y = fn(x, w, b)
    grads = jt.grad((y * gy).sum(), [x, w, b])
    return [y.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("orientation", ["h", "v"])
@pytest.mark.parametrize("k", [3, 7, 11, 21])
def test_matches_conv2d(impl, orientation, k):
    require_impl("strip_conv", impl)
    rng = np.random.default_rng(k)
    for N, C, H, W in SHAPES:
        conv = jt.nn.Conv2d(
            C,
            C,
            (1, k) if orientation == "h" else (k, 1),
            padding=(0, k // 2) if orientation == "h" else (k // 2, 0),
            groups=C,
        )
        x = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
        gy = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
        w = jt.array(rng.standard_normal(_wshape(C, k, orientation)).astype("float32"))
        b = jt.array(rng.standard_normal(C).astype("float32"))
        conv.weight.assign(w)
        conv.bias.assign(b)
        ref = _run(lambda x_, w_, b_: conv(x_), x, conv.weight, conv.bias, gy)
        out = _run(lambda x_, w_, b_: strip_conv(x_, w_, b_, orientation, impl), x, w, b, gy)
        assert out[0].shape == (N, C, H, W)
        for name, o, r in zip(("y", "dx", "dw", "db"), out, ref):
            assert o.shape == r.shape, name
            assert _rel(o, r) < 1e-5, (name, (N, C, H, W), _rel(o, r))


@pytest.mark.parametrize("impl", ["meta", "kernel"])
@pytest.mark.parametrize("orientation", ["h", "v"])
def test_float64_against_numpy(impl, orientation):
    require_impl("strip_conv", impl, "float64")
    rng = np.random.default_rng(1)
    with jt.flag_scope(auto_convert_64_to_32=0):
        for k, (N, C, H, W) in ((7, (2, 3, 5, 8)), (21, (2, 2, 11, 24)), (11, (2, 2, 25, 45))):
            xn = rng.standard_normal((N, C, H, W))
            wn = rng.standard_normal(_wshape(C, k, orientation))
            bn = rng.standard_normal(C)
            gn = rng.standard_normal((N, C, H, W))
            yr, vjp = _np_strip(xn, wn.reshape(C, k), bn, orientation)
            dxr, dwr, dbr = vjp(gn)
            x, w, b, gy = (jt.array(a) for a in (xn, wn, bn, gn))
            y, dx, dw, db = _run(lambda x_, w_, b_: strip_conv(x_, w_, b_, orientation, impl), x, w, b, gy)
            assert y.dtype == np.float64 and dw.dtype == np.float64
            for o, r in ((y, yr), (dx, dxr), (dw, dwr.reshape(wn.shape)), (db, dbr)):
                assert _rel(o, r) < 1e-12


@pytest.mark.parametrize("impl", ["meta", "kernel"])
def test_no_bias_and_input_only_grad(impl):
    rng = np.random.default_rng(2)
    x = jt.array(rng.standard_normal((2, 3, 6, 7)).astype("float32"))
    w = jt.array(rng.standard_normal((3, 1, 1, 5)).astype("float32"))
    y = strip_conv(x, w, None, "h", impl)
    yr = strip_conv(x, w, None, "h", "conv2d")
    assert _rel(y.numpy(), yr.numpy()) < 1e-6
    dx = jt.grad(y.sum(), x)  # weight gradient not requested
    assert _rel(dx.numpy(), jt.grad(yr.sum(), x).numpy()) < 1e-6


def test_eval_under_no_grad():
    x = jt.randn(1, 2, 5, 6)
    m = StripConv(2, 7, "v", impl="kernel")
    with jt.no_grad():
        y = m(x)
    assert _rel(y.numpy(), strip_conv(x, m.weight, m.bias, "v", "conv2d").numpy()) < 1e-6


def test_invalid_arguments():
    x = jt.randn(1, 2, 5, 6)
    with pytest.raises(ValueError):
        strip_conv(x, jt.randn(2, 1, 1, 4), jt.randn(2), "h")  # even k
    with pytest.raises(ValueError):
        strip_conv(x, jt.randn(2, 1, 1, 5), jt.randn(2), "v")  # 1×k weight for 'v'
    with pytest.raises(ValueError):
        strip_conv(x, jt.randn(2, 1, 1, 5), jt.randn(2), "x")
    with pytest.raises(ValueError):
        strip_conv(x, jt.randn(3, 1, 1, 5), jt.randn(3), "h")  # channel mismatch
    with pytest.raises(ValueError):
        strip_conv(x, jt.randn(2, 1, 1, 5), jt.randn(2), "h", impl="cudnn")
    with pytest.raises(ValueError):
        StripConv(4, 6, "h")


def test_auto_resolution(monkeypatch):
    expected = "kernel" if not jt.flags.use_cuda else sc_mod.AUTO_IMPL["cuda"]
    assert resolve_impl("auto", "float32") == expected
    assert resolve_impl("meta", "float32") == "meta"
    monkeypatch.setenv("JSEGNEXT_STRIP_IMPL", "conv2d")
    assert resolve_impl("auto", "float32") == "conv2d"
    monkeypatch.setenv("JSEGNEXT_STRIP_IMPL", "bogus")
    with pytest.raises(ValueError):
        resolve_impl("auto", "float32")


@pytest.mark.parametrize("orientation", ["h", "v"])
def test_module_is_a_conv2d_drop_in(orientation):
    C, k = 6, 11
    m = StripConv(C, k, orientation)
    shape = [C, 1, 1, k] if orientation == "h" else [C, 1, k, 1]
    params = dict(m.named_parameters())
    assert sorted(params) == ["bias", "weight"]
    assert list(params["weight"].shape) == shape and list(params["bias"].shape) == [C]
    assert sorted(m.state_dict()) == ["bias", "weight"]
    conv = jt.nn.Conv2d(C, C, tuple(shape[2:]), padding=(0, k // 2) if orientation == "h" else (k // 2, 0), groups=C)
    assert sorted(conv.state_dict()) == ["bias", "weight"]
    # Conv2d's initialisation: bias ~ U(±1/sqrt(fan_in)), weight bounded by the same fan_in
    bound = 1 / np.sqrt(k)
    assert np.abs(m.bias.numpy()).max() <= bound
    assert np.abs(m.weight.numpy()).max() <= np.sqrt(3) * bound + 1e-6
    assert m.weight.numpy().std() > 0 and m.bias.numpy().std() > 0
    # an nn.Conv2d state dict (as a reference checkpoint delivers it) loads 1:1
    m.load_state_dict({n: v.numpy() for n, v in conv.state_dict().items()})
    x = jt.randn(2, C, 9, 14)
    np.testing.assert_array_equal(m.weight.numpy(), conv.weight.numpy())
    np.testing.assert_array_equal(m.bias.numpy(), conv.bias.numpy())
    m.impl = "conv2d"
    np.testing.assert_array_equal(m(x).numpy(), conv(x).numpy())
    for impl in ("auto", "kernel", "meta"):
        m.impl = impl
        assert _rel(m(x).numpy(), conv(x).numpy()) < 1e-6


def _msca_params(rng, C, dtype="float32"):
    return [
        tuple(jt.array(rng.standard_normal(s).astype(dtype)) for s in ([C, 1, 1, k], [C], [C, 1, k, 1], [C]))
        for k in (7, 11, 21)
    ]


@pytest.mark.parametrize("impl", ["fused", "kernel", "meta", "auto"])
def test_msca_strips(impl):
    require_impl("msca_strips", impl)
    rng = np.random.default_rng(3)
    for N, C, H, W in ((2, 3, 9, 13), (1, 2, 24, 6), (2, 2, 25, 70)):
        a = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
        gy = jt.array(rng.standard_normal((N, C, H, W)).astype("float32"))
        params = _msca_params(rng, C)
        flat = [a] + [p for t in params for p in t]
        results = []
        for which in (impl, None):
            if which is None:  # reference: nn.Conv2d-equivalent strips, summed in Python
                y = a
                for wh, bh, wv, bv in params:
                    y = y + strip_conv(strip_conv(a, wh, bh, "h", "conv2d"), wv, bv, "v", "conv2d")
            else:
                y = msca_strips(a, params, impl=which)
            results.append([y.numpy()] + [g.numpy() for g in jt.grad((y * gy).sum(), flat)])
        for i, (o, r) in enumerate(zip(*results)):
            assert o.shape == r.shape
            assert _rel(o, r) < 1e-5, (i, _rel(o, r))


def test_msca_strips_float64_and_weights_biases_signature():
    rng = np.random.default_rng(4)
    with jt.flag_scope(auto_convert_64_to_32=0):
        a = jt.array(rng.standard_normal((2, 2, 10, 11)))
        params = _msca_params(rng, 2, "float64")
        weights = [w for wh, _, wv, _ in params for w in (wh, wv)]
        biases = [b for _, bh, _, bv in params for b in (bh, bv)]
        y1 = msca_strips(a, params, impl="fused")
        y2 = msca_strips(a, weights, biases, impl="meta")
        assert y1.dtype == "float64"
        assert _rel(y1.numpy(), y2.numpy()) < 1e-12
        g1 = jt.grad((y1 * y1).sum(), weights)
        g2 = jt.grad((y2 * y2).sum(), weights)
        for u, v in zip(g1, g2):
            assert _rel(u.numpy(), v.numpy()) < 1e-12


@pytest.mark.parametrize("strip_conv_impl", ["kernel", "fused", "meta"])
def test_msca_attention_module_uses_the_ops(monkeypatch, strip_conv_impl):
    """MSCAN's AttentionModule with jsegnext's strip ops equals its nn.Conv2d version."""
    require_impl("msca_strips", strip_conv_impl)
    import jsegnext.ops as ops
    from jsegnext.models.mscan import AttentionModule

    ran = []  # which op ran the strips, with which impl

    class RecordingStripConv(StripConv):
        def execute(self, x):
            ran.append(("StripConv", self.impl))
            return super().execute(x)

    def recording_msca_strips(*args, impl="auto", **kwargs):
        ran.append(("msca_strips", impl))
        return msca_strips(*args, impl=impl, **kwargs)

    monkeypatch.setattr(ops, "StripConv", RecordingStripConv)
    monkeypatch.setattr(ops, "msca_strips", recording_msca_strips)
    ref, mod = AttentionModule(4, "conv2d"), AttentionModule(4, strip_conv_impl)
    assert sorted(ref.state_dict()) == sorted(mod.state_dict())
    mod.load_state_dict({n: v.numpy() for n, v in ref.state_dict().items()})
    u = jt.randn(2, 4, 12, 10)
    y_ref = ref(u)
    assert ran == []  # the reference runs nn.Conv2d strips
    y = mod(u)
    assert ran == ([("msca_strips", "fused")] if strip_conv_impl == "fused" else [("StripConv", strip_conv_impl)] * 6)
    assert _rel(y.numpy(), y_ref.numpy()) < 1e-5
    g_ref = jt.grad(y_ref.sum(), ref.conv2_1.weight)
    g = jt.grad(y.sum(), mod.conv2_1.weight)
    assert _rel(g.numpy(), g_ref.numpy()) < 1e-5
