"""ftx client's one-line messages when it is pointed at the wrong thing, against a real server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving.client import ClientOptions, GrpcClient, RestClient, server_address
from test_serving_hostile import free_port
from test_serving_server import start


@pytest.fixture(scope="module")
def server(tiny_export):
    server = start(tiny_export)
    yield server
    server.stop(1)


@pytest.fixture(scope="module")
def image(tiny_dataset):
    return next((tiny_dataset / "test" / "red").glob("*.png"))


def _client(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", "client", *map(str, args), "--model", "tiny"],
                          capture_output=True, text=True, timeout=120)


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def test_rest_pointed_at_the_grpc_port_says_so_in_one_line(server, image):
    line = _one_line(_client("predict", image, "--rest", "--server", f"127.0.0.1:{server.grpc_port}"))
    assert line.startswith(f"ftx client: http://127.0.0.1:{server.grpc_port} does not answer HTTP/1.1: it looks "
                           "like a gRPC port; drop --rest, or use the REST port (TF Serving's default is 8501)")


def test_grpc_pointed_at_the_rest_port_says_so_in_one_line(server, image):
    line = _one_line(_client("predict", image, "--server", f"127.0.0.1:{server.rest_port}"))
    assert line == (f"ftx client: 127.0.0.1:{server.rest_port} answers HTTP/1.1, not gRPC: it looks like a REST "
                    "port; use --rest, or the gRPC port (TF Serving's default is 8500)")


@pytest.mark.parametrize("rest", [False, True])
def test_nothing_listening_is_said_as_such(rest, image):
    port = free_port()  # bound and released: nothing listens there
    line = _one_line(_client("status", *(["--rest"] if rest else []), "--server", f"127.0.0.1:{port}"))
    where = f"http://127.0.0.1:{port} (REST)" if rest else f"127.0.0.1:{port} (gRPC)"
    assert line == f"ftx client: nothing is listening on {where}"


def test_the_right_ports_answer_and_both_clients_are_context_managers(server, image):
    result = _client("predict", image, "--server", f"127.0.0.1:{server.grpc_port}")
    assert result.returncode == 0 and result.stdout.startswith(f"{image}: red "), result.stderr
    with GrpcClient(f"127.0.0.1:{server.grpc_port}", ClientOptions("tiny")) as grpc_client, \
            RestClient(f"127.0.0.1:{server.rest_port}", ClientOptions("tiny")) as rest_client:
        assert grpc_client.status() == rest_client.status() == [(1, "AVAILABLE")]


@pytest.mark.parametrize("given, rest, address", [
    ("localhost", False, "localhost:8500"),
    ("localhost", True, "localhost:8501"),
    ("http://models.internal", True, "http://models.internal:8501"),
    ("https://models.internal/", True, "https://models.internal:8501/"),
    ("[::1]", False, "[::1]:8500"),
    ("[::1]:9000", False, "[::1]:9000"),
    ("10.0.0.2:9000", True, "10.0.0.2:9000"),
    ("http://10.0.0.2:9000", True, "http://10.0.0.2:9000"),
])
def test_a_server_without_a_port_gets_tf_servings_default_port(given, rest, address):
    resolved, note = server_address(given, rest)
    assert resolved == address
    assert (note is None) == (resolved == given)
    if note:
        assert note == (f"no port in --server {given}: using {8501 if rest else 8500}, TF Serving's "
                        f"{'REST' if rest else 'gRPC'} default")


def test_a_base_path_without_a_servable_version_says_why_at_start_and_in_the_status(tiny_export, tmp_path, caplog):
    import json
    import shutil
    import urllib.error
    import urllib.request

    from serving.client import ClientError

    base = tmp_path / "tiny"
    shutil.copytree(tiny_export / "1", base / "1.not_blessed")
    (base / "1.not_blessed" / "BLESSED").unlink()
    (base / "1.not_blessed" / "NOT_BLESSED").write_text("onnx: max |dp| 3.1e-02 > 1e-04\n")  # as export writes it
    why = (f"no version directory under {base} (versions are integers, e.g. {base / '1'}); "
           "skipped 1.not_blessed (not blessed: onnx: max |dp| 3.1e-02 > 1e-04)")
    with caplog.at_level("WARNING", logger="serving.model_store"):
        server = start(base)
    try:
        assert f"model tiny: {why}" in caplog.text
        with pytest.raises(ClientError) as refused:
            GrpcClient(f"127.0.0.1:{server.grpc_port}", ClientOptions("tiny")).status()
        assert refused.value.code == "NOT_FOUND"
        assert refused.value.message == f"Could not find any versions of model tiny: {why}"
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/tiny", timeout=30)
        assert answer.value.code == 404
        assert json.loads(answer.value.read()) == {"error": f"Could not find any versions of model tiny: {why}"}
    finally:
        server.stop(1)
