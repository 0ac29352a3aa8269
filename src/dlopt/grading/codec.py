"""Plain data that may cross between a notebook kernel and the grader.

The grader never unpickles anything a student's kernel produced. Values travel as JSON built
from a short list of exact types:

- ``None``, ``bool``, ``int``, ``float``, ``str``;
- numpy scalars and arrays of boolean, integer or floating dtype (bytes in base64);
- ``list``, ``tuple`` and ``dict`` with ``str`` keys, of the above;
- a function defined in a ``dlopt`` module, passed by reference (module and name).

Subclasses are refused (``type(x) is ...``, never ``isinstance``): an ndarray subclass that
lies about equality, or a float subclass that compares equal to everything, cannot be encoded,
and whatever bytes do arrive are rebuilt into fresh, plain objects by :func:`decode`.
"""

from __future__ import annotations

import base64
import importlib
import math

import numpy as np

__all__ = ["UnsupportedValue", "decode", "encode", "describe_type"]

#: Largest array (in elements) that may travel; larger ones are refused, not truncated.
MAX_ARRAY_ELEMENTS = 20_000_000
MAX_DEPTH = 16
_ARRAY_KINDS = "biuf"
_NUMPY_SCALARS = {
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float16, np.float32, np.float64,
}


class UnsupportedValue(TypeError):
    """Raised when a value is not plain data; the message says what it was."""


def describe_type(value) -> str:
    """Name a value's type the way a student would recognise it (``numpy.ndarray``)."""
    cls = type(value)
    module = cls.__module__
    name = cls.__qualname__
    if module in ("builtins", "__main__"):
        return name
    return f"{module}.{name}"


def _encode_array(arr: np.ndarray) -> dict:
    if arr.dtype.kind not in _ARRAY_KINDS:
        raise UnsupportedValue(f"a numpy array of dtype {arr.dtype} (use a numeric dtype)")
    if arr.size > MAX_ARRAY_ELEMENTS:
        raise UnsupportedValue(f"an array with {arr.size} elements (too large to grade)")
    data = np.ascontiguousarray(arr).tobytes()
    return {
        "t": "array",
        "dtype": arr.dtype.str,
        "shape": list(arr.shape),
        "data": base64.b64encode(data).decode("ascii"),
    }


def encode(value, _depth: int = 0):
    """Turn ``value`` into JSON-able plain data, or raise :class:`UnsupportedValue`."""
    if _depth > MAX_DEPTH:
        raise UnsupportedValue("a structure nested too deeply")
    cls = type(value)
    if value is None or cls is bool or cls is str:
        return {"t": "py", "v": value}
    if cls is int:
        return {"t": "int", "v": str(value)}
    if cls is float:
        return {"t": "float", "v": repr(value)}
    if cls is np.ndarray:
        return _encode_array(value)
    if cls in _NUMPY_SCALARS:
        return {"t": "scalar", "a": _encode_array(np.asarray(value))}
    if cls is list or cls is tuple:
        return {"t": cls.__name__, "v": [encode(item, _depth + 1) for item in value]}
    if cls is dict:
        if not all(type(key) is str for key in value):
            raise UnsupportedValue("a dict whose keys are not all strings")
        return {"t": "dict", "v": {key: encode(item, _depth + 1) for key, item in value.items()}}
    module = getattr(value, "__module__", None) or ""
    name = getattr(value, "__name__", None)
    if callable(value) and module.startswith("dlopt.") and name:
        if getattr(importlib.import_module(module), name, None) is value:
            return {"t": "ref", "module": module, "name": name}
    raise UnsupportedValue(describe_type(value))


def _decode_array(obj: dict) -> np.ndarray:
    dtype = np.dtype(str(obj["dtype"]))
    if dtype.kind not in _ARRAY_KINDS:
        raise ValueError(f"dtype {dtype} is not allowed")
    shape = tuple(int(n) for n in obj["shape"])
    if any(n < 0 for n in shape) or math.prod(shape) > MAX_ARRAY_ELEMENTS:
        raise ValueError(f"bad array shape {shape}")
    raw = base64.b64decode(obj["data"], validate=True)
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError("array bytes do not match its shape and dtype")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def decode(obj, _depth: int = 0):
    """Rebuild plain Python/numpy objects from :func:`encode`'s output.

    Raises ``ValueError`` for anything malformed; never executes code from the data
    (a ``ref`` only resolves to a function defined in a ``dlopt`` module).
    """
    if _depth > MAX_DEPTH or not isinstance(obj, dict):  # JSON parsers may give dict subclasses
        raise ValueError("malformed plain data")
    kind = obj.get("t")
    if kind == "py":
        value = obj["v"]
        if value is None or type(value) in (bool, str):
            return value
        raise ValueError("malformed plain data")
    if kind == "int":
        return int(str(obj["v"]))
    if kind == "float":
        return float(str(obj["v"]))
    if kind == "array":
        return _decode_array(obj)
    if kind == "scalar":
        arr = _decode_array(obj["a"])
        if arr.shape != ():
            raise ValueError("a scalar must have shape ()")
        return arr[()]
    if kind in ("list", "tuple"):
        items = [decode(item, _depth + 1) for item in obj["v"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {str(key): decode(item, _depth + 1) for key, item in dict(obj["v"]).items()}
    if kind == "ref":
        module, name = str(obj["module"]), str(obj["name"])
        if not module.startswith("dlopt.") or not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"refusing reference {module}.{name}")
        value = getattr(importlib.import_module(module), name)
        if not callable(value) or getattr(value, "__module__", None) != module:
            raise ValueError(f"refusing reference {module}.{name}")
        return value
    raise ValueError(f"unknown plain-data kind {kind!r}")
