"""What a deployment needs beyond the export: names, image, volume, resources, scaling.

One checked dataclass read by the Kubernetes, KServe and Triton writers, so
the three describe the same deployment (same claim, same requests, same
replica bounds). Values are checked before anything is written; messages echo
the value received and say what is allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from serving.tfs_config import ServingConfigError

# The TF Serving release family ftx's protos come from (tensorflow-serving-api 2.21, serving/generated):
# the image runs the same ModelServerConfig and BatchingParameters the files are written against.
TF_SERVING_VERSION = "2.21.0"
TF_SERVING_IMAGE = f"tensorflow/serving:{TF_SERVING_VERSION}"
TF_SERVING_GPU_IMAGE = f"tensorflow/serving:{TF_SERVING_VERSION}-gpu"
GRPC_PORT, REST_PORT = 8500, 8501  # TF Serving's own defaults, as ftx serve's
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
DEVICES = ("cpu", "gpu")

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1035 label: Service names need it
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # PersistentVolumeClaim names
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
CPU_UNITS = {None: 1.0, "m": 1e-3}


def dns_label(text: str) -> str:
    """``text`` as a Kubernetes object name (lower case, '-' for '_' and '.'), e.g. ``Fashion_v2`` -> ``fashion-v2``."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")
    if name and not name[0].isalpha():
        name = f"m-{name}"
    return name[:63].rstrip("-")


@dataclass(frozen=True)
class DeploySettings:
    """One deployment of EXPORT_ROOT's contents, mounted from a PersistentVolumeClaim."""

    app: str  # name of the TF Serving Deployment, Service and autoscaler (the ConfigMap is APP-config)
    namespace: str | None = None  # None: kubectl's current namespace
    image: str | None = None  # None: tensorflow/serving 2.21.0 (-gpu with device gpu)
    pvc: str = "ftx-exports"  # holds EXPORT_ROOT's contents: NAME/<version>/..., triton/ when --out is EXPORT_ROOT
    mount_path: str = "/models"  # where the claim is mounted: base paths are MOUNT_PATH/NAME
    storage_uri: str | None = None  # what KServe reads EXPORT_ROOT's contents from; None: pvc://PVC
    cpu_request: str = "1"
    memory_request: str = "2Gi"
    min_replicas: int = 1
    max_replicas: int = 4
    target_cpu_utilization: int = 70  # percent of the CPU request, averaged over the pods
    service_type: str = "ClusterIP"
    device: str = "cpu"
    triton_max_batch_size: int | None = None  # None: the batching config's max_batch_size

    def check(self) -> "DeploySettings":
        problems = []
        if not DNS_LABEL.match(self.app) or len(self.app) > 56:  # room for "-config"
            problems.append(f"--app must be a DNS label of at most 56 characters (lower-case letters, digits, '-', "
                            f"starting with a letter), got {self.app!r}")
        if self.namespace is not None and not DNS_LABEL.match(self.namespace):
            problems.append(f"--namespace must be a DNS label, got {self.namespace!r}")
        if not DNS_SUBDOMAIN.match(self.pvc):
            problems.append(f"--pvc must be a PersistentVolumeClaim name (lower-case DNS subdomain), got {self.pvc!r}")
        if not self.mount_path.startswith("/") or self.mount_path.rstrip("/") == "":
            problems.append(f"--mount-path must be an absolute directory other than /, got {self.mount_path!r}")
        if self.storage_uri is not None and not URI.match(self.storage_uri):
            problems.append(f"--storage-uri must be a URI such as pvc://CLAIM, gs://bucket/exports or s3://..., "
                            f"got {self.storage_uri!r}")
        for flag, value in (("--cpu-request", self.cpu_request), ("--memory-request", self.memory_request)):
            if not QUANTITY.match(value) or float(re.sub(r"[A-Za-z]+$", "", value)) <= 0:
                problems.append(f"{flag} must be a positive Kubernetes quantity (e.g. 500m, 2, 2Gi), got {value!r}")
        if QUANTITY.match(self.cpu_request) and re.sub(r"^[0-9.]+", "", self.cpu_request) not in ("", "m"):
            problems.append(f"--cpu-request takes cores or millicores (2, 1.5, 500m), got {self.cpu_request!r}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            problems.append(f"replicas need 1 <= --min-replicas <= --max-replicas, got {self.min_replicas} and "
                            f"{self.max_replicas}")
        if not 1 <= self.target_cpu_utilization <= 100:
            problems.append(f"--target-cpu must be a percentage from 1 to 100, got {self.target_cpu_utilization}")
        if self.service_type not in SERVICE_TYPES:
            problems.append(f"--service-type must be one of {', '.join(SERVICE_TYPES)}, got {self.service_type!r}")
        if self.device not in DEVICES:
            problems.append(f"device must be cpu or gpu, got {self.device!r}")
        if self.triton_max_batch_size is not None and self.triton_max_batch_size < 1:
            problems.append(f"--triton-max-batch-size must be >= 1, got {self.triton_max_batch_size}")
        if problems:
            raise ServingConfigError("; ".join(problems))
        return self

    @property
    def container_image(self) -> str:
        return self.image or (TF_SERVING_GPU_IMAGE if self.device == "gpu" else TF_SERVING_IMAGE)

    @property
    def cores(self) -> int:
        """Whole cores the CPU request buys: TF Serving's thread pools and batch threads are sized to it, not to
        the node (a container sees every core of its node and would oversubscribe its share)."""
        number = re.match(r"^[0-9.]+", self.cpu_request).group()
        unit = self.cpu_request[len(number):] or None
        return max(1, math.ceil(float(number) * CPU_UNITS[unit]))

    @property
    def storage_root(self) -> str:
        return (self.storage_uri or f"pvc://{self.pvc}").rstrip("/")

    def base_path(self, name: str) -> str:
        """Model ``name``'s base path inside the container."""
        return f"{self.mount_path.rstrip('/')}/{name}"
