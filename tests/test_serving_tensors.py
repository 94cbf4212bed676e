"""serving.tensors against TensorFlow as the oracle.

TensorFlow's python reader (tf.make_ndarray) and its C++ reader (Tensor::FromProto,
reached through tf.io.parse_tensor) both judge what serving.tensors reads and
writes. Where the two TF readers disagree, the module follows C++, which is
what TF Serving runs; each such case says so.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving import tensors
from serving.tensors import TensorProtoError, declared_shape, dtype_name, element_count, fill_proto, to_array

ROOT = Path(__file__).resolve().parents[1]
BIG = {"max_elements": 10**7, "max_bytes": 10**9}
# The numbers the module relies on, as the brief gives them; checked against types.proto below.
ENUMS = {"DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4, "DT_INT16": 5, "DT_INT8": 6,
         "DT_STRING": 7, "DT_COMPLEX64": 8, "DT_INT64": 9, "DT_BOOL": 10, "DT_BFLOAT16": 14, "DT_UINT16": 17,
         "DT_COMPLEX128": 18, "DT_HALF": 19, "DT_UINT32": 22, "DT_UINT64": 23}
# dtype -> typed field, written down independently of the module (tensor.proto's comments).
FIELDS = {"DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val", "DT_UINT8": "int_val",
          "DT_INT16": "int_val", "DT_INT8": "int_val", "DT_STRING": "string_val", "DT_COMPLEX64": "scomplex_val",
          "DT_INT64": "int64_val", "DT_BOOL": "bool_val", "DT_BFLOAT16": "half_val", "DT_UINT16": "int_val",
          "DT_COMPLEX128": "dcomplex_val", "DT_HALF": "half_val", "DT_UINT32": "uint32_val",
          "DT_UINT64": "uint64_val"}
SHAPES = [(), (1,), (0,), (5,), (2, 3), (2, 0, 3), (1, 4, 4, 3)]


def sample(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values covering each dtype's range: extremes, negative zero, infinities, odd strings."""
    dtype = tf.as_dtype(ENUMS[name]).as_numpy_dtype
    size = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    if name == "DT_STRING":
        pool = [b"", b"cat", "\u00e9t\u00e9".encode(), b"\x00\xff", b"x" * 300]
        return np.array([pool[i % len(pool)] for i in range(size)] or [], dtype=object).reshape(shape)
    if name == "DT_BOOL":
        return rng.integers(0, 2, size).astype(bool).reshape(shape)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True)
        values[:2] = [info.min, info.max][:size]
        return values.reshape(shape)
    values = rng.standard_normal(size) * 100
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(size)
    values[:3] = [-0.0, np.inf, -np.inf][:size]
    return values.astype(dtype).reshape(shape)


def typed_proto(array: np.ndarray, name: str) -> tensor_pb2.TensorProto:
    """A proto with values in the typed field, built by hand the way TF Serving's AsProtoField does."""
    proto = tensor_pb2.TensorProto(dtype=ENUMS[name])
    proto.tensor_shape.SetInParent()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat, field = array.ravel(), getattr(proto, FIELDS[name])
    if array.dtype.kind == "c":
        field.extend(np.stack([flat.real, flat.imag], axis=-1).ravel().tolist())
    elif FIELDS[name] == "half_val":
        field.extend(flat.view(np.uint16).tolist())
    else:
        field.extend(flat.tolist())
    return proto


def cpp(proto) -> np.ndarray:
    """What TF's C++ Tensor::FromProto makes of ``proto`` (the reader TF Serving uses)."""
    value = tf.io.parse_tensor(proto.SerializeToString(), tf.as_dtype(proto.dtype)).numpy()
    return np.array(value, dtype=object) if proto.dtype == ENUMS["DT_STRING"] else np.asarray(value)


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    """Same dtype, shape and bits (so -0.0, NaN payloads and bfloat16 count); strings as bytes."""
    assert isinstance(got, np.ndarray)
    assert (got.dtype, got.shape) == (np.asarray(want).dtype, np.asarray(want).shape)
    if got.dtype == object:
        assert [type(v) for v in got.ravel()] == [bytes] * got.size
        assert got.tolist() == want.tolist()
    else:
        assert got.tobytes() == np.ascontiguousarray(want).tobytes()


