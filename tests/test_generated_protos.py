"""serving/generated/ against the real thing: no drift, the same bytes, the same RPCs, no TensorFlow.

TensorFlow and tensorflow-serving-api are the oracle here. Every message is
built by one function over a namespace of modules, once with upstream's and
once with the generated ones, so both directions are checked with the same
contents; the last tests prove the generated package imports without either.
"""

from __future__ import annotations

import importlib
import json
import pickle
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool, message
from google.protobuf.internal import enum_type_wrapper

from serving.generated import regenerate

ROOT = Path(__file__).resolve().parents[1]
GENERATED_DIR = ROOT / "serving" / "generated"
MIRRORED = {upstream.rsplit(".", 1)[1]: upstream for upstream in regenerate.UPSTREAM_MODULES}
MIRRORED.update({name: f"tensorflow_serving.apis.{name}" for name in regenerate.GRPC_MODULES})


@pytest.fixture(scope="module")
def upstream() -> SimpleNamespace:
    return SimpleNamespace(**{name: importlib.import_module(path) for name, path in MIRRORED.items()})


@pytest.fixture(scope="module")
def generated() -> SimpleNamespace:
    return SimpleNamespace(**{name: importlib.import_module(f"serving.generated.{name}") for name in MIRRORED})


# --- one builder per message type, over a namespace `m` of modules -------------------------------------------

def _spec(target, label: bool = False) -> None:
    target.name, target.signature_name = "flowers", "serving_default"
    if label:
        target.version_label = "stable"
    else:
        target.version.value = 3


def tensor(m):
    proto = m.tensor_pb2.TensorProto(dtype=m.types_pb2.DT_FLOAT,
                                     tensor_content=np.arange(6, dtype=np.float32).tobytes())
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=3, name="classes")
    return proto


def _strings(m):
    proto = m.tensor_pb2.TensorProto(dtype=m.types_pb2.DT_STRING, string_val=[b"daisy", b"\xff\x00rose"])
    proto.tensor_shape.dim.add(size=2)
    return proto


def example(m):
    proto = m.example_pb2.Example()
    proto.features.feature["image/encoded"].bytes_list.value.append(b"\x89PNG\r\n")
    proto.features.feature["weights"].float_list.value.extend([0.25, -2.0])
    proto.features.feature["id"].int64_list.value.append(-7)
    return proto


def predict_request(m):
    request = m.predict_pb2.PredictRequest(output_filter=["probs"])
    _spec(request.model_spec)
    request.inputs["images"].CopyFrom(tensor(m))
    request.inputs["names"].CopyFrom(_strings(m))
    return request


def predict_response(m):
    response = m.predict_pb2.PredictResponse()
    _spec(response.model_spec, label=True)
    response.outputs["probs"].CopyFrom(tensor(m))
    response.outputs["classes"].CopyFrom(_strings(m))
    return response


def classification_request(m):
    request = m.classification_pb2.ClassificationRequest()
    _spec(request.model_spec)
    request.input.example_list.examples.extend([example(m), m.example_pb2.Example()])
    return request


def classification_response(m):
    response = m.classification_pb2.ClassificationResponse()
    _spec(response.model_spec)
    response.result.classifications.add().classes.add(label="daisy", score=0.75)
    return response


def regression_request(m):
    request = m.regression_pb2.RegressionRequest()
    _spec(request.model_spec)
    request.input.example_list_with_context.examples.append(example(m))
    request.input.example_list_with_context.context.CopyFrom(example(m))
    return request


def regression_response(m):
    response = m.regression_pb2.RegressionResponse()
    _spec(response.model_spec)
    response.result.regressions.add(value=1.5)
    return response


def multi_inference_request(m):
    request = m.inference_pb2.MultiInferenceRequest()
    for method in ("tensorflow/serving/classify", "tensorflow/serving/regress"):
        _spec(request.tasks.add(method_name=method).model_spec)
    request.input.example_list.examples.append(example(m))
    return request


def multi_inference_response(m):
    response = m.inference_pb2.MultiInferenceResponse()
    response.results.add().classification_result.CopyFrom(classification_response(m).result)
    response.results.add().regression_result.CopyFrom(regression_response(m).result)
    return response


def get_model_metadata_request(m):
    request = m.get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _spec(request.model_spec)
    return request


