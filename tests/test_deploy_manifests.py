"""Deployment manifests from `ftx serving-config`: Kubernetes, KServe and a Triton repository, from a real export.

Validated offline as far as packages allow: the Kubernetes objects with
kubernetes-validate (strict, the newest Kubernetes it ships), the Triton config
with Triton's own ModelConfig message (tritonclient) and the copied model in
ONNX Runtime. No PyPI package ships KServe's InferenceService CRD schema (the
kserve SDK has model classes only), so the KServe objects are checked against
the documented v1beta1 fields, and their resources as a core/v1 container's.
Nothing here runs a cluster or a Triton server.
"""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

import kubernetes_validate
import numpy as np
import onnxruntime as ort
import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from serving.deploy import pbtxt
from serving.deploy.settings import DNS_LABEL, REST_PORT, TF_SERVING_VERSION
from serving.deploy.triton import TritonBatching
from serving.tfs_config import BATCHING_CONFIG, MODELS_CONFIG, MONITORING_CONFIG, BatchingSettings, read_config
from training.cli import main

sys.path.insert(0, str(Path(__file__).parent / "edge"))
from edge_helpers import ftx as ftx_without_tensorflow  # noqa: E402

K8S_VERSION = kubernetes_validate.utils.latest_version()
KUBERNETES_FILES = ("configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml")
# serving.kserve.io/v1beta1, as KServe documents them (InferenceService, PredictorSpec, ModelSpec)
PREDICTOR_FIELDS = {"model", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"}
MODEL_FIELDS = {"modelFormat", "runtime", "protocolVersion", "storageUri", "resources"}


def serving_config(*args) -> int:
    return main(["serving-config", *map(str, args)])


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def copy_export(tiny_export: Path, root: Path, versions=(1,)) -> Path:
    """A writable copy of the session's export (versions copied from its version 1)."""
    for version in versions:
        shutil.copytree(tiny_export / "1", root / "tiny" / str(version))
    return root


def unbless(version_dir: Path) -> None:
    (version_dir / "BLESSED").rename(version_dir / "NOT_BLESSED")


@pytest.fixture(scope="module")
def written(tiny_export, tmp_path_factory) -> Path:
    """`ftx serving-config` on the session's export, defaults only, into a folder of its own."""
    out = tmp_path_factory.mktemp("deploy")
    assert serving_config(tiny_export.parent, "--name", "tiny", "--out", out) == 0
    return out


def test_every_kubernetes_manifest_passes_strict_validation(written):
    assert tuple(map(int, K8S_VERSION.split(".")[:2])) >= (1, 30), K8S_VERSION
    for name in KUBERNETES_FILES:
        obj = load(written / "kubernetes" / name)
        assert kubernetes_validate.validate(obj, desired_version=K8S_VERSION, strict=True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ftx"


def test_the_configmap_holds_tf_serving_configs_with_base_paths_on_the_volume(written, tmp_path):
    data = load(written / "kubernetes" / "configmap.yaml")["data"]
    assert set(data) == {MODELS_CONFIG, BATCHING_CONFIG, MONITORING_CONFIG}
    for kind, text in data.items():
        (tmp_path / kind).write_text(text)
    (model,) = read_config(tmp_path / MODELS_CONFIG, MODELS_CONFIG).model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("tiny", "/models/tiny", "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1
    batching = BatchingSettings.from_message(read_config(tmp_path / BATCHING_CONFIG, BATCHING_CONFIG))
    assert batching == BatchingSettings.for_device("cpu", cores=1)  # sized to the 1-CPU request, not this machine
    assert read_config(tmp_path / MONITORING_CONFIG, MONITORING_CONFIG).prometheus_config.enable
    local = read_config(written / MODELS_CONFIG, MODELS_CONFIG).model_config_list.config[0]
    assert Path(local.base_path).is_absolute() and local.base_path != model.base_path  # the local file is unchanged


def test_the_deployment_mounts_the_export_and_probes_rest_status(written):
    deployment = load(written / "kubernetes" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"tensorflow/serving:{TF_SERVING_VERSION}"
    assert f"--rest_api_port={REST_PORT}" in container["args"] and "--enable_model_warmup=true" in container["args"]
    assert "--model_config_file=/config/models.config" in container["args"]
    assert {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"} in container["ports"]
    for probe in ("readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/v1/models/tiny", "port": REST_PORT}
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "ftx-exports", "readOnly": True}
    assert volumes["config"]["configMap"]["name"] == load(written / "kubernetes" / "configmap.yaml")["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    service, autoscaler = load(written / "kubernetes" / "service.yaml"), load(written / "kubernetes" / "hpa.yaml")
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                    "name": deployment["metadata"]["name"]}
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (1, 4)
    assert autoscaler["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_flags_reach_the_manifests_and_still_validate(tiny_export, tmp_path, capsys):
    assert serving_config(tiny_export.parent, "--name", "tiny", "--out", tmp_path, "--device", "gpu",
                          "--namespace", "ml", "--app", "classifier", "--pvc", "model-store",
                          "--cpu-request", "2500m", "--memory-request", "3Gi", "--min-replicas", "2",
                          "--max-replicas", "6", "--target-cpu", "55", "--service-type", "LoadBalancer",
                          "--version-policy", "all", "--label", "stable=1", "--storage-uri", "gs://bucket/exports",
                          "--triton-max-batch-size", "64") == 0
    assert "kubectl apply -f" in capsys.readouterr().out
    objects = {name: load(tmp_path / "kubernetes" / name) for name in KUBERNETES_FILES}
    for obj in objects.values():
        assert kubernetes_validate.validate(obj, desired_version=K8S_VERSION, strict=True)
        assert obj["metadata"]["namespace"] == "ml"
    (container,) = objects["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"tensorflow/serving:{TF_SERVING_VERSION}-gpu"
    assert container["resources"] == {"requests": {"cpu": "2500m", "memory": "3Gi"}, "limits": {"nvidia.com/gpu": 1}}
    assert "--tensorflow_intra_op_parallelism=3" in container["args"]
    assert "--allow_version_labels_for_unavailable_models=true" in container["args"]
    assert objects["deployment.yaml"]["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"][
        "claimName"] == "model-store"
    assert objects["service.yaml"]["spec"]["type"] == "LoadBalancer"
    assert (objects["hpa.yaml"]["spec"]["minReplicas"], objects["hpa.yaml"]["spec"]["maxReplicas"]) == (2, 6)
    (tmp_path / "cluster.config").write_text(objects["configmap.yaml"]["data"][MODELS_CONFIG])
    (model,) = read_config(tmp_path / "cluster.config", MODELS_CONFIG).model_config_list.config
    assert dict(model.version_labels) == {"stable": 1} and model.model_version_policy.HasField("all")
    assert load(tmp_path / "kserve" / "tiny-tensorflow.yaml")["spec"]["predictor"]["model"]["storageUri"] \
        == "gs://bucket/exports/tiny"
    config = text_format.Parse((tmp_path / "triton" / "tiny" / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert config.max_batch_size == 64 and list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32, 64]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU


def test_triton_config_is_a_model_config_that_matches_the_model(written, tiny_export):
    model_dir = written / "triton" / "tiny"
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("tiny", "onnxruntime_onnx", 32)
    assert list(config.version_policy.specific.versions) == [1]
    (images,) = config.input
    assert (images.name, images.data_type, list(images.dims)) == ("images", model_config_pb2.TYPE_FP32, [32, 32, 3])
    probabilities, class_ids = config.output
    assert (probabilities.name, list(probabilities.dims), probabilities.label_filename) == (
        "probabilities", [3], "labels.txt")
    assert (class_ids.name, class_ids.data_type, list(class_ids.dims)) == (
        "class_ids", model_config_pb2.TYPE_INT64, [1])
    assert class_ids.HasField("reshape") and list(class_ids.reshape.shape) == []  # [batch] as Triton requires
    assert list(config.dynamic_batching.preferred_batch_size) == [32]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1 and warmup.inputs["images"].zero_data
    assert list(warmup.inputs["images"].dims) == [32, 32, 3]
    assert (model_dir / "labels.txt").read_text() == (tiny_export / "1" / "labels.txt").read_text()
    copied = model_dir / "1" / "model.onnx"
    assert copied.read_bytes() == (tiny_export / "1" / "model.onnx").read_bytes()
    session = ort.InferenceSession(str(copied), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i.name for i in config.input]
    assert [o.name for o in session.get_outputs()] == [o.name for o in config.output]
    got = session.run(None, {"images": np.zeros((2, *images.dims), np.float32)})
    assert [list(array.shape) for array in got] == [[2, *probabilities.dims], [2]]


def test_kserve_services_follow_the_documented_v1beta1_fields(written, capsys):
    tensorflow, triton = load(written / "kserve" / "tiny-tensorflow.yaml"), load(written / "kserve" /
                                                                                 "tiny-serving-triton.yaml")
    for obj in (tensorflow, triton):
        assert (obj["apiVersion"], obj["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
        assert DNS_LABEL.match(obj["metadata"]["name"]) and set(obj["spec"]) == {"predictor"}
        predictor = obj["spec"]["predictor"]
        assert set(predictor) <= PREDICTOR_FIELDS and set(predictor["model"]) <= MODEL_FIELDS
        assert predictor["scaleMetric"] in ("cpu", "memory", "concurrency", "rps")
        assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kserve-resources"}, "spec": {"containers": [
            {"name": "kserve-container", "image": "x", "resources": predictor["model"]["resources"]}]}}
        assert kubernetes_validate.validate(pod, desired_version=K8S_VERSION, strict=True)  # ModelSpec embeds it
    assert tensorflow["metadata"]["name"] == "tiny"  # KServe's TF Serving runtime names the model after it
    assert tensorflow["spec"]["predictor"]["model"]["modelFormat"] == {"name": "tensorflow", "version": "2"}
    assert tensorflow["spec"]["predictor"]["model"]["storageUri"] == "pvc://ftx-exports/tiny"
    model = triton["spec"]["predictor"]["model"]
    assert (model["modelFormat"]["name"], model["runtime"], model["protocolVersion"]) == (
        "onnx", "kserve-tritonserver", "v2")
    assert model["storageUri"] == "pvc://ftx-exports/triton"


def test_out_inside_the_export_root_puts_kserve_on_the_same_claim(tiny_export, tmp_path, capsys):
    root = copy_export(tiny_export, tmp_path / "exports")
    assert serving_config(root, "--name", "tiny") == 0
    assert "--out is outside EXPORT_ROOT" not in capsys.readouterr().err
    assert load(root / "kserve" / "tiny-serving-triton.yaml")["spec"]["predictor"]["model"]["storageUri"] \
        == "pvc://ftx-exports/triton"
    copied, exported = root / "triton" / "tiny" / "1" / "model.onnx", root / "tiny" / "1" / "model.onnx"
    assert copied.stat().st_ino == exported.stat().st_ino  # hard-linked: one copy of the weights
    assert serving_config(root, "--name", "tiny") == 0  # a rerun replaces in place
    assert copied.read_bytes() == exported.read_bytes()


def test_an_export_with_no_blessed_version_writes_the_configs_and_says_why(tiny_export, tmp_path, capsys):
    root = copy_export(tiny_export, tmp_path / "exports")
    unbless(root / "tiny" / "1")
    assert serving_config(root, "--name", "tiny", "--out", tmp_path / "out") == 0
    assert capsys.readouterr().err.splitlines() == [
        "ftx serving-config: tiny: no blessed version (version 1 has no BLESSED marker: published with "
        "--allow-unblessed, or not ftx exports); left out of kubernetes/, kserve/ and triton/"]
    assert (tmp_path / "out" / MODELS_CONFIG).is_file()
    assert not (tmp_path / "out" / "kubernetes").exists() and not (tmp_path / "out" / "triton" / "tiny").exists()


def test_an_export_without_onnx_still_gets_kubernetes_and_tf_serving_on_kserve(tiny_export, tmp_path, capsys):
    root = copy_export(tiny_export, tmp_path / "exports")
    (root / "tiny" / "1" / "model.onnx").unlink()
    assert serving_config(root, "--name", "tiny", "--out", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "triton/: tiny: version 1 has no model.onnx (export it with --formats onnx)" in err
    assert sorted(p.name for p in (tmp_path / "out" / "kserve").iterdir()) == ["tiny-tensorflow.yaml"]
    assert all((tmp_path / "out" / "kubernetes" / name).is_file() for name in KUBERNETES_FILES)


def test_a_policy_that_would_serve_an_unblessed_version_is_refused(tiny_export, tmp_path, capsys):
    root = copy_export(tiny_export, tmp_path / "exports", versions=(1, 2))
    unbless(root / "tiny" / "2")
    out = tmp_path / "out"
    assert serving_config(root, "--name", "tiny", "--out", out, "--version-policy", "specific:1") == 0
    err = capsys.readouterr().err
    assert "no TF Serving InferenceService for tiny: the newest version, 2, is not blessed" in err
    assert list(text_format.Parse((out / "triton" / "tiny" / "config.pbtxt").read_text(),
                                  model_config_pb2.ModelConfig()).version_policy.specific.versions) == [1]
    (out / "kubernetes" / "pvc.yaml").write_text("apiVersion: v1\nkind: PersistentVolumeClaim\n")  # the user's own
    assert serving_config(root, "--name", "tiny", "--out", out) == 0
    assert ("kubernetes/ not written (the files ftx wrote there before removed): tiny: the version policy would "
            "serve version(s) 2, which the parity gate did not bless; use --version-policy specific:1") \
        in capsys.readouterr().err
    assert [p.name for p in (out / "kubernetes").iterdir()] == ["pvc.yaml"]


def test_several_models_share_one_deployment_and_one_triton_repository(tiny_export, tmp_path, capsys):
    root = copy_export(tiny_export, tmp_path / "exports")
    shutil.copytree(root / "tiny", root / "Extra_Model")
    shutil.copytree(root / "tiny", root / "broken")
    unbless(root / "broken" / "1")
    out = tmp_path / "out"
    assert serving_config(root, "--name", "tiny", "--name", "Extra_Model", "--out", out) == 0
    err = capsys.readouterr().err
    assert "KServe names a model after its InferenceService: Extra_Model is served as extra-model there" in err
    data = load(out / "kubernetes" / "configmap.yaml")["data"]
    (out / "cluster.config").write_text(data[MODELS_CONFIG])
    models = read_config(out / "cluster.config", MODELS_CONFIG).model_config_list.config
    assert [(m.name, m.base_path) for m in models] == [("tiny", "/models/tiny"), ("Extra_Model", "/models/Extra_Model")]
    assert sorted(p.name for p in (out / "triton").iterdir()) == ["Extra_Model", "tiny"]
    assert sorted(p.name for p in (out / "kserve").iterdir()) == [
        "extra-model-tensorflow.yaml", "tiny-serving-triton.yaml", "tiny-tensorflow.yaml"]
    assert serving_config(root, "--name", "tiny", "--name", "broken", "--out", out) == 0
    err = capsys.readouterr().err
    assert "kubernetes/ not written (the files ftx wrote there before removed): its models.config serves every " \
           "--name, and broken cannot be deployed" in err
    assert "broken: no blessed version" in err and not (out / "triton" / "broken").exists()
    assert sorted(p.name for p in (out / "kserve").iterdir()) == ["tiny-serving-triton.yaml", "tiny-tensorflow.yaml"]
    assert serving_config(root, "--name", "tiny", "--out", tmp_path / "configs", "--configs-only") == 0
    assert sorted(p.name for p in (tmp_path / "configs").iterdir()) == [BATCHING_CONFIG, MODELS_CONFIG,
                                                                        MONITORING_CONFIG]


@pytest.mark.parametrize("flags, message", [
    (["--min-replicas", "3", "--max-replicas", "2"], "1 <= --min-replicas <= --max-replicas, got 3 and 2"),
    (["--cpu-request", "2Gi"], "--cpu-request takes cores or millicores"),
    (["--app", "Tiny_App"], "--app must be a DNS label"),
    (["--storage-uri", "bucket/exports"], "--storage-uri must be a URI"),
])
def test_bad_settings_exit_2_before_anything_is_written(tiny_export, tmp_path, capsys, flags, message):
    assert serving_config(tiny_export.parent, "--name", "tiny", "--out", tmp_path / "out", *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_model_named_like_a_deployment_folder_needs_another_out(tiny_export, tmp_path, capsys):
    shutil.copytree(tiny_export / "1", tmp_path / "exports" / "triton" / "1")
    assert serving_config(tmp_path / "exports", "--name", "triton") == 2
    assert "is model 'triton''s base path; write the deployment folders elsewhere with --out" in capsys.readouterr().err
    assert serving_config(tmp_path / "exports", "--name", "triton", "--out", tmp_path / "out") == 0


def test_the_edge_install_writes_every_part(written, tiny_export, tmp_path):
    """TensorFlow, the converters, onnx and tensorflow-serving-api blocked: ONNX Runtime reads the model."""
    done = ftx_without_tensorflow("serving-config", tiny_export.parent, "--name", "tiny", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    parse = lambda out: text_format.Parse((out / "triton" / "tiny" / "config.pbtxt").read_text(),  # noqa: E731
                                          model_config_pb2.ModelConfig())
    assert parse(tmp_path) == parse(written)
    for name in KUBERNETES_FILES:
        assert load(tmp_path / "kubernetes" / name) == load(written / "kubernetes" / name)


def test_text_format_strings_and_values_parse_as_written():
    config = model_config_pb2.ModelConfig()
    text = pbtxt.to_text({"name": 'a "quoted" \\ näme', "max_batch_size": 8, "input": [{"name": "x", "dims": [-1, 3],
                          "data_type": pbtxt.Enum("TYPE_FP16"), "optional": True}], "dynamic_batching": {}})
    text_format.Parse(text, config)
    assert config.name == 'a "quoted" \\ näme' and config.HasField("dynamic_batching")
    assert (list(config.input[0].dims), config.input[0].data_type, config.input[0].optional) == (
        [-1, 3], model_config_pb2.TYPE_FP16, True)


def test_triton_batches_like_tf_serving():
    assert TritonBatching.like(BatchingSettings.for_device("gpu", cores=2)) == TritonBatching(128, (8, 16, 32, 64, 128),
                                                                                               1000)
    assert TritonBatching.like(BatchingSettings.for_device("gpu", cores=2), 20) == TritonBatching(20, (8, 16, 20), 1000)
    assert TritonBatching.like(BatchingSettings.for_device("cpu", cores=2)) == TritonBatching(32, (32,), 0)


def test_the_default_image_is_the_release_ftx_protos_come_from():
    installed = metadata.version("tensorflow-serving-api")
    assert installed.split(".")[:2] == TF_SERVING_VERSION.split(".")[:2], installed
