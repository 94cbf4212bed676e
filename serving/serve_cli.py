"""``ftx serve``: TF Serving's API on ONNX Runtime (or the SavedModel), started with TF Serving's own flags.

Every ``tensorflow_model_server`` flag is accepted (serving/serve_flags.py);
``--backend``, ``--host`` (default 127.0.0.1: open it with ``--host 0.0.0.0``
for docker and Kubernetes), ``--max_request_bytes`` and ``--max_image_pixels``
are ftx's own. Runs until SIGINT/SIGTERM, then finishes in-flight requests.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from serving.serve_flags import CORES, add_tf_serving_flags, channel_arguments, report_no_effect
from serving.tfs_config import (BATCHING_CONFIG, MODELS_CONFIG, MONITORING_CONFIG, PROMETHEUS_PATH, SSL_CONFIG,
                                BatchingSettings, ModelEntry, ServingConfigError, model_entries, read_config)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tf_serving_flags(parser)
    own = parser.add_argument_group("ftx serve's own flags")
    own.add_argument("--backend", choices=("onnx", "savedmodel"), default="onnx",
                     help="onnx: model.onnx with ONNX Runtime (the edge case); savedmodel: TensorFlow")
    own.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 opens it to the network")
    own.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024,
                     help="largest gRPC message or REST body accepted")
    own.add_argument("--max_image_pixels", type=int, default=4096 * 4096,
                     help="largest encoded image (width x height, read from its header) decoded")
    own.add_argument("--intra_op_threads", type=int, default=0, help=argparse.SUPPRESS)  # before 0.2


def version_text() -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"
    return (f"ftx serve {version('ftx')} (TensorFlow Serving API {version('tensorflow-serving-api')})\n"
            f"ONNX Runtime: {version('onnxruntime')}\n")


def entries_from_args(args: argparse.Namespace) -> list[ModelEntry]:
    if args.model_config_file:
        if args.model_base_path:
            log.warning("--model_base_path is ignored with --model_config_file (as in TF Serving)")
        return model_entries(read_config(args.model_config_file, MODELS_CONFIG))
    if not args.model_base_path:
        raise ServingConfigError("Both server_options.model_base_path and server_options.model_config_file are empty!"
                                 " Give --model_base_path DIR (with --model_name) or --model_config_file FILE")
    if not Path(args.model_base_path).is_dir():
        raise ServingConfigError(f"--model_base_path {args.model_base_path} is not a directory")
    return [ModelEntry(args.model_name, args.model_base_path)]


def batching_settings(args: argparse.Namespace) -> BatchingSettings | None:
    if not args.enable_batching:
        if args.batching_parameters_file:
            raise ServingConfigError("server_options.batching_parameters_file is set without setting "
                                     "server_options.enable_batching to true.")
        return None
    if args.batching_parameters_file:
        return BatchingSettings.from_message(read_config(args.batching_parameters_file, BATCHING_CONFIG))
    return BatchingSettings.for_device("cpu")


def runtime_threads(args: argparse.Namespace) -> int | None:
    intra, inter, session = (args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism,
                             args.tensorflow_session_parallelism)
    if intra > 0 and inter > 0 and session > 0:
        raise ServingConfigError("Either configure server_options.tensorflow_session_parallelism or "
                                 "(server_options.tensorflow_intra_op_parallelism, "
                                 "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all.")
    return intra or session or args.intra_op_threads or None


def _watch_config(path: str, seconds: int, apply, stopping: threading.Event, last: str) -> None:
    """--model_config_file_poll_wait_seconds: re-read the file and apply it when it differs from ``last`` (the
    text the server started with, so an edit made while the first versions loaded is not missed)."""
    while not stopping.wait(seconds):
        try:
            text = Path(path).read_text(encoding="utf-8")
            if text != last:
                apply(read_config(path, MODELS_CONFIG))
                last = text
                log.info("applied the changed %s", path)
        except Exception as error:  # noqa: BLE001 - a bad edit must not stop the server
            log.error("Failed to reload %s: %s", path, getattr(error, "message", error))
            last = text


@dataclass(frozen=True)
class Launch:
    """What a launch line asks for, parsed and checked before anything loads."""

    entries: list[ModelEntry]
    batching: BatchingSettings | None
    threads: int | None
    monitoring: object | None
    ssl: object | None
    channel_args: tuple
    config_text: str  # --model_config_file's text as read at start (the poller's baseline)


def parse_launch(args: argparse.Namespace) -> Launch:
    """Raises ServingConfigError, ValueError or OSError with a one-line message."""
    config_text = Path(args.model_config_file).read_text(encoding="utf-8") if args.model_config_file else ""
    return Launch(entries_from_args(args), batching_settings(args), runtime_threads(args),
                  read_config(args.monitoring_config_file, MONITORING_CONFIG) if args.monitoring_config_file else None,
                  read_config(args.ssl_config_file, SSL_CONFIG) if args.ssl_config_file else None,
                  channel_arguments(args.grpc_channel_arguments), config_text)


def rest_port_and_metrics(args: argparse.Namespace, monitoring) -> tuple[int | None, str | None]:
    """REST off when it would share the gRPC port (TF Serving logs and skips it); Prometheus on REST only."""
    rest_port = args.rest_api_port or None
    if rest_port is not None and rest_port == args.port:
        log.error("server_options.http_port cannot be same as grpc_port. Please use a different port for HTTP/REST "
                  "API. Skipped exporting HTTP/REST API.")
        rest_port = None
    if monitoring is None or not monitoring.prometheus_config.enable:
        return rest_port, None
    if rest_port is None:
        log.warning("Prometheus metrics are served on the REST port; give --rest_api_port to expose them")
    return rest_port, monitoring.prometheus_config.path or PROMETHEUS_PATH


def server_limits(args: argparse.Namespace, channel_args: tuple):
    """TF Serving's 0 (or less) for a thread count or timeout means its default."""
    from serving.http_server import HttpLimits
    from serving.server import ServerLimits

    default = HttpLimits()
    rest = HttpLimits(num_threads=args.rest_api_num_threads if args.rest_api_num_threads > 0 else default.num_threads,
                      request_timeout_s=args.rest_api_timeout_in_ms / 1000 if args.rest_api_timeout_in_ms > 0
                      else default.request_timeout_s)
    return ServerLimits(host=args.host, max_request_bytes=args.max_request_bytes,
                        grpc_threads=args.grpc_max_threads if args.grpc_max_threads > 0 else 4 * CORES,
                        rest=rest, grpc_socket_path=args.grpc_socket_path, grpc_channel_arguments=channel_args,
                        tensor_content=args.enable_serialization_as_tensor_content)


