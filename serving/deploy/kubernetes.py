"""TF Serving on plain Kubernetes: a ConfigMap of its three config files, a Deployment, a Service, an autoscaler.

After TF Serving's own example (tensorflow_serving/example/resnet_k8s.yaml:
an apps/v1 Deployment of the ``tensorflow/serving`` image behind a Service),
with what a production rollout adds: the export mounted read-only from a
PersistentVolumeClaim at the base paths models.config names, the configs from
a ConfigMap, probes on TF Serving's REST model status (``GET /v1/models/NAME``
answers 200 only once the model is loaded, so a pod takes traffic when it can
serve), CPU and memory requests (the autoscaler's utilisation is a share of
the CPU request), thread pools sized to that request, warm-up on, and a hash
of the configs on the pod template so that changing them rolls the pods.
"""

from __future__ import annotations

import hashlib

from google.protobuf import text_format

from serving.deploy.settings import GRPC_PORT, REST_PORT, DeploySettings
from serving.deploy.yaml_files import metadata
from serving.tfs_config import (BATCHING_CONFIG, MODELS_CONFIG, MONITORING_CONFIG, PARSERS, BatchingSettings,
                                ModelEntry, ServingConfigError, models_config, monitoring_config, to_text)

CONFIG_MOUNT = "/config"
SERVER = "/usr/bin/tensorflow_model_server"  # the image's binary; its entrypoint script would add --model_name
# As KServe runs this image (config/runtimes/kserve-tensorflow-serving.yaml): not root, no privileges.
SECURITY_CONTEXT = {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]}}
STARTUP_SECONDS = 600  # loading and warming a large model may take minutes before the probes below apply


def config_texts(entries: list[ModelEntry], batching: BatchingSettings, prometheus_path: str) -> dict[str, str]:
    """The ConfigMap's three files, each parsed back with its message and TF Serving's checks."""
    texts = {MODELS_CONFIG: to_text(models_config(entries)), BATCHING_CONFIG: to_text(batching.message()),
             MONITORING_CONFIG: to_text(monitoring_config(prometheus_path))}
    for kind, text in texts.items():
        message_class, check = PARSERS[kind]
        try:
            check(text_format.Parse(text, message_class()()))
        except text_format.ParseError as error:
            raise ServingConfigError(f"the ConfigMap's {kind} does not parse back: {error}") from None
    return texts


def server_args(settings: DeploySettings, labels: bool) -> list[str]:
    args = [f"--port={GRPC_PORT}", f"--rest_api_port={REST_PORT}",
            f"--model_config_file={CONFIG_MOUNT}/{MODELS_CONFIG}",
            "--enable_batching=true", f"--batching_parameters_file={CONFIG_MOUNT}/{BATCHING_CONFIG}",
            f"--monitoring_config_file={CONFIG_MOUNT}/{MONITORING_CONFIG}", "--enable_model_warmup=true",
            f"--tensorflow_intra_op_parallelism={settings.cores}",
            f"--tensorflow_inter_op_parallelism={settings.cores}"]
    if labels:  # at start no version is loaded yet, so TF Serving refuses labels without this flag
        args.append("--allow_version_labels_for_unavailable_models=true")
    return args


def _container(settings: DeploySettings, probe_model: str, labels: bool) -> dict:
    status = {"httpGet": {"path": f"/v1/models/{probe_model}", "port": REST_PORT}, "timeoutSeconds": 5}
    resources: dict = {"requests": {"cpu": settings.cpu_request, "memory": settings.memory_request}}
    if settings.device == "gpu":
        resources["limits"] = {"nvidia.com/gpu": 1}
    return {
        "name": "tensorflow-serving",
        "image": settings.container_image,
        "command": [SERVER],
        "args": server_args(settings, labels),
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                  {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"}],
        "startupProbe": {**status, "periodSeconds": 10, "failureThreshold": STARTUP_SECONDS // 10},
        "readinessProbe": {**status, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": GRPC_PORT}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": resources,
        "securityContext": SECURITY_CONTEXT,
        "volumeMounts": [{"name": "models", "mountPath": settings.mount_path, "readOnly": True},
                         {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
    }


def tf_serving_objects(entries: list[ModelEntry], settings: DeploySettings, batching: BatchingSettings,
                       prometheus_path: str) -> dict[str, dict]:
    """``{file name: object}`` for ``kubernetes/``; ``entries`` carry base paths under the mount path."""
    texts = config_texts(entries, batching, prometheus_path)
    labels = {"app.kubernetes.io/name": "tensorflow-serving", "app.kubernetes.io/instance": settings.app}
    config_name = f"{settings.app}-config"
    digest = hashlib.sha256("".join(texts[kind] for kind in sorted(texts)).encode()).hexdigest()
    has_labels = any(entry.labels for entry in entries)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(settings.app, settings.namespace, labels),
        "spec": {  # no replicas: the autoscaler owns the count (a re-apply would otherwise reset it)
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"ftx/config-sha256": digest}},
                "spec": {
                    "containers": [_container(settings, entries[0].name, has_labels)],
                    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": settings.pvc,
                                                                             "readOnly": True}},
                                {"name": "config", "configMap": {"name": config_name}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(settings.app, settings.namespace, labels),
        "spec": {"type": settings.service_type, "selector": labels,
                 "ports": [{"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
                            "appProtocol": "grpc"},
                           {"name": "http", "port": REST_PORT, "targetPort": "http", "protocol": "TCP"}]},
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(settings.app, settings.namespace, labels),
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": settings.app},
                 "minReplicas": settings.min_replicas, "maxReplicas": settings.max_replicas,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization",
                                               "averageUtilization": settings.target_cpu_utilization}}}]},
    }
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": metadata(config_name, settings.namespace, labels), "data": texts}
    return {"configmap.yaml": configmap, "deployment.yaml": deployment, "service.yaml": service,
            "hpa.yaml": autoscaler}
