"""TF Serving's gRPC API (PredictionService, ModelService) over a :class:`ModelStore`.

Messages and stubs are ``tensorflow-serving-api``'s own, so any TF Serving
client works unchanged. Every failure becomes a gRPC status with a message
that says what was expected; nothing a client sends can stop the server.
"""

from __future__ import annotations

import logging
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from serving.errors import ServingError
from serving.metrics import Metrics
from serving.model_store import ModelStore
from serving.servable import INPUT_NAMES, PREDICT_OUTPUTS, SIGNATURE_CLASSIFY, SIGNATURE_TENSOR, Servable

log = logging.getLogger(__name__)


def servable_for(store: ModelStore, spec: model_pb2.ModelSpec) -> Servable:
    if not spec.name:
        raise ServingError.invalid("model_spec.name is required")
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    return store.get(spec.name, version, label)


def tensor_to_array(name: str, proto) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001 - any malformed TensorProto is the client's error
        raise ServingError.invalid(f"input {name!r} is not a valid TensorProto: {error}") from None


def signature_def(servable: Servable, signature: str) -> meta_graph_pb2.SignatureDef:
    """The SignatureDef an ftx SavedModel declares for ``signature`` (same names, dtypes, shapes)."""
    def info(name: str, dtype: int, dims: list[int]) -> meta_graph_pb2.TensorInfo:
        shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
        return meta_graph_pb2.TensorInfo(name=f"{signature}_{name}:0", dtype=dtype, tensor_shape=shape)

    size, classes = servable.image_size, len(servable.class_names)
    if signature == SIGNATURE_CLASSIFY:
        return meta_graph_pb2.SignatureDef(
            method_name="tensorflow/serving/classify", inputs={"inputs": info("inputs", types_pb2.DT_STRING, [-1])},
            outputs={"classes": info("classes", types_pb2.DT_STRING, [-1, classes]),
                     "scores": info("scores", types_pb2.DT_FLOAT, [-1, classes])})
    name = INPUT_NAMES[signature]
    source = info(name, types_pb2.DT_FLOAT, [-1, size, size, 3]) if signature == SIGNATURE_TENSOR else \
        info(name, types_pb2.DT_STRING, [-1])
    return meta_graph_pb2.SignatureDef(
        method_name="tensorflow/serving/predict", inputs={name: source},
        outputs={"probabilities": info("probabilities", types_pb2.DT_FLOAT, [-1, classes]),
                 "class_ids": info("class_ids", types_pb2.DT_INT32, [-1]),
                 "class_names": info("class_names", types_pb2.DT_STRING, [-1])})


def _guarded(method):
    """Map ServingError to its status, anything else to INTERNAL with the message (logged); count it."""
    def wrapper(self, request, context):
        started, status = time.perf_counter(), "OK"
        try:
            return method(self, request, context)
        except ServingError as error:
            status = error.code.name
            context.abort(error.code, error.message)
        except Exception as error:  # noqa: BLE001 - the server outlives any one request
            status = "INTERNAL"
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        finally:
            if self.metrics is not None:
                self.metrics.record(request.model_spec.name, method.__name__, status, time.perf_counter() - started)
    wrapper.__name__ = method.__name__
    return wrapper


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, store: ModelStore, metrics: Metrics | None = None) -> None:
        self.store, self.metrics = store, metrics

    @_guarded
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        servable = servable_for(self.store, request.model_spec)
        signature = request.model_spec.signature_name or SIGNATURE_TENSOR
        if signature == SIGNATURE_CLASSIFY:
            raise ServingError.invalid("signature 'classify' is a Classify signature; use the Classify RPC")
        inputs = {name: tensor_to_array(name, proto) for name, proto in request.inputs.items()}
        outputs = servable.predict(signature, inputs)
        wanted = list(request.output_filter) or list(PREDICT_OUTPUTS)
        unknown = sorted(set(wanted) - set(outputs))
        if unknown:
            raise ServingError.invalid(f"output_filter names unknown outputs {unknown}; outputs: {list(PREDICT_OUTPUTS)}")
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(spec_of(servable, signature))
        for name in wanted:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response

    @_guarded
    def Classify(self, request: classification_pb2.ClassificationRequest, context):
        servable = servable_for(self.store, request.model_spec)
        signature = request.model_spec.signature_name or SIGNATURE_CLASSIFY
        if signature != SIGNATURE_CLASSIFY:
            raise ServingError.invalid(f"Classify needs the 'classify' signature, got {signature!r}")
        kind = request.input.WhichOneof("kind")
        if kind != "example_list":
            raise ServingError.invalid("Classify takes input.example_list (example_list_with_context is not supported)")
        examples = np.array([e.SerializeToString() for e in request.input.example_list.examples], dtype=object)
        outputs = servable.predict(SIGNATURE_CLASSIFY, {"inputs": examples})
        response = classification_pb2.ClassificationResponse()
        response.model_spec.CopyFrom(spec_of(servable, SIGNATURE_CLASSIFY))
        for scores in outputs["scores"]:
            result = response.result.classifications.add()
            for label, score in zip(servable.class_names, scores):
                result.classes.add(label=label, score=float(score))
        return response

    @_guarded
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        servable = servable_for(self.store, request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise ServingError.invalid(f"metadata_field must be ['signature_def'], got {fields}")
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name in INPUT_NAMES:
            signatures.signature_def[name].CopyFrom(signature_def(servable, name))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.CopyFrom(spec_of(servable, ""))
        response.metadata["signature_def"].Pack(signatures)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, store: ModelStore, metrics: Metrics | None = None) -> None:
        self.store, self.metrics = store, metrics

    @_guarded
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        spec = request.model_spec
        loaded, failed = self.store.status(spec.name)
        if spec.WhichOneof("version_choice") == "version_label":
            loaded = {servable_for(self.store, spec).version: servable_for(self.store, spec)}
            failed = {}
        elif spec.HasField("version"):
            version = spec.version.value
            if version not in loaded and version not in failed:
                raise ServingError.not_found(f"model {spec.name!r} has no version {version}; loaded: {sorted(loaded)}")
            loaded = {v: s for v, s in loaded.items() if v == version}
            failed = {v: m for v, m in failed.items() if v == version}
        response = get_model_status_pb2.GetModelStatusResponse()
        state = get_model_status_pb2.ModelVersionStatus
        for version in sorted(loaded):
            response.model_version_status.add(version=version, state=state.AVAILABLE)
        for version, message in sorted(failed.items()):
            status = response.model_version_status.add(version=version, state=state.LOADING)
            status.status.error_code = grpc.StatusCode.UNAVAILABLE.value[0]
            status.status.error_message = message
        return response


def spec_of(servable: Servable, signature: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature)
    spec.version.value = servable.version
    return spec
