"""``ftx serve``: TF Serving's API on ONNX Runtime (or the SavedModel), started with TF Serving's own flags.

A ``tensorflow_model_server`` launch line carries over: ``--port``,
``--rest_api_port``, ``--model_name``/``--model_base_path`` or
``--model_config_file``, ``--enable_batching``/``--batching_parameters_file``,
``--monitoring_config_file``, ``--ssl_config_file``, ``--file_system_poll_wait_seconds``, in the
``--flag=value`` form too. ``--backend`` and ``--host`` are ftx's own.
Runs until SIGINT/SIGTERM, then finishes in-flight requests and exits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from serving.tfs_config import (BATCHING_CONFIG, MODELS_CONFIG, MONITORING_CONFIG, SSL_CONFIG, BatchingSettings,
                                ModelEntry, ServingConfigError, model_entries, read_config)

log = logging.getLogger(__name__)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: pick a free one)")
    parser.add_argument("--rest_api_port", type=int, default=0, help="REST port; 0 (TF Serving's default) is off")
    parser.add_argument("--model_name", default="default", help="name of the one model of --model_base_path")
    parser.add_argument("--model_base_path", help="directory of integer version directories (an ftx export NAME/)")
    parser.add_argument("--model_config_file", help="models.config (ModelServerConfig text), instead of the two above")
    parser.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False,
                        help="server-side batching")
    parser.add_argument("--batching_parameters_file", help="batching.config (BatchingParameters text)")
    parser.add_argument("--monitoring_config_file", help="monitoring.config: Prometheus metrics on the REST port")
    parser.add_argument("--ssl_config_file", help="ssl.config (SSLConfig text, PEM inline): gRPC over TLS")
    parser.add_argument("--file_system_poll_wait_seconds", type=int, default=1,
                        help="seconds between scans for new versions (0: load once)")
    parser.add_argument("--backend", choices=("onnx", "savedmodel"), default="onnx",
                        help="onnx: model.onnx with ONNX Runtime (the edge case); savedmodel: TensorFlow")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 opens it to the network")
    parser.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024,
                        help="largest gRPC message or REST body accepted")
    parser.add_argument("--grpc_max_threads", type=int, default=32, help="gRPC requests handled at once")
    parser.add_argument("--intra_op_threads", type=int, default=0, help="ONNX Runtime threads per call (0: cores)")


def entries_from_args(args: argparse.Namespace) -> list[ModelEntry]:
    if args.model_config_file and args.model_base_path:
        raise ServingConfigError("give --model_config_file or --model_base_path, not both")
    if args.model_config_file:
        return model_entries(read_config(args.model_config_file, MODELS_CONFIG))
    if not args.model_base_path:
        raise ServingConfigError("nothing to serve: give --model_base_path DIR (with --model_name) or "
                                 "--model_config_file FILE")
    if not Path(args.model_base_path).is_dir():
        raise ServingConfigError(f"--model_base_path {args.model_base_path} is not a directory")
    return [ModelEntry(args.model_name, args.model_base_path)]


def batching_settings(args: argparse.Namespace) -> BatchingSettings | None:
    if not args.enable_batching:
        if args.batching_parameters_file:
            log.warning("--batching_parameters_file is ignored without --enable_batching (as in TF Serving)")
        return None
    if args.batching_parameters_file:
        return BatchingSettings.from_message(read_config(args.batching_parameters_file, BATCHING_CONFIG))
    return BatchingSettings.for_device("cpu")


def run(args: argparse.Namespace) -> int:
    from serving.model_store import ModelStore
    from serving.server import ModelServer, ServerLimits

    try:
        entries = entries_from_args(args)
        batching = batching_settings(args)
        monitoring = read_config(args.monitoring_config_file, MONITORING_CONFIG) if args.monitoring_config_file else None
        ssl = read_config(args.ssl_config_file, SSL_CONFIG) if args.ssl_config_file else None
    except ServingConfigError as error:
        print(f"ftx serve: {error}", file=sys.stderr)
        return 2
    if monitoring is not None and monitoring.prometheus_config.enable and not args.rest_api_port:
        log.warning("Prometheus metrics are served on the REST port; give --rest_api_port to expose them")
    store = ModelStore(entries, args.backend, threads=args.intra_op_threads or None, batching=batching)
    store.start(args.file_system_poll_wait_seconds)
    limits = ServerLimits(host=args.host, max_request_bytes=args.max_request_bytes, grpc_threads=args.grpc_max_threads)
    try:
        server = ModelServer(store, args.port, args.rest_api_port or None, limits,
                             metrics_path=monitoring.prometheus_config.path if monitoring is not None and
                             monitoring.prometheus_config.enable else None, ssl=ssl).start()
    except OSError as error:
        store.stop()
        print(f"ftx serve: {error}", file=sys.stderr)
        return 2
    print(f"ftx serve: gRPC on {args.host}:{server.grpc_port}"
          + (f", REST on {args.host}:{server.rest_port}" if server.rest_port else "")
          + f" ({args.backend}); Ctrl-C stops", flush=True)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    log.info("stopping: finishing in-flight requests")
    server.stop()
    return 0

