"""ftx serve end to end: a real export, a real server on 127.0.0.1, real gRPC and HTTP, the ftx client."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from export.run_dir import read_run
from export.samples import load_samples
from export.savedmodel import load_keras_model
from serving.client import ClientError, ClientOptions, GrpcClient, RestClient
from serving.loader import VersionLoader
from serving.model_store import ModelStore
from serving.server import ModelServer, ServerLimits
from serving.tfs_config import BatchingSettings, ModelEntry, VersionPolicy


@pytest.fixture(scope="module")
def exported(tiny_export, tiny_run):
    """Version 1 of model 'tiny' (SavedModel + ONNX), the Keras reference and real test images."""
    run = read_run(tiny_run)
    samples = load_samples(run, 12)
    expected = load_keras_model(run).predict(samples.images, verbose=0)
    return tiny_export, run, samples, expected


def start(base, backend="onnx", batching=None, limits=None, policy=VersionPolicy(), labels=None, poll=0.0):
    entry = ModelEntry("tiny", str(base), policy, labels or {})
    store = ModelStore([ModelEntry("tiny", str(base), policy)], VersionLoader(backend, 1, batching=batching))
    store.start(poll)
    store.reconfigure([entry])
    return ModelServer(store, 0, 0, limits or ServerLimits()).start()


@pytest.fixture(scope="module")
def server(exported):
    server = start(exported[0], labels={"stable": 1})
    yield server
    server.stop(1)


def grpc_client(server, **options) -> GrpcClient:
    return GrpcClient(f"127.0.0.1:{server.grpc_port}", ClientOptions("tiny", **options))


def rest_client(server, **options) -> RestClient:
    return RestClient(f"127.0.0.1:{server.rest_port}", ClientOptions("tiny", **options))


@pytest.mark.parametrize("backend", ["onnx", "savedmodel"])
def test_grpc_predictions_equal_the_keras_model(exported, backend):
    base, run, samples, expected = exported
    server = start(base, backend)
    try:
        with grpc_client(server, batch_size=5) as client:  # 12 images: three requests
            tensor = client.predict(samples.images)
            encoded = client.predict_bytes(list(samples.encoded))
            classified = client.classify(list(samples.encoded))
            assert client.status() == [(1, "AVAILABLE")]
            signatures = client.signatures()
    finally:
        server.stop(1)
    np.testing.assert_allclose(tensor.probabilities, expected, atol=1e-4)
    assert tensor.class_names == [run.class_names[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(encoded.probabilities, expected, atol=1e-4)  # the bytes path decodes like training
    np.testing.assert_allclose([[score for _, score in row] for row in classified], expected, atol=1e-4)
    assert [label for label, _ in classified[0]] == list(run.class_names)
    assert signatures["serving_default"]["inputs"] == {"images": ("DT_FLOAT", [-1, 32, 32, 3])}
    assert signatures["serving_bytes"]["inputs"] == {"images_bytes": ("DT_STRING", [-1])}
    assert set(signatures) == {"serving_default", "serving_bytes", "serving_examples", "classify",
                               "__saved_model_init_op"}  # verbatim, as TF Serving answers


def test_rest_rows_columns_b64_and_labels(server, exported):
    _, run, samples, expected = exported
    client = rest_client(server, label="stable")
    np.testing.assert_allclose(client.predict(samples.images[:3]).probabilities, expected[:3], atol=1e-4)
    np.testing.assert_allclose(client.predict_bytes(list(samples.encoded[:3])).probabilities, expected[:3], atol=1e-4)
    assert client.status() == [(1, "AVAILABLE")]
    assert [label for label, _ in client.classify(list(samples.encoded[:1]))[0]] == list(run.class_names)
    columnar = json.dumps({"signature_name": "serving_bytes", "inputs": {"images_bytes": [
        {"b64": base64.b64encode(samples.encoded[0]).decode()}]}}).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/tiny/versions/1:predict",
                                data=columnar) as response:
        outputs = json.loads(response.read())["outputs"]
    np.testing.assert_allclose(outputs["probabilities"], expected[:1], atol=1e-4)
    assert outputs["class_names"] == [run.class_names[expected[0].argmax()]]
    metadata = client.metadata()["metadata"]["signature_def"]["signature_def"]
    assert metadata["serving_default"]["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert metadata["serving_default"]["inputs"]["images"]["tensor_shape"]["dim"][1] == {"size": "32", "name": ""}


def _raw_predict(server, signature, name, value, model="tiny", version=None):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    try:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    finally:
        channel.close()


def _tiff() -> bytes:
    """A TIFF: training reads it (through PIL), the SavedModel's serving_bytes under TF Serving does not."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, "TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("signature, name, value, model, version, code, message", [
    ("serving_default", "pixels", np.zeros((1, 32, 32, 3), np.float32), "tiny", None, "INVALID_ARGUMENT",
     r"Signature input alias: images\(feed name: serving_default_images:0\) not found in request"),
    ("serving_default", "images", np.array([b"x"], dtype=object), "tiny", None, "INVALID_ARGUMENT",
     r"Expects arg\[0\] to be float but string is provided"),
    ("serving_default", "images", np.zeros((1, 30, 32, 3), np.float32), "tiny", None, "INVALID_ARGUMENT",
     r"must have shape \[\?,32,32,3\], got \[1, 30, 32, 3\]"),
    ("serving_default", "images", np.zeros((1025, 32, 32, 3), np.float32), "tiny", None, "INVALID_ARGUMENT",
     "more than the maximum batch size 1024"),
    ("serving_bytes", "images_bytes", np.array([b"not an image"], dtype=object), "tiny", None, "INVALID_ARGUMENT",
     "cannot decode an image"),
    ("serving_bytes", "images_bytes", np.array([_tiff()], dtype=object), "tiny", None, "INVALID_ARGUMENT",
     r"cannot decode an image \(\d+ bytes\): not a JPEG, PNG, GIF or 24/32-bit BMP file"),  # as TF Serving
    ("serving_default", "images", np.zeros((1, 32, 32, 3), np.float32), "nope", None, "NOT_FOUND",
     r"^Servable not found for request: Latest\(nope\)$"),
    ("serving_default", "images", np.zeros((1, 32, 32, 3), np.float32), "tiny", 9, "NOT_FOUND",
     r"^Servable not found for request: Specific\(tiny, 9\)$"),
    ("serving_nope", "images", np.zeros((1, 32, 32, 3), np.float32), "tiny", None, "FAILED_PRECONDITION",
     '^Serving signature key "serving_nope" not found.$'),
])
def test_bad_requests_get_the_right_status_and_the_server_keeps_serving(server, exported, signature, name, value,
                                                                        model, version, code, message):
    with pytest.raises(grpc.RpcError) as caught:
        _raw_predict(server, signature, name, value, model, version)
    assert caught.value.code().name == code
    assert re.search(message, caught.value.details()), caught.value.details()
    images = exported[2].images[:2]
    response = _raw_predict(server, "serving_default", "images", images)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), exported[3][:2], atol=1e-4)


