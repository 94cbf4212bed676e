"""Load on ``ftx serve``: requests/s and latency per concurrency level, over gRPC and REST, tensor and bytes.

The server is a separate ``ftx serve`` process (ONNX Runtime backend, on
127.0.0.1), as deployed; the clients are threads of this process, each with
its own channel or keep-alive HTTP connection, sending one image per request
for a fixed time after a warm-up request. Requests are built before the clock
starts, so the numbers are the server's and the wire's, not the client's
request building. Every error is counted: a level with errors is reported as
such, never dropped. Each level also reads the server's own metrics page
before and after, for a breakdown of the mean latency
(:mod:`benchmarks.server_breakdown`).
"""

from __future__ import annotations

import base64
import logging
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.measure import latency_stats
from benchmarks.server_breakdown import Totals, breakdown, parse_totals, scrape
from training.children import tied_to_parent

log = logging.getLogger(__name__)
MODES = ("grpc-tensor", "grpc-bytes", "rest-tensor", "rest-bytes")


@dataclass(frozen=True)
class SweepConfig:
    modes: tuple[str, ...] = MODES
    concurrency: tuple[int, ...] = (1, 4, 16)
    seconds: float = 5.0  # timed per (mode, level)
    threads: int = 0  # ONNX Runtime threads in the server (0: cores)
    batching: tuple[bool, ...] = (False, True)  # one server without, one with --enable_batching (CPU defaults)
    rounds: int = 3  # side-by-side rounds (in-process vs served) for the goals
    round_seconds: float = 2.0

    def __post_init__(self) -> None:
        unknown = [mode for mode in self.modes if mode not in MODES]
        if unknown:
            raise ValueError(f"unknown serving mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
        if not self.batching:
            raise ValueError("choose at least one batching setting (off, on)")
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError(f"concurrency levels must be >= 1, got {self.concurrency}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeProcess:
    """``ftx serve`` for one export version, on free ports, in a child process; stopped with SIGTERM."""

    def __init__(self, version_dir: Path, name: str, threads: int, batching: bool, log_path: Path,
                 backend: str = "onnx") -> None:
        # the version may be "1.not_blessed", which a server never loads: serve it as version 1 of a scratch base
        self.base = Path(tempfile.mkdtemp(prefix="ftx-bench-serve-"))
        (self.base / name).mkdir()
        (self.base / name / "1").symlink_to(version_dir.resolve(), target_is_directory=True)
        self.name, self.grpc_port, self.rest_port = name, _free_port(), _free_port()
        from serving.tfs_config import PROMETHEUS_PATH, monitoring_config, to_text

        self.metrics_path = PROMETHEUS_PATH
        (self.base / "monitoring.config").write_text(to_text(monitoring_config(PROMETHEUS_PATH)))
        command = [sys.executable, "-m", "training.cli", "serve", f"--port={self.grpc_port}",
                   f"--rest_api_port={self.rest_port}", f"--model_name={name}",
                   f"--model_base_path={self.base / name}", "--file_system_poll_wait_seconds=0",
                   f"--tensorflow_intra_op_parallelism={threads}", "--grpc_max_threads=64", f"--backend={backend}",
                   f"--monitoring_config_file={self.base / 'monitoring.config'}"]
        command += ["--enable_batching"] if batching else []
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(tied_to_parent(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        for line in self.process.stdout:
            self.log.write(line)
            if "Ctrl-C stops" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.log.close()
        self.stop()
        raise RuntimeError(f"ftx serve did not start (exit {self.process.returncode}); its log: {log_path}")

    def totals(self, entrypoint: str) -> Totals:
        """The server's histogram totals now, for requests that came in over ``entrypoint`` (GRPC, REST)."""
        return parse_totals(scrape(self.rest_port, self.metrics_path), self.name, entrypoint)

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.log.write(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def _grpc_caller(server: ServeProcess, mode: str, images: np.ndarray, encoded: list[bytes]) -> Callable:
    import grpc

    from serving.protos import predict_pb2, prediction_service_pb2_grpc
    from serving.tensors import fill_proto

    requests = []
    for index in range(len(images)):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = server.name
        if mode == "grpc-tensor":
            request.model_spec.signature_name = "serving_default"
            fill_proto(request.inputs["images"], images[index:index + 1], as_content=True)  # as make_tensor_proto
        else:
            request.model_spec.signature_name = "serving_bytes"
            fill_proto(request.inputs["images_bytes"], np.array([encoded[index]], dtype=object))
        requests.append(request)

    def connect():
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return channel, lambda i: stub.Predict(requests[i % len(requests)], timeout=60)

    return connect


def _rest_caller(server: ServeProcess, mode: str, images: np.ndarray, encoded: list[bytes]) -> Callable:
    if mode == "rest-tensor":
        bodies = [json.dumps({"instances": [image.tolist()]}).encode() for image in images]
    else:
        bodies = [json.dumps({"signature_name": "serving_bytes",
                              "instances": [{"b64": base64.b64encode(data).decode()}]}).encode() for data in encoded]
    path = f"/v1/models/{server.name}:predict"

    def connect():
        connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)

        def call(i: int) -> None:
            connection.request("POST", path, body=bodies[i % len(bodies)],
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")

        return connection, call

    return connect


def run_level(connect: Callable, clients: int, seconds: float, totals: Callable[[], Totals] | None = None) -> dict:
    """``clients`` threads calling for ``seconds``: requests/s, latency mean and percentiles, errors; with
    ``totals`` (the server's metrics, read once every client has warmed up and again at the end) the
    breakdown of the mean latency."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    lock = threading.Lock()
    warmed, ready = threading.Barrier(clients + 1), threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(slot: int) -> None:
        handle, call = connect()
        try:
            try:
                call(slot)  # connect and warm up outside the clock
            except Exception as error:  # noqa: BLE001 - counted, never hidden
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:200])
            warmed.wait()
            ready.wait()
            step = slot
            while time.perf_counter() < deadline[0]:
                started = time.perf_counter()
                try:
                    call(step)
                    latencies[slot].append(time.perf_counter() - started)
                except Exception as error:  # noqa: BLE001
                    with lock:
                        errors.append(f"{type(error).__name__}: {error}"[:200])
                step += clients
        finally:
            handle.close()

    threads = [threading.Thread(target=client, args=(slot,), daemon=True) for slot in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds + 3600  # provisional, set properly once all clients are ready
    warmed.wait()
    before = _read(totals)  # warm-up requests are all answered: they are not in the level
    ready.wait()
    started = time.perf_counter()
    deadline[0] = started + seconds
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    values = np.array([x for slot in latencies for x in slot]) * 1e3
    summary = {"concurrency": clients, "requests": int(values.size), "errors": len(errors),
               "error_kinds": sorted(set(e.split(":")[0] for e in errors)), "seconds": wall,
               "requests_per_s": values.size / wall, **latency_stats(values)}
    after = _read(totals) if before is not None else None
    if after is not None and values.size:
        summary["breakdown"] = breakdown(after - before, summary["mean_ms"])
    return summary


def _read(totals: Callable[[], Totals] | None) -> Totals | None:
    """The server's totals, or None (the level is still measured) when its metrics page cannot be read."""
    if totals is None:
        return None
    try:
        return totals()
    except (OSError, ValueError) as error:  # urllib's errors are OSErrors; a page that does not parse
        log.warning("no serving breakdown for this level: the metrics page could not be read (%s)", error)
        return None


def in_process_window(model: Path, threads: int, batch: np.ndarray, seconds: float) -> dict:
    """ONNX Runtime called directly, one caller, for ``seconds``: p50 latency and images/s.

    The session lives only for this window: an idle session's thread pool
    spin-waits and would slow the server measured next on the same cores.
    """
    from export.onnx_runtime import open_session

    session = open_session(model, threads=threads or None)
    try:
        for _ in range(3):
            session.run(["probabilities"], {"images": batch})
        latencies = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or len(latencies) < 3:
            before = time.perf_counter()
            session.run(["probabilities"], {"images": batch})
            latencies.append(time.perf_counter() - before)
    finally:
        del session
    return {"p50_ms": float(np.median(latencies) * 1e3), "images_per_s": len(batch) * len(latencies) / sum(latencies)}


def side_by_side(version_dir: Path, connect: Callable, images: np.ndarray, threads: int, best_batch: int,
                 clients: int, rounds: int, seconds: float) -> dict:
    """The serving goals' comparison, interleaved so that drifts of a shared machine hit both sides alike.

    Each round times, back to back: in-process ONNX Runtime at batch 1, the
    server at concurrency 1, in-process at ``best_batch``, the server at
    ``clients``. The medians over rounds are compared.
    """
    model = version_dir / "model.onnx"
    one, batch = images[:1], np.ascontiguousarray(np.resize(images, (best_batch, *images.shape[1:])))
    per_round = []
    for _ in range(rounds):
        direct_one = in_process_window(model, threads, one, seconds)
        served_one = run_level(connect, 1, seconds)
        direct_best = in_process_window(model, threads, batch, seconds)
        served_many = run_level(connect, clients, seconds)
        per_round.append({"in_process_b1_p50_ms": direct_one["p50_ms"], "served_c1_p50_ms": served_one["p50_ms"],
                          "in_process_best_images_per_s": direct_best["images_per_s"],
                          "served_requests_per_s": served_many["requests_per_s"],
                          "errors": served_one["errors"] + served_many["errors"]})
    median = lambda key: float(np.median([r[key] for r in per_round]))  # noqa: E731
    return {"rounds": per_round, "seconds": seconds, "best_batch": best_batch, "concurrency": clients,
            "in_process_b1_p50_ms": median("in_process_b1_p50_ms"), "served_c1_p50_ms": median("served_c1_p50_ms"),
            "in_process_best_images_per_s": median("in_process_best_images_per_s"),
            "served_requests_per_s": median("served_requests_per_s"),
            "errors": sum(r["errors"] for r in per_round)}


def sweep(version_dir: Path, name: str, images: np.ndarray, encoded: list[bytes], config: SweepConfig,
          log_path: Path, on_level: Callable[[str, dict], None] = lambda mode, row: None,
          best_batch: int | None = None) -> tuple[list[dict], dict | None]:
    """Every mode at every concurrency level, against one ``ftx serve`` process per batching setting.

    With ``best_batch`` (the in-process ONNX Runtime batch size of highest
    throughput) the first server (batching as listed first) is also compared
    with in-process ONNX Runtime side by side (:func:`side_by_side`).
    """
    from serving.allocator import keep_freed_memory

    keep_freed_memory()  # the load client reuses its large buffers as the server does, so the wire is not page faults
    rows, reference = [], None
    for batching in config.batching:
        server = ServeProcess(version_dir, name, config.threads, batching,
                              log_path.with_name(f"{log_path.stem}{'-batching' if batching else ''}.log"))
        try:
            if best_batch and reference is None and "grpc-tensor" in config.modes:
                connect = _grpc_caller(server, "grpc-tensor", images, encoded)
                reference = {"batching": batching, **side_by_side(
                    version_dir, connect, images, config.threads, best_batch, max(config.concurrency),
                    config.rounds, config.round_seconds)}
                on_level("side-by-side", reference)
            for mode in config.modes:
                factory = _grpc_caller if mode.startswith("grpc") else _rest_caller
                connect = factory(server, mode, images, encoded)
                entrypoint = "GRPC" if mode.startswith("grpc") else "REST"
                for clients in config.concurrency:
                    row = {"mode": mode, "batching": batching,
                           **run_level(connect, clients, config.seconds, lambda: server.totals(entrypoint))}
                    rows.append(row)
                    on_level(mode, row)
        finally:
            server.stop()
    return rows, reference