def run(args: argparse.Namespace) -> int:
    if args.version:
        sys.stdout.write(version_text())
        return 0
    from serving.allocator import keep_freed_memory
    from serving.errors import ServingError
    from serving.loader import VersionLoader
    from serving.model_store import ModelStore
    from serving.reload import apply_model_config
    from serving.servable import InputLimits
    from serving.server import ModelServer

    report_no_effect(args)
    from training.installs import has, lacking

    runtime = "tensorflow" if args.backend == "savedmodel" else "onnxruntime"
    if not has(runtime):  # the edge install has ONNX Runtime only; a bare base install has neither
        print(f"ftx serve: --backend {args.backend} {lacking(runtime)}", file=sys.stderr)
        return 2
    try:
        launch = parse_launch(args)
    except (ServingConfigError, ValueError, OSError) as error:
        print(f"ftx serve: {error}", file=sys.stderr)
        return 2
    rest_port, metrics_path = rest_port_and_metrics(args, launch.monitoring)
    keep_freed_memory()  # this process serves: large request buffers are reused, not faulted in anew
    loader = VersionLoader(args.backend, launch.threads, args.tensorflow_inter_op_parallelism or
                           args.tensorflow_session_parallelism or None,
                           InputLimits(max_image_pixels=args.max_image_pixels), launch.batching,
                           args.enable_model_warmup, max(1, args.num_request_iterations_for_warmup))
    store = ModelStore([replace(entry, labels={}) for entry in launch.entries], loader)
    store.start(args.file_system_poll_wait_seconds)
    allow_labels = args.allow_version_labels_for_unavailable_models

    def apply(config) -> None:
        apply_model_config(store, config, allow_labels)

    try:
        store.reconfigure(launch.entries, allow_labels)  # labels as TF Serving checks them: on versions now serving
        server = ModelServer(store, args.port, rest_port, server_limits(args, launch.channel_args),
                             metrics_path=metrics_path, ssl=launch.ssl, reload=apply).start()
    except (OSError, RuntimeError, ServingError, ServingConfigError, ValueError) as error:
        store.stop()
        print(f"ftx serve: {getattr(error, 'message', error)}", file=sys.stderr)
        return 2
    _report_versions(store)
    print(f"ftx serve: gRPC on {args.host}:{server.grpc_port}"
          + (f" and unix:{args.grpc_socket_path}" if args.grpc_socket_path else "")
          + (f", REST on {args.host}:{server.rest_port}" if server.rest_port else "")
          + f" ({args.backend}); Ctrl-C stops", flush=True)
    stopping = threading.Event()
    if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
        threading.Thread(target=_watch_config, args=(args.model_config_file, args.model_config_file_poll_wait_seconds,
                                                     apply, stopping, launch.config_text), name="ftx-config-poller",
                         daemon=True).start()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    log.info("stopping: finishing in-flight requests")
    server.stop()
    return 0


def _report_versions(store) -> None:
    for name in store.names():
        states = store.states(name)
        serving = sorted(v for v, s in states.items() if s.state == "AVAILABLE")
        why = "" if serving else store.no_versions(name)
        print(f"ftx serve: model {name}: serving version(s) {serving or 'none'}" + (f": {why}" if why else ""),
              flush=True)
        for version, state in sorted(states.items()):
            if state.error_message:
                print(f"ftx serve: model {name} version {version} failed to load: {state.error_message}", flush=True)