def signature_def_map(m):
    signatures = m.get_model_metadata_pb2.SignatureDefMap()
    signature = signatures.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    images = signature.inputs["images"]
    images.name, images.dtype = "serving_default_images:0", m.types_pb2.DT_FLOAT
    for size in (-1, 224, 224, 3):
        images.tensor_shape.dim.add(size=size)
    signature.outputs["probs"].name = "StatefulPartitionedCall:0"
    signature.outputs["probs"].dtype = m.types_pb2.DT_FLOAT
    return signatures


def get_model_metadata_response(m):
    response = m.get_model_metadata_pb2.GetModelMetadataResponse()
    _spec(response.model_spec)
    response.metadata["signature_def"].Pack(signature_def_map(m))
    return response


def get_model_status_request(m):
    request = m.get_model_status_pb2.GetModelStatusRequest()
    _spec(request.model_spec)
    return request


def get_model_status_response(m):
    status = m.get_model_status_pb2.ModelVersionStatus
    response = m.get_model_status_pb2.GetModelStatusResponse()
    response.model_version_status.add(version=3, state=status.AVAILABLE)
    failed = response.model_version_status.add(version=2, state=status.END)
    failed.status.error_code, failed.status.error_message = m.error_codes_pb2.NOT_FOUND, "gone"
    return response


def model_server_config(m):
    config = m.model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name="flowers", base_path="/models/flowers",
                                                model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend([1, 3])
    model.version_labels["stable"] = 3
    model.logging_config.sampling_config.sampling_rate = 0.5
    model.logging_config.log_collector_config.filename_prefix = "/logs/flowers"
    return config


def reload_config_request(m):
    request = m.model_management_pb2.ReloadConfigRequest(metric_names=["reloads"])
    request.config.CopyFrom(model_server_config(m))
    return request


def reload_config_response(m):
    response = m.model_management_pb2.ReloadConfigResponse()
    response.status.error_code = m.error_codes_pb2.INVALID_ARGUMENT
    response.status.error_message = "bad base_path"
    response.metric.add(name="reloads", int64_value_increase=1)
    return response


def prediction_log(m):
    log = m.prediction_log_pb2.PredictionLog()
    _spec(log.log_metadata.model_spec)
    log.log_metadata.sampling_config.sampling_rate = 0.25
    log.log_metadata.saved_model_tags.append("serve")
    log.log_metadata.timestamp_secs = 1_700_000_000
    log.predict_log.request.CopyFrom(predict_request(m))
    log.predict_log.response.CopyFrom(predict_response(m))
    return log


BUILDERS = [tensor, example, predict_request, predict_response, classification_request, classification_response,
            regression_request, regression_response, multi_inference_request, multi_inference_response,
            get_model_metadata_request, get_model_metadata_response, signature_def_map, get_model_status_request,
            get_model_status_response, model_server_config, reload_config_request, reload_config_response,
            prediction_log]


# --- drift and descriptors ------------------------------------------------------------------------------------

def test_committed_files_match_a_fresh_regeneration(tmp_path):
    regenerate.generate(tmp_path)
    fresh = {path.name: path.read_bytes() for path in tmp_path.glob("*.py")}
    committed = {path.name: path.read_bytes() for path in GENERATED_DIR.glob("*.py")
                 if path.read_text().startswith(regenerate.HEADER_PREFIX)}
    assert sorted(committed) == sorted(fresh), "run: python -m serving.generated.regenerate"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}; run: python -m serving.generated.regenerate"


def _public_names(module) -> set[str]:
    def exported(value) -> bool:
        return (isinstance(value, (int, enum_type_wrapper.EnumTypeWrapper))
                or isinstance(value, type) and issubclass(value, message.Message))
    return {name for name, value in vars(module).items() if not name.startswith("_") and exported(value)}


@pytest.mark.parametrize("name", [name for name in MIRRORED if not name.endswith("_grpc")])
def test_module_mirrors_upstream(name, upstream, generated):
    ours, theirs = getattr(generated, name), getattr(upstream, name)
    assert ours.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb
    assert _public_names(ours) == _public_names(theirs)
    for attribute in _public_names(theirs):
        value = getattr(theirs, attribute)
        if isinstance(value, int):
            assert getattr(ours, attribute) == value, attribute
        elif isinstance(value, type):
            assert getattr(ours, attribute).DESCRIPTOR.full_name == value.DESCRIPTOR.full_name


@pytest.mark.parametrize("name", [name for name in MIRRORED if name.endswith("_grpc")])
def test_grpc_module_has_upstreams_public_names(name, upstream, generated):
    def public(module) -> set[str]:  # the Stub, the Servicer and add_*_to_server, not what the module imports
        return {key for key, value in vars(module).items()
                if not key.startswith("_") and callable(value) and value.__module__ == module.__name__}
    assert public(getattr(generated, name)) == public(getattr(upstream, name))


