"""A hardened HTTP/1.1 server for the REST API: no request can kill it, and every resource a client holds is bounded.

Threading model: one I/O thread runs a selector loop over non-blocking sockets (accept, read, parse, write) and
hands each complete request to a pool of ``num_threads`` handler threads, so a server runs at most
``num_threads + 1`` threads however many connections are open. An idle or trickling client holds a socket (at most
``max_connections``; when full, the connection idle longest is closed to make room, and only when every one is in use does the next get a quick 503), never a thread, and is closed at its timeout. A connection has
at most one request at the handler; pipelined requests wait in its buffer, so responses go out in order.

Bodies come with ``Content-Length`` or ``Transfer-Encoding: chunked`` (decoded here, same ``max_body_bytes``
bound); other transfer codings get 501. A request the server refuses itself (400, 408, 413, 431, 501, 505) is
answered ``{"error": ...}`` and the connection closed after a bounded drain ("lingering close"), so the client
reads the status rather than a reset.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from serving.http_parsing import JSON, HttpError, Request, error_response, parse_head, read_chunked, response

log = logging.getLogger(__name__)

Handler = Callable[[str, str, Mapping[str, str], bytes], tuple[int, str, bytes]]
BACKLOG = 512  # the stdlib's 5 resets connections under a burst of clients
READ_BYTES = 1 << 16
SWEEP_S = 0.1  # how often deadlines are checked: the precision of every timeout
LINGER_S, LINGER_BYTES = 2.0, 64 << 20  # how long and how much a closing connection is drained


@dataclass(frozen=True)
class HttpLimits:
    """Everything one client can hold, bounded; the defaults follow TF Serving's REST flags."""

    max_body_bytes: int = 64 << 20
    num_threads: int = 16  # handler calls at once (TF Serving's --rest_api_num_threads)
    max_connections: int = 256  # open connections; when full the longest-idle one is closed, or 503 if none is idle
    request_timeout_s: float = 30.0  # headers + body must arrive within this (--rest_api_timeout_in_ms)
    idle_timeout_s: float = 30.0  # a keep-alive connection with no new request is closed
    max_header_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            zero_ok = name == "max_body_bytes"
            if not (value >= 0 if zero_ok else value > 0):
                raise ValueError(f"HttpLimits.{name} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    request: Request | None = None  # head parsed, body still arriving
    started: bool = False  # bytes of the next request have arrived: request_timeout_s runs, not idle_timeout_s
    busy: bool = False  # a request is at the handler
    keep_alive: bool = True
    head_only: bool = False
    out: memoryview | None = None  # the response being written
    close_after: bool = False
    lingering: bool = False
    drained: int = 0
    events: int = 0
    closed: bool = False


def _parse(conn: _Conn, limits: HttpLimits) -> Request | None:
    """The next complete request in the connection's buffer, or None until more bytes arrive."""
    buf = conn.buf
    if conn.request is None:
        while buf[:2] == b"\r\n":  # RFC 9112: ignore empty lines before a request
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if (end < 0 and len(buf) > limits.max_header_bytes) or end + 4 > limits.max_header_bytes:
            raise HttpError(431, f"request headers are larger than the limit of {limits.max_header_bytes} bytes")
        if end < 0:
            return None
        conn.request = parse_head(buf[:end].decode("latin-1"), limits.max_body_bytes)
        del buf[:end + 4]
    request = conn.request
    if request.length is None:
        if not read_chunked(request, buf, limits):
            return None
    elif len(buf) >= request.length:
        request.body = buf[:request.length]
        del buf[:request.length]
    else:
        return None
    conn.request = None
    return request


def _listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on ``host`` (a name, an IPv4 or an IPv6 literal); OSError naming the address."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, _, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise OSError(f"cannot listen for HTTP on {shown}: cannot resolve {host!r} ({error})") from error
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen for HTTP on {shown}: {error.strerror}") from error
    return sock


class HttpServer:
    """HTTP/1.1 with keep-alive and pipelining over a bounded pool; see the module docstring for the model.

    Every method reaches ``handler(method, target, headers, body)``; header names are lower-cased, repeats joined
    with ", ". A handler exception is logged and answered 500 ``{"error": "<type>: <message>"}``.
    """

    def __init__(self, handler: Handler, host: str, port: int, limits: HttpLimits) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port!r}")
        self.handler, self.limits = handler, limits
        self._listener = _listen(host, port)
        self.port: int = self._listener.getsockname()[1]
        self._jobs: queue.SimpleQueue[tuple[_Conn, Request] | None] = queue.SimpleQueue()  # for the handler threads
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._done: deque[tuple[_Conn, int, str, bytes]] = deque()  # responses from handler threads
        self._conns: set[_Conn] = set()
        self._lock = threading.Lock()
        self._in_flight, self._closed = 0, False
        self._stop_at: float | None = None
        self._accept_paused_until: float | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

    def start(self) -> HttpServer:
        if self._thread is not None or self._stop_at is not None:
            raise RuntimeError("an HttpServer starts once")
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name=f"ftx-http-io-{self.port}", daemon=True)
        self._thread.start()
        # daemon threads, not a ThreadPoolExecutor: a handler stuck past stop's grace must not block interpreter exit
        self._workers = [threading.Thread(target=self._work, name=f"ftx-http-{self.port}-{index}", daemon=True)
                         for index in range(self.limits.num_threads)]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self, grace: float) -> None:
        """Stops accepting and reading; requests at the handler get ``grace`` s to be answered; then all is closed."""
        with self._lock:
            if self._stop_at is not None:
                return
            self._stop_at = time.monotonic() + max(grace, 0.0)
        if self._thread is None:
            self._close_all()
        else:
            self._wake()
            self._thread.join(max(grace, 0.0) + 5.0)
            if self._thread.is_alive():
                log.warning("HTTP server on port %d: the I/O thread did not stop", self.port)
        for _ in self._workers:  # each exits after the requests queued before it; one stuck past grace is abandoned
            self._jobs.put(None)

    def in_flight(self) -> int:
        """Requests at the handler or queued for it."""
        return self._in_flight

    def _wake(self) -> None:
        with self._lock:
            if not self._closed:
                try:
                    self._wake_w.send(b"x")
                except BlockingIOError:  # the pipe is full: the loop is woken already
                    pass

    def _run(self) -> None:
        next_sweep = 0.0
        try:
            while True:
                for key, events in self._selector.select(SWEEP_S):
                    self._safely(key.data, self._on_event, key, events)
                while self._done:
                    conn, status, content_type, body = self._done.popleft()
                    self._safely(conn, self._answer, conn, status, content_type, body)
                now = time.monotonic()
                if self._stop_at is not None and self._drained(now):
                    return
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + SWEEP_S
        except Exception:  # noqa: BLE001 - not a request's fault: log it, close everything
            log.exception("HTTP server on port %d: the I/O loop failed", self.port)
        finally:
            self._close_all()

    def _safely(self, conn: _Conn | None, action: Callable[..., None], *args) -> None:
        """Runs one step for one connection: a bug there closes that connection, never the server."""
        try:
            action(*args)
        except Exception:  # noqa: BLE001
            log.exception("HTTP server on port %d: a connection failed", self.port)
            if conn is not None:
                self._close(conn)

    def _on_event(self, key: selectors.SelectorKey, events: int) -> None:
        if key.fileobj is self._listener:
            self._accept()
        elif key.fileobj is self._wake_r:
            try:
                while self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        elif not key.data.closed:
            (self._write if events & selectors.EVENT_WRITE else self._read)(key.data)

    def _accept(self) -> None:
        for _ in range(64):  # a burst, then back to the connections we have
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors: pause accepting rather than spin
                log.warning("HTTP server on port %d: accept failed (%s); pausing accepts", self.port, error)
                self._selector.unregister(self._listener)
                self._accept_paused_until = time.monotonic() + 0.5
                return
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else headers+body stall on delayed ACK
                sock.setblocking(False)
            except OSError:  # the client is gone already
                sock.close()
                continue
            if len(self._conns) >= self.limits.max_connections and not self._evict_idle():
                try:  # best effort: one small write to an empty send buffer
                    sock.send(error_response(503, f"more than {self.limits.max_connections} open connections"))
                except OSError:
                    pass
                sock.close()
                continue
            conn = _Conn(sock, deadline=time.monotonic() + self.limits.idle_timeout_s)
            self._conns.add(conn)
            self._watch(conn, selectors.EVENT_READ)

    def _evict_idle(self) -> bool:
        """Full: close the connection idle longest (no request started, nothing to send) to make room, so idle
        sockets cannot lock new clients out; False when every connection is in use."""
        idle = [c for c in self._conns if not (c.started or c.busy or c.request or c.out or c.lingering or c.buf)]
        if not idle:
            return False
        self._close(min(idle, key=lambda c: c.deadline))  # the earliest idle deadline was idle the longest
        return True

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return self._close(conn)
        if conn.lingering:
            conn.drained += len(data)
            if conn.drained > LINGER_BYTES:
                self._close(conn)
            return
        conn.buf += data
        self._advance(conn)

    def _advance(self, conn: _Conn) -> None:
        """Parses what the connection has sent; a complete request goes to the pool, a bad one is answered here."""
        if self._stop_at is not None:
            return
        try:
            request = _parse(conn, self.limits)
        except HttpError as error:
            log.debug("HTTP %d to a client: %s", error.status, error)
            return self._send(conn, error_response(error.status, str(error)), close=True)
        if request is None:
            if not conn.started and (conn.buf or conn.request is not None):
                conn.started, conn.deadline = True, time.monotonic() + self.limits.request_timeout_s
            if conn.request is not None and conn.request.expect_continue and not conn.buf:
                conn.request.expect_continue = False
                try:  # the send buffer is empty between requests; a client that misses this sends after 1 s
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
            return
        conn.started, conn.busy, conn.deadline = False, True, math.inf
        conn.keep_alive, conn.head_only = request.keep_alive, request.method == "HEAD"
        self._watch(conn, 0)  # pipelined requests wait in the buffer: one at the handler per connection
        with self._lock:
            self._in_flight += 1
        self._jobs.put((conn, request))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._call(*job)

    def _call(self, conn: _Conn, request: Request) -> None:
        """Runs on a handler thread: the handler, its result checked, any failure turned into a 500."""
        result = 500, JSON, b'{"error": "the handler did not return"}'
        try:
            status, content_type, body = self.handler(request.method, request.target, request.headers,
                                                      bytes(request.body))
            if not (isinstance(status, int) and 100 <= status <= 599):
                raise TypeError(f"the handler returned status {status!r}, not an int in 100..599")
            if not isinstance(content_type, str) or "\r" in content_type or "\n" in content_type:
                raise TypeError(f"the handler returned content type {content_type!r}")
            if not isinstance(body, (bytes, bytearray)):
                raise TypeError(f"the handler returned a body of type {type(body).__name__}, not bytes")
            result = status, content_type, bytes(body)
        except Exception as error:  # noqa: BLE001 - the server outlives any one request
            log.exception("HTTP %s %s failed", request.method, request.target)
            result = 500, JSON, json.dumps({"error": f"{type(error).__name__}: {error}"}).encode()
        finally:
            self._done.append((conn, *result))
            self._wake()

    def _answer(self, conn: _Conn, status: int, content_type: str, body: bytes) -> None:
        with self._lock:
            self._in_flight -= 1
        conn.busy = False
        if not conn.closed:
            close = not conn.keep_alive or self._stop_at is not None
            self._send(conn, response(status, content_type, body, close, conn.head_only), close)

    def _send(self, conn: _Conn, data: bytes, close: bool) -> None:
        conn.out, conn.close_after = memoryview(data), close
        conn.deadline = time.monotonic() + self.limits.request_timeout_s  # a client that does not read
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            while conn.out:
                conn.out = conn.out[conn.sock.send(conn.out):]
        except (BlockingIOError, InterruptedError):
            return self._watch(conn, selectors.EVENT_WRITE)
        except OSError:
            return self._close(conn)
        conn.out = None
        if conn.close_after:  # lingering close: FIN now, drain what the client still sends, then close
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                return self._close(conn)
            conn.lingering, conn.deadline = True, time.monotonic() + LINGER_S
            conn.buf.clear()
            return self._watch(conn, selectors.EVENT_READ)
        conn.deadline = time.monotonic() + self.limits.idle_timeout_s
        self._watch(conn, selectors.EVENT_READ)
        self._advance(conn)  # a pipelined request may be in the buffer already

    def _sweep(self, now: float) -> None:
        if self._accept_paused_until is not None and now >= self._accept_paused_until and self._stop_at is None:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ)
        late = error_response(408, f"the request did not arrive within {self.limits.request_timeout_s} s")
        for conn in [conn for conn in self._conns if now >= conn.deadline]:
            if conn.started and conn.out is None and not conn.lingering:
                self._safely(conn, self._send, conn, late, True)
            else:
                self._close(conn)

    def _drained(self, now: float) -> bool:
        """While stopping: close all but the connections whose request is being answered; True when none is left."""
        if self._listener.fileno() != -1:
            if self._accept_paused_until is None:
                self._selector.unregister(self._listener)
            self._listener.close()
        for conn in [conn for conn in self._conns if not conn.busy and conn.out is None]:
            self._close(conn)
        return not self._conns or now >= self._stop_at

    def _watch(self, conn: _Conn, events: int) -> None:
        if events == conn.events:
            return
        if not events:
            self._selector.unregister(conn.sock)
        elif not conn.events:
            self._selector.register(conn.sock, events, conn)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: _Conn) -> None:
        if not conn.closed:
            conn.closed = True
            self._watch(conn, 0)
            conn.sock.close()
            self._conns.discard(conn)

    def _close_all(self) -> None:
        for conn in list(self._conns):
            self._close(conn)
        with self._lock:
            self._closed = True
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.close()
        self._selector.close()
