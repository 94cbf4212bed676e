"""ftx serve measured against TF Serving itself: raw upstream stubs, TensorProtos and HTTP only.

The oracle is never ftx's own client. Values come from the Keras model,
signatures from TensorFlow's SavedModel reader, and messages, codes and JSON
shapes from the upstream source (tensorflow/serving@9d981c5c). Each test names
the upstream file, and the test there where one exists, whose behaviour it
checks. Paths are relative to ``tensorflow_serving/``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format, wrappers_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.python.tools import saved_model_utils
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, input_pb2, model_management_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc, regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

from export.run_dir import read_run
from export.samples import load_samples
from export.savedmodel import load_keras_model
from serving.loader import VersionLoader
from serving.model_store import ModelStore
from serving.reload import apply_model_config
from serving.server import ModelServer, ServerLimits
from serving.tfs_config import ModelEntry, VersionPolicy

BACKENDS = ("onnx", "savedmodel")
METRICS_PATH = "/monitoring/prometheus/metrics"
UPSTREAM_CLIENTS = Path(__file__).parent / "data" / "upstream"
CLASSIFY, PREDICT = "tensorflow/serving/classify", "tensorflow/serving/predict"


# fixtures and helpers


@dataclass(frozen=True)
class Export:
    base: Path  # the model's base path, holding version 1
    class_names: tuple[str, ...]
    images: np.ndarray  # float32 [12, 32, 32, 3], what the Keras model saw in evaluation
    encoded: tuple[bytes, ...]  # the same images' PNG files
    expected: np.ndarray  # Keras probabilities for ``images``
    keras: object


@pytest.fixture(scope="module")
def exported(tiny_export, tiny_run) -> Export:
    """Version 1 of model 'tiny' (SavedModel + ONNX), the Keras reference and real test images."""
    run = read_run(tiny_run)
    samples = load_samples(run, 12)
    keras = load_keras_model(run)
    return Export(tiny_export, tuple(run.class_names), samples.images, samples.encoded,
                  keras.predict(samples.images, verbose=0), keras)


def start_server(base: Path, backend: str, limits: ServerLimits | None = None, labels: dict | None = None,
                 policy: VersionPolicy = VersionPolicy()) -> ModelServer:
    store = ModelStore([ModelEntry("tiny", str(base), policy)], VersionLoader(backend, 1))
    store.start(0)
    store.reconfigure([ModelEntry("tiny", str(base), policy, labels or {})])
    return ModelServer(store, 0, 0, limits or ServerLimits(), metrics_path=METRICS_PATH,
                       reload=lambda config: apply_model_config(store, config)).start()


class Endpoint:
    """One running server and the upstream stubs and base URL that reach it."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.rest = f"http://127.0.0.1:{server.rest_port}"

    def close(self) -> None:
        self.channel.close()
        self.server.stop(1)


@pytest.fixture(scope="module")
def endpoints(exported):
    """``endpoints(backend)``: one shared server per backend for the module, label stable -> 1."""
    started: dict[str, Endpoint] = {}

    def get(backend: str = "onnx") -> Endpoint:
        if backend not in started:
            started[backend] = Endpoint(start_server(exported.base, backend, labels={"stable": 1}))
        return started[backend]

    try:
        yield get
    finally:
        for endpoint in started.values():
            endpoint.close()


def predict_request(images=None, model="tiny", signature="", inputs=None, version=None, label=None,
                    output_filter=()) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name, request.model_spec.signature_name = model, signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name, value in (inputs if inputs is not None else {"images": images}).items():
        request.inputs[name].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                      else tf.make_tensor_proto(value))
    return request


def image_example(encoded: bytes | None = None) -> tf.train.Example:
    features = {} if encoded is None else {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
    return tf.train.Example(features=tf.train.Features(feature=features))


def example_list(encoded) -> input_pb2.Input:
    return input_pb2.Input(example_list=input_pb2.ExampleList(examples=[image_example(e) for e in encoded]))


def classification_request(examples: input_pb2.Input, signature="classify", model="tiny"):
    request = classification_pb2.ClassificationRequest(input=examples)
    request.model_spec.name, request.model_spec.signature_name = model, signature
    return request


def rpc_error(call, request) -> tuple[str, str]:
    """The (code name, details) a call fails with."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=60)
    return caught.value.code().name, caught.value.details()


def http(method: str, url: str, body=None) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one request; ``body`` is sent as JSON unless it is bytes."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def http_json(method: str, url: str, body=None) -> tuple[int, object]:
    status, content_type, data = http(method, url, body)
    assert content_type.split(";")[0] == "application/json", (content_type, data)
    return status, json.loads(data)


def http_error(method: str, url: str, body=None) -> tuple[int, str]:
    """(status, message) of a REST error: the body must be ``{"error": message}`` and nothing else."""
    status, parsed = http_json(method, url, body)
    assert isinstance(parsed, dict) and list(parsed) == ["error"], parsed
    return status, parsed["error"]


def saved_model_signatures(export: Export) -> get_model_metadata_pb2.SignatureDefMap:
    """The SignatureDefMap as TensorFlow's own reader sees it in the export's saved_model.pb."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in saved_model_utils.get_meta_graph_def(str(export.base / "1"), "serve").signature_def.items():
        signature_map.signature_def[name].CopyFrom(signature)
    return signature_map


# Predict


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_answers_in_typed_fields_with_the_keras_values(exported, endpoints, backend):
    """servables/tensorflow/predict_impl_test.cc: PredictionSuccess; model_servers/tensorflow_model_server_test.py:
    testPredictSavedModel. Outputs are AsProtoField (predict_util.cc PostProcessPredictionResult, kAsProtoField)."""
    response = endpoints(backend).prediction.Predict(predict_request(exported.images[:4]), timeout=60)
    assert response.model_spec.name == "tiny" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"probabilities", "class_ids", "class_names"}
    fields = {"probabilities": (types_pb2.DT_FLOAT, [4, 3], "float_val"),
              "class_ids": (types_pb2.DT_INT32, [4], "int_val"),
              "class_names": (types_pb2.DT_STRING, [4], "string_val")}
    for name, (dtype, shape, field) in fields.items():
        tensor = response.outputs[name]
        assert tensor.dtype == dtype, name
        assert [dim.size for dim in tensor.tensor_shape.dim] == shape, name
        assert tensor.tensor_content == b"", name
        assert len(getattr(tensor, field)) == int(np.prod(shape)), name
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), exported.expected[:4], atol=1e-4)
    assert list(response.outputs["class_ids"].int_val) == list(exported.expected[:4].argmax(1))
    assert [name.decode() for name in response.outputs["class_names"].string_val] == [
        exported.class_names[i] for i in exported.expected[:4].argmax(1)]