def shaped(dtype: int, shape: list[int], proto_class=tensor_pb2.TensorProto, **fields):
    proto = proto_class(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def set_fields(proto) -> set[str]:
    return {field.name for field, _ in proto.ListFields()}


# --- enums -------------------------------------------------------------------------------------

def test_enum_numbers_match_types_proto():
    assert {name: types_pb2.DataType.Value(name) for name in ENUMS} == ENUMS
    assert {dtype_name(enum) for enum in tensors.SUPPORTED} == set(ENUMS)


def test_dtype_names_match_types_proto_including_refs_and_unknowns():
    for value in types_pb2.DataType.DESCRIPTOR.values:
        assert dtype_name(value.number) == value.name
    assert dtype_name(999) == "DT_999" and dtype_name(-1) == "DT_-1"


def test_supported_numpy_dtypes_are_tensorflows():
    for enum, dtype in tensors.SUPPORTED.items():
        assert dtype == np.dtype(tf.as_dtype(enum).as_numpy_dtype), dtype_name(enum)


def test_module_imports_no_tensorflow():
    code = ("import sys, serving.tensors; bad = sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('tensorflow', 'tensorflow_serving', 'keras')); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- reading ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ENUMS)
def test_to_array_matches_tf_on_make_tensor_proto(name, shape):
    array = sample(name, shape)
    proto = tf.make_tensor_proto(array)
    if array.size > 1 and name not in ("DT_STRING", "DT_BOOL", "DT_COMPLEX64", "DT_COMPLEX128", "DT_UINT16"):
        assert proto.tensor_content  # python's list of tensor_content dtypes; the next test covers all
    got = to_array(proto, **BIG)
    assert_same(got, tf.make_ndarray(proto))
    assert_same(got, array)
    assert got.flags.writeable


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(set(ENUMS) - {"DT_STRING"}))
def test_to_array_matches_tf_on_tensor_content(name, shape):
    array = sample(name, shape, seed=4)
    proto = shaped(ENUMS[name], list(shape), tensor_content=array.astype(array.dtype.newbyteorder("<")).tobytes())
    got = to_array(proto, **BIG)
    assert_same(got, cpp(proto))
    assert_same(got, array)
    if array.size:  # an empty tensor_content reads as "no values", where python and C++ part ways for strings only
        assert_same(got, tf.make_ndarray(proto))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ENUMS)
def test_to_array_matches_tf_on_typed_fields(name, shape):
    array = sample(name, shape, seed=1)
    proto = typed_proto(array, name)
    assert not proto.tensor_content
    got = to_array(proto, **BIG)
    assert_same(got, cpp(proto))
    assert_same(got, tf.make_ndarray(proto))
    assert_same(got, array)


def test_image_sized_request_both_encodings():
    image = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    for proto in (tf.make_tensor_proto(image), typed_proto(image, "DT_FLOAT")):
        assert_same(to_array(proto, max_elements=224 * 224 * 3, max_bytes=image.nbytes), image)


def test_fill_rule_repeats_last_value_like_cpp():
    proto = shaped(ENUMS["DT_FLOAT"], [2, 3], float_val=[1.5])
    assert_same(to_array(proto, **BIG), np.full((2, 3), 1.5, np.float32))
    assert_same(to_array(proto, **BIG), cpp(proto))
    assert_same(to_array(proto, **BIG), tf.make_ndarray(proto))  # python agrees here
    cases = [shaped(ENUMS["DT_INT32"], [4], int_val=[1, 2]), shaped(ENUMS["DT_COMPLEX64"], [3], scomplex_val=[1, 2]),
             shaped(ENUMS["DT_STRING"], [3], string_val=[b"a", b"bc"]), shaped(ENUMS["DT_HALF"], [2], half_val=[0x3C00])]
    for proto in cases:
        assert_same(to_array(proto, **BIG), cpp(proto))


def test_no_values_means_zeros_and_empty_strings_like_cpp():
    for name in ENUMS:
        proto = shaped(ENUMS[name], [2, 2])
        assert_same(to_array(proto, **BIG), cpp(proto))
    # tf.make_ndarray pads strings with str "" here; C++ (and so TF Serving) gives b"".
    assert to_array(shaped(ENUMS["DT_STRING"], [2]), **BIG).tolist() == [b"", b""]


def test_out_of_range_typed_values_wrap_like_cpp():
    # tf.make_ndarray raises OverflowError on these; C++ static_casts, and so does the module.
    for proto in (shaped(ENUMS["DT_INT8"], [2], int_val=[300, -129]),
                  shaped(ENUMS["DT_UINT8"], [2], int_val=[256, -1]),
                  shaped(ENUMS["DT_HALF"], [2], half_val=[0x3C00, 0x13C00])):
        assert_same(to_array(proto, **BIG), cpp(proto))


def test_tensor_content_wins_and_other_fields_are_ignored_like_cpp():
    proto = shaped(ENUMS["DT_FLOAT"], [1], tensor_content=np.float32([2]).tobytes(), float_val=[5])
    wrong_field = shaped(ENUMS["DT_FLOAT"], [2], double_val=[5])
    for proto in (proto, wrong_field):
        assert_same(to_array(proto, **BIG), cpp(proto))