def test_unknown_label_and_oversized_messages(exported):
    server = start(exported[0], limits=ServerLimits(max_request_bytes=200_000))
    try:
        with pytest.raises(ClientError, match="INVALID_ARGUMENT: Unrecognized servable version label: canary"):
            grpc_client(server, label="canary").predict(exported[2].images[:1])
        big = np.zeros((64, 32, 32, 3), np.float32)  # 786 kB > 200 kB
        with pytest.raises(ClientError, match="RESOURCE_EXHAUSTED"):
            grpc_client(server, batch_size=64).predict(big)
        request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/tiny:predict",
                                         data=json.dumps({"instances": big.tolist()}).encode())
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request)
        assert caught.value.code == 413 and "larger than the limit of 200000" in json.loads(caught.value.read())["error"]
        for body, status, text in ((b"{not json", 400, "JSON Parse error"), (b'{"instances": [[1, 2], [3]]}', 400, "regular"),
                                   (b'{"instances": [], "inputs": []}', 400, "expecting only one of")):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/tiny:predict", data=body)
            assert caught.value.code == status and text in json.loads(caught.value.read())["error"]
        for example, text in (({"image": "x"}, "image/encoded"), ({"image/encoded": 3}, "image/encoded"),
                              ("not an object", "Example must be JSON object")):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/tiny:classify",
                                       data=json.dumps({"signature_name": "classify", "examples": [example]}).encode())
            assert caught.value.code == 400 and text in json.loads(caught.value.read())["error"]
        assert grpc_client(server).predict(exported[2].images[:1]).probabilities.shape == (1, 3)
    finally:
        server.stop(1)