def test_predict_output_filter(exported, endpoints):
    """servables/tensorflow/predict_impl_test.cc: OutputFiltersDontMatchModelSpecOutputs (messages from
    predict_util.cc PreProcessPrediction)."""
    endpoint = endpoints()
    response = endpoint.prediction.Predict(predict_request(exported.images[:2], output_filter=["probabilities"]),
                                           timeout=60)
    assert set(response.outputs) == {"probabilities"}
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), exported.expected[:2], atol=1e-4)
    assert rpc_error(endpoint.prediction.Predict, predict_request(exported.images[:1], output_filter=["nope"])) == (
        "INVALID_ARGUMENT", "output tensor alias not found in signature: nope Outputs expected to be in the set "
                            "{class_ids,class_names,probabilities}.")
    duplicate = predict_request(exported.images[:1], output_filter=["class_ids", "class_ids"])
    assert rpc_error(endpoint.prediction.Predict, duplicate) == (
        "INVALID_ARGUMENT", "duplicate output tensor alias: class_ids")


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_accepts_an_input_in_typed_float_val(exported, endpoints, backend):
    """model_servers/test_util/tensorflow_model_server_test_base.py: VerifyPredictRequest sends float_val, not
    tensor_content (TF's Tensor::FromProto reads either)."""
    images = exported.images[:2]
    typed = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=images.ravel().tolist(),
                                   tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                       dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in images.shape]))
    response = endpoints(backend).prediction.Predict(predict_request(inputs={"images": typed}), timeout=60)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), exported.expected[:2], atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_on_the_classify_signature(exported, endpoints, backend):
    """servables/tensorflow/predict_impl_test.cc: PredictionWithNamedClassificationSignature (Predict may run a
    classify signature; predict_util.cc VerifySignature)."""
    examples = np.array([image_example(e).SerializeToString() for e in exported.encoded[:3]], dtype=object)
    response = endpoints(backend).prediction.Predict(predict_request(signature="classify",
                                                                     inputs={"inputs": examples}), timeout=60)
    assert response.model_spec.signature_name == "classify"
    assert set(response.outputs) == {"classes", "scores"}
    classes, scores = response.outputs["classes"], response.outputs["scores"]
    assert classes.dtype == types_pb2.DT_STRING and [d.size for d in classes.tensor_shape.dim] == [3, 3]
    assert scores.dtype == types_pb2.DT_FLOAT and len(scores.float_val) == 9
    assert tf.make_ndarray(classes).astype(str).tolist() == [list(exported.class_names)] * 3
    np.testing.assert_allclose(tf.make_ndarray(scores), exported.expected[:3], atol=1e-4)


def test_serialization_as_tensor_content_puts_numeric_outputs_in_tensor_content(exported):
    """model_servers/main.cc --enable_serialization_as_tensor_content; servables/tensorflow/predict_util.cc
    PostProcessPredictionResult (kAsProtoContent: Tensor::AsProtoTensorContent)."""
    endpoint = Endpoint(start_server(exported.base, "onnx", ServerLimits(tensor_content=True)))
    try:
        response = endpoint.prediction.Predict(predict_request(exported.images[:3]), timeout=60)
    finally:
        endpoint.close()
    for name, field in (("probabilities", "float_val"), ("class_ids", "int_val")):
        assert response.outputs[name].tensor_content != b"" and len(getattr(response.outputs[name], field)) == 0
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), exported.expected[:3], atol=1e-4)
    assert tf.make_ndarray(response.outputs["class_ids"]).tolist() == exported.expected[:3].argmax(1).tolist()
    assert response.outputs["class_names"].dtype == types_pb2.DT_STRING


