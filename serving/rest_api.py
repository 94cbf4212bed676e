"""TF Serving's REST API over a :class:`ModelStore`, as ``http_rest_api_handler.cc`` and ``json_tensor.cc`` behave.

Routes are upstream's two regexes, matched on the raw path (query included,
so ``:predict?x=1`` is malformed, as upstream). Status and metadata are the
protobuf messages printed with proto field names and default fields;
predict answers ``predictions`` (row) or ``outputs`` (columnar), a plain list
when the signature has one output, objects when it has several; floats are
printed as TF Serving prints them (``%g``, else 9 significant digits);
``*_bytes`` outputs as ``{"b64": ...}``. Errors are ``{"error": ...}`` with
the HTTP twin of the gRPC code.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import time
import urllib.parse

import numpy as np
from google.protobuf import json_format

from serving import inference, tensors
from serving.errors import ServingError
from serving.grpc_service import model_metadata, model_status
from serving.metrics import Metrics
from serving.model_store import ModelStore
from serving.protos import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2, input_pb2,
                            regression_pb2)

log = logging.getLogger(__name__)
JSON_TYPE = "application/json"
POST_ROUTE = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
                        re.IGNORECASE)
GET_ROUTE = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
                       re.IGNORECASE)
INT64_MAX = 2**63 - 1


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}, indent=4, ensure_ascii=False).encode()


def _parse_json(body: bytes):
    """rapidjson's leniency: NaN/Infinity accepted, trailing bytes after the first value ignored."""
    text = body.decode("utf-8", "replace").lstrip()
    if not text:
        raise ServingError.invalid("JSON Parse error: The document is empty")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as error:
        raise ServingError.invalid(f"JSON Parse error: {error.msg}. at offset: {error.pos}") from None
    except RecursionError:
        raise ServingError.invalid("JSON Parse error: nested too deeply") from None
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


def _first_leaf(value, wanted):
    """The first scalar that is not of the wanted Python kinds (for json_tensor.cc's type error)."""
    stack = [value]
    while stack:
        item = stack.pop(0)
        if isinstance(item, list):
            stack[:0] = item
        elif not isinstance(item, wanted) or isinstance(item, bool) and bool not in wanted:
            return item
    return None


def _array(value, info) -> np.ndarray:
    expected = tensors.dtype_name(info.dtype).removeprefix("DT_").lower()
    if info.dtype == 7:  # DT_STRING
        array = np.array(_bytes_of(value), dtype=object)
        if not all(isinstance(item, bytes) for item in array.reshape(-1)):
            bad = _first_leaf(value, (str, dict))
            raise ServingError.invalid(f"JSON Value: {_short(bad)} Type: {_json_type(bad)} is not of expected "
                                       f"type: {expected}")
        return array
    try:
        array = np.asarray(value)
    except ValueError:
        raise ServingError.invalid("Encountered list at unexpected size: the values do not form a regular "
                                   "tensor") from None
    allowed = "b" if info.dtype == 10 else "fiu" if expected.startswith(("float", "double", "half", "bfloat")) \
        else "iu"
    if array.dtype.kind not in allowed:  # only then walk the values (slow) to name the first wrong one
        kinds = (bool,) if info.dtype == 10 else (int, float) if "f" in allowed else (int,)
        bad = _first_leaf(value, kinds)
        raise ServingError.invalid(f"JSON Value: {_short(bad)} Type: {_json_type(bad)} is not of expected type: "
                                   f"{expected}")
    return array


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


