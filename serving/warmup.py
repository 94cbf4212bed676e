"""Replaying ``assets.extra/tf_serving_warmup_requests`` at load, as TF Serving does before a version is AVAILABLE.

The file is a TFRecord of ``PredictionLog``s (saved_model_warmup_util.cc):
predict, classify, regress and multi_inference logs are run; other kinds and
more than 1000 records fail the load, as do records the model refuses, so a
version whose warmup fails is never served. Records are read with their
length checksum verified (CRC32C of the 8 length bytes); the payload's own
checksum is not computed (that needs a CRC32C library), but a damaged payload
still fails to parse or to run.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from serving import inference
from serving.errors import ServingError
from serving.protos import (classification_pb2, inference_pb2, predict_pb2, prediction_log_pb2,
                            regression_pb2)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000
MAX_RECORD_BYTES = 64 << 20


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: Path) -> Iterator[bytes]:
    """TFRecord payloads, each bounded before it is read."""
    with open(path, "rb") as handle:
        while header := handle.read(12):
            if len(header) < 12:
                raise ServingError.invalid(f"{path}: truncated record header")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise ServingError.invalid(f"{path}: corrupted record length")
            if length > MAX_RECORD_BYTES:
                raise ServingError.invalid(f"{path}: a record of {length} bytes is over {MAX_RECORD_BYTES}")
            payload = handle.read(length)
            if len(payload) < length or len(handle.read(4)) < 4:
                raise ServingError.invalid(f"{path}: truncated record")
            yield payload


def replay(servable, version_dir: Path, iterations: int = 1) -> int:
    """Run every warmup record ``iterations`` times; returns how many records there were (0 without a file)."""
    path = version_dir / WARMUP_FILE
    if not path.is_file():
        return 0
    count = 0
    for payload in read_records(path):
        count += 1
        if count > MAX_RECORDS:
            raise ServingError.invalid(f"{path}: more than {MAX_RECORDS} warmup records")
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(payload)
        except Exception as error:  # noqa: BLE001 - protobuf's DecodeError: a damaged record
            raise ServingError.invalid(f"{path}: record {count} is not a PredictionLog: {error}") from None
        for _ in range(iterations):
            _run(servable, log, path, count)
    return count


def _run(servable, log, path: Path, index: int) -> None:
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        inference.predict(servable, log.predict_log.request, predict_pb2.PredictResponse())
    elif kind == "classify_log":
        inference.classify(servable, log.classify_log.request, classification_pb2.ClassificationResponse())
    elif kind == "regress_log":
        inference.regress(servable, log.regress_log.request, regression_pb2.RegressionResponse())
    elif kind == "multi_inference_log":
        inference.multi_inference(servable, log.multi_inference_log.request, inference_pb2.MultiInferenceResponse())
    elif kind is not None:
        raise ServingError.invalid(f"{path}: record {index}: unsupported log_type for warmup: {kind}")
