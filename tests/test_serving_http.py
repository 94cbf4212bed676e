"""serving.http_server over real sockets on 127.0.0.1: framing, limits, timeouts, the bounded pool, stop."""

from __future__ import annotations

import http.client
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from serving.http_server import HttpLimits, HttpServer


def echo(method, path, headers, body):
    """What the server passed on, as JSON; ``/slow`` sleeps, ``/boom`` raises."""
    if path == "/slow":
        time.sleep(0.5)
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/bad":
        return "200", "text/plain", b""
    reply = {"method": method, "path": path, "headers": dict(headers), "body": body.decode("latin-1")}
    return 200, "application/json", json.dumps(reply).encode()


@contextmanager
def serving(handler=echo, host="127.0.0.1", **limits):
    server = HttpServer(handler, host, 0, HttpLimits(**limits)).start()
    try:
        yield server
    finally:
        server.stop(grace=1.0)


def connect(server, data: bytes = b"", timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.sendall(data)
    return sock


def parse(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Complete responses at the front of ``data`` (each framed by Content-Length)."""
    responses = []
    while (end := data.find(b"\r\n\r\n")) >= 0:
        status_line, *lines = data[:end].decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        if len(data) < end + 4 + length:
            break
        responses.append((int(status_line.split()[1]), headers, data[end + 4:end + 4 + length]))
        data = data[end + 4 + length:]
    return responses


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    data = b""
    while len(parse(data)) < count:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return parse(data)


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_keep_alive_reuses_the_connection_and_responses_are_framed():
    with serving() as server:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            client.request("POST", "/v1/models/m:predict", body=b'{"instances": [1]}')
            first = client.getresponse()
            assert first.status == 200 and first.getheader("Content-Type") == "application/json"
            assert json.loads(first.read())["body"] == '{"instances": [1]}'
            sock = client.sock
            client.request("GET", "/v1/models/m")
            second = client.getresponse()
            assert json.loads(second.read())["path"] == "/v1/models/m"
            assert client.sock is sock and second.getheader("Connection") is None
        finally:
            client.close()


@pytest.mark.parametrize("request_bytes", [b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"])
def test_connection_close_and_http_1_0_close_after_the_response(request_bytes):
    with serving() as server, connect(server, request_bytes) as sock:
        [(status, headers, _)] = parse(read_to_close(sock))
        assert status == 200 and headers["connection"] == "close"


def test_pipelined_requests_are_answered_in_order():
    def slow_first(method, path, headers, body):
        time.sleep(0.2 if path == "/first" else 0)
        return 200, "text/plain", f"{path} {body.decode()}".encode()

    with serving(slow_first, num_threads=4) as server:
        with connect(server, b"GET /first HTTP/1.1\r\n\r\nPOST /second HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
                             b"GET /third HTTP/1.1\r\n\r\n") as sock:
            assert [body for _, _, body in read_responses(sock, 3)] == [b"/first ", b"/second hi", b"/third "]


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5"])
def test_invalid_content_length_is_400_without_reading_the_body(length):
    calls = []
    with serving(lambda *request: calls.append(request) or (200, "text/plain", b"")) as server:
        with connect(server, f"POST /x HTTP/1.1\r\nContent-Length: {length}\r\n\r\n".encode()) as sock:
            [(status, headers, body)] = parse(read_to_close(sock))
    assert status == 400 and headers["content-type"] == "application/json" and calls == []
    assert length in json.loads(body)["error"]


def test_body_over_the_limit_is_413_naming_the_limit():
    with serving(max_body_bytes=1000) as server:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            client.request("POST", "/x", body=b"x" * 5000)
            response = client.getresponse()
            assert response.status == 413 and "1000" in json.loads(response.read())["error"]
        finally:
            client.close()
        with connect(server, b"POST /x HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n") as sock:
            assert parse(read_to_close(sock))[0][0] == 413  # answered without waiting for the body
        with connect(server, b"POST /x HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"y" * 1000) as sock:
            assert json.loads(read_responses(sock, 1)[0][2])["body"] == "y" * 1000  # the limit itself is fine


def test_expect_100_continue_gets_the_interim_response_before_the_body():
    with serving() as server, connect(server, b"POST /e HTTP/1.1\r\nContent-Length: 3\r\n"
                                              b"Expect: 100-continue\r\n\r\n") as sock:
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        assert json.loads(read_responses(sock, 1)[0][2])["body"] == "abc"


def test_chunked_body_is_decoded_with_the_same_bound():
    with serving(max_body_bytes=10) as server:
        chunked = (b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"4;ext=1\r\nabcd\r\n6\r\nefghij\r\n0\r\nX-Trailer: t\r\n\r\n")
        with connect(server, chunked + b"GET /after HTTP/1.1\r\n\r\n") as sock:
            first, second = read_responses(sock, 2)
            assert json.loads(first[2])["body"] == "abcdefghij" and json.loads(second[2])["path"] == "/after"
        with connect(server, b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nabcdefgh\r\n8\r\n") as sock:
            [(status, _, body)] = parse(read_to_close(sock))
            assert status == 413 and "10" in json.loads(body)["error"]
        with connect(server, b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") as sock:
            assert parse(read_to_close(sock))[0][0] == 400
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            client.request("POST", "/c", body=iter([b"12", b"345"]), encode_chunked=True)
            assert json.loads(client.getresponse().read())["body"] == "12345"
        finally:
            client.close()


def test_oversized_headers_are_431_and_a_malformed_request_line_is_400():
    with serving(max_header_bytes=1024) as server:
        with connect(server, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n") as sock:
            assert parse(read_to_close(sock))[0][0] == 431
        with connect(server, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 2000) as sock:  # no end of headers in sight
            assert parse(read_to_close(sock))[0][0] == 431
        for garbage in (b"NONSENSE\r\n\r\n", b"GET /a b HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n"):
            with connect(server, garbage) as sock:
                assert parse(read_to_close(sock))[0][0] == 400, garbage
        with connect(server, b"GET / HTTP/2.0\r\n\r\n") as sock:
            assert parse(read_to_close(sock))[0][0] == 505


def test_every_method_reaches_the_handler_and_head_has_no_body():
    with serving() as server:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            for method in ("PUT", "DELETE", "OPTIONS", "PATCH", "BREW"):
                client.request(method, "/m")
                assert json.loads(client.getresponse().read())["method"] == method
            client.request("HEAD", "/m")
            response = client.getresponse()
            assert int(response.getheader("Content-Length")) > 0 and response.read() == b""
            client.request("GET", "/m")  # the HEAD response had no body: the next one is framed right
            assert json.loads(client.getresponse().read())["method"] == "GET"
        finally:
            client.close()


def test_a_handler_exception_is_500_and_the_next_request_works(caplog):
    with serving() as server:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            client.request("GET", "/boom")
            response = client.getresponse()
            assert response.status == 500 and json.loads(response.read()) == {"error": "RuntimeError: boom"}
            client.request("GET", "/bad")
            response = client.getresponse()
            assert response.status == 500 and "TypeError" in json.loads(response.read())["error"]
            client.request("GET", "/fine")
            assert client.getresponse().status == 200
        finally:
            client.close()
    assert any("GET /boom failed" in record.getMessage() and record.exc_info for record in caplog.records)


def test_num_threads_bounds_concurrent_handler_calls():
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def counting(method, path, headers, body):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return 200, "text/plain", b"ok"

    with serving(counting, num_threads=2) as server:
        def call(results: list) -> None:
            client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                client.request("GET", "/")
                results.append(client.getresponse().status)
            finally:
                client.close()

        results, started = [], time.perf_counter()
        clients = [threading.Thread(target=call, args=(results,)) for _ in range(6)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.perf_counter() - started
    assert results == [200] * 6 and state["most"] == 2
    assert 0.8 < elapsed < 3.0  # three rounds of 0.3 s


def test_idle_connections_hold_no_threads_and_the_oldest_make_room_for_new_clients():
    threads_before = threading.active_count()
    num_threads, max_connections, bound = 4, 250, 4 + 1  # stated bound: num_threads handler threads + 1 I/O thread
    with serving(num_threads=num_threads, max_connections=max_connections) as server:
        socks = []
        try:
            for _ in range(300):
                socks.append(connect(server))
                time.sleep(0.001)  # distinct ages
            selector, closed, deadline = selectors.DefaultSelector(), [], time.monotonic() + 5
            for sock in socks:
                selector.register(sock, selectors.EVENT_READ)
            while len(closed) < 300 - max_connections and time.monotonic() < deadline:
                for key, _ in selector.select(0.2):
                    selector.unregister(key.fileobj)
                    closed.append((socks.index(key.fileobj), read_to_close(key.fileobj)))
            time.sleep(0.2)  # any more closes would have come by now
            closed += [(socks.index(key.fileobj), read_to_close(key.fileobj)) for key, _ in selector.select(0)]
            # the oldest idle ones were closed, silently, to make room; nobody was refused
            assert sorted(index for index, _ in closed) == list(range(300 - max_connections))
            assert all(data == b"" for _, data in closed)
            assert threading.active_count() <= threads_before + bound
            with connect(server, b"GET /free HTTP/1.1\r\n\r\n") as sock:
                assert read_responses(sock, 1)[0][0] == 200  # answered at once while 250 sockets are held
            assert threading.active_count() <= threads_before + bound
        finally:
            for sock in socks:
                sock.close()


def test_when_every_connection_is_mid_request_a_new_one_gets_503():
    with serving(max_connections=20, request_timeout_s=10.0) as server:
        busy = [connect(server, b"GET /slow HTTP/1.1\r\n") for _ in range(20)]  # heads never finished
        try:
            time.sleep(0.3)
            with connect(server) as extra:
                (reply,) = parse(read_to_close(extra))
            assert reply[0] == 503 and "more than 20 open connections" in json.loads(reply[2])["error"]
        finally:
            for sock in busy:
                sock.close()


def test_a_trickling_client_is_cut_off_at_request_timeout_while_others_are_served():
    with serving(request_timeout_s=1.0) as server:
        trickler, started = connect(server), time.monotonic()

        def trickle() -> None:
            try:
                for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                    trickler.send(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass  # the server hung up: what is being tested

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            try:
                for _ in range(3):
                    client.request("GET", "/other")
                    assert client.getresponse().read() and time.monotonic() - started < 1.0
                    time.sleep(0.2)
            finally:
                client.close()
            replies = parse(read_to_close(trickler))
            assert time.monotonic() - started < 2.0 and [status for status, _, _ in replies] == [408]
        finally:
            trickler.close()
            sender.join()


def test_a_keep_alive_connection_is_closed_at_idle_timeout():
    with serving(idle_timeout_s=0.3) as server, connect(server, b"GET / HTTP/1.1\r\n\r\n") as sock:
        assert read_responses(sock, 1)[0][0] == 200
        started = time.monotonic()
        assert sock.recv(1) == b"" and time.monotonic() - started < 1.0


def test_stop_waits_for_an_in_flight_request():
    server = HttpServer(echo, "127.0.0.1", 0, HttpLimits()).start()
    try:
        with connect(server, b"GET /slow HTTP/1.1\r\n\r\n") as sock:
            deadline = time.monotonic() + 2
            while server.in_flight() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.in_flight() == 1
            started = time.monotonic()
            server.stop(grace=5.0)
            assert 0.2 < time.monotonic() - started < 2.0
            [(status, headers, _)] = parse(read_to_close(sock))
            assert status == 200 and headers["connection"] == "close" and server.in_flight() == 0
        with pytest.raises(OSError):
            connect(server)
    finally:
        server.stop(grace=0)


def test_binding_reports_a_busy_port_and_accepts_ipv6_literals():
    with serving() as server:
        with pytest.raises(OSError, match=f"127.0.0.1:{server.port}"):
            HttpServer(echo, "127.0.0.1", server.port, HttpLimits())
    try:
        server = HttpServer(echo, "::1", 0, HttpLimits())
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    try:
        server.start()
        client = http.client.HTTPConnection("::1", server.port, timeout=5)
        client.request("GET", "/six")
        assert json.loads(client.getresponse().read())["path"] == "/six"
        client.close()
    finally:
        server.stop(grace=1.0)


def test_the_module_imports_no_tensorflow():
    code = "import sys, serving.http_server; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                            cwd=Path(__file__).parent.parent)
    assert result.stdout.strip() == "False", result.stderr


def test_limits_are_checked():
    with pytest.raises(ValueError, match="num_threads must be > 0, got 0"):
        HttpLimits(num_threads=0)