def test_reads_a_private_generated_copy():
    proto_class = private_tensor_class()
    assert proto_class is not tensor_pb2.TensorProto
    proto = shaped(ENUMS["DT_FLOAT"], [2], proto_class, float_val=[1, 2])
    assert_same(to_array(proto, **BIG), np.float32([1, 2]))


def private_tensor_class():
    """TensorProto built from a copy of its descriptors in a fresh pool, like a vendored generated module."""
    pool = descriptor_pool.DescriptorPool()

    def add(file) -> None:
        for dependency in file.dependencies:
            add(dependency)
        copy = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(copy)
        try:
            pool.FindFileByName(copy.name)
        except KeyError:
            pool.Add(copy)

    add(tensor_pb2.DESCRIPTOR)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.TensorProto"))


# --- hostile requests --------------------------------------------------------------------------

def peak_bytes(call) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        call()
        error = None
    except TensorProtoError as caught:
        error = caught
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


def test_huge_declared_shape_is_refused_without_allocating():
    proto = shaped(ENUMS["DT_FLOAT"], [1, 8000, 8000, 3])
    peak, error = peak_bytes(lambda: to_array(proto, max_elements=10**7, max_bytes=10**9))
    assert isinstance(error, TensorProtoError) and "10000000" in str(error)
    assert peak < 1 << 20
    within_elements = shaped(ENUMS["DT_FLOAT"], [10**7])
    peak, error = peak_bytes(lambda: to_array(within_elements, max_elements=10**7, max_bytes=10**6))
    assert isinstance(error, TensorProtoError) and "max_bytes" in str(error)
    assert peak < 1 << 20


def test_tracemalloc_sees_the_allocation_it_is_meant_to_catch():
    proto = shaped(ENUMS["DT_FLOAT"], [1, 224, 224, 3])
    peak, error = peak_bytes(lambda: to_array(proto, **BIG))
    assert error is None and peak >= 224 * 224 * 3 * 4


def test_huge_string_tensor_is_refused_without_allocating():
    proto = shaped(ENUMS["DT_STRING"], [20_000_000], string_val=[b"x"])
    peak, error = peak_bytes(lambda: to_array(proto, max_elements=10**7, max_bytes=10**9))
    assert isinstance(error, TensorProtoError)
    assert peak < 1 << 20


def test_string_bytes_are_bounded():
    proto = shaped(ENUMS["DT_STRING"], [100], string_val=[b"x" * 1_000] * 100)
    with pytest.raises(TensorProtoError, match="max_bytes"):
        to_array(proto, max_elements=100, max_bytes=100_000 - 1)
    assert to_array(proto, max_elements=100, max_bytes=100_000).shape == (100,)


@pytest.mark.parametrize("size", [7, 9, 0])
def test_tensor_content_of_wrong_length_is_refused(size):
    proto = shaped(ENUMS["DT_FLOAT"], [2], tensor_content=b"\x00" * size) if size else \
        shaped(ENUMS["DT_FLOAT"], [0], tensor_content=b"\x00" * 4)
    with pytest.raises(TensorProtoError, match="tensor_content"):
        to_array(proto, **BIG)
    if size:
        with pytest.raises(tf.errors.InvalidArgumentError):
            cpp(proto)


def test_more_typed_values_than_elements_is_refused():
    proto = shaped(ENUMS["DT_FLOAT"], [2], float_val=[1, 2, 3])
    with pytest.raises(TensorProtoError, match=r"3 values for 2 elements: \[1.0, 2.0, 3.0\]"):
        to_array(proto, **BIG)
    # A deliberate step past TF: C++ keeps the first two and drops the rest without a word.
    assert_same(cpp(proto), np.float32([1, 2]))
    for proto in (shaped(ENUMS["DT_STRING"], [1], string_val=[b"a", b"b"]),
                  shaped(ENUMS["DT_COMPLEX64"], [1], scomplex_val=[1, 2, 3, 4]),
                  shaped(ENUMS["DT_INT32"], [0], int_val=[1])):
        with pytest.raises(TensorProtoError, match="values for"):
            to_array(proto, **BIG)


@pytest.mark.parametrize("enum", [types_pb2.DT_INVALID, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT,
                                  types_pb2.DT_QINT8, types_pb2.DT_FLOAT8_E5M2, types_pb2.DT_FLOAT_REF, 999])
def test_unsupported_dtype_is_refused_by_name(enum):
    with pytest.raises(TensorProtoError, match=f"unsupported dtype {dtype_name(enum)} "):
        to_array(shaped(enum, [1]), **BIG)