WRONG_PREDICTS = [  # id, the request for one image, code, message ({feed}: the signature's feed name)
    ("unknown model", lambda one: predict_request(one, model="nope"), "NOT_FOUND",
     "Servable not found for request: Latest(nope)"),
    ("unknown version", lambda one: predict_request(one, version=9), "NOT_FOUND",
     "Servable not found for request: Specific(tiny, 9)"),
    ("unknown label", lambda one: predict_request(one, label="x"), "INVALID_ARGUMENT",
     "Unrecognized servable version label: x"),
    ("unknown signature", lambda one: predict_request(one, signature="x"), "FAILED_PRECONDITION",
     'Serving signature key "x" not found.'),
    ("empty model name", lambda one: predict_request(one, model=""), "INVALID_ARGUMENT",
     "ModelSpec has no name specified."),
    ("missing input", lambda one: predict_request(inputs={"pixels": one}), "INVALID_ARGUMENT",
     "Signature input alias: images(feed name: {feed}) not found in request and no default value provided. "
     "Inputs expected to be in the request {pixels}, or default input alias set: "),
    ("extra input", lambda one: predict_request(inputs={"images": one, "extra": one}), "INVALID_ARGUMENT",
     "input size does not match signature: 2!=1 len({extra,images}) != len({images}). Sent extra: {extra}. "
     "Missing but required: {}."),
]


@pytest.mark.parametrize("build, code, message", [case[1:] for case in WRONG_PREDICTS],
                         ids=[case[0] for case in WRONG_PREDICTS])
def test_predict_errors_carry_upstreams_codes_and_messages(exported, endpoints, build, code, message):
    """ModelSpec resolution: model_servers/server_core.cc ServableRequestFromModelSpec, GetModelVersionForLabel;
    core/basic_manager.cc and core/manager.h (ServableRequest::DebugString). Signature and inputs:
    servables/tensorflow/predict_util.cc RunPredict, VerifyRequestInputsSize (predict_impl_test.cc:
    InputTensorsDontMatchModelSpecInputs) and TF cc/saved_model/util.cc GetInputValues."""
    feed = saved_model_signatures(exported).signature_def["serving_default"].inputs["images"].name
    assert rpc_error(endpoints().prediction.Predict, build(exported.images[:1])) == (
        code, message.replace("{feed}", feed))


def test_predict_with_the_wrong_dtype_is_invalid_argument(exported, endpoints):
    """servables/tensorflow/predict_util_test.cc: PredictionInvalidTensor ("Expects arg[0] to be float but bool is
    provided"), InputTensorsHaveWrongType."""
    endpoint = endpoints()
    code, message = rpc_error(endpoint.prediction.Predict, predict_request(np.ones((1, 32, 32, 3), bool)))
    assert code == "INVALID_ARGUMENT" and "Expects arg[0] to be float but bool is provided" in message, message
    code, message = rpc_error(endpoint.prediction.Predict, predict_request(np.array([b"x"], dtype=object)))
    assert code == "INVALID_ARGUMENT" and "to be float but string is provided" in message, message


# Classify, Regress, MultiInference


def _classifications(result) -> tuple[list, np.ndarray]:
    labels = [[c.label for c in row.classes] for row in result.classifications]
    return labels, np.array([[c.score for c in row.classes] for row in result.classifications])


@pytest.mark.parametrize("backend", BACKENDS)
def test_classify_an_example_list(exported, endpoints, backend):
    """servables/tensorflow/classifier_test.cc: ExampleList; classification_service_test.cc: ClassificationSuccess;
    model_servers/tensorflow_model_server_test.py: testClassify (model_spec echoed)."""
    response = endpoints(backend).prediction.Classify(classification_request(example_list(exported.encoded[:4])),
                                                      timeout=60)
    labels, scores = _classifications(response.result)
    assert labels == [list(exported.class_names)] * 4
    np.testing.assert_allclose(scores, exported.expected[:4], atol=1e-4)
    spec = response.model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("tiny", 1, "classify")


@pytest.mark.parametrize("backend", BACKENDS)
def test_classify_an_example_list_with_context(exported, endpoints, backend):
    """servables/tensorflow/classifier_test.cc: ExampleListWithContext; util_test.cc: ExampleListWithContext (each
    input is serialize(context) + serialize(example))."""
    with_context = input_pb2.Input(example_list_with_context=input_pb2.ExampleListWithContext(
        context=image_example(exported.encoded[0]), examples=[image_example(), image_example()]))
    response = endpoints(backend).prediction.Classify(classification_request(with_context), timeout=60)
    labels, scores = _classifications(response.result)
    assert labels == [list(exported.class_names)] * 2
    np.testing.assert_allclose(scores, np.repeat(exported.expected[:1], 2, axis=0), atol=1e-4)


