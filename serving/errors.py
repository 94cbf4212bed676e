"""One error type for the server, carrying the gRPC status code a client gets (and its REST twin, as TF Serving maps it)."""

from __future__ import annotations

import grpc

_CODE = grpc.StatusCode
HTTP_STATUS = {_CODE.OK: 200, _CODE.CANCELLED: 499, _CODE.UNKNOWN: 500, _CODE.INVALID_ARGUMENT: 400,
               _CODE.DEADLINE_EXCEEDED: 504, _CODE.NOT_FOUND: 404, _CODE.ALREADY_EXISTS: 409,
               _CODE.PERMISSION_DENIED: 403, _CODE.RESOURCE_EXHAUSTED: 429, _CODE.FAILED_PRECONDITION: 400,
               _CODE.ABORTED: 409, _CODE.OUT_OF_RANGE: 400, _CODE.UNIMPLEMENTED: 501, _CODE.INTERNAL: 500,
               _CODE.UNAVAILABLE: 503, _CODE.DATA_LOSS: 500, _CODE.UNAUTHENTICATED: 401}  # http_server.cc


class ServingError(Exception):
    """A request the server answers with ``code`` and a message saying what was expected."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @classmethod
    def invalid(cls, message: str) -> "ServingError":
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def not_found(cls, message: str) -> "ServingError":
        return cls(grpc.StatusCode.NOT_FOUND, message)

    @classmethod
    def exhausted(cls, message: str) -> "ServingError":
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
