"""``ftx serving-config EXPORT_ROOT --name NAME``: TF Serving's models, batching and monitoring configs.

Writes ``models.config``, ``batching.config`` and ``monitoring.config`` into
``--out`` (default: EXPORT_ROOT) and prints the ``tensorflow_model_server``
command lines (binary and docker) that use them. Every file is parsed back
with the protobuf messages before it is kept. Exit 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
                        help="batching defaults from TF Serving's tuning guide for this device")
    parser.add_argument("--base-path", help="base path as the server sees it (e.g. /models inside docker); "
                                            "default: EXPORT_ROOT's absolute path")
    parser.add_argument("--prometheus-path", default=PROMETHEUS_PATH, help="Prometheus metrics endpoint")


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


def run(args: argparse.Namespace) -> int:
    export_root = Path(args.export_root)
    try:
        paths = write_configs(export_root, args.name, Path(args.out or export_root),
                              VersionPolicy.parse(args.version_policy), parse_labels(args.label),
                              BatchingSettings.for_device(args.device), args.base_path, args.prometheus_path)
    except ServingConfigError as error:
        print(f"ftx serving-config: {error}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(f"wrote {path}")
    print("\n" + command_lines(paths, export_root, args.name, labels=bool(args.label)))
    return 0