class RestApi:
    """The request logic, separate from the HTTP plumbing (serving.http_server) so it can be called directly."""

    def __init__(self, store: ModelStore, metrics: Metrics | None = None, metrics_path: str | None = None) -> None:
        self.store, self.metrics, self.metrics_path = store, metrics, metrics_path

    def __call__(self, method: str, target: str, headers, body: bytes) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if self.metrics_path and path == self.metrics_path and self.metrics is not None:
            if target != path:
                return 400, "text/plain", f"Unexpected path: {target}. Should be {self.metrics_path}".encode()
            return 200, "text/plain", self.metrics.exposition().encode()
        if not re.fullmatch(r"(?i)/v1/.*", target):
            return 404, "text/plain", b"Not Found"
        started, outcome, model, api = time.perf_counter(), "OK", "", ""
        try:
            status, text, model, api = self.handle(method, target, body)
        except ServingError as error:
            status, text, outcome = error.http_status, _error_body(error.message).decode(), error.code.name
        except Exception as error:  # noqa: BLE001 - the server outlives any one request
            log.exception("REST %s %s failed", method, target)
            status, text, outcome = 500, _error_body(f"{type(error).__name__}: {error}").decode(), "INTERNAL"
        if self.metrics is not None:
            self.metrics.record(model, api, "REST", outcome, time.perf_counter() - started)
        return status, JSON_TYPE, text.encode()

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, str, str, str]:
        """(HTTP status, JSON text, model name, API) for one request; raises ServingError."""
        route = POST_ROUTE.fullmatch(target) if method == "POST" else \
            GET_ROUTE.fullmatch(target) if method == "GET" else None
        if route is None:
            raise ServingError.invalid(f"Malformed request: {method} {target}")
        name = urllib.parse.unquote(route[1] or "")
        version = None
        if route[2]:
            version = int(route[2])
            if version > INT64_MAX:
                raise ServingError.invalid(f"Failed to convert version: {route[2]} to numeric.")
        label = urllib.parse.unquote(route[3]) if route[3] else None
        if method == "GET":
            if not name:
                raise ServingError.invalid("Missing model name in request.")
            if route[4] == "metadata":
                return 200, self._metadata(name, version, label), name, ""
            return 200, self._status(name, version), name, ""
        api = route[4]
        if api not in ("predict", "classify", "regress"):  # the regex ignores case, the dispatch does not
            raise ServingError.invalid(f"Malformed request: {method} {target}")
        request = _parse_json(body)
        servable = self.store.get(name, version, label)
        if api == "predict":
            return 200, self._predict(servable, request), name, api
        return 200, self._examples(servable, name, api, request), name, api

    def _status(self, name: str, version: int | None) -> str:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        return json_format.MessageToJson(model_status(self.store, request), preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True, indent=1) + "\n"

    def _metadata(self, name: str, version: int | None, label: str | None) -> str:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        elif label is not None:
            request.model_spec.version_label = label
        response = model_metadata(self.store, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        options = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=1)
        spec = json_format.MessageToJson(response.model_spec, **options)
        return ('{\n"model_spec":' + spec + "\n,\n\"metadata\": {\"signature_def\": "
                + json_format.MessageToJson(signatures, **options) + "\n}\n}\n")

    def _predict(self, servable, request: dict) -> str:
        name = request.get("signature_name") or inference.DEFAULT_SIGNATURE
        signature = servable.signature_defs.get(name)
        if signature is None:
            raise ServingError.invalid(f'Serving signature name: "{name}" not found in signature def')
        if not signature.inputs:
            raise ServingError.invalid(f"Failed to get input map for signature: {name}")
        arrays = request_arrays(request, signature)
        outputs = inference.predict_arrays(servable, name, arrays)
        return predict_body(outputs, row_format="instances" in request)

    def _examples(self, servable, model: str, api: str, request: dict) -> str:
        message = examples_input(request, api)
        if api == "classify":
            grpc_request = classification_pb2.ClassificationRequest(input=message)
            grpc_request.model_spec.name, grpc_request.model_spec.signature_name = model, request.get(
                "signature_name", "")
            response = classification_pb2.ClassificationResponse()
            inference.classify(servable, grpc_request, response)
            results = [[[c.label, c.score] for c in item.classes] for item in response.result.classifications]
            if not results:
                raise ServingError.invalid("Cannot convert empty ClassificationResults to JSON")
            rows = ["[" + ", ".join(f"[{json.dumps(label, ensure_ascii=False)}, {format_float(score)}]"
                                    for label, score in row) + "]" for row in results]
        else:
            grpc_request = regression_pb2.RegressionRequest(input=message)
            grpc_request.model_spec.name, grpc_request.model_spec.signature_name = model, request.get(
                "signature_name", "")
            response = regression_pb2.RegressionResponse()
            inference.regress(servable, grpc_request, response)
            rows = [format_float(r.value) for r in response.result.regressions]
            if not rows:
                raise ServingError.invalid("Cannot convert empty RegressionResults to JSON")
        return '{\n    "results": [' + ", ".join(rows) + "\n    ]\n}"

