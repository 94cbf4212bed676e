"""``ftx serving-config EXPORT_ROOT --name NAME``: TF Serving's configs and the manifests that deploy them.

Writes ``models.config``, ``batching.config`` and ``monitoring.config`` into
``--out`` (default: EXPORT_ROOT) and prints the ``tensorflow_model_server``
command lines (binary and docker) that use them. Every file is parsed back
with the protobuf messages before it is kept. Beside them, unless
``--configs-only``: ``kubernetes/`` (TF Serving Deployment, Service,
ConfigMap, autoscaler), ``kserve/`` (InferenceServices) and ``triton/`` (a
Triton model repository), from blessed versions only (serving.deploy); a part
that cannot be made is named in one line and the rest is written. Exit 2 on
bad input, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.deploy.settings import SERVICE_TYPES, TF_SERVING_IMAGE, DeploySettings, dns_label
from serving.deploy.write import KSERVE_DIR, KUBERNETES_DIR, TRITON_DIR, Deployment, check_layout, write_deployment
from serving.tfs_config import (BATCHING_CONFIG, MODELS_CONFIG, MONITORING_CONFIG, PROMETHEUS_PATH, BatchingSettings,
                                ModelEntry, ServingConfigError, VersionPolicy, models_config, monitoring_config,
                                read_config, to_text)
from training.atomic import write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export_root", help="the --out of ftx export: holds NAME/<version> directories")
    parser.add_argument("--name", action="append", required=True,
                        help="model name (a directory under EXPORT_ROOT); repeat for several models")
    parser.add_argument("--out", help="where to write the three files (default: EXPORT_ROOT)")
    parser.add_argument("--version-policy", default="latest", help="latest, latest:N, all or specific:V1,V2")
    parser.add_argument("--label", action="append", default=[], metavar="LABEL=VERSION",
                        help="version label, e.g. stable=1 canary=2 (repeatable; needs a policy serving both)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="batching defaults from TF Serving's tuning guide for this device; gpu also gives "
                             "the manifests TF Serving's -gpu image, one GPU per replica and Triton GPU instances")
    parser.add_argument("--base-path", help="base path as the server sees it (e.g. /models inside docker); "
                                            "default: EXPORT_ROOT's absolute path")
    parser.add_argument("--prometheus-path", default=PROMETHEUS_PATH, help="Prometheus metrics endpoint")
    add_deploy_arguments(parser.add_argument_group(
        "deployment manifests", "kubernetes/, kserve/ and triton/ under --out, from blessed versions only; the "
        "cluster mounts EXPORT_ROOT's contents from a PersistentVolumeClaim"))


def add_deploy_arguments(group) -> None:
    group.add_argument("--configs-only", action="store_true", help="write the three TF Serving files only")
    group.add_argument("--app", help="name of the Kubernetes Deployment, Service and autoscaler and prefix of the "
                                     "ConfigMap and the Triton InferenceService (default: FIRST-NAME-serving)")
    group.add_argument("--namespace", help="Kubernetes namespace of every object (default: kubectl's current one)")
    group.add_argument("--image", help=f"TF Serving image (default: {TF_SERVING_IMAGE}, the release ftx's protos come "
                                       "from; its -gpu tag with --device gpu)")
    group.add_argument("--pvc", default="ftx-exports",
                       help="PersistentVolumeClaim holding EXPORT_ROOT's contents (NAME/<version>/...)")
    group.add_argument("--mount-path", default="/models",
                       help="where the claim is mounted in the container: base paths become MOUNT_PATH/NAME")
    group.add_argument("--storage-uri", help="where KServe reads EXPORT_ROOT's contents (gs://..., s3://...; "
                                             "default: pvc://PVC)")
    group.add_argument("--cpu-request", default="1", help="CPU request per replica (also sizes TF Serving's threads)")
    group.add_argument("--memory-request", default="2Gi", help="memory request per replica")
    group.add_argument("--min-replicas", type=int, default=1, help="autoscaler's lower bound")
    group.add_argument("--max-replicas", type=int, default=4, help="autoscaler's upper bound")
    group.add_argument("--target-cpu", type=int, default=70,
                       help="autoscaler's target: average CPU use, percent of the request")
    group.add_argument("--service-type", choices=SERVICE_TYPES, default="ClusterIP", help="Kubernetes Service type")
    group.add_argument("--triton-max-batch-size", type=int,
                       help="Triton's max_batch_size (default: the batching config's, 32 on cpu, 128 on gpu)")


def deploy_settings(args: argparse.Namespace) -> DeploySettings:
    return DeploySettings(
        app=args.app or f"{dns_label(args.name[0])[:48].rstrip('-')}-serving", namespace=args.namespace,
        image=args.image, pvc=args.pvc, mount_path=args.mount_path, storage_uri=args.storage_uri,
        cpu_request=args.cpu_request, memory_request=args.memory_request, min_replicas=args.min_replicas,
        max_replicas=args.max_replicas, target_cpu_utilization=args.target_cpu, service_type=args.service_type,
        device=args.device, triton_max_batch_size=args.triton_max_batch_size).check()


def parse_labels(items: list[str]) -> dict[str, int]:
    labels: dict[str, int] = {}
    for item in items:
        label, sep, version = item.partition("=")
        if not sep or not (version.strip().isascii() and version.strip().isdigit()):
            raise ServingConfigError(f"--label takes LABEL=VERSION (e.g. stable=1), got {item!r}")
        labels[label.strip()] = int(version)
    return labels


def write_configs(export_root: Path, names: list[str], out: Path, policy: VersionPolicy, labels: dict[str, int],
                  settings: BatchingSettings, base_path: str | None = None,
                  prometheus_path: str = PROMETHEUS_PATH) -> dict[str, Path]:
    """Write, then re-read, the three files; returns their paths."""
    root = base_path or str(export_root.resolve())
    for name in names:
        if base_path is None and not (export_root / name).is_dir():
            raise ServingConfigError(f"no model directory {export_root / name}; run `ftx export ... --name {name} "
                                     f"--out {export_root}` first")
    entries = [ModelEntry(name, f"{root.rstrip('/')}/{name}", policy, labels) for name in names]
    texts = {MODELS_CONFIG: to_text(models_config(entries)), BATCHING_CONFIG: to_text(settings.message()),
             MONITORING_CONFIG: to_text(monitoring_config(prometheus_path))}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, text in texts.items():
        paths[kind] = write_text(out / kind, text)
        read_config(paths[kind], kind)
    return paths


def command_lines(paths: dict[str, Path], export_root: Path, names: list[str], labels: bool = False) -> str:
    """The launch lines; with labels, TF Serving refuses a startup config unless labels may name versions
    that are not loaded yet (they are not, at start), hence the flag."""
    flags = (f"--port=8500 --rest_api_port=8501 --model_config_file={{models}} --enable_batching=true "
             f"--batching_parameters_file={{batching}} --monitoring_config_file={{monitoring}} "
             "--file_system_poll_wait_seconds=5")
    if labels:
        flags += " --allow_version_labels_for_unavailable_models=true"
    local = flags.format(models=paths[MODELS_CONFIG], batching=paths[BATCHING_CONFIG],
                         monitoring=paths[MONITORING_CONFIG])
    configs = paths[MODELS_CONFIG].parent.resolve()
    docker = flags.format(models=f"/config/{MODELS_CONFIG}", batching=f"/config/{BATCHING_CONFIG}",
                          monitoring=f"/config/{MONITORING_CONFIG}")
    return (f"tensorflow_model_server {local}\n\n"
            f"docker run --rm -p 8500:8500 -p 8501:8501 -v {export_root.resolve()}:/models -v {configs}:/config "
            f"tensorflow/serving {docker}\n"
            "(for docker, write the configs with --base-path /models so base_path points inside the container)")


def deploy_lines(deployment: Deployment, out: Path) -> str:
    """What was written and the commands that use it."""
    commands = {KUBERNETES_DIR: f"kubectl apply -f {out / KUBERNETES_DIR}/",
                KSERVE_DIR: f"kubectl apply -f {out / KSERVE_DIR}/",
                TRITON_DIR: f"tritonserver --model-repository={(out / TRITON_DIR).resolve()}"}
    lines = [f"wrote {path}" for paths in deployment.written.values() for path in paths]
    lines += [""] + [commands[folder] for folder in commands if folder in deployment.written]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    export_root = Path(args.export_root)
    out = Path(args.out or export_root)
    try:
        policy, labels = VersionPolicy.parse(args.version_policy), parse_labels(args.label)
        settings = None if args.configs_only else deploy_settings(args)
        if settings is not None:
            check_layout(export_root, args.name, out)
        paths = write_configs(export_root, args.name, out, policy, labels, BatchingSettings.for_device(args.device),
                              args.base_path, args.prometheus_path)
        deployment = None if settings is None else write_deployment(export_root, args.name, out, policy, labels,
                                                                    settings, args.prometheus_path)
    except ServingConfigError as error:
        print(f"ftx serving-config: {error}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(f"wrote {path}")
    print("\n" + command_lines(paths, export_root, args.name, labels=bool(args.label)))
    if deployment is not None:
        if deployment.written:
            print("\n" + deploy_lines(deployment, out))
        for note in deployment.notes:
            print(f"ftx serving-config: {note}", file=sys.stderr)
    return 0
