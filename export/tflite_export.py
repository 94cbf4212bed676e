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
            uint8_io: bool = False) -> bytes:
    """One TFLite variant of ``saved_model_dir`` as bytes.

    ``int8`` (full integer) needs ``representative_images`` (float32 RGB 0-255,
    real training images); ``uint8_io`` then makes the input and output uint8.
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if variant != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise ValueError("full-integer int8 needs representative images from the training data")

        def representative() -> Iterator[list[np.ndarray]]:
            for image in representative_images:
                yield [np.asarray(image, np.float32)[None]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if uint8_io:
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
    return converter.convert()


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