def test_classify_and_regress_structural_errors(exported, endpoints):
    """servables/tensorflow/classifier.cc PreProcessClassification (classifier_test.cc: EmptyInput,
    InvalidNamedSignature, MissingClassificationSignature); regressor.cc PreProcessRegression
    (regressor_test.cc: MissingRegressionSignature); util.cc InputToSerializedExampleTensor ("Input is empty.")."""
    stub = endpoints().prediction
    one = example_list(exported.encoded[:1])
    assert rpc_error(stub.Classify, classification_request(one, signature="")) == (
        "INVALID_ARGUMENT", "Expected one or two output Tensors, found 3")
    assert rpc_error(stub.Classify, classification_request(one, signature="nope")) == (
        "INVALID_ARGUMENT", "No signature was found with the name: nope")
    assert rpc_error(stub.Classify, classification_request(input_pb2.Input())) == ("INVALID_ARGUMENT",
                                                                                   "Input is empty.")
    empty_list = input_pb2.Input(example_list=input_pb2.ExampleList())
    assert rpc_error(stub.Classify, classification_request(empty_list)) == ("INVALID_ARGUMENT", "Input is empty.")
    regression = regression_pb2.RegressionRequest(input=one)
    regression.model_spec.name = "tiny"
    assert rpc_error(stub.Regress, regression) == ("INVALID_ARGUMENT", "Expected one output Tensor.")


def _task(signature: str, method: str, model: str = "tiny") -> inference_pb2.InferenceTask:
    task = inference_pb2.InferenceTask(method_name=method)
    task.model_spec.name, task.model_spec.signature_name = model, signature
    return task


@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_inference_with_one_classify_task_equals_classify(exported, endpoints, backend):
    """servables/tensorflow/multi_inference_test.cc: ValidSingleSignatureTest; model_servers/
    tensorflow_model_server_test.py: testMultiInference (per-result model_spec)."""
    stub = endpoints(backend).prediction
    examples = example_list(exported.encoded[:3])
    classified = stub.Classify(classification_request(examples), timeout=60)
    response = stub.MultiInference(inference_pb2.MultiInferenceRequest(tasks=[_task("classify", CLASSIFY)],
                                                                      input=examples), timeout=60)
    assert len(response.results) == 1
    assert response.results[0].classification_result == classified.result
    spec = response.results[0].model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("tiny", 1, "classify")


def test_multi_inference_errors(exported, endpoints):
    """servables/tensorflow/multi_inference_test.cc: UsupportedSignatureTypeTest,
    InconsistentModelSpecsInRequestTest (messages from multi_inference.cc / multi_inference_helper.cc)."""
    stub = endpoints().prediction
    examples = example_list(exported.encoded[:1])
    predict_task = inference_pb2.MultiInferenceRequest(tasks=[_task("serving_default", PREDICT)], input=examples)
    assert rpc_error(stub.MultiInference, predict_task) == (
        "UNIMPLEMENTED", "Unsupported signature method_name: tensorflow/serving/predict")
    two_models = inference_pb2.MultiInferenceRequest(
        tasks=[_task("classify", CLASSIFY), _task("classify", CLASSIFY, model="other")], input=examples)
    assert rpc_error(stub.MultiInference, two_models) == (
        "INVALID_ARGUMENT", "All ModelSpecs in a MultiInferenceRequest must access the same model name.")


# GetModelMetadata, GetModelStatus, HandleReloadConfigRequest


def metadata_request(fields=("signature_def",), model="tiny"):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    request.model_spec.name = model
    return request


@pytest.mark.parametrize("backend", BACKENDS)
def test_metadata_is_the_saved_models_signature_def_map(exported, endpoints, backend):
    """servables/tensorflow/get_model_metadata_impl_test.cc: ReturnsSignaturesForValidModel; model_servers/
    tensorflow_model_server_test.py: testGetModelMetadata (one metadata key, 'signature_def')."""
    response = endpoints(backend).prediction.GetModelMetadata(metadata_request(), timeout=60)
    assert response.model_spec.name == "tiny" and response.model_spec.version.value == 1
    assert list(response.metadata) == ["signature_def"]
    served = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(served)
    assert served == saved_model_signatures(exported)


