"""One loaded model version and the four signatures an ftx export serves.

Both backends reduce to one function, float32 RGB images -> probabilities:
ONNX Runtime on ``model.onnx`` (the edge default) or the SavedModel's
``serving_default``. Encoded images and tf.Examples are decoded here with the
training pipeline's own decode and resize, so every backend and every way in
gives the Keras model's pixels.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.signatures import (IMAGE_FEATURE, SIGNATURE_BYTES, SIGNATURE_CLASSIFY, SIGNATURE_EXAMPLES,
                               SIGNATURE_TENSOR)
from serving.errors import ServingError

INPUT_NAMES = {SIGNATURE_TENSOR: "images", SIGNATURE_BYTES: "images_bytes", SIGNATURE_EXAMPLES: "examples",
               SIGNATURE_CLASSIFY: "inputs"}
PREDICT_OUTPUTS = ("probabilities", "class_ids", "class_names")
BACKENDS = {"onnx": "model.onnx", "savedmodel": "saved_model.pb"}
MAX_BATCH = 1024  # images per request when server-side batching is off

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class Servable:
    """A loaded version: its labels, input size and a runner from float images to probabilities."""

    name: str
    version: int
    path: Path
    class_names: tuple[str, ...]
    image_size: int
    runner: Runner
    max_batch: int = MAX_BATCH
    close: Callable[[], None] = field(default=lambda: None)

    def predict(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The named outputs of ``signature`` for ``inputs`` (checked: names, dtypes, shapes, batch size)."""
        images = self.images_for(signature, inputs)
        probabilities = np.asarray(self.runner(images), np.float32)
        if signature == SIGNATURE_CLASSIFY:
            classes = np.array([list(self.class_names)] * len(images), dtype=object)
            return {"classes": classes.astype(bytes), "scores": probabilities}
        class_ids = probabilities.argmax(axis=1).astype(np.int32)
        return {"probabilities": probabilities, "class_ids": class_ids,
                "class_names": np.array([self.class_names[i].encode() for i in class_ids], dtype=object)}

    def images_for(self, signature: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        if signature not in INPUT_NAMES:
            raise ServingError.not_found(f"model {self.name!r} version {self.version} has no signature "
                                         f"{signature!r}; it has {', '.join(INPUT_NAMES)}")
        expected = INPUT_NAMES[signature]
        if set(inputs) != {expected}:
            raise ServingError.invalid(f"signature {signature!r} takes exactly one input {expected!r}, "
                                       f"got {sorted(inputs) or 'none'}")
        value = inputs[expected]
        if len(value.shape) == 0 or value.shape[0] == 0:
            raise ServingError.invalid(f"input {expected!r} needs a batch dimension with at least one item, "
                                       f"got shape {list(value.shape)}")
        if value.shape[0] > self.max_batch:
            raise ServingError.invalid(f"batch of {value.shape[0]} is larger than the maximum batch size "
                                       f"{self.max_batch}; split the request")
        if signature == SIGNATURE_TENSOR:
            size = self.image_size
            if value.dtype.kind not in "fiu":
                raise ServingError.invalid(f"input 'images' must be float32 RGB 0-255, got dtype {value.dtype}")
            if value.ndim != 4 or value.shape[1:] != (size, size, 3):
                raise ServingError.invalid(f"input 'images' must have shape [batch, {size}, {size}, 3], "
                                           f"got {list(value.shape)}")
            return np.ascontiguousarray(value, np.float32)
        if value.dtype != object or value.ndim != 1:
            raise ServingError.invalid(f"input {expected!r} must be a 1-D string tensor [batch], got dtype "
                                       f"{value.dtype} shape {list(value.shape)}")
        encoded = list(value) if signature == SIGNATURE_BYTES else [_image_from_example(e) for e in value]
        return np.stack([decode_image(data, self.image_size) for data in encoded])


def _image_from_example(serialized: bytes) -> bytes:
    from tensorflow.core.example import example_pb2
    from google.protobuf.message import DecodeError

    example = example_pb2.Example()
    try:
        example.ParseFromString(bytes(serialized))
    except DecodeError:
        raise ServingError.invalid("an input is not a serialized tf.Example") from None
    feature = example.features.feature.get(IMAGE_FEATURE)
    if feature is None or len(feature.bytes_list.value) != 1:
        raise ServingError.invalid(f"each tf.Example needs exactly one bytes value under {IMAGE_FEATURE!r}")
    return feature.bytes_list.value[0]


def decode_image(data: bytes, image_size: int) -> np.ndarray:
    """float32 [S, S, 3] RGB 0-255 exactly as training and the SavedModel's bytes signature make it."""
    import tensorflow as tf

    from training.data.decode import decode_native, resize_rounded

    try:
        return resize_rounded(decode_native(tf.constant(bytes(data))), image_size).numpy()
    except (tf.errors.InvalidArgumentError, ValueError) as error:
        message = str(getattr(error, "message", error)).splitlines()[0]
        raise ServingError.invalid(f"cannot decode an image ({len(data)} bytes): {message}") from None


def read_export_info(version_dir: Path) -> tuple[tuple[str, ...], int]:
    """Labels and input size from the export manifest (labels.txt as fallback)."""
    manifest = version_dir / "export_manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        labels = data.get("labels") or (version_dir / "labels.txt").read_text().split("\n")
        size = data.get("source_run", {}).get("image_size") or data.get("input", {}).get("shape", [None, None])[1]
        if size and labels:
            return tuple(label for label in labels if label), int(size)
    raise ServingError.unavailable(f"{version_dir} has no readable export_manifest.json; was it written by ftx export?")


def load_servable(name: str, version: int, version_dir: Path, backend: str, threads: int | None = None,
                  max_batch: int = MAX_BATCH) -> Servable:
    """Load one version directory with ``backend`` (onnx or savedmodel)."""
    class_names, image_size = read_export_info(version_dir)
    if backend == "onnx":
        from export.onnx_runtime import open_session

        session = open_session(version_dir / BACKENDS["onnx"], threads=threads)
        input_name = session.get_inputs()[0].name

        def runner(images: np.ndarray) -> np.ndarray:
            return session.run(["probabilities"], {input_name: images})[0]

        return Servable(name, version, version_dir, class_names, image_size, runner, max_batch)
    if backend == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(version_dir))
        signature = loaded.signatures[SIGNATURE_TENSOR]
        lock = threading.Lock()  # one call at a time: TF's own intra-op threads use the cores

        def runner(images: np.ndarray) -> np.ndarray:
            with lock:
                return signature(images=tf.constant(images))["probabilities"].numpy()

        return Servable(name, version, version_dir, class_names, image_size, runner, max_batch)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
