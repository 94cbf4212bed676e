"""Load on ``ftx serve``: C concurrent gRPC (or REST) clients, one image per request; latency and throughput.

Usage: ``python -m benchmarks.serve_load MODEL_BASE_PATH [--clients 16] [--requests 200] [--rest] [--batching]``
where MODEL_BASE_PATH is an export's NAME/ directory. The server is a separate
``ftx serve`` process (gRPC and REST on 127.0.0.1), so the clients, threads
with their own channels in this process, do not share its interpreter. Prints p50/p90/p99 latency, requests/s and the error count,
and, for reference, the in-process ONNX Runtime latency of the same model
measured just before.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1e3
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)} | {"mean": float(values.mean())}


class ServeProcess:
    """``ftx serve`` on free ports in a child process; ready once it prints its banner."""

    def __init__(self, base: Path, batching: bool, threads: int) -> None:
        ports = []
        for _ in range(2):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                ports.append(probe.getsockname()[1])
        self.grpc_port, self.rest_port = ports
        command = [sys.executable, "-m", "training.cli", "serve", f"--port={self.grpc_port}",
                   f"--rest_api_port={self.rest_port}", f"--model_name={base.name}", f"--model_base_path={base}",
                   "--file_system_poll_wait_seconds=0", f"--intra_op_threads={threads}", "--grpc_max_threads=64"]
        if batching:
            command.append("--enable_batching")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.process.stdout:
            if "Ctrl-C stops" in line:
                return
        raise SystemExit(f"ftx serve did not start (exit {self.process.wait()})")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_base_path")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--rest", action="store_true", help="REST :predict instead of gRPC Predict")
    parser.add_argument("--signature", choices=("serving_default", "serving_bytes"), default="serving_default")
    parser.add_argument("--batching", action="store_true", help="server-side batching, CPU defaults")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per call (0: cores)")
    args = parser.parse_args()

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from export.onnx_runtime import open_session
    from serving.model_store import available_versions
    from serving.servable import read_export_info

    base = Path(args.model_base_path)
    versions = available_versions(base, "onnx")
    if not versions:
        raise SystemExit(f"no served version (integer directory with model.onnx) in {base}")
    version_dir = base / str(versions[-1])
    _, size = read_export_info(version_dir)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, size, size, 3)).astype(np.float32)
    encoded = [tf.io.encode_png(image.astype(np.uint8)).numpy() for image in images[:8]]

    session = open_session(version_dir / "model.onnx", threads=args.threads or None)
    for image in images[:10]:
        session.run(["probabilities"], {"images": image[None]})
    in_process = []
    for index in range(300):
        started = time.perf_counter()
        session.run(["probabilities"], {"images": images[index % 32][None]})
        in_process.append(time.perf_counter() - started)
    del session

    server = ServeProcess(base, args.batching, args.threads)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(args.clients + 1)

    def grpc_worker(index: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        requests = []
        for step in range(args.requests):
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = base.name, args.signature
            if args.signature == "serving_default":
                request.inputs["images"].CopyFrom(tf.make_tensor_proto(images[(index + step) % 32][None]))
            else:
                request.inputs["images_bytes"].CopyFrom(tf.make_tensor_proto([encoded[(index + step) % 8]]))
            requests.append(request)
        stub.Predict(requests[0], timeout=60)  # connect and warm up outside the timed part
        ready.wait()
        mine = []
        for request in requests:
            started = time.perf_counter()
            try:
                stub.Predict(request, timeout=60)
                mine.append(time.perf_counter() - started)
            except grpc.RpcError as error:
                with lock:
                    errors.append(error.code().name)
        with lock:
            latencies.extend(mine)
        channel.close()

    def rest_worker(index: int) -> None:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/{base.name}:predict"
        bodies = []
        for step in range(args.requests):
            if args.signature == "serving_default":
                instance = images[(index + step) % 32].tolist()
            else:
                instance = {"b64": base64.b64encode(encoded[(index + step) % 8]).decode()}
            bodies.append(json.dumps({"signature_name": args.signature, "instances": [instance]}).encode())
        urllib.request.urlopen(url, data=bodies[0]).read()
        ready.wait()
        mine = []
        for body in bodies:
            started = time.perf_counter()
            try:
                urllib.request.urlopen(url, data=body, timeout=60).read()
                mine.append(time.perf_counter() - started)
            except OSError as error:
                with lock:
                    errors.append(type(error).__name__)
        with lock:
            latencies.extend(mine)

    worker = rest_worker if args.rest else grpc_worker
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    server.stop()

    total = args.clients * args.requests
    served = percentiles(latencies)
    direct = percentiles(in_process)
    print(f"model {base.name} v{versions[-1]} ({size}x{size}), {'REST' if args.rest else 'gRPC'} {args.signature}, "
          f"batching {'on' if args.batching else 'off'}, {args.clients} clients x {args.requests} requests")
    print(f"completed {len(latencies)}/{total}, errors {len(errors)} {sorted(set(errors))}")
    print(f"served:     p50 {served['p50']:.2f} ms  p90 {served['p90']:.2f} ms  p99 {served['p99']:.2f} ms  "
          f"mean {served['mean']:.2f} ms  throughput {len(latencies) / wall:.1f} req/s  ({wall:.1f} s)")
    print(f"in-process: p50 {direct['p50']:.2f} ms  p99 {direct['p99']:.2f} ms  throughput "
          f"{1e3 / direct['mean']:.1f} img/s (one caller, batch 1)")


if __name__ == "__main__":
    main()
