"""ONNX variants of a finished fp32 model: fp16 weights, dynamic int8, static int8 (QDQ).

All three come from ONNX Runtime's own tooling (``onnxruntime.transformers.float16``
and ``onnxruntime.quantization``); input and output stay float32, so clients
do not change. Static quantization calibrates on real training images.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

VARIANTS = ("fp16", "int8_dynamic", "int8_static")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and activations, float32 I/O (``keep_io_types``)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def _quantize(model: onnx.ModelProto, run) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="ftx-quant-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, source)
        run(str(source), str(target))
        return onnx.load(target)


def to_int8_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights int8, activations quantized on the fly: the "easy" variant (often slower on CPU convs)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return _quantize(model, lambda src, dst: quantize_dynamic(src, dst, weight_type=QuantType.QInt8))


def to_int8_static(model: onnx.ModelProto, calibration_images: np.ndarray, input_name: str = "images",
                   batch_size: int = 8) -> onnx.ModelProto:
    """Full QDQ int8 with activation ranges calibrated on ``calibration_images`` (float32 RGB 0-255)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if calibration_images is None or len(calibration_images) == 0:
        raise ValueError("static int8 quantization needs calibration images from the training data")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([np.asarray(calibration_images[i:i + batch_size], np.float32)
                                 for i in range(0, len(calibration_images), batch_size)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    return _quantize(model, lambda src, dst: quantize_static(
        src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8))


def make_variant(model: onnx.ModelProto, variant: str, calibration_images: np.ndarray | None = None) -> onnx.ModelProto:
    if variant == "fp16":
        return to_fp16(model)
    if variant == "int8_dynamic":
        return to_int8_dynamic(model)
    if variant == "int8_static":
        return to_int8_static(model, calibration_images)
    raise ValueError(f"unknown ONNX variant {variant!r}; choose from {', '.join(VARIANTS)}")
