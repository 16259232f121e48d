"""The CPU resize kernel and the resize-fused cross entropy against the portable (gather) forms."""

import numpy as np
import pytest

from jsegnext.ops.resize import (
    cross_entropy,
    resize_bilinear,
    resize_bilinear_gather,
    resize_table,
    resized_cross_entropy,
)
from jsegnext.runtime import jt


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def numpy_resize(x, size):
    """Independent reference: PyTorch's align_corners=False formula, width then height."""

    def axis(x, ax, out):
        lo, hi, frac = resize_table(x.shape[ax], out)
        a, b = np.take(x, lo, axis=ax), np.take(x, hi, axis=ax)
        shape = [1] * x.ndim
        shape[ax] = out
        return a + (b - a) * frac.reshape(shape)

    return axis(axis(x, 3, size[1]), 2, size[0])


SIZES = [
    ((7, 9), (28, 36)),
    ((7, 9), (13, 5)),
    ((16, 16), (64, 48)),
    ((5, 8), (5, 19)),
    ((1, 1), (3, 4)),
    ((9, 4), (2, 1)),
]


@pytest.mark.parametrize("src,dst", SIZES)
def test_resize_kernel_forward_and_gradient(src, dst):
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((2, 3) + src).astype(np.float32)
    g_np = rng.standard_normal((2, 3) + dst).astype(np.float32)
    x = jt.array(x_np)
    y = resize_bilinear(x, dst)
    ref = resize_bilinear_gather(x, dst)
    assert y.shape == ref.shape == (2, 3) + dst
    np.testing.assert_allclose(y.numpy(), numpy_resize(x_np, dst), rtol=1e-6, atol=1e-6)
    grad = jt.grad((y * jt.array(g_np)).sum(), x).numpy()
    grad_ref = jt.grad((ref * jt.array(g_np)).sum(), x).numpy()
    assert rel(grad, grad_ref) < 1e-5


def test_resize_to_the_same_size_is_the_identity():
    x = jt.array(np.random.default_rng(1).standard_normal((1, 2, 5, 6)).astype(np.float32))
    assert resize_bilinear(x, (5, 6)) is x


def _labels(rng, shape, num_classes, ignore_fraction=0.2, ignore_index=255):
    label = rng.integers(0, num_classes, shape)
    label[rng.random(shape) < ignore_fraction] = ignore_index
    return label.astype(np.uint8)


@pytest.mark.parametrize("src,dst", [((8, 8), (32, 32)), ((7, 9), (30, 17)), ((6, 6), (6, 6)), ((12, 10), (5, 7))])
def test_fused_cross_entropy_equals_resize_then_cross_entropy(src, dst):
    rng = np.random.default_rng(2)
    logits_np = (3 * rng.standard_normal((2, 5) + src)).astype(np.float32)
    label = jt.array(_labels(rng, (2,) + dst, 5))
    logits = jt.array(logits_np)
    fused = resized_cross_entropy(logits, label)
    plain = cross_entropy(resize_bilinear_gather(logits, dst), label)
    assert abs(fused.item() - plain.item()) <= 1e-5 * abs(plain.item())
    g_fused = jt.grad(fused * 3.0, logits).numpy()
    g_plain = jt.grad(plain * 3.0, logits).numpy()
    assert rel(g_fused, g_plain) < 1e-5


def test_fused_cross_entropy_by_hand():
    """One pixel row, logits already at the label size: the loss is the mean of -log softmax[label]
    over all pixels, ignored pixels counting as zero."""
    logits_np = np.array([[[[1.0, 0.0, 2.0]], [[0.0, 3.0, 2.0]]]], np.float32)  # (1, 2, 1, 3)
    label = jt.array(np.array([[[0, 1, 255]]], np.uint8))
    logp = logits_np - np.log(np.exp(logits_np).sum(1, keepdims=True))
    expected = -(logp[0, 0, 0, 0] + logp[0, 1, 0, 1]) / 3
    assert resized_cross_entropy(jt.array(logits_np), label).item() == pytest.approx(expected, rel=1e-6)


def test_fused_cross_entropy_skips_an_ignore_index_inside_the_class_range():
    rng = np.random.default_rng(3)
    logits = jt.array(rng.standard_normal((1, 4, 4, 4)).astype(np.float32))
    label_np = rng.integers(0, 4, (1, 8, 8)).astype(np.uint8)
    fused = resized_cross_entropy(logits, jt.array(label_np), ignore_index=2)
    plain = cross_entropy(resize_bilinear_gather(logits, (8, 8)), jt.array(label_np), ignore_index=2)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    assert fused.item() != pytest.approx(resized_cross_entropy(logits, jt.array(label_np)).item(), rel=1e-3)
