"""The inference kernels of jsegnext/ops/pointwise.py and resize_argmax against their Jittor-op forms
(``'meta'``), on shapes that exercise the blocking: a single row or column, sizes that are not
multiples of the vector length, batches, more row bands than rows."""

import numpy as np
import pytest

from jsegnext.ops import dispatch
from jsegnext.ops import pointwise as pw
from jsegnext.ops.resize import composed_taps, resize_argmax, resize_bilinear
from jsegnext.runtime import jt

pytestmark = pytest.mark.skipif(jt.flags.use_cuda, reason="CPU kernels")


def arr(rng, *shape, scale=1.0):
    return jt.array((rng.standard_normal(shape) * scale).astype(np.float32))


def both(monkeypatch, op, fn):
    """fn() with the kernel ('fused') and with the Jittor ops ('meta')."""
    monkeypatch.delenv("JSEGNEXT_FUSED_IMPL", raising=False)
    assert dispatch.resolve(op) == "fused"
    fused = fn().numpy()
    monkeypatch.setenv("JSEGNEXT_FUSED_IMPL", "meta")
    assert dispatch.resolve(op) == "meta"
    meta = fn().numpy()
    return fused, meta


def close(a, b, tol=1e-5):
    assert a.shape == b.shape
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
    assert err < tol, err


