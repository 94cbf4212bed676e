"""``ftx serve``'s server: gRPC (TCP and a Unix socket) and REST on one :class:`ModelStore`, bounded, with a clean stop."""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from serving.grpc_service import ModelService, PredictionService
from serving.http_server import HttpLimits, HttpServer
from serving.metrics import Metrics
from serving.model_store import ModelStore
from serving.protos import model_service_pb2_grpc, prediction_service_pb2_grpc
from serving.rest_api import RestApi

log = logging.getLogger(__name__)


@dataclass
class ServerLimits:
    host: str = "127.0.0.1"  # loopback unless the user opens it up (--host 0.0.0.0 for docker/Kubernetes)
    max_request_bytes: int = 64 * 1024 * 1024
    grpc_threads: int = 32  # requests handled at once
    max_concurrent_rpcs: int = 256  # beyond this, RESOURCE_EXHAUSTED instead of an unbounded backlog
    rest: HttpLimits = field(default_factory=HttpLimits)
    grpc_socket_path: str = ""  # also serve gRPC on unix:PATH (--grpc_socket_path)
    grpc_channel_arguments: tuple[tuple[str, str | int], ...] = ()  # --grpc_channel_arguments
    tensor_content: bool = False  # --enable_serialization_as_tensor_content


class ModelServer:
    """Start both APIs on the given ports (gRPC 0 with a socket path = socket only; REST ``None`` = off)."""

    def __init__(self, store: ModelStore, grpc_port: int, rest_port: int | None, limits: ServerLimits,
                 metrics_path: str | None = None, ssl=None, reload=None) -> None:
        self.store, self.limits = store, limits
        self.metrics = Metrics(store.serves)
        options = [("grpc.max_receive_message_length", limits.max_request_bytes),
                   ("grpc.max_send_message_length", limits.max_request_bytes),
                   ("grpc.so_reuseport", 0), *limits.grpc_channel_arguments]
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=limits.grpc_threads, thread_name_prefix="grpc"),
                                options=options, maximum_concurrent_rpcs=limits.max_concurrent_rpcs)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(store, self.metrics, limits.tensor_content), self.grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(store, self.metrics, reload),
                                                                  self.grpc)
        self.grpc_port = 0
        if grpc_port != 0 or not limits.grpc_socket_path:
            self.grpc_port = self._add_port(f"{_host(limits.host)}:{grpc_port}", ssl)
        if limits.grpc_socket_path:
            self._add_port(f"unix:{limits.grpc_socket_path}", ssl)
        self.http: HttpServer | None = None
        self.rest_port = None
        if rest_port is not None:
            self.rest_api = RestApi(store, self.metrics, metrics_path)
            try:
                self.http = HttpServer(self.rest_api, limits.host, rest_port,
                                       HttpLimits(**{**vars(limits.rest), "max_body_bytes": limits.max_request_bytes}))
            except (OSError, ValueError):
                self.grpc.stop(0)  # bound but never started: free its port
                raise
            self.rest_port = self.http.port

    def _add_port(self, address: str, ssl) -> int:
        """Bind ``address``; OSError when it cannot be (grpcio raises RuntimeError or returns 0)."""
        try:
            if ssl is None:
                port = self.grpc.add_insecure_port(address)
            else:  # an SSLConfig message, as TF Serving's --ssl_config_file: gRPC over TLS, REST stays plain
                credentials = grpc.ssl_server_credentials(
                    [(ssl.server_key.encode(), ssl.server_cert.encode())],
                    root_certificates=ssl.custom_ca.encode() or None, require_client_auth=ssl.client_verify)
                port = self.grpc.add_secure_port(address, credentials)
        except RuntimeError as error:
            raise OSError(f"cannot listen for gRPC on {address} (in use?): {error}") from None
        if port == 0 and not address.startswith("unix:"):
            raise OSError(f"cannot listen for gRPC on {address} (in use?)")
        return port

    def start(self) -> "ModelServer":
        self.grpc.start()
        if self.http is not None:
            self.http.start()
        log.info("serving gRPC on %s:%d%s", self.limits.host, self.grpc_port,
                 f", REST on {self.limits.host}:{self.rest_port}" if self.http else "")
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new requests, let in-flight ones finish (up to ``grace`` s), then unload."""
        done = self.grpc.stop(grace)
        if self.http is not None:
            self.http.stop(grace)
        done.wait(grace)
        self.store.stop()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
