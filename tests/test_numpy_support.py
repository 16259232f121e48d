"""NumPy 1 and 2: arrays cross between NumPy and Jittor with the right values.

Jittor 1.3.11's own conversions read wrong bytes under NumPy 2; there jsegnext reroutes them through
``Var.data`` (:mod:`jsegnext.numpy_compat`). The rerouted functions are checked here under either
NumPy; that they are installed, and needed, only in a NumPy 2 environment (README, "NumPy 2").
"""

import numpy as np
import pytest

from jsegnext import numpy_compat
from jsegnext.runtime import jt

DTYPES = ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"]
AS_JITTOR = {"float64": "float32", "int64": "int32"}  # Jittor's auto_convert_64_to_32


def sample(dtype):
    return (np.arange(2 * 3 * 5).reshape(2, 3, 5) % 7 - 3).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_arrays_go_in_and_come_out_with_their_values(dtype):
    values = sample(dtype)
    for array in (values, values[:, ::2, 1:], np.asfortranarray(values)):  # contiguous or not
        var = numpy_compat.array_via_data(jt, array)
        expected = array.astype(AS_JITTOR.get(dtype, dtype))
        assert var.dtype == expected.dtype.name and tuple(var.shape) == array.shape
        out = numpy_compat.numpy_via_data(var.clone())  # through a Jittor op
        assert out.dtype == expected.dtype and np.array_equal(out, expected)
        assert np.array_equal(var.numpy(), expected) and np.array_equal(np.asarray(var), expected)


def test_python_data_scalars_and_explicit_dtypes():
    assert numpy_compat.array_via_data(jt, [1.5, 2]).numpy().tolist() == [1.5, 2.0]
    zero_d = numpy_compat.array_via_data(jt, np.float32(2.5))
    assert tuple(zero_d.shape) == (1,) and zero_d.item() == 2.5  # Jittor's scalar shape
    assert numpy_compat.array_via_data(jt, np.arange(3), "float64").dtype == "float64"  # no 64 -> 32 when asked
    assert numpy_compat.array_via_data(jt, [1, 2], jt.float32).numpy().tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match="not supported"):
        numpy_compat.array_via_data(jt, np.array(["a"]))


@pytest.mark.skipif(not numpy_compat.NUMPY_2, reason="Jittor's own conversions are used under NumPy 1")
def test_under_numpy_2_jittor_conversions_are_rerouted():
    assert getattr(jt.array, "_jsegnext_numpy2", False) and jt.Var.numpy is numpy_compat.numpy_via_data
    weights = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
    x = np.random.default_rng(1).standard_normal((96, 32)).astype(np.float32)
    np.testing.assert_allclose(jt.matmul(jt.array(weights), jt.array(x)).numpy(), weights @ x, rtol=1e-4, atol=1e-4)
    assert jt.array(np.arange(4)).numpy().tolist() == [0, 1, 2, 3]  # garbage without the reroute


@pytest.mark.skipif(numpy_compat.NUMPY_2, reason="checks NumPy 1, where Jittor's conversions are right")
def test_under_numpy_1_jittor_is_left_as_it_is():
    assert not hasattr(jt.array, "_jsegnext_numpy2")
    assert jt.Var.numpy is not numpy_compat.numpy_via_data
