"""TF Serving's JSON for tensors and examples, as ``util/json_tensor.cc`` reads and writes it.

Requests: row (``instances``) or columnar (``inputs``) format, ``{"b64": ...}``
for binary values, tf.Example features from JSON scalars and lists. Values are
checked in one pass before an array is built, so a wrong type costs no more
than the JSON already did. Responses: a plain list when the signature has one
output, objects when it has several; floats printed as upstream prints them
(``%g``, else 9 significant digits, ``.0`` on whole numbers); ``*_bytes``
outputs as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import orjson

from export.versions import INT64_MAX
from serving.inputs import short_dtype_name
from serving.errors import ServingError
from serving.protos import input_pb2


def parse_json(body: bytes):
    """rapidjson's leniency: NaN/Infinity accepted, trailing bytes after the first value ignored.

    Strict JSON goes through orjson (2x faster on a 224 px image as nested lists); anything it refuses
    (NaN, trailing bytes, bad UTF-8) through the standard library's lenient path. Both give the same values,
    except integers beyond 64 bits, which orjson reads as doubles, as rapidjson does.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = _parse_lenient(body)
    return _checked_request(value)


def _parse_lenient(body: bytes):
    text = body.decode("utf-8", "replace").lstrip()
    if not text:
        raise ServingError.invalid("JSON Parse error: The document is empty")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as error:
        raise ServingError.invalid(f"JSON Parse error: {error.msg}. at offset: {error.pos}") from None
    except RecursionError:
        raise ServingError.invalid("JSON Parse error: nested too deeply") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise ServingError.invalid(f"JSON Parse error: {error}") from None
    return value


def _checked_request(value):
    if not isinstance(value, dict):
        raise ServingError.invalid(f"JSON Value: {_short(value)} Is not object")
    name = value.get("signature_name", "")
    if not isinstance(name, str):
        raise ServingError.invalid(f"JSON Value: {_short(value)} not formatted correctly. 'signature_name' key "
                                   "must be a string value.")
    return value


def _short(value) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = "<value>"
    return text if len(text) <= 256 else text[:256]


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _bytes_of(value):
    """b64 objects and strings -> bytes, through nested lists; other values are left for the dtype check."""
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise ServingError.invalid("Unable to base64 decode") from None
    if isinstance(value, dict):
        raise ServingError.invalid(f"JSON Value: {_short(value)} not formatted correctly for base64 data")
    if isinstance(value, list):
        return [_bytes_of(item) for item in value]
    return value.encode() if isinstance(value, str) else value


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _first_leaf(value, wanted: tuple[type, ...]):
    """The first scalar that is not one of ``wanted`` (bool counts only when wanted), or None; O(n)."""
    stack = [iter([value])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif not isinstance(item, wanted) or (isinstance(item, bool) and bool not in wanted):
            return item
    return None


_END = object()


def _array(value, info) -> np.ndarray:
    expected = short_dtype_name(info.dtype)
    if info.dtype == 7:  # DT_STRING
        array = np.array(_bytes_of(value), dtype=object)
        if not all(isinstance(item, bytes) for item in array.reshape(-1)):
            bad = _first_leaf(value, (str, dict))
            raise ServingError.invalid(f"JSON Value: {_short(bad)} Type: {_json_type(bad)} is not of expected "
                                       f"type: {expected}")
        return array
    kinds = (bool,) if info.dtype == 10 else (int,) if expected.startswith(("int", "uint")) else (int, float)
    try:  # an object array holds references to the leaves: no '<U' array from a string among numbers
        leaves = np.asarray(value, dtype=object)
    except ValueError:
        leaves = None  # ragged: reported below, after the type check that TF Serving makes first
    if leaves is None or not _types_within(leaves, kinds):
        bad = _first_leaf(value, kinds)  # the first offending leaf, in document order, for the message
        if bad is not None:
            raise ServingError.invalid(f"JSON Value: {_short(bad)} Type: {_json_type(bad)} is not of expected "
                                       f"type: {expected}")
    irregular = ServingError.invalid("Encountered list at unexpected size: the values do not form a regular "
                                     "tensor (or an integer is out of range)")
    if leaves is None:
        raise irregular
    try:
        return leaves.astype(bool if info.dtype == 10 else np.float64 if float in kinds else np.int64)
    except (ValueError, OverflowError, TypeError):
        raise irregular from None


_TYPE_OF = np.frompyfunc(type, 1, 1)


def _types_within(leaves: np.ndarray, kinds: tuple[type, ...]) -> bool:
    """Every leaf's exact type is one of ``kinds`` (bool is its own type: never taken for int); a C loop."""
    return set(_TYPE_OF(leaves).ravel().tolist()) <= set(kinds) if leaves.size else True


def request_arrays(request: dict, signature) -> dict[str, np.ndarray]:
    """json_tensor.cc's FillPredictRequestFromJson: row (``instances``) or columnar (``inputs``) format."""
    if "instances" in request and "inputs" in request:
        raise ServingError.invalid(f"JSON Value: {_short(request)} Not formatted correctly expecting only one of "
                                   "'inputs' or 'instances' keys to exist ")
    names = sorted(signature.inputs)
    if "instances" in request:
        rows = request["instances"]
        if not isinstance(rows, list):
            raise ServingError.invalid(f"JSON Value: {_short(rows)} Expecting 'instances' to be an list/array")
        if not rows:
            raise ServingError.invalid(f"JSON Value: {_short(rows)} No values in 'instances' array")
        if isinstance(rows[0], dict) and not _is_b64(rows[0]):
            columns: dict[str, list] = {name: [] for name in names}
            for index, row in enumerate(rows):
                if not isinstance(row, dict) or _is_b64(row):
                    raise ServingError.invalid(f"Expecting object but got list at item {index} of input list")
                if set(row) != set(names):
                    raise ServingError.invalid(f"Failed to process element: {index} of 'instances' list. JSON "
                                               f"object: {_short(row)} keys must be equal to: {','.join(names)}")
                for name in names:
                    columns[name].append(row[name])
            return {name: _array(columns[name], signature.inputs[name]) for name in names}
        if len(names) > 1:
            raise ServingError.invalid("instances is a plain list, but expecting list of objects as multiple input "
                                       "tensors required as per tensorinfo_map")
        return {names[0]: _array(rows, signature.inputs[names[0]])}
    if "inputs" not in request:
        raise ServingError.invalid("Missing 'inputs' or 'instances' key")
    columns = request["inputs"]
    if not isinstance(columns, dict) or _is_b64(columns):
        if len(names) > 1:
            raise ServingError.invalid("inputs is a plain value/list, but expecting an object as multiple input "
                                       "tensors required as per tensorinfo_map")
        return {names[0]: _array(columns, signature.inputs[names[0]])}
    for name in names:
        if name not in columns:
            raise ServingError.invalid(f"Missing named input: {name} in 'inputs' object.")
    return {name: _array(columns[name], signature.inputs[name]) for name in names}  # extra keys ignored


def format_float(value: float, double: bool = False) -> str:
    """json_tensor.cc's WriteDecimal: %g, else %.9g (float) / %.17g (double); ``.0`` on whole numbers."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:g}"
    if (float(text) if double else np.float32(text)) != value:
        text = f"{value:.17g}" if double else f"{value:.9g}"
    return text if "." in text or "e" in text else text + ".0"


def to_json(value, alias: str = "") -> str:
    """Compact JSON of output values, with TF Serving's float and bytes printing."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return to_json(value.item() if value.dtype != object else value.reshape(1)[0], alias)
        if value.dtype.kind == "f":
            double = value.dtype == np.float64
            if value.ndim == 1:
                return "[" + ", ".join(format_float(float(v), double) for v in value.tolist()) + "]"
        return "[" + ", ".join(to_json(item, alias) for item in value) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_json(item, alias) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {to_json(v, k)}" for k, v in value.items()) + "}"
    if isinstance(value, bytes):
        if alias.endswith("_bytes"):
            return json.dumps({"b64": base64.b64encode(value).decode()})
        return json.dumps(value.decode("utf-8", "replace"), ensure_ascii=False)
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return format_float(float(value), isinstance(value, (float, np.float64)))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)


