"""Every tensorflow_model_server flag is accepted by ftx serve; the honoured ones reach the server.

The flag list is upstream's model_servers/main.cc (48 flags, TF Serving HEAD 9d981c5c), copied here because
the upstream tree is not available in CI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from serving.serve_cli import add_arguments
from serving.serve_flags import HONOURED, NO_EFFECT, channel_arguments, report_no_effect

UPSTREAM_FLAGS = """port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms
rest_api_enable_cors_support enable_batching allow_version_labels_for_unavailable_models batching_parameters_file
enable_per_model_batching_parameters model_config_file model_config_file_poll_wait_seconds model_name model_base_path
num_load_threads num_unload_threads max_num_load_retries load_retry_interval_micros file_system_poll_wait_seconds
flush_filesystem_caches tensorflow_session_parallelism tensorflow_session_config_file tensorflow_intra_op_parallelism
tensorflow_inter_op_parallelism use_alts_credentials ssl_config_file platform_config_file
per_process_gpu_memory_fraction saved_model_tags grpc_channel_arguments grpc_max_threads enable_model_warmup
num_request_iterations_for_warmup version monitoring_config_file remove_unused_fields_from_bundle_metagraph
prefer_tflite_model num_tflite_pools num_tflite_interpreters_per_pool enable_signature_method_name_check
xla_cpu_compilation_enabled xla_gpu_compilation_enabled enable_profiler thread_pool_factory_config_file
mixed_precision skip_initialize_tpu enable_grpc_healthcheck_service enable_serialization_as_tensor_content""".split()


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(allow_abbrev=False)
    add_arguments(result)
    return result


def test_the_flag_table_is_upstreams_whole_list():
    assert len(UPSTREAM_FLAGS) == 48
    assert set(HONOURED) | set(NO_EFFECT) == set(UPSTREAM_FLAGS)
    assert not set(HONOURED) & set(NO_EFFECT)


@pytest.mark.parametrize("name", UPSTREAM_FLAGS)
def test_every_upstream_flag_parses_in_tf_servings_spelling(name):
    kind, default = (HONOURED.get(name) or NO_EFFECT[name])[:2]
    value = {bool: "false" if default else "true", int: "7", float: "0.5", str: "x"}[kind]
    args = parser().parse_args([f"--{name}={value}"])
    assert getattr(args, name) == {"true": True, "false": False}.get(value, kind(value))
    if kind is bool:  # --flag alone means true, as TensorFlow's flag parser reads it
        assert getattr(parser().parse_args([f"--{name}"]), name) is True


def test_flags_without_effect_are_named_in_one_line(caplog):
    args = parser().parse_args(["--enable_profiler=false", "--max_num_load_retries=2", "--port=9"])
    assert report_no_effect(args) == ["max_num_load_retries", "enable_profiler"]
    assert [r.getMessage() for r in caplog.records] == [
        "ftx serve: --max_num_load_retries, --enable_profiler have no effect here"]
    assert report_no_effect(parser().parse_args([])) == []


def test_grpc_channel_arguments_as_server_cc_splits_them():
    assert channel_arguments("grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb") == (
        ("grpc.max_connection_age_ms", 2000), ("grpc.lb_policy_name", "grpclb"))
    assert channel_arguments("") == ()
    with pytest.raises(ValueError, match="key=value"):
        channel_arguments("grpc.max_connection_age_ms")


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_version_prints_and_exits_0():
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.startswith("ftx serve ") and "TensorFlow Serving API" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--enable_batching=false", "--batching_parameters_file=/x"],
     "server_options.batching_parameters_file is set without setting server_options.enable_batching to true."),
    (["--tensorflow_session_parallelism=1", "--tensorflow_intra_op_parallelism=1",
      "--tensorflow_inter_op_parallelism=1"], "You cannot configure all."),
    (["--grpc_channel_arguments=novalue"], "key=value pairs"),
])
def test_upstreams_conflicting_flags_are_refused_with_its_message(args, message, tmp_path):
    result = _run(f"--model_base_path={tmp_path}", "--port=0", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def _start_serve(*flags: str) -> tuple[subprocess.Popen, list[str]]:
    """``ftx serve FLAGS`` in a child process, read until it is serving; its output lines so far."""
    server = subprocess.Popen([sys.executable, "-m", "training.cli", "serve", *flags], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    log = []
    for line in server.stdout:
        log.append(line)
        if "Ctrl-C stops" in line:
            break
    return server, log


def test_grpc_on_a_unix_socket_only(tiny_export, tmp_path):
    """server.cc: --port=0 with --grpc_socket_path serves gRPC on unix:PATH only."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    socket_path = tmp_path / "tfs.sock"
    server, log = _start_serve("--port=0", f"--grpc_socket_path={socket_path}", "--model_name=tiny",
                               f"--model_base_path={tiny_export}", "--file_system_poll_wait_seconds=0")
    try:
        assert f"unix:{socket_path}" in log[-1], "".join(log)
        with grpc.insecure_channel(f"unix:{socket_path}") as channel:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "tiny"
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
        assert [(s.version, s.state) for s in status.model_version_status] == [(1, 30)]  # AVAILABLE
    finally:
        server.terminate()
        assert server.wait(60) == 0, "".join(log)


