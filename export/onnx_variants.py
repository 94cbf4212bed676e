"""ONNX variants of a finished fp32 model: fp16 weights, dynamic int8, static int8 (QDQ).

All three come from ONNX Runtime's own tooling (``onnxruntime.transformers.float16``
and ``onnxruntime.quantization``); input and output stay float32, so clients
do not change. Static quantization calibrates on real training images.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from training.terminal import library_chatter

VARIANTS = ("fp16", "int8_dynamic", "int8_static")
log = logging.getLogger(__name__)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and activations, float32 I/O (``keep_io_types``)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def _quantize(model: onnx.ModelProto, run) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="ftx-quant-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, source)
        with library_chatter(log, "onnxruntime.quantization"):  # its calibrators print progress notes
            run(str(source), str(target))
        return onnx.load(target)


def to_int8_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights int8, activations quantized on the fly: the "easy" variant (often slower on CPU convs)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return _quantize(model, lambda src, dst: quantize_dynamic(src, dst, weight_type=QuantType.QInt8))


CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
FEW_CALIBRATION_IMAGES = 32


def to_int8_static(model: onnx.ModelProto, calibration_images: np.ndarray, input_name: str = "images",
                   calibration: str = "percentile", float_convs: int = 0) -> onnx.ModelProto:
    """Full QDQ int8 with activation ranges calibrated on ``calibration_images`` (float32 RGB 0-255).

    The recipe ONNX Runtime documents for CPUs: ``quant_pre_process`` first
    (graph optimisation and shape inference, so Conv+Clip and friends are
    quantized as one), then QDQ with per-channel int8 weights and uint8
    activations. On the run in benchmarks/RESULTS.md pre-processing raised
    top-1 agreement with fp32 from 0.84 to 0.92, and percentile calibration
    (clipping the top 0.001% of each activation) to 0.93. ``float_convs``
    keeps the first convolutions (graph order) in float: they see the
    raw image, carry the largest quantization error, and are cheap.
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration_images is None or len(calibration_images) == 0:
        raise ValueError("static int8 quantization needs calibration images from the training data")
    if float_convs < 0:
        raise ValueError(f"float_convs must be >= 0, got {float_convs}")
    if calibration not in CALIBRATION_METHODS:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, got {calibration!r}")
    if calibration != "minmax" and len(calibration_images) < FEW_CALIBRATION_IMAGES:
        log.warning("%s calibration on only %d images clips real activation ranges; give more calibration "
                    "images or use minmax", calibration, len(calibration_images))
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibration]

    class Reader(CalibrationDataReader):
        """One image per call: the histogram calibrators stack every call's activations and fail on a
        shorter last batch, so equal shapes are required and no image is dropped."""

        def __init__(self) -> None:
            self.batches = iter([np.asarray(image, np.float32)[None] for image in calibration_images])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    def run(source: str, target: str) -> None:
        prepared = str(Path(target).with_name("prepared.onnx"))
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        convs = [node.name for node in onnx.load(prepared).graph.node if node.op_type == "Conv"]
        quantize_static(prepared, target, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                        nodes_to_exclude=convs[:float_convs])

    return _quantize(model, run)


def make_variant(model: onnx.ModelProto, variant: str, calibration_images: np.ndarray | None = None,
                 calibration: str = "percentile", float_convs: int = 0) -> onnx.ModelProto:
    if variant == "fp16":
        return to_fp16(model)
    if variant == "int8_dynamic":
        return to_int8_dynamic(model)
    if variant == "int8_static":
        return to_int8_static(model, calibration_images, calibration=calibration, float_convs=float_convs)
    raise ValueError(f"unknown ONNX variant {variant!r}; choose from {', '.join(VARIANTS)}")
