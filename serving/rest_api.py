"""TF Serving's REST API over a :class:`ModelStore`, as ``http_rest_api_handler.cc`` and ``json_tensor.cc`` behave.

Routes are upstream's two regexes, matched on the raw path (query included,
so ``:predict?x=1`` is malformed, as upstream). Status and metadata are the
protobuf messages printed with proto field names and default fields; the
JSON of tensors and examples is serving.rest_json's. Errors are
``{"error": ...}`` with the HTTP twin of the gRPC code.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse

from google.protobuf import json_format

from export.versions import INT64_MAX
from serving import inference
from serving.errors import ServingError
from serving.grpc_service import model_metadata, model_status
from serving.metrics import Metrics
from serving.request_timing import timed_request
from serving.model_store import ModelStore
from serving.protos import classification_pb2, get_model_metadata_pb2, get_model_status_pb2, regression_pb2
from serving.rest_json import examples_input, format_float, parse_json, predict_body, request_arrays

log = logging.getLogger(__name__)
JSON_TYPE = "application/json"
POST_ROUTE = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
                        re.IGNORECASE)
GET_ROUTE = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
                       re.IGNORECASE)


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}, indent=4, ensure_ascii=False).encode()


class RestApi:
    """The request logic, separate from the HTTP plumbing (serving.http_server) so it can be called directly."""

    def __init__(self, store: ModelStore, metrics: Metrics | None = None, metrics_path: str | None = None) -> None:
        self.store, self.metrics, self.metrics_path = store, metrics, metrics_path

    def __call__(self, method: str, target: str, headers, body: bytes) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if self.metrics_path and path == self.metrics_path and self.metrics is not None:
            if target != path:
                return 400, "text/plain", f"Unexpected path: {target[:200]}. Should be {self.metrics_path}".encode()
            return 200, "text/plain", self.metrics.exposition().encode()
        if not re.fullmatch(r"(?i)/v1/.*", target):
            return 404, "text/plain", b"Not Found"
        started, outcome = time.perf_counter(), "OK"
        route = (POST_ROUTE if method == "POST" else GET_ROUTE).fullmatch(target)
        model = urllib.parse.unquote(route[1] or "") if route else ""  # errors count under the model asked for
        api = route[4] if route and method == "POST" else ""
        with timed_request() as timing:
            try:
                status, text = self.handle(method, target, body)
            except ServingError as error:
                status, text, outcome = error.http_status, _error_body(error.message).decode(), error.code.name
            except Exception as error:  # noqa: BLE001 - the server outlives any one request
                log.exception("REST %s %s failed", method, target[:200])
                status, text, outcome = 500, _error_body(f"{type(error).__name__}: {error}").decode(), "INTERNAL"
        if self.metrics is not None:
            self.metrics.record(model, api, "REST", outcome, time.perf_counter() - started, timing)
        return status, JSON_TYPE, text.encode()

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, str]:
        """(HTTP status, JSON text) for one request; raises ServingError."""
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
                return 200, self._metadata(name, version, label)
            return 200, self._status(name, version)
        api = route[4]
        if api not in ("predict", "classify", "regress"):  # the regex ignores case, the dispatch does not
            raise ServingError.invalid(f"Malformed request: {method} {target}")
        request = parse_json(body)
        servable = self.store.get(name, version, label)
        if api == "predict":
            return 200, self._predict(servable, request)
        return 200, self._examples(servable, name, api, request)

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

