"""A client for TF Serving and ``ftx serve`` alike: gRPC and REST, same calls, same answers.

The gRPC client reads the model's signatures with GetModelMetadata and takes
input names and image size from there instead of hard-coding them. Requests
carry a deadline; UNAVAILABLE (server starting, version swapping, connection
reset) is retried with exponential backoff, nothing else is; inputs larger
than ``batch_size`` are sent in several requests.

Messages are serving/generated's (wire-identical to tensorflow-serving-api's),
so the client runs in the edge install, without TensorFlow.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

SIGNATURE_TENSOR, SIGNATURE_BYTES, SIGNATURE_CLASSIFY = "serving_default", "serving_bytes", "classify"


GRPC_PORT, REST_PORT = 8500, 8501  # tensorflow_model_server's --port and --rest_api_port defaults


class ClientError(RuntimeError):
    """A request failed; ``code`` is the gRPC status name (or HTTP status for REST).

    ``kind`` says whose fault: ``refused`` (the server answered with an error),
    ``unreachable`` (nothing answers on that address) or ``protocol`` (something
    answers, but not the protocol asked for: the REST port given to gRPC, or
    the other way round).
    """

    def __init__(self, code: str, message: str, kind: str = "refused") -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.kind = code, message, kind


def server_address(server: str, rest: bool) -> tuple[str, str | None]:
    """``HOST[:PORT]`` (or a URL for REST) with TF Serving's default port filled in, and a note if it was."""
    scheme, rest_of = server.split("://", 1) if "://" in server else ("", server)
    host, slash, path = rest_of.partition("/")
    bracketed = host.startswith("[") and "]" in host
    has_port = (host.rsplit("]", 1)[1].startswith(":") if bracketed else host.count(":") == 1)
    if has_port or not host:
        return server, None
    port = REST_PORT if rest else GRPC_PORT
    address = f"{scheme + '://' if scheme else ''}{host}:{port}{slash}{path}"
    return address, f"no port in --server {server}: using {port}, TF Serving's {'REST' if rest else 'gRPC'} default"


@dataclass
class ClientOptions:
    model: str
    version: int | None = None
    label: str | None = None
    timeout: float = 30.0  # seconds per request (the gRPC deadline)
    retries: int = 3  # extra tries on UNAVAILABLE
    backoff: float = 0.2  # seconds before the first retry; doubles each time
    batch_size: int = 32  # images per request
    max_message_bytes: int = 64 * 1024 * 1024
    tls: bool = False
    root_certificates: str | None = None  # PEM file; default: the system's roots

    def __post_init__(self) -> None:
        if self.version is not None and self.label:
            raise ValueError("give a version or a version label, not both")
        if self.batch_size < 1 or self.timeout <= 0 or self.retries < 0:
            raise ValueError("batch_size >= 1, timeout > 0 and retries >= 0 are required")


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # float32 [N, C]
    class_ids: np.ndarray  # int [N]
    class_names: list[str]


def with_retries(attempt, options: ClientOptions, retry_on: str):
    """``attempt()``, retried with exponential backoff while it fails with ``retry_on``; other errors at once."""
    delay = options.backoff
    for remaining in range(options.retries, -1, -1):
        try:
            return attempt()
        except ClientError as error:
            if error.code != retry_on or error.kind == "protocol" or remaining == 0:
                raise
            time.sleep(delay)
            delay *= 2


