"""``ftx serve --backend savedmodel`` on a SavedModel ftx did not export (Keras' ``model.export``), as TF Serving serves it.

Follows tensorflow_model_server_test.py (test_sequential_keras_saved_model_save: a Keras model saved by Keras, served,
Predict answers like the model) and saved_model_warmup_test.cc (warmup records replayed at load; a bad record fails
the load).
"""

from __future__ import annotations

import json
import shutil
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc)

from serving.loader import VersionLoader
from serving.model_store import ModelStore
from serving.server import ModelServer, ServerLimits
from serving.tfs_config import ModelEntry


@pytest.fixture(scope="module")
def keras_export(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="input_1")
    hidden = keras.layers.Dense(6, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="activation_49")(hidden))
    base = tmp_path_factory.mktemp("plain") / "resnet"
    model.export(str(base / "1"))
    images = np.random.default_rng(0).uniform(0, 1, (5, 8, 8, 3)).astype(np.float32)
    return base, images, model.predict(images, verbose=0)


def serve(base):
    store = ModelStore([ModelEntry("resnet", str(base))], VersionLoader("savedmodel", 1))
    store.start(0)
    return ModelServer(store, 0, 0, ServerLimits()).start()


def _predict(server, images, name="input_1"):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "resnet"
        request.inputs[name].CopyFrom(tf.make_tensor_proto(images))
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def test_predict_grpc_and_rest_answer_like_the_keras_model(keras_export):
    base, images, expected = keras_export
    server = serve(base)
    try:
        response = _predict(server, images)
        (alias,) = response.outputs
        output = response.outputs[alias]
        assert output.tensor_content == b"" and len(output.float_val) == expected.size  # typed fields, as upstream
        np.testing.assert_allclose(tf.make_ndarray(output), expected, atol=1e-6)
        body = json.dumps({"instances": images.tolist()}).encode()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/resnet:predict", data=body) as r:
            rows = json.loads(r.read())["predictions"]
        # one output: each prediction is the plain list (api_rest.md "we omit the name")
        np.testing.assert_allclose(np.array(rows), expected, atol=1e-6)
        with pytest.raises(grpc.RpcError) as caught:
            _predict(server, images, name="pixels")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Signature input alias: input_1(feed name: serving_default_input_1:0) not found" in caught.value.details()
    finally:
        server.stop(1)


def test_metadata_is_the_saved_models_own(keras_export):
    from tensorflow.python.tools import saved_model_utils
    from tensorflow_serving.apis import get_model_metadata_pb2

    base, _, _ = keras_export
    server = serve(base)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            request.model_spec.name = "resnet"
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=30)
        served = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(served)
        own = saved_model_utils.get_meta_graph_def(str(base / "1"), "serve").signature_def
        assert dict(served.signature_def) == dict(own)
    finally:
        server.stop(1)


def _write_warmup(version_dir, logs):
    extra = version_dir / "assets.extra"
    extra.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:  # TensorFlow's own writer
        for log in logs:
            writer.write(log.SerializeToString())


def _warmup_log(images, name="input_1"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "resnet"
    request.inputs[name].CopyFrom(tf.make_tensor_proto(images))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def test_warmup_records_are_replayed_and_a_bad_one_fails_the_load(keras_export, tmp_path):
    base, images, _ = keras_export
    good, bad = tmp_path / "good" / "resnet", tmp_path / "bad" / "resnet"
    shutil.copytree(base / "1", good / "1")
    shutil.copytree(base / "1", bad / "1")
    _write_warmup(good / "1", [_warmup_log(images[:1]), _warmup_log(images[:2])])
    _write_warmup(bad / "1", [_warmup_log(images[:1]), _warmup_log(images[:1], name="pixels")])
    calls = []
    loader = VersionLoader("savedmodel", 1)
    store = ModelStore([ModelEntry("resnet", str(good))], loader)
    original = store._load

    def counting(name, version, path):
        servable = original(name, version, path)
        calls.append(version)
        return servable

    store._load = counting
    store.start(0)
    try:
        assert store.states("resnet")[1].state == "AVAILABLE" and calls == [1]
    finally:
        store.stop()
    store = ModelStore([ModelEntry("resnet", str(bad))], loader)
    store.start(0)
    try:
        state = store.states("resnet")[1]
        assert state.state == "END" and state.error_code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Signature input alias: input_1" in state.error_message
    finally:
        store.stop()


def test_status_of_a_failed_plain_savedmodel_over_grpc(keras_export, tmp_path):
    """get_model_status_impl.cc: a failed load is END with the loader's error code and message."""
    base, _, _ = keras_export
    broken = tmp_path / "resnet"
    shutil.copytree(base / "1", broken / "1")
    (broken / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    server = serve(broken)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "resnet"
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
        (entry,) = status.model_version_status
        assert entry.version == 1 and entry.state == get_model_status_pb2.ModelVersionStatus.END
        assert entry.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "saved_model.pb is not a readable SavedModel" in entry.status.error_message
    finally:
        server.stop(1)


def test_upstream_rest_client_on_a_single_output_model(keras_export, tmp_path):
    """example/resnet_client.py (tests/data/upstream/resnet_client.py): on a one-output model its
    ``np.argmax(predictions[0])`` is the class, as against TF Serving; it must print Keras' class."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import keras
    from PIL import Image

    base, _, _ = keras_export
    served = tmp_path / "tiny"  # the client's copy asks for model 'tiny'
    shutil.copytree(base / "1", served / "1")
    model = keras.layers.TFSMLayer(str(base / "1"), call_endpoint="serving_default")
    for seed in range(50):  # an image whose class is not 0, so a client printing argmax of an object (0) fails
        pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        (expected,) = model(pixels[None].astype(np.float32) / 255.0).values()
        if int(np.argmax(expected)) != 0:
            break
    Image.fromarray(pixels).save(tmp_path / "image.png")
    store = ModelStore([ModelEntry("tiny", str(served))], VersionLoader("savedmodel", 1))
    store.start(0)
    server = ModelServer(store, 0, 0, ServerLimits()).start()
    try:
        client = Path(__file__).parent / "data" / "upstream" / "resnet_client.py"
        result = subprocess.run([sys.executable, str(client)], capture_output=True, text=True, timeout=240,
                                env={**os.environ, "RESNET_CLIENT_REST": f"127.0.0.1:{server.rest_port}",
                                     "RESNET_CLIENT_IMAGE": str(tmp_path / "image.png"), "TF_CPP_MIN_LOG_LEVEL": "3"})
    finally:
        server.stop(1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(np.argmax(expected)) != 0
    assert result.stdout.startswith(f"Prediction class: {int(np.argmax(expected))}, avg latency: ")
