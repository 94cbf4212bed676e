"""The edge install end to end: ftx serve, ftx client and ftx bench without TensorFlow, as real processes.

Answers are checked against ONNX Runtime run here in-process on the same
model file, and against the labels of the test images; the wire format
against serving/generated's messages (proven identical to
tensorflow-serving-api's by tests/test_generated_protos.py in the full install).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import sysconfig
import threading
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from edge_helpers import IN_EDGE_VENV, edge_env, ftx

from serving.protos import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2, inference_pb2,
                            model_management_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)
from serving.tensors import fill_proto, to_array
from training.data.numpy_decode import load_image

CLASSES = ["blue", "green", "red"]  # the tiny dataset's class folders, in ftx's (alphabetical) order
NOT_HERE = ("tensorflow", "keras", "tf2onnx", "onnx", "tensorflow_serving")


def test_tensorflow_and_the_converters_cannot_be_imported():
    for module in NOT_HERE:
        result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                                env=edge_env())
        assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr, (module, result.stderr)


@pytest.mark.skipif(not IN_EDGE_VENV, reason="measures the edge venv's own site-packages")
def test_the_edge_install_stays_under_300_mb():
    site = Path(sysconfig.get_paths()["purelib"])
    total = sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())
    assert total < 300 * 1024 * 1024, f"site-packages holds {total / 2**20:.0f} MB"
    import serving

    assert Path(serving.__file__).is_relative_to(site)  # the installed package is under test, not the checkout


def _test_images(models: Path) -> list[tuple[Path, int]]:
    """Every test image of the tiny dataset with its class index."""
    data = _run_config(models)["data"]
    return [(path, CLASSES.index(path.parent.name)) for path in sorted(Path(data, "test").glob("*/*.png"))]


def _run_config(models: Path) -> dict:
    manifest = json.loads((models / "1" / "export_manifest.json").read_text())
    return json.loads((Path(manifest["source_run"]["path"]) / "config.json").read_text())


@pytest.fixture(scope="module")
def expected(edge_models):
    """(files, labels, decoded images, probabilities): ONNX Runtime in this process on numpy_decode's pixels."""
    pairs = _test_images(edge_models)
    size = json.loads((edge_models / "1" / "export_manifest.json").read_text())["source_run"]["image_size"]
    images = np.stack([load_image(path.read_bytes(), size) for path, _ in pairs])
    session = ort.InferenceSession(str(edge_models / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], {"images": images})[0]
    labels = np.array([label for _, label in pairs])
    assert (probabilities.argmax(axis=1) == labels).all()  # a model that knows its colours
    return [path for path, _ in pairs], labels, images, probabilities


def _tensor(array) -> object:
    from serving.protos import tensor_pb2

    proto = tensor_pb2.TensorProto()
    fill_proto(proto, np.asarray(array), as_content=np.asarray(array).dtype.kind != "O")
    return proto


def _outputs(response) -> dict[str, np.ndarray]:
    return {key: to_array(value, max_elements=1 << 20, max_bytes=1 << 26) for key, value in response.outputs.items()}


def _example(data: bytes) -> object:
    from serving.protos import example_pb2

    example = example_pb2.Example()
    example.features.feature["image/encoded"].bytes_list.value.append(data)
    return example


