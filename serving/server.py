"""``ftx serve``'s server: gRPC and REST on one :class:`ModelStore`, with bounded requests and a clean stop."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.grpc_service import ModelService, PredictionService
from serving.metrics import Metrics
from serving.model_store import ModelStore
from serving.rest_api import RestApi, make_http_server

log = logging.getLogger(__name__)


@dataclass
class ServerLimits:
    host: str = "127.0.0.1"  # loopback unless the user opens it up
    max_request_bytes: int = 64 * 1024 * 1024
    grpc_threads: int = 32  # requests handled at once
    max_concurrent_rpcs: int = 256  # beyond this, RESOURCE_EXHAUSTED instead of an unbounded backlog


class ModelServer:
    """Start both APIs on the given ports (0 = pick a free one; REST ``None`` = off)."""

    def __init__(self, store: ModelStore, grpc_port: int, rest_port: int | None, limits: ServerLimits,
                 metrics_path: str | None = None, ssl=None) -> None:
        self.store, self.limits = store, limits
        self.metrics = Metrics()
        options = [("grpc.max_receive_message_length", limits.max_request_bytes),
                   ("grpc.max_send_message_length", limits.max_request_bytes),
                   ("grpc.so_reuseport", 0)]
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=limits.grpc_threads, thread_name_prefix="grpc"),
                                options=options, maximum_concurrent_rpcs=limits.max_concurrent_rpcs)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(store, self.metrics), self.grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(store, self.metrics), self.grpc)
        address = f"{limits.host}:{grpc_port}"
        if ssl is None:
            self.grpc_port = self.grpc.add_insecure_port(address)
        else:  # an SSLConfig message, as TF Serving's --ssl_config_file: gRPC over TLS, REST stays plain
            credentials = grpc.ssl_server_credentials(
                [(ssl.server_key.encode(), ssl.server_cert.encode())],
                root_certificates=ssl.custom_ca.encode() or None, require_client_auth=ssl.client_verify)
            self.grpc_port = self.grpc.add_secure_port(address, credentials)
        if self.grpc_port == 0:
            raise OSError(f"cannot bind gRPC to {limits.host}:{grpc_port} (in use?)")
        self.http = None
        self.rest_port = None
        if rest_port is not None:
            self.rest_api = RestApi(store, self.metrics, metrics_path)
            self.http = make_http_server(self.rest_api, limits.host, rest_port, limits.max_request_bytes)
            self.rest_port = self.http.server_address[1]
        self._http_thread: threading.Thread | None = None

    def start(self) -> "ModelServer":
        self.grpc.start()
        if self.http is not None:
            self._http_thread = threading.Thread(target=self.http.serve_forever, name="rest", daemon=True)
            self._http_thread.start()
        log.info("serving gRPC on %s:%d%s", self.limits.host, self.grpc_port,
                 f", REST on {self.limits.host}:{self.rest_port}" if self.http else "")
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new requests, let in-flight ones finish (up to ``grace`` s), then unload."""
        done = self.grpc.stop(grace)
        if self.http is not None:
            self.http.shutdown()  # stop accepting; requests already inside finish below
            self.rest_api.wait_idle(grace)
            self.http.server_close()
        done.wait(grace)
        self.store.stop()
        for name in self.store.names():
            for servable in self.store.status(name)[0].values():
                servable.close()
