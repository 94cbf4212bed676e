"""Every flag ``tensorflow_model_server`` 2.x takes (model_servers/main.cc), so launch lines carry over.

Flags that mean something here are honoured; the rest are accepted and, when
given a value other than their default, reported in one line as having no
effect. TF Serving's own spellings work: ``--flag=value``, ``--flag value``,
and ``--bool_flag`` / ``--bool_flag=true|false``.
"""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger(__name__)
CORES = os.cpu_count() or 1


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# name: (type, default, help). Honoured by ftx serve:
HONOURED = {
    "port": (int, 8500, "gRPC port (0: off when --grpc_socket_path is given; otherwise pick a free one)"),
    "grpc_socket_path": (str, "", "also serve gRPC on this Unix socket"),
    "rest_api_port": (int, 0, "REST port; 0 (TF Serving's default) is off"),
    "rest_api_num_threads": (int, 4 * CORES, "REST requests handled at once"),
    "rest_api_timeout_in_ms": (int, 30000, "a REST request's headers and body must arrive within this"),
    "enable_batching": (bool, False, "server-side batching"),
    "allow_version_labels_for_unavailable_models": (bool, False,
                                                    "allow new labels to name versions that are not loaded yet"),
    "batching_parameters_file": (str, "", "batching.config (BatchingParameters text)"),
    "model_config_file": (str, "", "models.config (ModelServerConfig text), instead of --model_name/--model_base_path"),
    "model_config_file_poll_wait_seconds": (int, 0, "seconds between re-reads of --model_config_file (0: read once)"),
    "model_name": (str, "default", "name of the one model of --model_base_path"),
    "model_base_path": (str, "", "directory of int64-named version directories (an ftx export NAME/)"),
    "file_system_poll_wait_seconds": (int, 1, "seconds between scans for new versions (0: scan once)"),
    "tensorflow_session_parallelism": (int, 0, "runtime threads (intra- and inter-op); 0: automatic"),
    "tensorflow_intra_op_parallelism": (int, 0, "runtime threads per call (ONNX Runtime / TensorFlow); 0: automatic"),
    "tensorflow_inter_op_parallelism": (int, 0, "runtime inter-op threads (TensorFlow backend); 0: automatic"),
    "ssl_config_file": (str, "", "ssl.config (SSLConfig text, PEM inline): gRPC over TLS"),
    "grpc_channel_arguments": (str, "", "comma-separated gRPC server arguments, e.g. grpc.max_connection_age_ms=2000"),
    "grpc_max_threads": (int, 4 * CORES, "gRPC requests handled at once"),
    "enable_model_warmup": (bool, True, "replay assets.extra/tf_serving_warmup_requests before serving a version"),
    "num_request_iterations_for_warmup": (int, 0, "times each warmup request is replayed (0: once)"),
    "monitoring_config_file": (str, "", "monitoring.config: Prometheus metrics on the REST port"),
    "enable_serialization_as_tensor_content": (bool, False,
                                               "Predict outputs in tensor_content instead of the typed *_val fields"),
    "version": (bool, False, "print the version and exit"),
}
# Accepted so TF Serving launch lines start; they have no effect here.
NO_EFFECT = {
    "rest_api_enable_cors_support": (bool, False), "enable_per_model_batching_parameters": (bool, False),
    "num_load_threads": (int, 0), "num_unload_threads": (int, 0), "max_num_load_retries": (int, 5),
    "load_retry_interval_micros": (int, 60_000_000), "flush_filesystem_caches": (bool, True),
    "tensorflow_session_config_file": (str, ""), "use_alts_credentials": (bool, False),
    "platform_config_file": (str, ""), "per_process_gpu_memory_fraction": (float, 0.0),
    "saved_model_tags": (str, "serve"), "remove_unused_fields_from_bundle_metagraph": (bool, True),
    "prefer_tflite_model": (bool, False), "num_tflite_pools": (int, CORES),
    "num_tflite_interpreters_per_pool": (int, 1), "enable_signature_method_name_check": (bool, False),
    "xla_cpu_compilation_enabled": (bool, False), "xla_gpu_compilation_enabled": (bool, False),
    "enable_profiler": (bool, True), "thread_pool_factory_config_file": (str, ""), "mixed_precision": (str, ""),
    "skip_initialize_tpu": (bool, False), "enable_grpc_healthcheck_service": (bool, False),
}
WHY_NO_EFFECT = ("failed loads are retried when their directory changes, not on a timer",
                 "there is no TensorFlow session, TPU, XLA or profiler to configure")


def _add(parser: argparse.ArgumentParser, name: str, kind, default, help_text: str) -> None:
    if kind is bool:
        parser.add_argument(f"--{name}", type=parse_bool, nargs="?", const=True, default=default,
                            metavar="true|false", help=help_text)
    else:
        parser.add_argument(f"--{name}", type=kind, default=default, help=help_text)


def add_tf_serving_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TF Serving flags honoured")
    for name, (kind, default, help_text) in HONOURED.items():
        _add(group, name, kind, default, help_text)
    quiet = parser.add_argument_group("TF Serving flags accepted without effect (one line says so when set)")
    for name, (kind, default) in NO_EFFECT.items():
        _add(quiet, name, kind, default, argparse.SUPPRESS)


def report_no_effect(args: argparse.Namespace) -> list[str]:
    """One line per accepted flag that was set and has no effect here."""
    names = [name for name, (_, default) in NO_EFFECT.items() if getattr(args, name) != default]
    if names:
        log.warning("ftx serve: %s %s no effect here", ", ".join(f"--{n}" for n in names),
                    "has" if len(names) == 1 else "have")
    return names


def channel_arguments(text: str) -> tuple[tuple[str, str | int], ...]:
    """``a=1,b=x`` -> (("a", 1), ("b", "x")): integers as ints, as server.cc passes them."""
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments takes key=value pairs separated by commas, got {item!r}")
        value = value.split("=")[0]
        try:
            arguments.append((key, int(value)))
        except ValueError:
            arguments.append((key, value))
    return tuple(arguments)
