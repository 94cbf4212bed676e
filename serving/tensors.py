"""TensorProto <-> numpy without TensorFlow, bounded against hostile requests.

The edge server must not import TensorFlow, yet has to read requests and write
answers exactly as TF Serving does. Reading follows the C++ ``Tensor::FromProto``
rules (tensor_content wins; typed fields repeat their last value to fill; no
values means zeros), with every size checked against the caller's limits before
anything is allocated. Writing follows ``Tensor::AsProtoField`` (TF Serving's
default): values go to the typed field of the dtype, not to tensor_content.

Two rules are stricter than TF's C++, which silently ignores the extras: more
typed values than elements, or a tensor_content of any other length than
n * itemsize, are errors even for zero-size tensors. ``proto`` is any message
with TensorProto's fields (tensorflow's tensor_pb2 or a private generated copy);
dtypes are plain ``types.proto`` enum ints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache

import numpy as np

MAX_RANK = 32
# types.proto in enum order; the index is the DT_* value (tests check it against types_pb2).
_NAMES = ("INVALID FLOAT DOUBLE INT32 UINT8 INT16 INT8 STRING COMPLEX64 INT64 BOOL QINT8 QUINT8 QINT32 "
          "BFLOAT16 QINT16 QUINT16 UINT16 COMPLEX128 HALF RESOURCE VARIANT UINT32 UINT64 FLOAT8_E5M2 "
          "FLOAT8_E4M3FN FLOAT8_E4M3FNUZ FLOAT8_E4M3B11FNUZ FLOAT8_E5M2FNUZ INT4 UINT4 INT2 UINT2 "
          "FLOAT4_E2M1FN").split()
_REF_OFFSET = 100  # DT_FLOAT_REF = 101, ...

# DT_* -> (numpy dtype, typed field, numpy dtype of the values that field stores), per tensor.proto.
_TABLE: dict[int, tuple[object, str, str]] = {
    1: ("float32", "float_val", "float32"), 2: ("float64", "double_val", "float64"),
    3: ("int32", "int_val", "int32"), 4: ("uint8", "int_val", "int32"), 5: ("int16", "int_val", "int32"),
    6: ("int8", "int_val", "int32"), 7: ("O", "string_val", "O"), 8: ("complex64", "scomplex_val", "float32"),
    9: ("int64", "int64_val", "int64"), 10: ("bool", "bool_val", "bool"), 14: ("bfloat16", "half_val", "int32"),
    17: ("uint16", "int_val", "int32"), 18: ("complex128", "dcomplex_val", "float64"),
    19: ("float16", "half_val", "int32"), 22: ("uint32", "uint32_val", "uint32"),
    23: ("uint64", "uint64_val", "uint64"),
}
_PACKED_FIXED = {"float_val", "double_val", "scomplex_val", "dcomplex_val"}  # wire bytes == numpy '<' bytes

BFLOAT16 = 14


@cache
def _bfloat16() -> np.dtype | None:
    """numpy has no bfloat16; ml_dtypes (TF's own) has, but takes 0.7 s to import: only when a tensor needs it."""
    try:
        from ml_dtypes import bfloat16
    except ImportError:
        return None
    return np.dtype(bfloat16)


class _Dtypes(Mapping):
    """DT_* -> numpy dtype; DT_BFLOAT16 resolves (and imports ml_dtypes) on first use only."""

    def __init__(self) -> None:
        self._plain = {enum: np.dtype(row[0]) for enum, row in _TABLE.items() if enum != BFLOAT16}

    def __getitem__(self, enum: int) -> np.dtype:
        if enum == BFLOAT16 and _bfloat16() is not None:
            return _bfloat16()
        return self._plain[enum]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted({*self._plain, *((BFLOAT16,) if _bfloat16() is not None else ())}))

    def __len__(self) -> int:
        return len(self._plain) + (_bfloat16() is not None)

    def __contains__(self, enum: object) -> bool:
        return enum in self._plain or (enum == BFLOAT16 and _bfloat16() is not None)


SUPPORTED: Mapping[int, np.dtype] = _Dtypes()