def test_grpc_serves_every_signature_and_rpc(edge_models, expected, serve):
    files, labels, images, probabilities = expected
    server = serve(f"--model_name=tiny", f"--model_base_path={edge_models}")
    channel = grpc.insecure_channel(server.grpc_target)
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    encoded = [path.read_bytes() for path in files]

    status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}))
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]

    metadata = predictions.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "tiny"}, metadata_field=["signature_def"]))
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_map)
    assert set(signature_map.signature_def) == {"serving_default", "serving_bytes", "serving_examples", "classify",
                                                "__saved_model_init_op"}  # TF Serving lists it too
    assert metadata.model_spec.version.value == 1

    for signature, name, value in (("serving_default", "images", images), ("serving_bytes", "images_bytes",
                                                                           np.array(encoded, dtype=object)),
                                   ("serving_examples", "examples",
                                    np.array([_example(d).SerializeToString() for d in encoded], dtype=object))):
        request = predict_pb2.PredictRequest(model_spec={"name": "tiny", "signature_name": signature})
        request.inputs[name].CopyFrom(_tensor(value))
        outputs = _outputs(predictions.Predict(request))
        np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-6, err_msg=signature)
        assert outputs["class_ids"].tolist() == labels.tolist()
        assert [n.decode() for n in outputs["class_names"]] == [CLASSES[i] for i in labels]

    request = classification_pb2.ClassificationRequest(model_spec={"name": "tiny", "signature_name": "classify"})
    request.input.example_list.examples.extend(_example(d) for d in encoded)
    result = predictions.Classify(request).result
    for row, expected_row in zip(result.classifications, probabilities):
        assert [c.label for c in row.classes] == CLASSES
        np.testing.assert_allclose([c.score for c in row.classes], expected_row, atol=1e-6)

    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add()
    task.model_spec.name, task.model_spec.signature_name, task.method_name = \
        "tiny", "classify", "tensorflow/serving/classify"
    request.input.example_list.examples.extend(_example(d) for d in encoded[:2])
    (answer,) = predictions.MultiInference(request).results
    assert [max(row.classes, key=lambda c: c.score).label for row in answer.classification_result.classifications] \
        == [CLASSES[i] for i in labels[:2]]

    bad = predict_pb2.PredictRequest(model_spec={"name": "tiny", "signature_name": "serving_bytes"})
    bad.inputs["images_bytes"].CopyFrom(_tensor(np.array([b"not an image"], dtype=object)))
    with pytest.raises(grpc.RpcError) as refused:
        predictions.Predict(bad)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cannot decode" in refused.value.details()

    reload = model_management_pb2.ReloadConfigRequest()
    entry = reload.config.model_config_list.config.add(name="tiny", base_path=str(edge_models),
                                                       model_platform="tensorflow")
    assert entry.name == "tiny"
    assert models.HandleReloadConfigRequest(reload).status.error_code == 0
    channel.close()


def _get(url: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_rest_and_metrics(edge_models, expected, serve, tmp_path):
    files, labels, images, probabilities = expected
    (tmp_path / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }\n')
    server = serve("--model_name=tiny", f"--model_base_path={edge_models}",
                   f"--monitoring_config_file={tmp_path / 'monitoring.config'}")
    base = f"http://127.0.0.1:{server.rest_port}/v1/models/tiny"
    assert _get(base) == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                    "status": {"error_code": "OK", "error_message": ""}}]}
    assert set(_get(base + "/metadata")["metadata"]["signature_def"]["signature_def"]) == {
        "serving_default", "serving_bytes", "serving_examples", "classify", "__saved_model_init_op"}
    b64 = [{"b64": base64.b64encode(path.read_bytes()).decode()} for path in files]
    rows = _get(base + ":predict", {"signature_name": "serving_bytes", "instances": b64})["predictions"]
    np.testing.assert_allclose([row["probabilities"] for row in rows], probabilities, atol=1e-6)
    rows = _get(base + ":predict", {"instances": images[:2].tolist()})["predictions"]
    assert [row["class_names"] for row in rows] == [CLASSES[i] for i in labels[:2]]
    results = _get(base + ":classify", {"signature_name": "classify",
                                        "examples": [{"image/encoded": item} for item in b64]})["results"]
    assert [max(row, key=lambda pair: pair[1])[0] for row in results] == [CLASSES[i] for i in labels]
    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/metrics", timeout=30) as response:
        metrics = response.read().decode()
    assert ':tensorflow:serving:request_count{model_name="tiny",status="OK"}' in metrics


