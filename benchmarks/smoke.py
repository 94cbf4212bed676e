"""The serving smoke test of ``ftx run``: the export, loaded by a real ``ftx serve``, answers like the Keras model.

It starts ``ftx serve`` on free ports of 127.0.0.1, then over real gRPC and
REST checks the version is AVAILABLE, that float tensors and encoded images
give the Keras model's classes (and, for tensors, its probabilities within the
parity gate's fp32 tolerance), and that ``classify`` names the same labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FP32_TOLERANCE = 1e-4  # the parity gate's fp32 max |dp|


def _check(checks: list[dict], name: str, action: Callable[[], tuple[bool, str]]) -> None:
    started = time.perf_counter()
    try:
        passed, detail = action()
    except Exception as error:  # a failed call is a failed check, reported, never a crash of the pipeline
        passed, detail = False, f"{type(error).__name__}: {error}"
    checks.append({"check": name, "passed": bool(passed), "detail": detail,
                   "ms": round(1000 * (time.perf_counter() - started), 1)})


def _only_version_1(status: list[tuple[int, str]]) -> tuple[bool, str]:
    """The one published version serves; the detail as a person reads it ("version 1 AVAILABLE")."""
    return status == [(1, "AVAILABLE")], ", ".join(f"version {v} {state}" for v, state in status) or "no versions"


def smoke_test(version_dir: Path, name: str, run_dir: Path, images: int, threads: int, log_path: Path) -> dict:
    """Run every check; return ``{"passed", "checks", "grpc_port", "rest_port", "images"}``."""
    from benchmarks.serving_sweep import ServeProcess
    from benchmarks.split_images import materialise
    from benchmarks.worker import Inputs
    from export.run_dir import read_run
    from export.savedmodel import load_keras_model
    from serving.client import ClientOptions, GrpcClient, RestClient
    from training.keras_predict import predict_array

    run = read_run(run_dir)
    split = materialise(run, images)
    inputs = Inputs(split.directory)
    indices = np.arange(min(images, split.count))
    batch, encoded = inputs.batch("images", indices), inputs.batch("encoded", indices)
    expected = predict_array(load_keras_model(run), batch)
    expected_ids = expected.argmax(axis=1)
    labels = list(run.class_names)

    def same_classes(prediction) -> tuple[bool, str]:
        agree = int(np.sum(prediction.class_ids == expected_ids))
        return agree == len(indices), f"{agree}/{len(indices)} top-1 as Keras"

    def same_probabilities(prediction) -> tuple[bool, str]:
        diff = float(np.max(np.abs(prediction.probabilities - expected)))
        ok, classes = same_classes(prediction)
        return ok and diff <= FP32_TOLERANCE, f"{classes}; max |dp| {diff:.1e} (<= {FP32_TOLERANCE:g})"

    def classified(results) -> tuple[bool, str]:
        top = [max(result, key=lambda pair: pair[1])[0] for result in results]  # classes come in label order
        agree = sum(t == labels[i] for t, i in zip(top, expected_ids))
        return agree == len(indices), f"{agree}/{len(indices)} top labels as Keras"

    checks: list[dict] = []
    started = time.perf_counter()
    backend = "onnx" if (version_dir / "model.onnx").is_file() else "savedmodel"
    server = ServeProcess(version_dir, name, threads, False, log_path, backend=backend)
    try:
        options = ClientOptions(model=name, timeout=60.0)
        with GrpcClient(f"127.0.0.1:{server.grpc_port}", options) as grpc_client:
            _check(checks, "gRPC GetModelStatus", lambda: _only_version_1(grpc_client.status()))
            _check(checks, "gRPC Predict serving_default (float tensor)",
                   lambda: same_probabilities(grpc_client.predict(batch)))
            _check(checks, "gRPC Predict serving_bytes (encoded images)",
                   lambda: same_classes(grpc_client.predict_bytes(encoded)))
            _check(checks, "gRPC Classify (tf.Example)", lambda: classified(grpc_client.classify(encoded)))
        rest_client = RestClient(f"http://127.0.0.1:{server.rest_port}", options)
        _check(checks, "REST status", lambda: _only_version_1(rest_client.status()))
        _check(checks, "REST predict serving_bytes ({\"b64\"})", lambda: same_classes(rest_client.predict_bytes(encoded)))
        _check(checks, "REST classify", lambda: classified(rest_client.classify(encoded)))
    finally:
        server.stop()
    return {"passed": all(check["passed"] for check in checks), "checks": checks, "images": len(indices),
            "split": split.split, "backend": backend,
            "seconds": round(time.perf_counter() - started, 1)}
