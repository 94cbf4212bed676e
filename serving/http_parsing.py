"""HTTP/1.1 framing for serving.http_server: request heads, chunked bodies, responses; bounded before read.

Pure functions over bytes and small dataclasses, so the selector loop in
serving.http_server stays about connections and threads.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serving.http_server import HttpLimits

JSON = "application/json"
REASONS = {status.value: status.phrase for status in HTTPStatus}
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
REQUEST_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/(\d)\.(\d)")
HEX = frozenset(b"0123456789abcdefABCDEF")


class HttpError(Exception):
    """A request the server answers itself, then closes the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(eq=False)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    keep_alive: bool
    length: int | None  # None: chunked
    expect_continue: bool
    body: bytearray = field(default_factory=bytearray)
    chunk_state: str = "size"  # size -> data -> crlf -> size ... -> trailer
    chunk_left: int = 0
    trailer_bytes: int = 0


def response(status: int, content_type: str, body: bytes, close: bool, head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", f"Date: {email.utils.formatdate(usegmt=True)}",
             "Server: ftx-serve", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    head = ("\r\n".join(lines + ["Connection: close"] * close) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def error_response(status: int, message: str) -> bytes:
    return response(status, JSON, json.dumps({"error": message}).encode(), close=True)



def parse_head(head: str, max_body_bytes: int) -> Request:
    """Request line and headers -> a _Request whose body framing is checked before a byte of it is read."""
    request_line, *lines = head.split("\r\n")
    match = REQUEST_LINE.fullmatch(request_line)
    if not match:
        raise HttpError(400, f"malformed request line {request_line[:100]!r}")
    if match[3] != "1":
        raise HttpError(505, f"HTTP version {match[3]}.{match[4]} is not supported (only 1.x)")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not TOKEN.fullmatch(name):
            raise HttpError(400, f"malformed header line {line[:100]!r}")
        name, value = name.lower(), value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    keep_alive = match[4] != "0" and "close" not in connection  # HTTP/1.0 always closes
    coding, length_text, length = headers.get("transfer-encoding"), headers.get("content-length"), 0
    if coding is not None:
        if length_text is not None:
            raise HttpError(400, "a request must not carry both Content-Length and Transfer-Encoding")
        if coding.lower() != "chunked":
            raise HttpError(501, f"Transfer-Encoding {coding!r} is not supported (only chunked)")
        length = None
    elif length_text is not None:
        if not (length_text.isascii() and length_text.isdigit()):
            raise HttpError(400, f"invalid Content-Length {length_text[:40]!r}")
        length = int(length_text) if len(length_text) <= 18 else math.inf
        if length > max_body_bytes:
            raise HttpError(413, f"request body of {length_text[:40]} bytes is larger than the limit of "
                                  f"{max_body_bytes} bytes")
    expect_continue = headers.get("expect", "").lower() == "100-continue" and match[4] != "0" and length != 0
    return Request(match[1], match[2], headers, keep_alive, length, expect_continue)


def read_chunked(request: Request, buf: bytearray, limits: HttpLimits) -> bool:
    """Moves decoded chunks from ``buf`` into the body; True once the last chunk and its trailers are in."""
    while True:
        if request.chunk_state == "data":
            taken = min(request.chunk_left, len(buf))
            request.body += buf[:taken]
            del buf[:taken]
            request.chunk_left -= taken
            if request.chunk_left:
                return False
            request.chunk_state = "crlf"
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > limits.max_header_bytes:
                raise HttpError(431, f"chunk line longer than the limit of {limits.max_header_bytes} bytes")
            return False
        line = bytes(buf[:end])
        del buf[:end + 2]
        if request.chunk_state == "crlf":
            if line:
                raise HttpError(400, "chunk data is not followed by CRLF")
            request.chunk_state = "size"
        elif request.chunk_state == "trailer":
            request.trailer_bytes += len(line) + 2
            if not line:
                return True
            if request.trailer_bytes > limits.max_header_bytes:
                raise HttpError(431, f"trailers are larger than the limit of {limits.max_header_bytes} bytes")
        else:
            size = line.split(b";")[0].strip()
            if not size or len(size) > 15 or not HEX.issuperset(size):
                raise HttpError(400, f"invalid chunk size line {line[:40]!r}")
            request.chunk_left = int(size, 16)
            if len(request.body) + request.chunk_left > limits.max_body_bytes:
                raise HttpError(413, f"chunked request body is larger than the limit of {limits.max_body_bytes} "
                                      "bytes")
            request.chunk_state = "data" if request.chunk_left else "trailer"