def predict_body(outputs: dict[str, np.ndarray], row_format: bool) -> str:
    if not outputs:
        raise ServingError.invalid("Cannot convert empty tensor map to JSON")
    if not row_format:
        inner = to_json(next(iter(outputs.values())), next(iter(outputs))) if len(outputs) == 1 else to_json(outputs)
        return '{\n    "outputs": ' + inner + "\n}"
    batch = None
    for alias, value in outputs.items():
        if value.ndim == 0:
            raise ServingError.invalid(f"Tensor name: {alias} has no shape information ")
        if batch is not None and value.shape[0] != batch:
            raise ServingError.invalid(f"Tensor name: {alias} has inconsistent batch size: {value.shape[0]} "
                                       f"expecting: {batch}")
        batch = value.shape[0]
    if len(outputs) == 1:
        ((alias, value),) = outputs.items()
        rows = [to_json(item, alias) for item in value]
    else:
        rows = ["{" + ", ".join(f"{json.dumps(k)}: {to_json(v[i], k)}" for k, v in outputs.items()) + "}"
                for i in range(batch)]
    return '{\n    "predictions": [' + ", ".join(rows) + "\n    ]\n}"


def _feature(name: str, value, feature) -> None:
    """json_tensor.cc's example parsing: strings/b64 -> bytes, bools and integers -> int64, fractions -> float."""
    items = value if isinstance(value, list) else [value]
    kind = None
    for item in items:
        if isinstance(item, str) or _is_b64(item):
            this, data = "bytes", _bytes_of(item)
        elif isinstance(item, bool):
            this, data = "int64", int(item)
        elif isinstance(item, int):
            if item > INT64_MAX:
                raise ServingError.invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
            this, data = "int64", item
        elif isinstance(item, float):
            this, data = "float", item
        else:
            json_type = "Null" if item is None else "Array" if isinstance(item, list) else "Object"
            raise ServingError.invalid(f"Feature: {name} has element with unexpected JSON type: {json_type}")
        if kind is not None and this != kind:
            raise ServingError.invalid(f"Unexpected element type in feature: {name} expecting type: {kind}")
        kind = this
        getattr(feature, f"{this}_list").value.append(data)


def _example(value, target) -> None:
    if not isinstance(value, dict):
        json_type = "Array" if isinstance(value, list) else type(value).__name__
        raise ServingError.invalid(f"Example must be JSON object but got JSON {json_type}")
    for name, feature_value in value.items():
        _feature(name, feature_value, target.features.feature[name])


def examples_input(request: dict, method: str):
    """A JSON classify/regress body -> the Input message gRPC would carry (context -> example_list_with_context)."""
    examples = request.get("examples")
    if examples is None:
        raise ServingError.invalid(f"JSON Value: {_short(request)} When method is {method}, key 'examples' is "
                                   "expected and was not found")
    if not isinstance(examples, list):
        raise ServingError.invalid(f"JSON Value: {_short(examples)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise ServingError.invalid(f"JSON Value: {_short(examples)} 'examples' value is an empty array")
    message = input_pb2.Input()
    if "context" in request:
        target = message.example_list_with_context
        _example(request["context"], target.context)
    else:
        target = message.example_list
    for value in examples:
        _example(value, target.examples.add())
    return message