# --- wire identity --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", BUILDERS, ids=lambda build: build.__name__)
def test_same_bytes_both_ways(build, upstream, generated):
    theirs, ours = build(upstream), build(generated)
    assert type(ours).DESCRIPTOR.full_name == type(theirs).DESCRIPTOR.full_name
    their_bytes, our_bytes = theirs.SerializeToString(deterministic=True), ours.SerializeToString(deterministic=True)
    assert len(their_bytes) > 8 and our_bytes == their_bytes
    parsed_here = type(ours).FromString(their_bytes)
    assert parsed_here == ours and parsed_here.SerializeToString(deterministic=True) == their_bytes
    parsed_there = type(theirs).FromString(our_bytes)
    assert parsed_there == theirs and parsed_there.SerializeToString(deterministic=True) == our_bytes


def test_any_keeps_upstreams_type_url(upstream, generated):
    response = get_model_metadata_response(generated)
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    received = upstream.get_model_metadata_pb2.GetModelMetadataResponse.FromString(response.SerializeToString())
    signatures = upstream.get_model_metadata_pb2.SignatureDefMap()
    assert received.metadata["signature_def"].Unpack(signatures) and signatures == signature_def_map(upstream)
    back = generated.get_model_metadata_pb2.GetModelMetadataResponse.FromString(
        get_model_metadata_response(upstream).SerializeToString())
    ours = generated.get_model_metadata_pb2.SignatureDefMap()
    assert back.metadata["signature_def"].Unpack(ours) and ours == signature_def_map(generated)


def test_classes_named_as_upstream_and_top_level_ones_pickle(generated):
    """Pickle finds a top-level class by module and name; protobuf sends nested ones to the default pool."""
    dim = generated.tensor_shape_pb2.TensorShapeProto.Dim
    assert (dim.__module__, dim.__qualname__) == ("serving.generated.tensor_shape_pb2", "TensorShapeProto.Dim")
    for value in (predict_request(generated), get_model_status_response(generated)):
        assert type(pickle.loads(pickle.dumps(value))) is type(value)
        assert pickle.loads(pickle.dumps(value)) == value


def test_no_clash_with_tensorflows_definitions(upstream, generated):
    theirs, ours = upstream.predict_pb2.PredictRequest, generated.predict_pb2.PredictRequest
    assert ours is not theirs and ours.DESCRIPTOR.full_name == theirs.DESCRIPTOR.full_name
    assert theirs.DESCRIPTOR.file.pool is descriptor_pool.Default()
    assert ours.DESCRIPTOR.file.pool is not descriptor_pool.Default()
    assert ours.FromString(predict_request(upstream).SerializeToString()) == predict_request(generated)
    with pytest.raises(TypeError):
        ours().CopyFrom(theirs())


# --- gRPC, both ways ------------------------------------------------------------------------------------------
# What a server answers, as a function of the request; the client expects the same function of what it sent.

def echo_classify(m, request):
    response = m.classification_pb2.ClassificationResponse(model_spec=request.model_spec)
    for sent in request.input.example_list.examples:
        response.result.classifications.add().classes.add(label=",".join(sorted(sent.features.feature)),
                                                          score=len(sent.features.feature))
    return response


def echo_regress(m, request):
    response = m.regression_pb2.RegressionResponse(model_spec=request.model_spec)
    response.result.regressions.add(value=len(request.input.example_list_with_context.examples))
    return response


def echo_predict(m, request):
    response = m.predict_pb2.PredictResponse(model_spec=request.model_spec)
    for key, value in request.inputs.items():
        response.outputs[key].CopyFrom(value)
    return response


def echo_multi_inference(m, request):
    response = m.inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        result = response.results.add(model_spec=task.model_spec)
        result.regression_result.regressions.add(value=len(task.method_name))
    return response


def echo_get_model_metadata(m, request):
    response = m.get_model_metadata_pb2.GetModelMetadataResponse(model_spec=request.model_spec)
    for field in request.metadata_field:
        response.metadata[field].Pack(signature_def_map(m))
    return response