def test_metadata_field_errors(endpoints):
    """servables/tensorflow/get_model_metadata_impl_test.cc: EmptyOrInvalidMetadataFieldList."""
    stub = endpoints().prediction
    assert rpc_error(stub.GetModelMetadata, metadata_request(fields=())) == (
        "INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
    assert rpc_error(stub.GetModelMetadata, metadata_request(fields=("signature_def", "nope"))) == (
        "INVALID_ARGUMENT", "Metadata field nope is not supported")


@pytest.fixture
def two_versions(exported, tmp_path) -> Path:
    """A base path holding versions 1 and 2 (both the same export)."""
    base = tmp_path / "tiny"
    shutil.copytree(exported.base / "1", base / "1")
    shutil.copytree(exported.base / "1", base / "2")
    return base


def status_request(model="tiny"):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return request


def test_model_status_lists_versions_highest_first(two_versions):
    """model_servers/get_model_status_impl_test.cc: AllVersionsSuccess; tensorflow_model_server_test.py:
    testGetModelStatus (status.error_code 0); versions in core/servable_state_monitor.h VersionMap order."""
    endpoint = Endpoint(start_server(two_versions, "onnx", policy=VersionPolicy("all")))
    try:
        response = endpoint.models.GetModelStatus(status_request(), timeout=60)
    finally:
        endpoint.close()
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE), (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    for entry in response.model_version_status:
        assert entry.HasField("status") and entry.status.error_code == 0 and entry.status.error_message == ""


def _server_config(*models: tuple[str, Path]) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    for name, base in models:
        config.model_config_list.config.add(name=name, base_path=str(base), model_platform="tensorflow")
    return config


def test_reload_config_adds_and_removes_a_model_live(exported, tmp_path):
    """model_servers/model_service_impl.cc HandleReloadConfigRequest; tensorflow_model_server_test.py:
    testModelConfigReload; a removed model's versions stay in GetModelStatus as END
    (core/servable_state_monitor.cc keeps kEnd in states_; get_model_status_impl.cc reads it)."""
    copy = tmp_path / "tiny2"
    shutil.copytree(exported.base, copy)
    endpoint = Endpoint(start_server(exported.base, "onnx"))
    try:
        reload = model_management_pb2.ReloadConfigRequest(config=_server_config(("tiny", exported.base),
                                                                                ("tiny2", copy)))
        assert endpoint.models.HandleReloadConfigRequest(reload, timeout=120).status.error_code == 0
        served = endpoint.prediction.Predict(predict_request(exported.images[:2], model="tiny2"), timeout=60)
        assert served.model_spec.name == "tiny2"
        np.testing.assert_allclose(tf.make_ndarray(served.outputs["probabilities"]), exported.expected[:2],
                                   atol=1e-4)
        reload = model_management_pb2.ReloadConfigRequest(config=_server_config(("tiny", exported.base)))
        assert endpoint.models.HandleReloadConfigRequest(reload, timeout=120).status.error_code == 0
        assert rpc_error(endpoint.prediction.Predict, predict_request(exported.images[:1], model="tiny2")) == (
            "NOT_FOUND", "Servable not found for request: Latest(tiny2)")
        assert endpoint.prediction.Predict(predict_request(exported.images[:1]), timeout=60).model_spec.name == "tiny"
        removed = endpoint.models.GetModelStatus(status_request("tiny2"), timeout=60)
        assert [(s.version, s.state, s.status.error_code) for s in removed.model_version_status] == [
            (1, get_model_status_pb2.ModelVersionStatus.END, 0)]
    finally:
        endpoint.close()


def test_reload_config_errors_as_server_core(exported, tmp_path):
    """model_servers/server_core.cc: ValidateModelConfigList (names once, absolute base paths) and
    WaitUntilModelsAvailable (a new model that does not load: UNKNOWN with its versions and errors); a refused
    reload leaves the server serving what it served."""
    broken = tmp_path / "broken"
    shutil.copytree(exported.base, broken)
    (broken / "1" / "model.onnx").write_bytes(b"garbage")
    endpoint = Endpoint(start_server(exported.base, "onnx"))
    try:
        reload = endpoint.models.HandleReloadConfigRequest
        twice = model_management_pb2.ReloadConfigRequest(config=_server_config(("tiny", exported.base),
                                                                               ("tiny", exported.base)))
        assert rpc_error(reload, twice) == ("INVALID_ARGUMENT",
                                            "Illegal to list model tiny multiple times in config list")
        relative = model_management_pb2.ReloadConfigRequest(config=_server_config(("tiny", Path("models/tiny"))))
        assert rpc_error(reload, relative) == (
            "INVALID_ARGUMENT", "Expected model tiny to have an absolute path or URI; got base_path()=models/tiny")
        failing = model_management_pb2.ReloadConfigRequest(config=_server_config(("tiny", exported.base),
                                                                                 ("bad", broken)))
        code, message = rpc_error(reload, failing)
        assert code == "UNKNOWN" and message.startswith(
            "1 model(s) did not become available: {{{name: bad version: 1} due to error: INVALID_ARGUMENT: ")
        assert "model.onnx" in message and message.endswith("}, }")
        assert endpoint.prediction.Predict(predict_request(exported.images[:1]), timeout=60).model_spec.name == "tiny"
    finally:
        endpoint.close()


def test_reload_config_refuses_a_custom_model_config(endpoints):
    """model_servers/model_service_impl.cc HandleReloadConfigRequest (the default: case)."""
    config = model_server_config_pb2.ModelServerConfig()
    config.custom_model_config.Pack(wrappers_pb2.StringValue(value="anything"))
    request = model_management_pb2.ReloadConfigRequest(config=config)
    assert rpc_error(endpoints().models.HandleReloadConfigRequest, request) == (
        "INVALID_ARGUMENT", "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList "
                            "is currently supported")


# REST


def test_rest_status_json(endpoints):
    """model_servers/http_rest_api_handler_test.cc: GetStatus; tensorflow_model_server_test.py: testGetStatusREST
    (g3doc/api_rest.md's example)."""
    status, body = http_json("GET", endpoints().rest + "/v1/models/tiny")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert http_json("GET", endpoints().rest + "/v1/models/tiny/versions/1") == (200, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rest_metadata_json(exported, endpoints, backend):
    """model_servers/http_rest_api_handler_test.cc: GetModelMetadata; tensorflow_model_server_test.py:
    testGetModelMetadataREST; http_rest_api_util.cc ToJsonString (proto field names, fields without presence
    printed)."""
    status, body = http_json("GET", endpoints(backend).rest + "/v1/models/tiny/metadata")
    assert status == 200
    expected = json_format.MessageToDict(saved_model_signatures(exported), preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    assert body == {"model_spec": {"name": "tiny", "signature_name": "", "version": "1"},
                    "metadata": {"signature_def": expected}}
    images = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert images["tensor_shape"] == {"dim": [{"size": size, "name": ""} for size in ("-1", "32", "32", "3")],
                                      "unknown_rank": False}
    assert body["metadata"]["signature_def"]["signature_def"]["classify"]["method_name"] == CLASSIFY


@pytest.mark.parametrize("backend", BACKENDS)
def test_rest_predict_rows_and_columns_with_several_outputs(exported, endpoints, backend):
    """model_servers/http_rest_api_handler_test.cc: Predict; tensorflow_model_server_test.py: testPredictREST,
    testPredictColumnarREST; util/json_tensor_test.cc: FromJsonMultipleNamedTensors (several outputs: a list of
    objects in rows, an object of tensors in columns)."""
    url = endpoints(backend).rest + "/v1/models/tiny:predict"
    winners = [exported.class_names[i] for i in exported.expected[:2].argmax(1)]
    status, rows = http_json("POST", url, {"instances": exported.images[:2].tolist()})
    assert status == 200 and list(rows) == ["predictions"] and len(rows["predictions"]) == 2
    for row, probabilities, winner in zip(rows["predictions"], exported.expected[:2], winners):
        assert set(row) == {"probabilities", "class_ids", "class_names"}
        np.testing.assert_allclose(row["probabilities"], probabilities, atol=1e-4)
        assert row["class_ids"] == int(probabilities.argmax()) and row["class_names"] == winner
    status, columns = http_json("POST", url, {"inputs": {"images": exported.images[:2].tolist()}})
    assert status == 200 and list(columns) == ["outputs"]
    assert set(columns["outputs"]) == {"probabilities", "class_ids", "class_names"}
    np.testing.assert_allclose(columns["outputs"]["probabilities"], exported.expected[:2], atol=1e-4)
    assert columns["outputs"]["class_ids"] == exported.expected[:2].argmax(1).tolist()
    assert columns["outputs"]["class_names"] == winners


@pytest.mark.parametrize("backend", BACKENDS)
def test_rest_b64_instances_for_the_bytes_signature(exported, endpoints, backend):
    """util/json_tensor_test.cc: SingleUnnamedTensorBase64Scalars ({"b64": ...} elements fill a DT_STRING input);
    g3doc/api_rest.md "Encoding binary values"."""
    instances = [{"b64": base64.b64encode(data).decode()} for data in exported.encoded[:2]]
    status, body = http_json("POST", endpoints(backend).rest + "/v1/models/tiny:predict",
                             {"signature_name": "serving_bytes", "instances": instances})
    assert status == 200
    np.testing.assert_allclose([row["probabilities"] for row in body["predictions"]], exported.expected[:2],
                               atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rest_classify(exported, endpoints, backend):
    """model_servers/http_rest_api_handler_test.cc: Classify; tensorflow_model_server_test.py: testClassifyREST;
    util/json_tensor_test.cc: JsonFromClassificationResult ({"results": [[[label, score], ...], ...]})."""
    examples = [{"image/encoded": {"b64": base64.b64encode(data).decode()}} for data in exported.encoded[:2]]
    status, body = http_json("POST", endpoints(backend).rest + "/v1/models/tiny:classify",
                             {"signature_name": "classify", "examples": examples})
    assert status == 200 and list(body) == ["results"] and len(body["results"]) == 2
    for result, probabilities in zip(body["results"], exported.expected[:2]):
        assert [label for label, _ in result] == list(exported.class_names)
        np.testing.assert_allclose([score for _, score in result], probabilities, atol=1e-4)


REST_ERRORS = [  # method, path, body, HTTP status, exact message (None: only the status is upstream's)
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/models/tiny/version/1", None, 400, "Malformed request: GET /v1/models/tiny/version/1"),
    ("GET", "/v1/models/tiny/versions/HELLO", None, 400, "Malformed request: GET /v1/models/tiny/versions/HELLO"),
    ("POST", "/v1/models/tiny/versions/HELLO:regress", b"{}", 400,
     "Malformed request: POST /v1/models/tiny/versions/HELLO:regress"),
    ("POST", "/v1/models/tiny:PREDICT", b"{}", 400, "Malformed request: POST /v1/models/tiny:PREDICT"),
    ("POST", "/v1/models/tiny:predict", {"signature_name": 5}, 400, None),
    ("POST", "/v1/models/nope:predict", {"instances": [1]}, 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/tiny/versions/9:predict", {"instances": [1]}, 404,
     "Servable not found for request: Specific(tiny, 9)"),
    ("POST", "/v1/models/tiny/labels/x:predict", {"instances": [1]}, 400, "Unrecognized servable version label: x"),
    ("POST", "/v1/models/tiny:predict", {"signature_name": "x", "instances": [1]}, 400,
     'Serving signature name: "x" not found in signature def'),
    ("POST", "/v1/models/tiny:predict", b"", 400, "JSON Parse error: The document is empty"),
    ("POST", "/v1/models/tiny:predict", {"instances": ["x", "y"]}, 400, None),
    ("POST", "/v1/models/tiny:regress", {"examples": [{"image/encoded": {"b64": "aGk="}}]}, 400,
     "Expected one output Tensor."),
]


@pytest.mark.parametrize("method, path, body, status, message", REST_ERRORS,
                         ids=[f"{m} {p} {'' if b is None else json.dumps(b) if not isinstance(b, bytes) else b}"
                              for m, p, b, *_ in REST_ERRORS])
def test_rest_errors(endpoints, method, path, body, status, message):
    """model_servers/http_rest_api_handler_test.cc: UnsupportedApiCalls, PredictModelNameVersionErrors,
    PredictRequestErrors; http_rest_api_handler.cc ProcessRequest/GetInfoMap; http_server.cc ToHTTPStatusCode;
    util/json_tensor_test.cc: StatusError ({"error": message}); servables/tensorflow/regressor.cc
    PreProcessRegression."""
    got_status, got_message = http_error(method, endpoints().rest + path, body)
    assert got_status == status, got_message
    if message is not None:
        assert got_message == message
    elif isinstance(body, dict) and "signature_name" in body:
        assert "'signature_name' key must be a string value." in got_message
    else:
        assert "not of expected type: float" in got_message


def test_rest_an_integer_of_5000_digits_is_a_400_not_a_500(endpoints):
    """Python's int parser refuses more than 4300 digits; upstream's rapidjson would read it as a double. Either
    way it is the client's input: 400 with a JSON parse error, never a 500 and a traceback in the log."""
    status, message = http_error("POST", endpoints().rest + "/v1/models/tiny:predict",
                                 b'{"instances": [' + b"1" * 5000 + b"]}")
    assert status == 400 and message.startswith("JSON Parse error: "), message


def test_rest_version_beyond_int64_is_400(endpoints):
    """model_servers/http_rest_api_handler_test.cc: UnsupportedApiCalls ("Failed to convert version");
    http_rest_api_util.cc ParseModelInfo. Upstream returns this status before MakeJsonFromStatus, so its 400 has
    an empty body; ftx serve puts the same message in the usual {"error": ...} body (deliberately: an empty
    400 tells a user nothing)."""
    for method, path in (("GET", "/v1/models/tiny/versions/99999999999999999999"),
                         ("POST", "/v1/models/tiny/versions/99999999999999999999:predict")):
        status, content_type, data = http(method, endpoints().rest + path, b"{}" if method == "POST" else None)
        assert (status, content_type.split(";")[0]) == (400, "application/json"), (method, data)
        assert json.loads(data) == {"error": "Failed to convert version: 99999999999999999999 to numeric."}


# Prometheus

SAMPLE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*'
                    r'(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})?'
                    r' (-?[0-9][0-9.eE+-]*|NaN|[+-]Inf)')


def metrics_page(endpoint: Endpoint) -> str:
    status, content_type, data = http("GET", endpoint.rest + METRICS_PATH)
    assert status == 200 and content_type.startswith("text/plain")
    return data.decode()


def test_prometheus_counts_a_grpc_predict(exported, endpoints):
    """servables/tensorflow/util.cc (metric names :tensorflow:serving:request_count{model_name,status},
    request_latency{model_name,API,entrypoint}); util/prometheus_exporter_test.cc: Counter, Histogram (line
    format); tensorflow_model_server_test.py: testPrometheusEndpoint."""
    endpoint = endpoints()
    endpoint.prediction.Predict(predict_request(exported.images[:1]), timeout=60)
    page = metrics_page(endpoint)
    assert "# TYPE :tensorflow:serving:request_count counter" in page
    assert re.search(r'^:tensorflow:serving:request_count\{model_name="tiny",status="OK"\} [1-9][0-9]*$', page, re.M)
    assert ':tensorflow:serving:request_latency_bucket{model_name="tiny",API="Predict",entrypoint="GRPC",le=' in page


def histogram_totals(page: str, family: str, labels: str) -> tuple[int, float]:
    """(count, sum in microseconds) of one label set of a histogram on a Prometheus page."""
    count = re.search(rf"^{re.escape(family)}_count\{{{re.escape(labels)}\}} ([0-9]+)$", page, re.M)
    total = re.search(rf"^{re.escape(family)}_sum\{{{re.escape(labels)}\}} ([0-9.e+-]+)$", page, re.M)
    assert count and total, f"no {family}{{{labels}}} on the page:\n{page}"
    return int(count[1]), float(total[1])


@pytest.mark.parametrize("backend, runtime", [("onnx", "onnxruntime"), ("savedmodel", "tensorflow")])
def test_prometheus_runtime_latency_is_recorded_inside_each_request(exported, backend, runtime):
    """servables/tensorflow/util.cc: runtime_latency{model_name,API,runtime}, recorded by predict_util.cc and
    classifier.cc around the session's Run with API "Predict"/"Classify" whichever entrypoint asked (REST's
    request_latency says "predict", http_server.cc). Each request's runtime time is part of its request time."""
    endpoint = Endpoint(start_server(exported.base, backend))
    try:
        for row in range(3):
            endpoint.prediction.Predict(predict_request(exported.images[row:row + 1]), timeout=60)
        status, _, _ = http("POST", endpoint.rest + "/v1/models/tiny:predict",
                            {"instances": exported.images[:2].tolist()})
        assert status == 200
        page = metrics_page(endpoint)
    finally:
        endpoint.close()
    grpc_count, grpc_us = histogram_totals(page, ":tensorflow:serving:request_latency",
                                           'model_name="tiny",API="Predict",entrypoint="GRPC"')
    rest_count, rest_us = histogram_totals(page, ":tensorflow:serving:request_latency",
                                           'model_name="tiny",API="predict",entrypoint="REST"')
    runtime_count, runtime_us = histogram_totals(page, ":tensorflow:serving:runtime_latency",
                                                 f'model_name="tiny",API="Predict",runtime="{runtime}"')
    assert (grpc_count, rest_count, runtime_count) == (3, 1, 4)
    assert 0 < runtime_us < grpc_us + rest_us
    assert ":tensorflow:serving:batching_session:queuing_latency" not in page  # no batching, no queue


def test_prometheus_page_stays_well_formed_with_a_hostile_model_name(endpoints):
    """util/prometheus_exporter_test.cc: SanitizeLabelValue (label values are escaped); every sample line must
    still parse as Prometheus' text format when a request names the model 'a"b<newline>c'."""
    endpoint = endpoints()
    hostile = 'a"b\nc'
    assert rpc_error(endpoint.prediction.Predict, predict_request(np.zeros((1, 32, 32, 3), np.float32),
                                                                  model=hostile))[0] == "NOT_FOUND"
    status, _ = http_error("POST", endpoint.rest + "/v1/models/" + urllib.parse.quote(hostile, safe="") + ":predict",
                           {"instances": [1]})
    assert status == 404
    for line in metrics_page(endpoint).splitlines():
        if line and not line.startswith("#"):
            assert SAMPLE.fullmatch(line), line


def test_prometheus_page_does_not_grow_with_unknown_model_names(endpoints):
    """util/prometheus_exporter.cc serialises one line per label set; upstream's RecordModelRequestCount
    (servables/tensorflow/util.cc) would add one per requested name. ftx bounds this on purpose (serving/metrics.py):
    500 distinct unknown names add at most a handful of lines."""
    endpoint = endpoints()
    before = len(metrics_page(endpoint).splitlines())
    for index in range(500):
        code, _ = rpc_error(endpoint.prediction.Predict, predict_request(np.zeros((1, 1), np.float32),
                                                                         model=f"unknown-{index}"))
        assert code == "NOT_FOUND"
    assert len(metrics_page(endpoint).splitlines()) - before <= 5


# Upstream example clients, run as they are


@pytest.fixture(scope="module")
def scaled_image(exported, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 32 px PNG of a test image and the Keras probabilities for it scaled by 1/255, as the clients send it."""
    from PIL import Image

    path = tmp_path_factory.mktemp("client") / "image.png"
    pixels = exported.images[0].astype(np.uint8)
    Image.fromarray(pixels).save(path)
    scaled = np.expand_dims(np.array(Image.open(path)) / 255.0, 0).astype(np.float32)
    return path, exported.keras.predict(scaled, verbose=0)[0]


def run_client(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(UPSTREAM_CLIENTS / script)], capture_output=True, text=True,
                          timeout=240, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})


@pytest.mark.parametrize("backend", BACKENDS)
def test_upstream_resnet_client_grpc(endpoints, scaled_image, backend):
    """example/resnet_client_grpc.py (tests/data/upstream/resnet_client_grpc.py: only server, model, input,
    output names and the image source changed)."""
    path, probabilities = scaled_image
    endpoint = endpoints(backend)
    result = run_client("resnet_client_grpc.py", RESNET_CLIENT_SERVER=f"127.0.0.1:{endpoint.server.grpc_port}",
                        RESNET_CLIENT_IMAGE=str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"Prediction class: {probabilities.argmax()}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_upstream_resnet_client_rest(endpoints, scaled_image, backend):
    """example/resnet_client.py (tests/data/upstream/resnet_client.py: only SERVER_URL, the model name and the
    image source changed): 13 POSTs, each raise_for_status()."""
    from PIL import Image

    path, probabilities = scaled_image
    endpoint = endpoints(backend)
    result = run_client("resnet_client.py", RESNET_CLIENT_REST=f"127.0.0.1:{endpoint.server.rest_port}",
                        RESNET_CLIENT_IMAGE=str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    # With ftx's three-output signature predictions[0] is an object, exactly as TF Serving answers a multi-output
    # signature (json_tensor.cc MakeJsonFromTensors), so the client's printed np.argmax is not meaningful; the
    # same request body, sent here, must give Keras' probabilities in that object.
    assert result.stdout.startswith("Prediction class: ")
    body = json.dumps({"instances": np.expand_dims(np.array(Image.open(io.BytesIO(path.read_bytes()))) / 255.0,
                                                   0).tolist()}).encode()
    status, answer = http_json("POST", endpoint.rest + "/v1/models/tiny:predict", body)
    assert status == 200
    np.testing.assert_allclose(answer["predictions"][0]["probabilities"], probabilities, atol=1e-4)