def enum_of(dtype: np.dtype) -> int | None:
    """The DT_* of a numeric numpy dtype (native byte order), None when TensorProto has none."""
    if dtype.name == "bfloat16":  # only an ml_dtypes array can have it: ml_dtypes is imported already
        return BFLOAT16
    return _ENUM_OF.get(dtype)


_ENUM_OF = {dtype: enum for enum, dtype in SUPPORTED._plain.items() if enum != 7}


class TensorProtoError(ValueError):
    """A TensorProto that cannot be turned into an array; message says what and echoes values (bounded, repr'd)."""


def _show(values: Sequence, limit: int = 8) -> str:
    """Echo a received sequence without letting a hostile one flood the message."""
    items = list(values[:limit + 1])  # never the whole of a hostile field
    text = ", ".join(repr(v) for v in items[:limit])
    return f"[{text}, ...]" if len(items) > limit else f"[{text}]"


def dtype_name(enum: int) -> str:
    """types.proto's name ("DT_FLOAT", "DT_FLOAT_REF"), so errors name what the client sent."""
    if 0 <= enum < len(_NAMES):
        return f"DT_{_NAMES[enum]}"
    if 0 < enum - _REF_OFFSET < len(_NAMES):
        return f"DT_{_NAMES[enum - _REF_OFFSET]}_REF"
    return f"DT_{enum}"


def numpy_dtype(enum: int) -> np.dtype:
    """The numpy dtype for a DT_* enum; anything a request cannot carry as plain values is refused."""
    if enum in SUPPORTED:
        return SUPPORTED[enum]
    if enum == BFLOAT16:
        raise TensorProtoError("dtype DT_BFLOAT16 needs the ml_dtypes package, which is not installed")
    known = ", ".join(dtype_name(e) for e in sorted(SUPPORTED))
    raise TensorProtoError(f"unsupported dtype {dtype_name(enum)} ({enum!r}); supported: {known}")


def declared_shape(proto) -> tuple[int, ...]:
    """The shape from proto.tensor_shape; a tensor (unlike a signature) must have a full, valid one."""
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise TensorProtoError("tensor_shape has unknown_rank set; a tensor needs a known shape")
    if len(shape.dim) > MAX_RANK:  # checked before listing the dims, which may be millions
        raise TensorProtoError(f"tensor_shape has {len(shape.dim)} dims; at most {MAX_RANK} are allowed")
    dims = tuple(int(d.size) for d in shape.dim)
    for index, size in enumerate(dims):
        if size < 0:
            raise TensorProtoError(f"tensor_shape dim {index} is {size!r} in {_show(dims)}; dims must be >= 0")
    return dims


def element_count(shape: Iterable[int], limit: int) -> int:
    """The product of ``shape``, refused as soon as it passes ``limit``: no overflow, no huge ints."""
    dims = tuple(shape)
    if any(size < 0 for size in dims):
        raise TensorProtoError(f"shape {_show(dims)} has a negative dim")
    if 0 in dims:  # a zero-size tensor costs nothing however large its other dims
        return 0
    count = 1
    for size in dims:
        if size > limit // count:  # i.e. count * size > limit, without forming the product
            raise TensorProtoError(f"shape {_show(dims)} has more than {limit} elements (max_elements)")
        count *= size
    if count > limit:  # only a scalar against a limit below 1
        raise TensorProtoError(f"a scalar has 1 element; the limit is {limit}")
    return count


def to_array(proto, *, max_elements: int, max_bytes: int) -> np.ndarray:
    """A writable array from ``proto``, every size checked before allocating (strings: object array of bytes)."""
    dtype = numpy_dtype(proto.dtype)
    shape = declared_shape(proto)
    n = element_count(shape, max_elements)
    name = dtype_name(proto.dtype)
    if dtype.kind == "O":
        return _strings(proto, n, max_bytes).reshape(shape)
    if n * dtype.itemsize > max_bytes:
        raise TensorProtoError(f"{name} tensor of shape {_show(shape)} needs {n * dtype.itemsize} bytes; "
                               f"max_bytes is {max_bytes}")
    content = proto.tensor_content
    if content:
        if len(content) != n * dtype.itemsize:
            raise TensorProtoError(f"tensor_content has {len(content)} bytes; {name} of shape {_show(shape)} "
                                   f"needs exactly {n * dtype.itemsize}")
        array = np.frombuffer(content, dtype.newbyteorder("<")).astype(dtype)  # the copy makes it writable
        if dtype.kind == "b" and array.view(np.uint8).max(initial=0) > 1:
            raise TensorProtoError("DT_BOOL tensor_content holds bytes other than 0 and 1")  # TF refuses too
        return array.reshape(shape)
    return _typed(proto, dtype, n).reshape(shape)