def echo_get_model_status(m, request):
    response = m.get_model_status_pb2.GetModelStatusResponse()
    response.model_version_status.add(version=request.model_spec.version.value,
                                      state=m.get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    return response


def echo_reload(m, request):
    response = m.model_management_pb2.ReloadConfigResponse()
    response.status.error_message = ",".join(model.name for model in request.config.model_config_list.config)
    for name in request.metric_names:
        response.metric.add(name=name, int64_value_increase=1)
    return response


RPCS = {  # method -> (stub module, stub class, request builder, echo)
    "Classify": ("prediction_service_pb2_grpc", "PredictionServiceStub", classification_request, echo_classify),
    "Regress": ("prediction_service_pb2_grpc", "PredictionServiceStub", regression_request, echo_regress),
    "Predict": ("prediction_service_pb2_grpc", "PredictionServiceStub", predict_request, echo_predict),
    "MultiInference": ("prediction_service_pb2_grpc", "PredictionServiceStub", multi_inference_request,
                       echo_multi_inference),
    "GetModelMetadata": ("prediction_service_pb2_grpc", "PredictionServiceStub", get_model_metadata_request,
                         echo_get_model_metadata),
    "GetModelStatus": ("model_service_pb2_grpc", "ModelServiceStub", get_model_status_request,
                       echo_get_model_status),
    "HandleReloadConfigRequest": ("model_service_pb2_grpc", "ModelServiceStub", reload_config_request,
                                  echo_reload),
}


def start_echo_server(m) -> tuple[grpc.Server, int]:
    """A server on 127.0.0.1 built only from namespace ``m``'s servicers and ``add_*`` functions."""
    class Predictions(m.prediction_service_pb2_grpc.PredictionServiceServicer):
        def Classify(self, request, context):  # noqa: N802 - gRPC's method names
            return echo_classify(m, request)

        def Regress(self, request, context):  # noqa: N802
            return echo_regress(m, request)

        def Predict(self, request, context):  # noqa: N802
            return echo_predict(m, request)

        def MultiInference(self, request, context):  # noqa: N802
            return echo_multi_inference(m, request)

        def GetModelMetadata(self, request, context):  # noqa: N802
            return echo_get_model_metadata(m, request)

    class Models(m.model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):  # noqa: N802
            return echo_get_model_status(m, request)

        def HandleReloadConfigRequest(self, request, context):  # noqa: N802
            return echo_reload(m, request)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    m.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Predictions(), server)
    m.model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture(scope="module", params=["generated-server", "upstream-server"])
def client(request, upstream, generated):
    """(client namespace, channel) to an echo server built from the other namespace."""
    server_side, client_side = (generated, upstream) if request.param == "generated-server" else (upstream, generated)
    server, port = start_echo_server(server_side)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield client_side, channel
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize("method", RPCS)
def test_rpc_between_generated_and_upstream(method, client):
    m, channel = client
    stub_module, stub_class, build, echo = RPCS[method]
    stub = getattr(getattr(m, stub_module), stub_class)(channel)
    sent = build(m)
    answer = getattr(stub, method)(sent, timeout=10)
    assert answer == echo(m, sent)


def test_generated_servicer_answers_unimplemented(upstream, generated):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    generated.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        generated.prediction_service_pb2_grpc.PredictionServiceServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = upstream.prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(predict_request(upstream), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(grace=None)


# --- the edge install: no TensorFlow at any depth -------------------------------------------------------------

NO_TENSORFLOW = """
import importlib, json, sys
sys.modules["tensorflow"] = None  # what an install without them looks like: importing them fails
sys.modules["tensorflow_serving"] = None
try:
    import tensorflow
except ImportError:
    pass
else:
    sys.exit("tensorflow was not blocked")
for name in json.loads(sys.argv[1]):
    importlib.import_module("serving.generated." + name)
from serving.generated import predict_pb2, types_pb2
request = predict_pb2.PredictRequest()
request.inputs["x"].dtype = types_pb2.DT_FLOAT
assert predict_pb2.PredictRequest.FromString(request.SerializeToString()) == request
print(json.dumps(sorted(n for n, m in sys.modules.items() if m is not None and n.startswith("tensorflow"))))
"""


TENSORFLOW_AFTER = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module("serving.generated." + name)
from serving.generated import predict_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2 as upstream
import tensorflow as tf
request = upstream.PredictRequest()
request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
sent = request.SerializeToString(deterministic=True)
received = predict_pb2.PredictRequest.FromString(sent)
assert received.inputs["x"].dtype == types_pb2.DT_FLOAT
assert received.SerializeToString(deterministic=True) == sent
"""


def test_tensorflow_imports_after_the_generated_modules():
    """The other order from test_no_clash_with_tensorflows_definitions, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", TENSORFLOW_AFTER, json.dumps(sorted(MIRRORED))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]


def test_imports_without_tensorflow():
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, json.dumps(sorted(MIRRORED))], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
