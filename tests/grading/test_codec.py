"""dlopt.grading.codec: only plain data crosses between a kernel and the grader."""

import json

import numpy as np
import pytest

from dlopt.grading import codec
from dlopt.kit import objectives  # noqa: F401 - objectives provides a dlopt function ref


def roundtrip(value):
    return codec.decode(json.loads(json.dumps(codec.encode(value))))


@pytest.mark.parametrize("value", [
    None, True, 3, -2**70, 1.5, float("inf"), "text",
    [1, 2.5, "a"], (1, (2, 3)), {"step": 3, "exp_avg": np.arange(3.0)},
])
def test_plain_values_round_trip(value):
    back = roundtrip(value)
    assert type(back) is type(value)
    assert repr(back) == repr(value)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "bool", "uint8"])
def test_arrays_round_trip_with_shape_and_dtype(dtype):
    arr = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    back = roundtrip(arr)
    assert type(back) is np.ndarray and back.dtype == arr.dtype and back.shape == (3, 4)
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable


def test_nan_and_numpy_scalars_survive():
    back = roundtrip(np.array([np.nan, -0.0, 1e308]))
    assert np.isnan(back[0]) and np.signbit(back[1])
    scalar = roundtrip(np.float32(1.25))
    assert type(scalar) is np.float32 and scalar == 1.25


def test_ndarray_subclass_is_refused():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return True

    with pytest.raises(codec.UnsupportedValue, match="Liar"):
        codec.encode(np.zeros(3).view(Liar))


def test_always_equal_objects_and_float_subclasses_are_refused():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    class SneakyFloat(float):
        pass

    for value in (AlwaysEqual(), SneakyFloat(1.0), [np.zeros(2), AlwaysEqual()], {1: 2}):
        with pytest.raises(codec.UnsupportedValue):
            codec.encode(value)


def test_object_arrays_are_refused():
    with pytest.raises(codec.UnsupportedValue, match="dtype object"):
        codec.encode(np.array([None, 1], dtype=object))


def test_dlopt_functions_travel_by_reference_only():
    encoded = codec.encode(objectives.rosenbrock)
    assert encoded == {"t": "ref", "module": "dlopt.kit.objectives", "name": "rosenbrock"}
    assert codec.decode(encoded) is objectives.rosenbrock
    with pytest.raises(codec.UnsupportedValue):
        codec.encode(np.sum)
    with pytest.raises(ValueError, match="refusing"):
        codec.decode({"t": "ref", "module": "os", "name": "system"})


@pytest.mark.parametrize("bad", [
    {"t": "array", "dtype": "|O", "shape": [1], "data": ""},
    {"t": "array", "dtype": "<f8", "shape": [4], "data": "AAAA"},
    {"t": "pickle", "v": "gASV"},
    {"t": "py", "v": [1, 2]},
    ["not", "a", "dict"],
])
def test_malformed_data_is_rejected(bad):
    with pytest.raises((ValueError, KeyError, TypeError)):
        codec.decode(bad)
