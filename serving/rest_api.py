"""TF Serving's REST API over a :class:`ModelStore`.

Routes (as TF Serving): ``GET /v1/models/NAME[/versions/N|/labels/L]`` (status),
``GET .../metadata``, ``POST ...:predict`` (row ``instances`` or columnar
``inputs``; ``{"b64": ...}`` for ``*_bytes`` inputs) and ``POST ...:classify``.
Errors come back as ``{"error": message}`` with the HTTP twin of the gRPC code.
Bodies larger than ``max_body_bytes`` are refused before they are read.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from export.signatures import IMAGE_FEATURE, example_bytes
from serving.errors import ServingError
from serving.grpc_service import ModelService, signature_def
from serving.metrics import Metrics
from serving.model_store import ModelStore
from serving.servable import INPUT_NAMES, PREDICT_OUTPUTS, SIGNATURE_CLASSIFY, SIGNATURE_TENSOR

log = logging.getLogger(__name__)
ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<tail>/metadata|:predict|:classify)?$")


def _decode(value):
    """A JSON binary value -> bytes: ``{"b64": ...}`` (TF Serving's convention) or a plain string, in lists too."""
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise ServingError.invalid('a binary value must be {"b64": "<base64>"}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise ServingError.invalid("a b64 value is not valid base64") from None
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value.encode() if isinstance(value, str) else value


def _array(name: str, value) -> np.ndarray:
    if not (name.endswith("_bytes") or name in ("examples", "inputs")):
        # numbers straight to numpy: walking 150k JSON numbers in Python costs more than the model
        try:
            return np.asarray(value, dtype=np.float32)
        except (ValueError, TypeError):
            raise ServingError.invalid(f"input {name!r} must be a (nested) list of numbers with a regular "
                                       "shape") from None
    decoded = _decode(value)
    if not isinstance(decoded, list) or not all(isinstance(item, bytes) for item in decoded):
        raise ServingError.invalid(f"input {name!r} must be a list of binary values ({{\"b64\": ...}})")
    array = np.empty(len(decoded), dtype=object)
    array[:] = decoded
    return array


def _jsonable(array: np.ndarray):
    if array.dtype == object:
        return [v.decode() if isinstance(v, bytes) else _jsonable(v) for v in array]
    return array.tolist()


class RestApi:
    """The request logic, separate from HTTP plumbing so it can be called directly."""

    def __init__(self, store: ModelStore, metrics: Metrics | None = None, metrics_path: str | None = None) -> None:
        self.store, self.metrics, self.metrics_path = store, metrics, metrics_path
        self.status_service = ModelService(store)
        self.in_flight = 0
        self.idle = threading.Condition()

    def wait_idle(self, timeout: float) -> bool:
        """Wait for in-flight requests to finish (graceful shutdown)."""
        with self.idle:
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict | str]:
        if self.metrics_path and self.metrics is not None and path.split("?")[0] == self.metrics_path:
            return 200, self.metrics.exposition()
        match = ROUTE.match(path.split("?")[0])
        if not match:
            raise ServingError.not_found(f"no route {path!r}; use /v1/models/NAME[/versions/N|/labels/L]"
                                         "[/metadata|:predict|:classify]")
        name, tail = match["name"], match["tail"] or ""
        version = int(match["version"]) if match["version"] else None
        label = match["label"]
        if tail in ("", "/metadata") and method != "GET" or tail in (":predict", ":classify") and method != "POST":
            raise ServingError.invalid(f"{method} is not allowed on {path}")
        if tail == "":
            return 200, self._status(name, version, label)
        servable = self.store.get(name, version, label)
        if tail == "/metadata":
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for signature in INPUT_NAMES:
                signatures.signature_def[signature].CopyFrom(signature_def(servable, signature))
            return 200, {"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                         "metadata": {"signature_def": json_format.MessageToDict(signatures)}}
        try:
            request = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ServingError.invalid(f"request body is not JSON: {error}") from None
        if not isinstance(request, dict):
            raise ServingError.invalid("request body must be a JSON object")
        if tail == ":classify":
            return 200, self._classify(servable, request)
        return 200, self._predict(servable, request)

    def _status(self, name: str, version: int | None, label: str | None) -> dict:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        if label:
            request.model_spec.version_label = label

        class Context:
            def abort(self, code, message):
                raise ServingError(code, message)

        response = self.status_service.GetModelStatus(request, Context())
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    def _predict(self, servable, request: dict) -> dict:
        signature = request.get("signature_name") or SIGNATURE_TENSOR
        if signature not in INPUT_NAMES or signature == SIGNATURE_CLASSIFY:
            raise ServingError.not_found(f"no predict signature {signature!r}; signatures: "
                                         f"{', '.join(s for s in INPUT_NAMES if s != SIGNATURE_CLASSIFY)}")
        input_name = INPUT_NAMES[signature]
        if ("instances" in request) == ("inputs" in request):
            raise ServingError.invalid('the body needs exactly one of "instances" (row format) or "inputs" (columnar)')
        if "instances" in request:
            rows = request["instances"]
            if not isinstance(rows, list):
                raise ServingError.invalid('"instances" must be a list')
            rows = [row[input_name] if isinstance(row, dict) and set(row) == {input_name} else row for row in rows]
            inputs = {input_name: _array(input_name, rows)}
        else:
            columns = request["inputs"]
            if isinstance(columns, dict) and "b64" not in columns:
                inputs = {key: _array(key, value) for key, value in columns.items()}
            else:
                inputs = {input_name: _array(input_name, columns)}
        outputs = servable.predict(signature, inputs)
        if "instances" in request:
            columns = {name: _jsonable(outputs[name]) for name in PREDICT_OUTPUTS}
            return {"predictions": [{name: columns[name][i] for name in PREDICT_OUTPUTS}
                                    for i in range(len(columns["class_ids"]))]}
        return {"outputs": {name: _jsonable(outputs[name]) for name in PREDICT_OUTPUTS}}

    def _classify(self, servable, request: dict) -> dict:
        examples = request.get("examples")
        if not isinstance(examples, list) or not examples:
            raise ServingError.invalid('classify needs "examples": a non-empty list of {"image/encoded": {"b64": ...}}')
        serialized = []
        for example in examples:
            data = _decode(example.get(IMAGE_FEATURE)) if isinstance(example, dict) else None
            if not isinstance(data, bytes):
                raise ServingError.invalid('each example needs an "image/encoded" feature ({"b64": ...})')
            serialized.append(example_bytes(data))
        array = np.empty(len(serialized), dtype=object)
        array[:] = serialized
        scores = servable.predict(SIGNATURE_CLASSIFY, {"inputs": array})["scores"]
        return {"results": [[[label, float(score)] for label, score in zip(servable.class_names, row)]
                            for row in scores]}


DISCARD_CAP_BYTES = 64 << 20  # beyond this an oversized body is not read; the connection is just closed
SOCKET_TIMEOUT_S = 60.0


def make_http_server(api: RestApi, host: str, port: int, max_body_bytes: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = SOCKET_TIMEOUT_S  # a client that stalls mid-body frees its thread
        disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms
        server_version = "ftx-serve"

        def _respond(self, status: int, payload: dict | str) -> None:
            text = isinstance(payload, str)
            body = payload.encode() if text else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4" if text else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _discard(self, length: int) -> None:
            """Read and drop an oversized body (up to a cap) so the client sees the 413, not a reset connection."""
            remaining = min(length, DISCARD_CAP_BYTES)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    return
                remaining -= len(chunk)

        def _serve(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self.close_connection = True
                return self._respond(400, {"error": "bad Content-Length"})
            if length > max_body_bytes:
                self.close_connection = True  # the unread body would be taken for the next request
                self._discard(length)
                return self._respond(413, {"error": f"request body of {length} bytes is larger than the limit "
                                                    f"{max_body_bytes}"})
            body = self.rfile.read(length) if length else b""
            with api.idle:
                api.in_flight += 1
            started, outcome = time.perf_counter(), "OK"
            try:
                status, payload = api.handle(method, self.path, body)
            except ServingError as error:
                status, payload, outcome = error.http_status, {"error": error.message}, error.code.name
            except Exception as error:  # noqa: BLE001 - the server outlives any one request
                log.exception("REST %s %s failed", method, self.path)
                status, payload, outcome = 500, {"error": f"{type(error).__name__}: {error}"}, "INTERNAL"
            match = ROUTE.match(self.path.split("?")[0])
            if api.metrics is not None and match:
                api.metrics.record(match["name"], f"REST{match['tail'] or ':status'}", outcome,
                                   time.perf_counter() - started)
            try:
                self._respond(status, payload)
            finally:
                with api.idle:
                    api.in_flight -= 1
                    api.idle.notify_all()

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet by default
            log.debug("REST %s", format % args)

    class Server(ThreadingHTTPServer):
        request_queue_size = 512  # listen backlog; the stdlib's 5 resets connections under a burst of clients
        daemon_threads = True

    return Server((host, port), Handler)