def test_bad_shapes_are_refused():
    with pytest.raises(TensorProtoError, match="dim 1 is -1"):
        declared_shape(shaped(ENUMS["DT_FLOAT"], [2, -1]))
    unknown = tensor_pb2.TensorProto(dtype=ENUMS["DT_FLOAT"])
    unknown.tensor_shape.unknown_rank = True
    with pytest.raises(TensorProtoError, match="unknown_rank"):
        to_array(unknown, **BIG)
    with pytest.raises(TensorProtoError, match="33 dims"):
        declared_shape(shaped(ENUMS["DT_FLOAT"], [1] * 33))
    assert declared_shape(shaped(ENUMS["DT_FLOAT"], [1] * 32)) == (1,) * 32


def test_malformed_values_are_refused():
    cases = {"real/imag pairs": shaped(ENUMS["DT_COMPLEX64"], [2], scomplex_val=[1, 2, 3]),
             "0 and 1": shaped(ENUMS["DT_BOOL"], [2], tensor_content=b"\x02\x00"),
             "string_val": shaped(ENUMS["DT_STRING"], [1], tensor_content=b"\x01a")}
    for message, proto in cases.items():
        with pytest.raises(TensorProtoError, match=message):
            to_array(proto, **BIG)
    with pytest.raises(tf.errors.InvalidArgumentError):
        cpp(cases["0 and 1"])  # C++ refuses such bools too


def test_element_count_stops_at_the_limit():
    assert element_count((), 1) == 1
    assert element_count((10, 10), 100) == 100
    assert element_count((2**62, 2**62, 0), 10) == 0  # zero-size: nothing to allocate
    for shape, limit in (((10, 11), 100), ((2**62,) * 32, 10**7), ((), 0)):
        with pytest.raises(TensorProtoError):
            element_count(shape, limit)
    with pytest.raises(TensorProtoError, match="negative"):
        element_count((0, -1), 10)


# --- writing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ENUMS)
def test_fill_proto_uses_typed_fields_like_tf_serving(name, shape):
    array = sample(name, shape, seed=2)
    proto = tensor_pb2.TensorProto()
    fill_proto(proto, array)
    assert_same(tf.make_ndarray(proto), array)
    assert_same(cpp(proto), array)
    assert set_fields(proto) == {"dtype", "tensor_shape"} | ({FIELDS[name]} if array.size else set())
    assert proto == typed_proto(array, name)  # the very message AsProtoField gives
    assert proto.HasField("tensor_shape")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ENUMS)
def test_fill_proto_as_content(name, shape):
    array = sample(name, shape, seed=3)
    proto = tensor_pb2.TensorProto()
    fill_proto(proto, array, as_content=True)
    assert_same(tf.make_ndarray(proto), array)
    assert_same(cpp(proto), array)
    values = {"string_val" if name == "DT_STRING" else "tensor_content"} if array.size else set()
    assert set_fields(proto) == {"dtype", "tensor_shape"} | values
    assert_same(to_array(proto, **BIG), array)


def test_fill_proto_overwrites_and_accepts_any_layout():
    proto = tensor_pb2.TensorProto()
    fill_proto(proto, np.arange(6, dtype=np.int64))
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for variant in (array.T, array.astype(">f4").T, array[::2, ::-1]):
        fill_proto(proto, variant)
        assert set_fields(proto) == {"dtype", "tensor_shape", "float_val"}
        assert_same(tf.make_ndarray(proto), np.ascontiguousarray(variant).astype(np.float32))
        fill_proto(proto, variant, as_content=True)
        assert_same(tf.make_ndarray(proto), np.ascontiguousarray(variant).astype(np.float32))


def test_fill_proto_strings_from_str_and_fixed_width_arrays():
    for array in (np.array(["a", "\u00e9"]), np.array([b"a", b"\xc3\xa9"]), np.array(["a", "\u00e9"], dtype=object)):
        proto = tensor_pb2.TensorProto()
        fill_proto(proto, array)
        assert list(proto.string_val) == [b"a", "\u00e9".encode()]


def test_fill_proto_refuses_what_tf_serving_cannot_send():
    for array in (np.array(["2024-01-01"], dtype="datetime64[D]"), np.array([1, "a"], dtype=object)):
        with pytest.raises(TensorProtoError):
            fill_proto(tensor_pb2.TensorProto(), array)


def test_fill_proto_writes_a_private_generated_copy():
    array = sample("DT_FLOAT", (2, 3))
    private, ours = private_tensor_class()(), tensor_pb2.TensorProto()
    fill_proto(private, array)
    fill_proto(ours, array)
    assert tensor_pb2.TensorProto.FromString(private.SerializeToString()) == ours
