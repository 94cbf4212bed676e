"""Hostile clients against a real ``ftx serve`` process: each gets the right error at a bounded memory cost.

The server runs as ``python -m training.cli serve`` with TF Serving's flags, so its memory and threads can be
read from /proc/PID/status. Before each hostile request the peak is reset (``5`` to /proc/PID/clear_refs);
after it, VmHWM minus the VmRSS just before is what the request cost at its worst. Then a correct Predict
must still be answered correctly.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from export.run_dir import read_run
from export.samples import load_samples
from export.savedmodel import load_keras_model

MAX_GROWTH_MB = 50  # peak RSS a single hostile request may add
MAX_THREADS = 100
REQUEST_TIMEOUT_MS = 2000  # --rest_api_timeout_in_ms
ATOL = 1e-4


@pytest.fixture(scope="module")
def exported(tiny_export, tiny_run):
    """Model 'tiny' version 1, 12 real test images (pixels and file bytes) and the Keras model's probabilities."""
    run = read_run(tiny_run)
    samples = load_samples(run, 12)
    return tiny_export, samples, load_keras_model(run).predict(samples.images, verbose=0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Growth:
    """Peak RSS growth over a block, in MB, filled in when the block ends."""

    case: str
    baseline_kb: int = 0
    peak_kb: int = 0

    @property
    def mb(self) -> float:
        return (self.peak_kb - self.baseline_kb) / 1024

    def __str__(self) -> str:
        return f"{self.case}: peak RSS growth {self.mb:.1f} MB (baseline {self.baseline_kb / 1024:.0f} MB)"


class ServerProcess:
    """``ftx serve`` in a subprocess: its log collected by a thread, its /proc status readable."""

    def __init__(self, base: Path, *flags: str) -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        command = [sys.executable, "-m", "training.cli", "serve", f"--port={self.grpc_port}",
                   f"--rest_api_port={self.rest_port}", "--model_name=tiny", f"--model_base_path={base}",
                   "--file_system_poll_wait_seconds=1", *flags]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self.ready.wait(180) or self.process.poll() is not None:
            self.stop()
            pytest.fail("ftx serve did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        for line in self.process.stdout:
            self.log.append(line)
            if "Ctrl-C stops" in line:
                self.ready.set()
        self.ready.set()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(10)

    def proc_status(self) -> dict[str, int]:
        """VmRSS and VmHWM in kB, and Threads."""
        values = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    values[key] = int(value.split()[0])
        return values

    @contextmanager
    def peak_growth(self, case: str):
        """Peak RSS growth over the block: VmHWM reset to the current RSS first, read after."""
        growth = Growth(case, self.proc_status()["VmRSS"])
        with open(f"/proc/{self.process.pid}/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to VmRSS (Linux 4.0+)
        yield growth
        growth.peak_kb = self.proc_status()["VmHWM"]
        print(growth)


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-serve") / "tiny"
    shutil.copytree(exported[0] / "1", base / "1")
    # thread pools fixed so the thread bound does not depend on the machine's cores
    process = ServerProcess(base, f"--rest_api_timeout_in_ms={REQUEST_TIMEOUT_MS}", "--rest_api_num_threads=8",
                            "--grpc_max_threads=8")
    try:
        for _ in range(3):  # warm up every path the cases and the checks take
            check_serves(process, exported)
            rest_predict(process, exported)
        yield process
    finally:
        assert process.stop() == 0, "".join(process.log)


@pytest.fixture(autouse=True)
def server_log_on_failure(server):
    """The server's log lines from this test, printed (pytest shows them only when the test fails)."""
    first = len(server.log)
    yield
    print("--- ftx serve log during the test ---\n" + "".join(server.log[first:]))


def predict_request(signature: str, name: str, tensor) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "tiny", signature
    request.inputs[name].CopyFrom(tensor)
    return request


def declared(dtype: int, shape: list[int], **values) -> tensor_pb2.TensorProto:
    """A TensorProto declaring ``shape`` with only the values given (TF fills the rest)."""
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape]
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims), **values)


def grpc_predict(server: ServerProcess, request):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)