def _typed(proto, dtype: np.dtype, n: int) -> np.ndarray:
    """Values from the dtype's typed field, with TF's fill rule: the last value repeats, none means zeros."""
    _, field, stored = _TABLE[proto.dtype]
    values = getattr(proto, field)
    per = 2 if dtype.kind == "c" else 1  # complex fields interleave real and imaginary parts
    if len(values) % per:
        raise TensorProtoError(f"{field} holds {len(values)} numbers; complex values need real/imag pairs")
    if len(values) > n * per:
        raise TensorProtoError(f"{field} holds {len(values) // per} values for {n} elements: "
                               f"{_show(values)}")
    if not values:
        return np.zeros(n, dtype)
    raw = np.array(values, stored)  # upb containers give numpy one memcpy, no per-value Python
    if per == 2 or field == "half_val":  # half_val carries 16-bit patterns as int32s (C++ truncates)
        given = (raw.astype(np.uint16) if field == "half_val" else raw).view(dtype)
    else:
        given = raw.astype(dtype, copy=False)  # int_val into int8/uint8/...: wraps like C++'s static_cast
    if len(given) == n:
        return given
    out = np.empty(n, dtype)
    out[:len(given)] = given
    out[len(given):] = given[-1]
    return out


def _strings(proto, n: int, max_bytes: int) -> np.ndarray:
    """string_val as an object array, bytes summed while read so a hostile total stops early."""
    if proto.tensor_content:
        raise TensorProtoError("DT_STRING tensor_content is not accepted; send the strings in string_val")
    values = proto.string_val
    if len(values) > n:
        raise TensorProtoError(f"string_val holds {len(values)} values for {n} elements")
    kept, total = [], 0
    for value in values:
        total += len(value)
        if total > max_bytes:
            raise TensorProtoError(f"string_val holds more than {max_bytes} bytes (max_bytes)")
        kept.append(value)
    out = np.empty(n, object)
    out[:len(kept)] = kept
    out[len(kept):] = kept[-1] if kept else b""  # C++ pads with an empty string when none is given
    return out


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def fill_proto(proto, array: np.ndarray, *, as_content: bool = False) -> None:
    """Overwrite ``proto`` with ``array`` as TF Serving's AsProtoField does, or as tensor_content when asked."""
    array = np.asarray(array)
    native = array.dtype if array.dtype.kind in "OSU" else array.dtype.newbyteorder("=")
    enum = 7 if native.kind in "OSU" else enum_of(native)
    if enum is None:
        raise TensorProtoError(f"arrays of dtype {array.dtype!r} have no supported TensorProto dtype")
    proto.Clear()
    proto.dtype = enum
    proto.tensor_shape.SetInParent()  # present even for scalars, as in TF's answers
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if enum == 7:  # strings always go to string_val, as tf.make_tensor_proto does
        proto.string_val.extend(_as_bytes(value) for value in array.ravel().tolist())
        return
    if array.size == 0:
        return
    field = _TABLE[enum][1]
    if as_content or field in _PACKED_FIXED:
        data = np.ascontiguousarray(array).astype(native.newbyteorder("<"), copy=False).tobytes()
        if as_content:
            proto.tensor_content = data
        else:  # the packed wire form of these fields is exactly these bytes: let protobuf parse, not loop
            number = proto.DESCRIPTOR.fields_by_name[field].number
            proto.MergeFromString(_varint(number << 3 | 2) + _varint(len(data)) + data)
    elif field == "half_val":  # float16/bfloat16 travel as their 16-bit patterns
        proto.half_val.extend(array.astype(native, copy=False).view(np.uint16).ravel().tolist())
    else:
        getattr(proto, field).extend(array.ravel().tolist())


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TensorProtoError(f"string tensors hold bytes or str; got {type(value).__name__} {value!r:.80}")