def test_tls_batching_and_versions(edge_models, expected, serve, tmp_path):
    """Two versions (the newer served), --enable_batching under concurrent calls, gRPC over TLS."""
    files, labels, images, probabilities = expected
    base = tmp_path / "tiny"
    base.mkdir()
    for version in ("1", "2"):
        shutil.copytree(edge_models / "1", base / version)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    (tmp_path / "ssl.config").write_text(f"server_key: {json.dumps((tmp_path / 'key.pem').read_text())}\n"
                                         f"server_cert: {json.dumps((tmp_path / 'cert.pem').read_text())}\n")
    server = serve("--model_name=tiny", f"--model_base_path={base}", "--enable_batching",
                   f"--ssl_config_file={tmp_path / 'ssl.config'}")
    credentials = grpc.ssl_channel_credentials((tmp_path / "cert.pem").read_bytes())
    channel = grpc.secure_channel(server.grpc_target, credentials)
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}))
    assert [s.version for s in status.model_version_status] == [2]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    answers: dict[int, np.ndarray] = {}

    def call(index: int) -> None:
        request = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
        request.inputs["images"].CopyFrom(_tensor(images[index:index + 1]))
        answers[index] = _outputs(stub.Predict(request, timeout=60))["probabilities"][0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(np.stack([answers[i] for i in range(len(images))]), probabilities, atol=1e-6)
    channel.close()
    plain = grpc.insecure_channel(server.grpc_target)
    with pytest.raises(grpc.RpcError) as refused:
        model_service_pb2_grpc.ModelServiceStub(plain).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    plain.close()


def test_ftx_client_over_grpc_and_rest(edge_models, expected, serve):
    files, labels, _, probabilities = expected
    server = serve("--model_name=tiny", f"--model_base_path={edge_models}")
    for flags in ((f"--server={server.grpc_target}",), (f"--server=127.0.0.1:{server.rest_port}", "--rest")):
        result = ftx("client", "predict", *files[:3], "--model=tiny", "--top-k=1", *flags, timeout=60)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert [line.split(": ")[1].split()[0] for line in lines] == [CLASSES[i] for i in labels[:3]], lines
        assert [float(line.split()[-1]) for line in lines] == pytest.approx(probabilities[:3].max(axis=1), abs=5e-4)
        status = ftx("client", "status", "--model=tiny", *flags, timeout=60)
        assert status.returncode == 0 and "AVAILABLE" in status.stdout, status.stderr


def test_ftx_bench_measures_onnx_and_tflite(edge_models, tmp_path):
    out = tmp_path / "bench"
    result = ftx("bench", edge_models / "1", "--formats=onnx,onnx-bytes,tflite", "--batch-sizes=1,4",
                 "--warmup-seconds=0.1", "--window-seconds=0.2", "--max-windows=2", "--serving-modes=grpc-tensor",
                 "--concurrency=1", "--serving-seconds=0.5", "--serving-batching=off", f"--out={out}",
                 "--no-progress", timeout=600, FTX_HOME=str(tmp_path / "home"))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    rows = {row["format"]: row for row in results["formats"]}
    assert set(rows) == {"onnx", "onnx-bytes", "tflite"}
    for name, row in rows.items():
        assert row["accuracy"]["accuracy"] == 1.0 and not row.get("error"), (name, row)
        assert [m["batch_size"] for m in row["measurements"]] == [1, 4]
    assert results["serving"] and all(row["errors"] == 0 for row in results["serving"])
    assert (out / "summary.md").is_file() and (out / "measurements.csv").is_file()


def test_commands_that_need_the_full_install_say_so_in_one_line(edge_models, tmp_path):
    cases = [("train", "--data", str(tmp_path)), ("export", "--help"),
             ("serve", "--model_name=tiny", f"--model_base_path={edge_models}", "--backend=savedmodel"),
             ("bench", str(edge_models / "1"), "--formats=keras,onnx", f"--out={tmp_path / 'b'}")]
    for args in cases:
        result = ftx(*args, timeout=120, FTX_HOME=str(tmp_path / "home"))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith(f"ftx {args[0]}: ") and "pip install 'ftx[cpu]'" in lines[0], lines
        assert "Traceback" not in result.stderr