def _config_text(entries: list[tuple[str, str, dict[str, int]]]) -> str:
    from serving.tfs_config import ModelEntry, VersionPolicy, models_config, to_text

    return to_text(models_config([ModelEntry(name, base, VersionPolicy("all"), labels)
                                  for name, base, labels in entries]))


def test_model_config_file_is_polled_and_applied_live(tiny_export, tmp_path):
    """server.cc (--model_config_file_poll_wait_seconds: the file re-read and applied live);
    tensorflow_model_server_test.py: testModelConfigReload (a model added to the file starts serving)."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    base = tmp_path / "tiny"
    shutil.copytree(tiny_export / "1", base / "1")
    config = tmp_path / "models.config"
    config.write_text(_config_text([("tiny", str(base), {"stable": 1})]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server, log = _start_serve(f"--port={port}", f"--model_config_file={config}",
                               "--model_config_file_poll_wait_seconds=1", "--file_system_poll_wait_seconds=1")
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = model_service_pb2_grpc.ModelServiceStub(channel)

        def status(name: str):
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            return [(s.version, s.state) for s in stub.GetModelStatus(request, timeout=30).model_version_status]

        config.write_text(_config_text([("tiny", str(base), {"stable": 1}), ("tiny2", str(base), {})]))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if status("tiny2") == [(1, 30)]:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.3)
        assert status("tiny2") == [(1, 30)], "".join(log)
        channel.close()
    finally:
        server.terminate()
        server.wait(60)


def test_labels_must_name_available_versions_unless_allowed(tiny_export):
    """server_core.cc UpdateModelVersionLabelMap, with server_core_test.cc's cases for
    allow_version_labels_for_unavailable_models (a new label may name a missing version; an existing one may not
    be moved to one)."""
    from serving.errors import ServingError
    from serving.loader import VersionLoader
    from serving.model_store import ModelStore
    from serving.tfs_config import ModelEntry, VersionPolicy

    store = ModelStore([ModelEntry("tiny", str(tiny_export))], VersionLoader("onnx", 1))
    store.start(0)
    try:
        entry = ModelEntry("tiny", str(tiny_export), VersionPolicy())
        store.reconfigure([ModelEntry(entry.name, entry.base_path, entry.policy, {"stable": 1})])
        assert store.label_version("tiny", "stable") == 1
        with pytest.raises(ServingError, match="Request to assign label to version 7 of model tiny, which is not "
                                               "currently available for inference"):
            store.reconfigure([ModelEntry(entry.name, entry.base_path, entry.policy, {"canary": 7})])
        store.reconfigure([ModelEntry(entry.name, entry.base_path, entry.policy, {"stable": 1, "canary": 7})],
                          allow_unavailable_labels=True)
        assert store.label_version("tiny", "canary") == 7
        with pytest.raises(ServingError, match="version 8 of model tiny"):  # moving an existing label: refused
            store.reconfigure([ModelEntry(entry.name, entry.base_path, entry.policy, {"stable": 8})],
                              allow_unavailable_labels=True)
        assert store.label_version("tiny", "stable") == 1  # a refused reload changes nothing
    finally:
        store.stop()