def grpc_error(server: ServerProcess, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_predict(server, request)
    return caught.value


def check_serves(server: ServerProcess, exported) -> None:
    """The server is alive and a correct Predict gets the Keras model's probabilities."""
    assert server.process.poll() is None, "ftx serve exited:\n" + "".join(server.log)
    images, expected = exported[1].images[:2], exported[2][:2]
    response = grpc_predict(server, predict_request("serving_default", "images", tf.make_tensor_proto(images)))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected, atol=ATOL)
    encoded = exported[1].encoded[0]
    response = grpc_predict(server, predict_request("serving_bytes", "images_bytes",
                                                    tf.make_tensor_proto(np.array([encoded], dtype=object))))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), exported[2][:1], atol=ATOL)


def rest_predict(server: ServerProcess, exported) -> None:
    """A correct REST predict on a new connection gets the Keras model's probabilities."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        body = json.dumps({"signature_name": "serving_bytes", "instances": [
            {"b64": base64.b64encode(exported[1].encoded[0]).decode()}]})
        connection.request("POST", "/v1/models/tiny:predict", body)
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    assert response.status == 200, text
    got = [row["probabilities"] for row in json.loads(text)["predictions"]]
    np.testing.assert_allclose(got, exported[2][:1], atol=ATOL)


def raw_http(server: ServerProcess, data: bytes, timeout: float = 10.0) -> tuple[int, bytes, bool, float]:
    """``data`` sent on a new connection: (status, body, whether the server then closed, seconds to the answer)."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=timeout) as sock:
        started = time.monotonic()
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        elapsed = time.monotonic() - started
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 "), received[:200]
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length:")))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        sock.settimeout(1.0)
        try:
            closed = sock.recv(1) == b""
        except socket.timeout:
            closed = False
        except OSError:
            closed = True
        return int(head.split()[1]), body, closed, elapsed


@pytest.mark.parametrize("shape", [[1, 8000, 8000, 3], [20_000_000, 32, 32, 3]],
                         ids=["8000x8000_image", "20M_batch"])