def _batches(items, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _merge(parts: list[Prediction]) -> Prediction:
    return Prediction(np.concatenate([p.probabilities for p in parts]), np.concatenate([p.class_ids for p in parts]),
                      [name for p in parts for name in p.class_names])


class GrpcClient:
    def __init__(self, target: str, options: ClientOptions) -> None:
        from serving.protos import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.options, self.target = options, target
        channel_options = [("grpc.max_send_message_length", options.max_message_bytes),
                           ("grpc.max_receive_message_length", options.max_message_bytes)]
        if options.tls:
            roots = Path(options.root_certificates).read_bytes() if options.root_certificates else None
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), channel_options)
        else:
            self.channel = grpc.insecure_channel(target, channel_options)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self._signatures: dict | None = None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "GrpcClient":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _call(self, method, request):
        def attempt():
            try:
                return method(request, timeout=self.options.timeout)
            except grpc.RpcError as error:
                raise self._error(error.code().name, error.details() or "") from None

        return with_retries(attempt, self.options, retry_on="UNAVAILABLE")

    def _error(self, code: str, details: str) -> ClientError:
        """Say what is on the other end when the call never reached a gRPC server."""
        if code == "UNAVAILABLE" and ("HTTP/2" in details or "http1" in details.lower()):
            return ClientError(code, f"{self.target} answers HTTP/1.1, not gRPC: it looks like a REST port; use "
                                     f"--rest, or the gRPC port (TF Serving's default is {GRPC_PORT})", "protocol")
        if code == "UNAVAILABLE" and ("Connection refused" in details or "failed to connect" in details.lower()):
            return ClientError(code, f"nothing is listening on {self.target} (gRPC)", "unreachable")
        if code == "UNAVAILABLE" and ("Socket closed" in details or "ssl" in details.lower()) and not self.options.tls:
            return ClientError(code, f"{self.target} closed the connection: if it serves TLS, add --tls "
                                     f"({details})", "refused")
        return ClientError(code, details)

    def _spec(self, spec, signature: str = "") -> None:
        spec.name = self.options.model
        if signature:
            spec.signature_name = signature
        if self.options.version is not None:
            spec.version.value = self.options.version
        elif self.options.label:
            spec.version_label = self.options.label

    def signatures(self) -> dict[str, dict]:
        """signature -> {"inputs": {name: (dtype, shape)}, "outputs": {...}} from GetModelMetadata (cached)."""
        if self._signatures is None:
            from serving.protos import get_model_metadata_pb2, types_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            self._spec(request.model_spec)
            response = self._call(self.predictions.GetModelMetadata, request)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)

            def describe(infos):
                return {name: (types_pb2.DataType.Name(info.dtype), [d.size for d in info.tensor_shape.dim])
                        for name, info in infos.items()}

            self._signatures = {name: {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs)}
                                for name, sig in signature_map.signature_def.items()}
        return self._signatures

    def _input(self, signature: str) -> tuple[str, list[int]]:
        signatures = self.signatures()
        if signature not in signatures:
            raise ClientError("NOT_FOUND", f"model {self.options.model!r} has no signature {signature!r}; "
                                           f"it has {sorted(signatures)}")
        ((name, (_, shape)),) = signatures[signature]["inputs"].items()
        return name, shape

    def status(self) -> list[tuple[int, str]]:
        from serving.protos import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self._call(self.models.GetModelStatus, request)
        states = get_model_status_pb2.ModelVersionStatus.State
        return [(s.version, states.Name(s.state)) for s in response.model_version_status]

    def _predict(self, signature: str, value: np.ndarray) -> Prediction:
        from serving.protos import predict_pb2
        from serving.tensors import TensorProtoError, fill_proto, to_array

        name, _ = self._input(signature)
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature)
        fill_proto(request.inputs[name], value, as_content=value.dtype.kind not in "OSU")  # as make_tensor_proto
        response = self._call(self.predictions.Predict, request)
        limit = self.options.max_message_bytes  # the response fit in a message of this size
        try:
            outputs = {key: to_array(proto, max_elements=limit, max_bytes=limit)
                       for key, proto in response.outputs.items()}
        except TensorProtoError as error:
            raise ClientError("INTERNAL", f"the server's answer holds a malformed tensor: {error}") from None
        missing = {"probabilities", "class_ids", "class_names"} - outputs.keys()
        if missing:
            raise ClientError("INTERNAL", f"the answer has no {', '.join(sorted(missing))} output: the model is "
                                          f"not an ftx export (outputs: {', '.join(sorted(outputs)) or 'none'})")
        return Prediction(outputs["probabilities"], outputs["class_ids"],
                          [n.decode() for n in outputs["class_names"]])

    def predict(self, images: np.ndarray) -> Prediction:
        """float32 RGB 0-255 images [N, H, W, 3] through the tensor signature."""
        _, shape = self._input(SIGNATURE_TENSOR)
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or list(images.shape[1:]) != shape[1:]:
            raise ValueError(f"images must have shape [N, {shape[1]}, {shape[2]}, 3], got {list(images.shape)}")
        return _merge([self._predict(SIGNATURE_TENSOR, part) for part in _batches(images, self.options.batch_size)])

    def predict_bytes(self, encoded: list[bytes]) -> Prediction:
        """Encoded image files (JPEG/PNG/BMP/GIF) through the bytes signature; the server decodes and resizes."""
        return _merge([self._predict(SIGNATURE_BYTES, np.array(part, dtype=object))
                       for part in _batches(list(encoded), self.options.batch_size)])

    def classify(self, encoded: list[bytes]) -> list[list[tuple[str, float]]]:
        """The Classify RPC on tf.Examples holding each image under ``image/encoded``."""
        from serving.protos import classification_pb2

        results = []
        for part in _batches(list(encoded), self.options.batch_size):
            request = classification_pb2.ClassificationRequest()
            self._spec(request.model_spec, SIGNATURE_CLASSIFY)
            for data in part:
                example = request.input.example_list.examples.add()
                example.features.feature["image/encoded"].bytes_list.value.append(data)
            response = self._call(self.predictions.Classify, request)
            results += [[(c.label, c.score) for c in r.classes] for r in response.result.classifications]
        return results