def test_only_complete_integer_versions_are_served_and_new_ones_are_picked_up(exported, tmp_path):
    base = tmp_path / "tiny"
    shutil.copytree(exported[0] / "1", base / "1")
    (base / "3").mkdir()  # a copy in progress: no model.onnx yet
    shutil.copytree(exported[0] / "1", base / ".4.x.partial")  # ftx export's stage
    shutil.copytree(exported[0] / "1", base / "5.not_blessed")  # refused by the parity gate
    server = start(base, policy=VersionPolicy("all"), poll=0.1)
    try:
        client = grpc_client(server)
        assert client.status() == [(3, "END"), (1, "AVAILABLE")]  # 3 failed to load: no manifest yet
        shutil.copytree(exported[0] / "1", tmp_path / "stage")
        (tmp_path / "stage").rename(base / "2")
        for _ in range(100):
            if client.status() == [(3, "END"), (2, "AVAILABLE"), (1, "AVAILABLE")]:
                break
            threading.Event().wait(0.1)
        assert client.status() == [(3, "END"), (2, "AVAILABLE"), (1, "AVAILABLE")]
        assert _raw_predict(server, "serving_default", "images", exported[2].images[:1]).model_spec.version.value == 2
    finally:
        server.stop(1)


def test_concurrent_load_with_batching_and_a_new_version_under_load(exported, tmp_path):
    """16 clients x 150 requests; version 2 lands mid-run; zero errors, every response accounted for."""
    base = tmp_path / "tiny"
    shutil.copytree(exported[0] / "1", base / "1")
    batching = BatchingSettings(max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2,
                                max_enqueued_batches=100, allowed_batch_sizes=(2, 4, 8))
    server = start(base, batching=batching, poll=0.1)
    images, expected = exported[2].images, exported[3]
    errors, seen_versions, counts = [], set(), []
    lock = threading.Lock()
    halfway = threading.Event()

    def worker(index: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        done = 0
        for step in range(150):
            row = (index + step) % len(images)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "tiny"
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(images[row:row + 1]))
            try:
                response = stub.Predict(request, timeout=60)
                got = tf.make_ndarray(response.outputs["probabilities"])
                if not np.allclose(got, expected[row:row + 1], atol=1e-4):
                    raise AssertionError(f"wrong answer for image {row}")
                with lock:
                    seen_versions.add(response.model_spec.version.value)
                done += 1
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                with lock:
                    errors.append(repr(error))
            if index == 0 and step == 50:
                halfway.set()
        with lock:
            counts.append(done)
        channel.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    try:
        for thread in threads:
            thread.start()
        halfway.wait(120)
        shutil.copytree(exported[0] / "1", tmp_path / "stage")
        (tmp_path / "stage").rename(base / "2")  # latest:1 policy: 2 replaces 1 under load
        for thread in threads:
            thread.join(300)
    finally:
        server.stop(5)
    assert errors == []
    assert sum(counts) == 16 * 150
    assert seen_versions == {1, 2}