def test_a_tiny_float_tensor_declaring_billions_of_values_is_refused_unallocated(server, exported, shape):
    request = predict_request("serving_default", "images", declared(types_pb2.DT_FLOAT, shape))
    assert request.ByteSize() < 100, request.ByteSize()
    with server.peak_growth(f"DT_FLOAT {shape} in {request.ByteSize()} bytes") as growth:
        error = grpc_error(server, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert growth.mb < MAX_GROWTH_MB, growth
    check_serves(server, exported)


def test_a_string_tensor_declaring_20m_values_with_one_given_is_refused_unallocated(server, exported):
    request = predict_request("serving_bytes", "images_bytes",
                              declared(types_pb2.DT_STRING, [20_000_000], string_val=[exported[1].encoded[0]]))
    with server.peak_growth(f"DT_STRING [20000000], one string_val, {request.ByteSize()} bytes") as growth:
        error = grpc_error(server, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert growth.mb < MAX_GROWTH_MB, growth
    check_serves(server, exported)


def test_a_small_png_of_6000x6000_pixels_is_refused_before_decoding(server, exported):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (6000, 6000), (40, 40, 200))
    ImageDraw.Draw(image).rectangle((500, 500, 1500, 1200), fill=(200, 40, 40))
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    png = encoded.getvalue()
    assert len(png) < 300_000, len(png)  # 108 MB of pixels, a few hundred kB on the wire
    request = predict_request("serving_bytes", "images_bytes", tf.make_tensor_proto(np.array([png], dtype=object)))
    with server.peak_growth(f"6000x6000 PNG of {len(png)} bytes") as growth:
        error = grpc_error(server, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "6000x6000" in error.details() and "pixels" in error.details(), error.details()
    assert growth.mb < MAX_GROWTH_MB, growth
    check_serves(server, exported)


def test_rest_content_length_minus_one_is_refused_without_waiting_for_a_body(server, exported):
    head = b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
    with server.peak_growth("REST Content-Length: -1") as growth:
        status, body, closed, elapsed = raw_http(server, head)
    assert status == 400, body
    assert "Content-Length" in json.loads(body)["error"], body
    assert elapsed < REQUEST_TIMEOUT_MS / 2000, f"answered after {elapsed:.2f} s: it waited for a body"
    assert closed, "the connection stayed open after a request with no valid framing"
    assert growth.mb < MAX_GROWTH_MB, growth
    check_serves(server, exported)
    rest_predict(server, exported)


def test_rest_json_nested_100000_levels_is_a_400_not_a_500(server, exported):
    depth = 100_000
    body = b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    head = (f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with server.peak_growth(f"REST JSON nested {depth} deep") as growth:
        status, answer, _, _ = raw_http(server, head + body, timeout=60)
    assert status == 400, answer[:500]
    assert json.loads(answer)["error"], answer[:500]
    assert growth.mb < MAX_GROWTH_MB, growth
    check_serves(server, exported)
    rest_predict(server, exported)


def test_rest_a_string_among_millions_of_numbers_is_refused_in_linear_time_unallocated(server, exported):
    """A numeric input with one long string at the end: numpy would make an N x 500-character array of it, and a
    naive search for the bad value is quadratic; the server must answer at once and allocate nothing like it."""
    count = 2_000_000
    body = b'{"instances": [' + b"0," * count + b'"' + b"x" * 500 + b'"]}'
    head = (f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with server.peak_growth(f"REST {count} numbers and a string") as growth:
        status, answer, _, seconds = raw_http(server, head + body, timeout=60)
    assert status == 400 and "is not of expected type: float" in json.loads(answer)["error"], answer[:300]
    assert seconds < 20, seconds  # quadratic would be hours
    assert growth.mb < 400, growth  # the parsed JSON list itself is ~16 MB + ints; a '<U500' array would be 4 GB
    check_serves(server, exported)


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/models/tiny/versions/99999999999999999999:predict"),
    ("POST", "/v1/models/tiny/versions/9223372036854775808:classify"),  # int64 max + 1
    ("GET", "/v1/models/tiny/versions/18446744073709551616"),
    ("GET", "/v1/models/tiny/versions/99999999999999999999/metadata"),
])
def test_rest_version_beyond_int64_in_the_url_is_a_400(server, exported, method, path):
    body = b'{"instances": [[[[0.0, 0.0, 0.0]]]]}' if method == "POST" else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with server.peak_growth(f"REST {method} {path}") as growth:
        status, answer, _, _ = raw_http(server, head + body)
    assert status == 400, answer
    version = path.split("/versions/")[1].split(":")[0].split("/")[0]
    assert f"Failed to convert version: {version} to numeric." in answer.decode(), answer
    assert growth.mb < MAX_GROWTH_MB, growth
    check_serves(server, exported)


def test_300_idle_connections_hold_no_threads_and_the_server_still_answers(server, exported):
    before = server.proc_status()["Threads"]
    idle: list[socket.socket] = []
    rest_refused = None
    try:
        with server.peak_growth("300 idle REST connections") as growth:
            for _ in range(300):
                idle.append(socket.create_connection(("127.0.0.1", server.rest_port), timeout=10))
            time.sleep(1.0)  # every one accepted
            held = server.proc_status()["Threads"]
            print(f"threads: {before} before, {held} with 300 idle connections held")
            check_serves(server, exported)
            try:
                rest_predict(server, exported)  # a real client, while the idle ones are held
            except AssertionError as error:
                rest_refused = error
    finally:
        for sock in idle:
            sock.close()
    assert held < MAX_THREADS and held <= before + 2, f"threads: {before} before, {held} with 300 idle connections"
    assert growth.mb < MAX_GROWTH_MB, growth
    assert rest_refused is None, f"a REST predict while 300 idle connections are held: {rest_refused}"
    rest_predict(server, exported)


def test_a_client_trickling_one_byte_per_300ms_is_disconnected_at_the_request_timeout(server, exported):
    request = b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n" + b" " * 60
    received, disconnected = b"", None
    with server.peak_growth("REST trickle, 1 byte / 0.3 s") as growth:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=0.3) as sock:
            started = time.monotonic()
            for byte in request:
                try:
                    sock.send(bytes([byte]))
                    chunk = sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:  # reset: disconnected too
                    disconnected = time.monotonic() - started
                    break
                received += chunk
                if not chunk:
                    disconnected = time.monotonic() - started
                    break
    assert disconnected is not None, f"still connected after sending all {len(request)} bytes"
    print(f"trickling client disconnected after {disconnected:.1f} s with {received[:40]!r}")
    timeout_s = REQUEST_TIMEOUT_MS / 1000
    assert timeout_s - 0.5 <= disconnected <= timeout_s + 2, disconnected
    assert received == b"" or received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert growth.mb < MAX_GROWTH_MB, growth
    check_serves(server, exported)
    rest_predict(server, exported)