class RestClient:
    """The same calls over TF Serving's REST API (``instances`` row format, ``{"b64": ...}`` for bytes)."""

    def __init__(self, base_url: str, options: ClientOptions) -> None:
        self.base = base_url.rstrip("/") if "://" in base_url else f"http://{base_url.rstrip('/')}"
        self.options = options

    def close(self) -> None:
        """Nothing to release (one connection per request); here so both clients are used alike."""

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _url(self, suffix: str = "") -> str:
        url = f"{self.base}/v1/models/{self.options.model}"
        if self.options.version is not None:
            url += f"/versions/{self.options.version}"
        elif self.options.label:
            url += f"/labels/{self.options.label}"
        return url + suffix

    def _request(self, url: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()

        def attempt() -> dict:
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.options.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                body = error.read()
                try:
                    message = json.loads(body).get("error", body.decode(errors="replace"))
                except (json.JSONDecodeError, AttributeError):
                    message = body.decode(errors="replace")
                raise ClientError("UNAVAILABLE" if error.code == 503 else str(error.code), message) from None
            except urllib.error.URLError as error:  # connection refused or reset: the server is not there (yet)
                if isinstance(error.reason, ConnectionRefusedError):
                    raise ClientError("UNAVAILABLE", f"nothing is listening on {self.base} (REST)",
                                      "unreachable") from None
                raise ClientError("UNAVAILABLE", str(error.reason)) from None
            except (http.client.HTTPException, ConnectionResetError) as error:  # an answer that is not HTTP/1.x
                raise ClientError("UNAVAILABLE", f"{self.base} does not answer HTTP/1.1: it looks like a gRPC "
                                                 f"port; drop --rest, or use the REST port (TF Serving's default is "
                                                 f"{REST_PORT}) [{type(error).__name__}]", "protocol") from None

        return with_retries(attempt, self.options, retry_on="UNAVAILABLE")

    def status(self) -> list[tuple[int, str]]:
        return [(int(s["version"]), s["state"]) for s in self._request(self._url())["model_version_status"]]

    def metadata(self) -> dict:
        return self._request(self._url("/metadata"))

    def _predict(self, signature: str, instances: list) -> Prediction:
        result = self._request(self._url(":predict"), {"signature_name": signature, "instances": instances})
        rows = result["predictions"]
        return Prediction(np.array([r["probabilities"] for r in rows], np.float32),
                          np.array([r["class_ids"] for r in rows]), [r["class_names"] for r in rows])

    def predict(self, images: np.ndarray) -> Prediction:
        images = np.asarray(images, np.float32)
        return _merge([self._predict(SIGNATURE_TENSOR, part.tolist())
                       for part in _batches(images, self.options.batch_size)])

    def predict_bytes(self, encoded: list[bytes]) -> Prediction:
        return _merge([self._predict(SIGNATURE_BYTES, [{"b64": base64.b64encode(d).decode()} for d in part])
                       for part in _batches(list(encoded), self.options.batch_size)])

    def classify(self, encoded: list[bytes]) -> list[list[tuple[str, float]]]:
        results = []
        for part in _batches(list(encoded), self.options.batch_size):
            examples = [{"image/encoded": {"b64": base64.b64encode(d).decode()}} for d in part]
            response = self._request(self._url(":classify"), {"signature_name": SIGNATURE_CLASSIFY,
                                                                "examples": examples})
            results += [[(label, float(score)) for label, score in row] for row in response["results"]]
        return results
