"""TFLite from the run's SavedModel: fp32, fp16, dynamic-range int8, full-integer int8.

Conversion uses ``tf.lite.TFLiteConverter.from_saved_model`` (the path that
works with Keras 3 exports); every result is checked by loading it into LiteRT
(``ai_edge_litert``), the runtime that replaces ``tf.lite.Interpreter``.
Labels travel inside the file as a TFLite ``metadata`` entry named ``labels``
(newline-separated UTF-8), readable with the flatbuffer schema alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

VARIANTS = ("fp32", "fp16", "int8_dynamic", "int8")
LABELS_METADATA = "labels"


def convert(saved_model_dir: Path, variant: str, representative_images: np.ndarray | None = None,
            uint8_io: bool = False, float_convs: int = 0) -> bytes:
    """One TFLite variant of ``saved_model_dir`` as bytes.

    ``int8`` (full integer) needs ``representative_images`` (float32 RGB 0-255,
    real training images); ``uint8_io`` then makes the input and output uint8.
    ``float_convs`` keeps the first convolutions of ``int8`` in float32 (through
    the converter's selective quantization): they see the raw image and carry
    the largest quantization error.
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if float_convs < 0:
        raise ValueError(f"float_convs must be >= 0, got {float_convs}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if variant != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise ValueError("full-integer int8 needs representative images from the training data")

        converter.representative_dataset = lambda: one_image_batches(representative_images)
        if uint8_io:
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        if float_convs:
            return _selectively_quantized(saved_model_dir, representative_images, uint8_io, float_convs)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def one_image_batches(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """Each image as a float32 batch of one, in the list form TFLite's representative and debug datasets take."""
    for image in images:
        yield [np.asarray(image, np.float32)[None]]


CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def conv_outputs(model_bytes: bytes) -> list[str]:
    """Output tensor names of the convolutions of a TFLite model, in execution order."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    codes = {getattr(schema.BuiltinOperator, name): name for name in CONV_OPS}
    graph = model.Subgraphs(0)
    names = []
    for index in range(graph.OperatorsLength()):
        operator = graph.Operators(index)
        opcode = model.OperatorCodes(operator.OpcodeIndex())
        if max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode()) in codes:
            names.append(graph.Tensors(operator.Outputs(0)).Name().decode())
    return names


def _selectively_quantized(saved_model_dir: Path, representative_images: np.ndarray, uint8_io: bool,
                           float_convs: int) -> bytes:
    """Full int8 except the first ``float_convs`` convolutions (the quantizer's denylist)."""
    import tensorflow as tf

    from export.tflite_int8_search import CalibratedModel

    float_model = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()
    calibrated = CalibratedModel(saved_model_dir, representative_images, uint8_io=uint8_io)
    return calibrated.quantize(conv_outputs(float_model)[:float_convs])


def add_labels(model_bytes: bytes, class_names: tuple[str, ...]) -> bytes:
    """Embed the labels as a ``metadata`` entry (its own buffer) in the TFLite flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer("\n".join(class_names).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = LABELS_METADATA
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_labels(model_bytes: bytes) -> list[str]:
    """The labels embedded by :func:`add_labels`."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name().decode() == LABELS_METADATA:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return bytes(data).decode("utf-8").split("\n")
    raise KeyError("no labels metadata in this TFLite model")


def run_litert(model_bytes: bytes, images: np.ndarray, threads: int = 2) -> np.ndarray:
    """Probabilities from LiteRT, one image at a time (quantized I/O converted both ways)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    outputs = []
    for image in images:
        x = np.asarray(image, np.float32)[None]
        if source["dtype"] != np.float32:
            scale, zero = source["quantization"]
            x = np.clip(np.round(x / scale + zero), np.iinfo(source["dtype"]).min,
                        np.iinfo(source["dtype"]).max).astype(source["dtype"])
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(target["index"])
        if target["dtype"] != np.float32:
            scale, zero = target["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        outputs.append(y[0])
    return np.stack(outputs)
