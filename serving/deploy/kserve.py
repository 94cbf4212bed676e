"""KServe InferenceServices (serving.kserve.io/v1beta1): the SavedModel on TF Serving, the ONNX model on Triton.

KServe's TF Serving runtime (config/runtimes/kserve-tensorflow-serving.yaml)
runs ``tensorflow_model_server --model_name=<InferenceService name>
--model_base_path=/mnt/models`` with the storage URI mounted there, so each
model gets its own InferenceService pointing at its base path, named after it
so clients keep using ``/v1/models/NAME``. The Triton runtime
(``kserve-tritonserver``, Open Inference Protocol ``v2``) runs ``tritonserver
--model-store=/mnt/models``: one InferenceService for the whole Triton
repository, which holds every model that had an ONNX export.
"""

from __future__ import annotations

from serving.deploy.settings import DeploySettings, dns_label
from serving.deploy.yaml_files import metadata

API_VERSION = "serving.kserve.io/v1beta1"
TRITON_RUNTIME = "kserve-tritonserver"


def _predictor(settings: DeploySettings, model: dict) -> dict:
    resources: dict = {"requests": {"cpu": settings.cpu_request, "memory": settings.memory_request}}
    if settings.device == "gpu":
        resources["limits"] = {"nvidia.com/gpu": 1}
    return {"minReplicas": settings.min_replicas, "maxReplicas": settings.max_replicas,
            "scaleMetric": "cpu", "scaleTarget": settings.target_cpu_utilization,
            "model": {**model, "resources": resources}}


def _service(name: str, settings: DeploySettings, component: str, model: dict) -> dict:
    labels = {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": settings.app}
    return {"apiVersion": API_VERSION, "kind": "InferenceService",
            "metadata": metadata(name, settings.namespace, labels),
            "spec": {"predictor": _predictor(settings, model)}}


def tensorflow_service(name: str, settings: DeploySettings) -> dict:
    """Model ``name``'s SavedModel versions, served by KServe's TF Serving runtime (the newest version)."""
    return _service(dns_label(name), settings, "tensorflow-serving", {
        "modelFormat": {"name": "tensorflow", "version": "2"},
        "storageUri": f"{settings.storage_root}/{name}"})


def triton_service(storage_path: str, settings: DeploySettings) -> dict:
    """The Triton repository at ``storage_path`` (relative to the storage root), as ONNX models over v2."""
    return _service(f"{settings.app}-triton", settings, "triton", {
        "modelFormat": {"name": "onnx", "version": "1"},
        "runtime": TRITON_RUNTIME, "protocolVersion": "v2",
        "storageUri": f"{settings.storage_root}/{storage_path}"})


def kserve_objects(tensorflow_names: list[str], triton_path: str | None, settings: DeploySettings) -> dict[str, dict]:
    """``{file name: object}`` for ``kserve/``: one TF Serving service per model, one Triton service or none."""
    objects = {f"{dns_label(name)}-tensorflow.yaml": tensorflow_service(name, settings) for name in tensorflow_names}
    if triton_path is not None:
        objects[f"{settings.app}-triton.yaml"] = triton_service(triton_path, settings)
    return objects