SHAPES = [(1, 5, 1, 1), (2, 7, 3, 17), (1, 16, 9, 1), (2, 3, 33, 20)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "act,mul,res,scale",
    [
        (None, False, False, False),
        ("gelu", False, False, False),
        ("relu", True, False, False),
        (None, False, True, True),
        (None, True, True, False),
    ],
)
def test_pointwise_conv(monkeypatch, shape, act, mul, res, scale):
    rng = np.random.default_rng(0)
    n, ci, h, w = shape
    co = 6
    x, wt, b = arr(rng, n, ci, h, w), arr(rng, co, ci), arr(rng, co)
    m = arr(rng, n, co, h, w) if mul else None
    r = arr(rng, n, co, h, w) if res else None
    s = arr(rng, co) if scale else None
    close(
        *both(
            monkeypatch,
            "pointwise_conv",
            lambda: pw.pointwise_conv(x, wt, b, act=act, mul=m, residual=r, residual_scale=s),
        )
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("res", [False, True])
def test_pointwise_conv2(monkeypatch, shape, res):
    rng = np.random.default_rng(1)
    n, ci, h, w = shape
    c1, co = 4, 5
    args = (
        arr(rng, n, ci, h, w),
        arr(rng, c1, ci),
        arr(rng, c1),
        arr(rng, n, c1, h, w),
        arr(rng, co, c1),
        arr(rng, co),
    )
    r, s = (arr(rng, n, co, h, w), arr(rng, co)) if res else (None, None)
    close(*both(monkeypatch, "pointwise_conv", lambda: pw.pointwise_conv2(*args, residual=r, residual_scale=s)))


@pytest.mark.parametrize(
    "shape", [(1, 3, 1, 1), (1, 4, 1, 9), (2, 5, 2, 3), (1, 8, 7, 4), (2, 6, 13, 40), (1, 3, 37, 5)]
)
def test_mlp_block(monkeypatch, shape):
    rng = np.random.default_rng(2)
    n, c, h, w = shape
    hd = 3 * c
    args = (
        arr(rng, n, c, h, w),
        arr(rng, hd, c, scale=0.5),
        arr(rng, hd),
        arr(rng, hd, 1, 3, 3),
        arr(rng, hd),
        arr(rng, c, hd, scale=0.5),
        arr(rng, c),
    )
    close(*both(monkeypatch, "mlp_block", lambda: pw.mlp_block(*args)))


@pytest.mark.parametrize("h,w", [(11, 6), (40, 3), (3, 100), (9, 130)])
@pytest.mark.parametrize("bands", [1, 2, 3, 7])
def test_mlp_block_row_bands(monkeypatch, h, w, bands):
    """The kernel streams bands of rows (one per thread by default) with a ring of fc1 rows; the
    result must not depend on how the rows are split."""
    rng = np.random.default_rng(3)
    args = (
        arr(rng, 1, 4, h, w),
        arr(rng, 8, 4),
        arr(rng, 8),
        arr(rng, 8, 1, 3, 3),
        arr(rng, 8),
        arr(rng, 4, 8),
        arr(rng, 4),
    )
    close(*both(monkeypatch, "mlp_block", lambda: pw.mlp_block(*args, bands=bands)))


@pytest.mark.parametrize("residual,relu", [(False, False), (False, True), (True, True)])
def test_group_norm(monkeypatch, residual, relu):
    rng = np.random.default_rng(4)
    x = jt.array((rng.standard_normal((2, 8, 5, 7)) * 3 + 100).astype(np.float32))  # large mean: centred stats
    wt, b = arr(rng, 8), arr(rng, 8)
    r = arr(rng, 2, 8, 5, 7) if residual else None
    close(*both(monkeypatch, "group_norm", lambda: pw.group_norm(x, 4, wt, b, 1e-5, residual=r, relu=relu)), 1e-4)


@pytest.mark.parametrize("shape", [(1, 5, 1, 1), (2, 16, 17, 19)])
def test_channel_norm(monkeypatch, shape):
    rng = np.random.default_rng(5)
    x = jt.array((rng.standard_normal(shape) * 2 + 50).astype(np.float32))
    wt, b = arr(rng, shape[1]), arr(rng, shape[1])
    close(*both(monkeypatch, "group_norm", lambda: pw.channel_norm(x, wt, b, 1e-5)), 1e-4)


@pytest.mark.parametrize("m,d,n,r,steps", [(1, 16, 30, 4, 7), (2, 8, 5, 3, 2), (1, 4, 1, 2, 0)])
def test_nmf_decompose(monkeypatch, m, d, n, r, steps):
    rng = np.random.default_rng(6)
    x = jt.array(rng.random((m, d, n)).astype(np.float32))
    b = rng.random((m, d, r)).astype(np.float32)
    bases = jt.array(b / np.linalg.norm(b, axis=1, keepdims=True))
    close(*both(monkeypatch, "nmf", lambda: pw.nmf_decompose(x, bases, steps, inv_t=1.0)), 1e-4)


def test_composed_taps_equal_the_resize_chain():
    rng = np.random.default_rng(7)
    src = rng.standard_normal(9)
    for sizes in ([9], [72], [72, 50], [72, 100], [5, 13]):
        index, weight, first, last = composed_taps(9, sizes)
        assert (first <= index.min(axis=0)).all() and (last == index.max(axis=0)).all()
        direct = (weight * src[index]).sum(axis=0)
        chain = jt.array(src.astype(np.float32).reshape(1, 1, 1, 9))
        for s in sizes:
            chain = resize_bilinear(chain, (1, s))
        np.testing.assert_allclose(direct, chain.numpy().ravel(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sizes", [[(40, 56)], [(40, 56), (31, 77)], [(5, 7)], [(1, 1)]])
def test_resize_argmax(monkeypatch, sizes):
    rng = np.random.default_rng(8)
    logits = arr(rng, 2, 11, 5, 7)
    fused, meta = both(monkeypatch, "resize_argmax", lambda: resize_argmax(logits, sizes))
    assert fused.dtype == np.int32 and fused.shape == (2,) + sizes[-1]
    full = logits
    for s in sizes:
        full = resize_bilinear(full, s)
    full = np.sort(full.numpy(), axis=1)
    clear = full[:, -1] - full[:, -2] > 1e-4  # the two sides may differ only where two classes tie
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(fused[clear], meta[clear])


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 7, 5, 9), (2, 16, 33, 20)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv1x1_forward_and_gradients(monkeypatch, shape, with_bias):
    """The training 1x1 conv: its kernels (forward, and dx / dw / db in one backward kernel) against
    the per-image matrix products."""
    rng = np.random.default_rng(9)
    x, w = arr(rng, *shape), arr(rng, 6, shape[1])
    b = arr(rng, 6) if with_bias else None
    gy = arr(rng, shape[0], 6, *shape[2:])

    def run():
        y = pw.conv1x1(x, w, b)
        grads = jt.grad((y * gy).sum(), [x, w] + ([b] if with_bias else []))
        return jt.concat([y.reshape(-1)] + [g.reshape(-1) for g in grads])

    close(*both(monkeypatch, "conv1x1", run), 1e-5)