def test_client_retries_unavailable_until_the_server_is_up(exported):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    holder = {}

    def late_start() -> None:
        store = ModelStore([ModelEntry("tiny", str(exported[0]))], VersionLoader("onnx", 1))
        store.start(0)
        holder["server"] = ModelServer(store, port, None, ServerLimits()).start()

    timer = threading.Timer(0.5, late_start)
    timer.start()
    try:
        client = GrpcClient(f"127.0.0.1:{port}", ClientOptions("tiny", retries=6, backoff=0.2, timeout=5))
        assert client.status() == [(1, "AVAILABLE")]
        no_retry = GrpcClient(f"127.0.0.1:{port}", ClientOptions("tiny", retries=0))
        with pytest.raises(ClientError, match="INVALID_ARGUMENT"):  # not retried: a client error stays an error
            no_retry._predict("serving_default", np.zeros((1, 8, 8, 3), np.float32))
    finally:
        timer.join()
        holder["server"].stop(1)


def test_ftx_serve_takes_tf_serving_flags_serves_metrics_and_stops_on_sigterm(exported, tmp_path):
    """The launch line of tensorflow_model_server (``--flag=value``), a models.config, the ftx client CLI."""
    import socket

    from serving.config_cli import write_configs

    base, run, samples, expected = exported
    paths = write_configs(base.parent, ["tiny"], tmp_path, VersionPolicy(), {}, BatchingSettings.for_device("cpu", 2))
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    command = [sys.executable, "-m", "training.cli", "serve", f"--port={ports[0]}", f"--rest_api_port={ports[1]}",
               f"--model_config_file={paths['models.config']}", "--enable_batching=true",
               f"--batching_parameters_file={paths['batching.config']}",
               f"--monitoring_config_file={paths['monitoring.config']}", "--file_system_poll_wait_seconds=0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        log = []
        for line in server.stdout:
            log.append(line)
            if "Ctrl-C stops" in line:
                break
        else:
            pytest.fail("ftx serve did not start:\n" + "".join(log))
        image = tmp_path / "image.png"
        image.write_bytes(samples.encoded[0])
        client = subprocess.run([sys.executable, "-m", "training.cli", "client", "predict", str(image), "--server",
                                 f"127.0.0.1:{ports[0]}", "--model", "tiny", "--top-k", "2"],
                                capture_output=True, text=True, timeout=120)
        assert client.returncode == 0, client.stderr
        top = expected[0].argsort()[::-1][:2]
        assert client.stdout.strip() == f"{image}: " + ", ".join(
            f"{run.class_names[i]} {expected[0][i]:.3f}" for i in top)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/monitoring/prometheus/metrics") as response:
            metrics = response.read().decode()
        assert ':tensorflow:serving:request_count{model_name="tiny",status="OK"} 2' in metrics  # predict, classify
        assert ':tensorflow:serving:request_latency_count{model_name="tiny",API="Predict",entrypoint="GRPC"} 1' in metrics
        assert ':tensorflow:serving:runtime_latency_count{model_name="tiny",API="Predict",runtime="onnxruntime"} 1' \
            in metrics
        # both requests waited in the batching queue of the pool batching.config names (TF Serving's name)
        assert ':tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name="model_server_batch_threads"} 2' \
            in metrics
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0


@pytest.mark.parametrize("args, message", [
    ([], "Both server_options.model_base_path and server_options.model_config_file are empty!"),
    (["--model_base_path=/no/such/dir"], "is not a directory"),
    (["--enable_batching", "--batching_parameters_file=/no/such/file"], "cannot read batching.config"),
])
def test_ftx_serve_bad_launch_lines_exit_2(args, message, tmp_path):
    if "--enable_batching" in args:
        args = [f"--model_base_path={tmp_path}", *args]
    result = subprocess.run([sys.executable, "-m", "training.cli", "serve", "--port=0", *args], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2 and message in result.stderr


def test_rest_survives_a_burst_of_16_concurrent_clients(server, exported):
    """New connection per request (urllib): the listen backlog must not reset any of them."""
    samples, expected = exported[2], exported[3]
    body = json.dumps({"signature_name": "serving_bytes", "instances": [
        {"b64": base64.b64encode(samples.encoded[0]).decode()}]}).encode()
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/tiny:predict"
    errors, answers = [], []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            try:
                with urllib.request.urlopen(url, data=body, timeout=60) as response:
                    answer = json.loads(response.read())["predictions"][0]["probabilities"]
                with lock:
                    answers.append(answer)
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                with lock:
                    errors.append(repr(error))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == [] and len(answers) == 16 * 25
    np.testing.assert_allclose(np.array(answers), np.repeat(expected[:1], len(answers), axis=0), atol=1e-4)


def test_tls_with_tf_servings_ssl_config(exported, tmp_path):
    """An ssl.config as TF Serving reads it (PEM inline); the client verifies the server against its CA."""
    from google.protobuf import text_format

    from serving.tfs_config import SSL_CONFIG, read_config
    from serving.tfs_protos import ssl_config_class

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    message = ssl_config_class()(server_key=(tmp_path / "key.pem").read_text(),
                                 server_cert=(tmp_path / "cert.pem").read_text())
    (tmp_path / SSL_CONFIG).write_text(text_format.MessageToString(message))
    ssl = read_config(tmp_path / SSL_CONFIG, SSL_CONFIG)
    store = ModelStore([ModelEntry("tiny", str(exported[0]))], VersionLoader("onnx", 1))
    store.start(0)
    server = ModelServer(store, 0, None, ServerLimits(), ssl=ssl).start()
    try:
        secure = GrpcClient(f"127.0.0.1:{server.grpc_port}", ClientOptions(
            "tiny", tls=True, root_certificates=str(tmp_path / "cert.pem")))
        np.testing.assert_allclose(secure.predict(exported[2].images[:2]).probabilities, exported[3][:2], atol=1e-4)
        plain = GrpcClient(f"127.0.0.1:{server.grpc_port}", ClientOptions("tiny", retries=0, timeout=5))
        with pytest.raises(ClientError, match="UNAVAILABLE"):
            plain.status()
    finally:
        server.stop(1)
    (tmp_path / "bad.config").write_text('server_key: "key.pem" server_cert: "cert.pem"')
    with pytest.raises(Exception, match="must hold the PEM text itself"):
        read_config(tmp_path / "bad.config", SSL_CONFIG)


def test_stop_finishes_in_flight_requests_and_excess_concurrency_is_refused(exported):
    """A slow model: the request inside finishes after stop() begins; a request beyond the bound is refused."""
    from serving.servable import Servable
    from serving.signature_defs import read_signature_defs

    inside, release = threading.Event(), threading.Event()

    def slow(images):
        inside.set()
        release.wait(30)
        return np.tile(np.array([[0.2, 0.3, 0.5]], np.float32), (len(images), 1))

    signatures = dict(read_signature_defs(exported[0] / "1").signature_def)
    store = ModelStore([ModelEntry("tiny", str(exported[0]))],
                       lambda name, version, path: Servable(name, version, path, signatures, ("a", "b", "c"), 32, slow))
    store.start(0)
    server = ModelServer(store, 0, None, ServerLimits(max_concurrent_rpcs=1)).start()
    results = {}

    def call(key):
        try:
            results[key] = grpc_client(server, retries=0).predict(np.zeros((1, 32, 32, 3), np.float32)).class_names
        except ClientError as error:
            results[key] = error.code

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert inside.wait(30)
    call("second")  # the one slot is taken
    assert results["second"] == "RESOURCE_EXHAUSTED"
    stopper = threading.Thread(target=server.stop, args=(30,))
    stopper.start()
    threading.Event().wait(0.5)
    release.set()
    first.join(30)
    stopper.join(60)
    assert results["first"] == ["c"]  # finished, not cut off by the stop
