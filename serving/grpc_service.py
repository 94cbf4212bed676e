"""TF Serving's gRPC API (PredictionService, ModelService) over a :class:`ModelStore`.

Messages and stubs are serving/generated's, wire-identical to
tensorflow-serving-api's, so any TF Serving client works unchanged; behaviour and wording follow ``model_servers/*_impl.cc``.
Every failure becomes a gRPC status; nothing a client sends stops the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc

from serving import inference
from serving.errors import ServingError
from serving.metrics import Metrics
from serving.request_timing import timed_request
from serving.model_store import ModelStore, VersionState
from serving.protos import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2, inference_pb2,
                            model_management_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                            regression_pb2)
from serving.servable import Servable

log = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 1024  # TF Serving cuts longer status messages (grpc_status_util.cc)


def servable_for(store: ModelStore, request) -> Servable:
    if not request.HasField("model_spec"):
        raise ServingError.invalid("Missing ModelSpec")
    return servable_of_spec(store, request.model_spec)


def servable_of_spec(store: ModelStore, spec) -> Servable:
    """The servable a ModelSpec names: its version, its label, or the latest."""
    choice = spec.WhichOneof("version_choice")
    return store.get(spec.name, spec.version.value if choice == "version" else None,
                     spec.version_label if choice == "version_label" else None)


def _truncated(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "...TRUNCATED"


def guarded(api: str, counted: bool = True) -> Callable:
    """Map ServingError to its status, anything else to INTERNAL (logged); record TF Serving's metrics."""
    def decorate(method):
        def wrapper(self, request, context):
            started, status = time.perf_counter(), "OK"
            with timed_request() as timing:
                try:
                    return method(self, request, context)
                except ServingError as error:
                    status = error.code.name
                    context.abort(error.code, _truncated(error.message))
                except Exception as error:  # noqa: BLE001 - the server outlives any one request
                    status = "INTERNAL"
                    log.exception("%s failed", api)
                    context.abort(grpc.StatusCode.INTERNAL, _truncated(f"{type(error).__name__}: {error}"))
                finally:
                    if counted and self.metrics is not None:
                        model = request.model_spec.name if hasattr(request, "model_spec") else ""
                        self.metrics.record(model, api, "GRPC", status, time.perf_counter() - started, timing)
        wrapper.__name__ = method.__name__
        return wrapper
    return decorate


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, store: ModelStore, metrics: Metrics | None = None, tensor_content: bool = False) -> None:
        self.store, self.metrics, self.tensor_content = store, metrics, tensor_content

    @guarded("Predict")
    def Predict(self, request, context):  # noqa: N802 - gRPC's method names
        response = predict_pb2.PredictResponse()
        inference.predict(servable_for(self.store, request), request, response, self.tensor_content)
        return response

    @guarded("Classify")
    def Classify(self, request, context):  # noqa: N802
        response = classification_pb2.ClassificationResponse()
        inference.classify(servable_for(self.store, request), request, response)
        return response

    @guarded("Regress")
    def Regress(self, request, context):  # noqa: N802
        response = regression_pb2.RegressionResponse()
        inference.regress(servable_for(self.store, request), request, response)
        return response

    @guarded("MultiInference", counted=False)
    def MultiInference(self, request, context):  # noqa: N802
        spec = request.tasks[0].model_spec if request.tasks else None
        if spec is None or not spec.name:
            raise ServingError.invalid("ModelSpec has no name specified.")
        servable = servable_of_spec(self.store, spec)
        response = inference_pb2.MultiInferenceResponse()
        inference.multi_inference(servable, request, response)
        return response

    @guarded("GetModelMetadata", counted=False)
    def GetModelMetadata(self, request, context):  # noqa: N802
        return model_metadata(self.store, request)


def model_metadata(store: ModelStore, request):
    """get_model_metadata_impl.cc: fields checked first, then the servable; its SignatureDefs verbatim."""
    if not request.HasField("model_spec"):
        raise ServingError.invalid("Missing ModelSpec")
    fields = list(request.metadata_field)
    if not fields:
        raise ServingError.invalid("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != "signature_def":
            raise ServingError.invalid(f"Metadata field {field} is not supported")
    servable = servable_for(store, request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in servable.signature_defs.items():
        signatures.signature_def[name].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(signatures)
    return response


STATES = {"START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}


def model_status(store: ModelStore, request):
    """get_model_status_impl.cc: one version or all (highest first); labels are ignored, as upstream."""
    if not request.HasField("model_spec"):
        raise ServingError.invalid("Missing ModelSpec")
    spec = request.model_spec
    states = store.states(spec.name)
    if spec.WhichOneof("version_choice") == "version":
        version = spec.version.value
        if version not in states:
            raise ServingError.not_found(f"Could not find version {version} of model {spec.name}")
        states = {version: states[version]}
    if not states:  # upstream's words, then what is under the base path
        why = store.no_versions(spec.name)
        raise ServingError.not_found(f"Could not find any versions of model {spec.name}" + (f": {why}" if why else ""))
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in sorted(states, reverse=True):
        add_version_status(response, states[version])
    return response


def add_version_status(response, state: VersionState) -> None:
    entry = response.model_version_status.add(version=state.version, state=STATES[state.state])
    entry.status.error_code = state.error_code.value[0]
    if state.error_code != grpc.StatusCode.OK:
        entry.status.error_message = state.error_message


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, store: ModelStore, metrics: Metrics | None = None,
                 reload: Callable[[object], None] | None = None) -> None:
        self.store, self.metrics, self.reload = store, metrics, reload

    @guarded("GetModelStatus", counted=False)
    def GetModelStatus(self, request, context):  # noqa: N802
        return model_status(self.store, request)

    @guarded("HandleReloadConfigRequest", counted=False)
    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        if request.config.WhichOneof("config") != "model_config_list":
            raise ServingError.invalid("ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                                       "ModelConfigList is currently supported")
        if self.reload is None:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, "this server was started without config reloading")
        self.reload(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response
