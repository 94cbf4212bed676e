"""One loaded model version: its SignatureDefs, verified files, and the four signatures an ftx export serves.

Both backends reduce to one function, float32 RGB images -> probabilities:
ONNX Runtime on ``model.onnx`` (the edge default) or the SavedModel's
``serving_default``. Encoded images and tf.Examples are decoded here by
``training.data.numpy_decode``, bit-identical to the training pipeline's decode
and resize and free of TensorFlow, so every backend and every way in gives the
Keras model's pixels. Before a version is accepted its files are
checked against the export manifest's sizes and sha256 (a half-copied or
damaged version fails to load instead of being served) and its label count
against the model's outputs.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from export.manifest import MANIFEST_FILE, sha256_file
from serving.errors import ServingError
from serving.request_timing import runtime_call
from serving.signature_defs import SIGNATURE_DEFS_FILE, read_signature_defs

SIGNATURE_TENSOR, SIGNATURE_BYTES, SIGNATURE_EXAMPLES, SIGNATURE_CLASSIFY = (
    "serving_default", "serving_bytes", "serving_examples", "classify")
IMAGE_FEATURE = "image/encoded"
INPUT_NAMES = {SIGNATURE_TENSOR: "images", SIGNATURE_BYTES: "images_bytes", SIGNATURE_EXAMPLES: "examples",
               SIGNATURE_CLASSIFY: "inputs"}
BACKENDS = {"onnx": "model.onnx", "savedmodel": "saved_model.pb"}
RUNTIMES = {"onnx": "onnxruntime", "savedmodel": "tensorflow"}  # runtime_latency's "runtime" label
LABELS_FILE = "labels.txt"
MAX_MANIFEST_BYTES = 16 << 20

Runner = Callable[[np.ndarray], np.ndarray]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputLimits:
    """Bounds checked before anything a request declares is allocated."""

    max_batch: int = 1024  # items per request when server-side batching is off
    max_elements: int = 64 << 20  # values in one input tensor
    max_image_pixels: int = 4096 * 4096  # width x height of one encoded image, read from its header


@dataclass
class Servable:
    """A loaded version: SignatureDefs as saved, labels, input size and a runner from images to probabilities."""

    name: str
    version: int
    path: Path
    signature_defs: dict  # signature name -> SignatureDef message, verbatim from the export
    class_names: tuple[str, ...]
    image_size: int
    runner: Runner
    limits: InputLimits = InputLimits()
    close: Callable[[], None] = field(default=lambda: None)
    runtime: str = RUNTIMES["onnx"]

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of ``signature`` for checked ``inputs`` (names, dtypes and shapes match its SignatureDef)."""
        if signature not in INPUT_NAMES:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f"signature {signature!r} is not one that ftx "
                               f"serve runs; it runs {', '.join(INPUT_NAMES)}")
        value = inputs[INPUT_NAMES[signature]]
        if signature == SIGNATURE_TENSOR:
            images = np.ascontiguousarray(value, np.float32)
        elif signature == SIGNATURE_BYTES:
            images = self.decode_all(list(value.reshape(-1)))
        else:
            images = self.decode_all([image_from_example(item) for item in value.reshape(-1)])
        with runtime_call(self.runtime):
            probabilities = np.asarray(self.runner(images), np.float32)
        if signature == SIGNATURE_CLASSIFY:
            classes = np.empty(probabilities.shape, dtype=object)
            classes[:] = [name.encode() for name in self.class_names]
            return {"classes": classes, "scores": probabilities}
        class_ids = probabilities.argmax(axis=1).astype(np.int32)
        names = np.empty(len(class_ids), dtype=object)
        names[:] = [self.class_names[i].encode() for i in class_ids]
        return {"probabilities": probabilities, "class_ids": class_ids, "class_names": names}

    def decode_all(self, encoded: list[bytes]) -> np.ndarray:
        if not encoded:
            return np.zeros((0, self.image_size, self.image_size, 3), np.float32)
        return np.stack([decode_image(bytes(data), self.image_size, self.limits.max_image_pixels)
                         for data in encoded])



def image_from_example(serialized: bytes) -> bytes:
    from google.protobuf.message import DecodeError

    from serving.protos import example_pb2

    example = example_pb2.Example()
    try:
        example.ParseFromString(bytes(serialized))
    except DecodeError:
        raise ServingError.invalid("Could not parse example input, value: an input is not a serialized "
                                   "tf.Example") from None
    feature = example.features.feature.get(IMAGE_FEATURE)
    if feature is None or len(feature.bytes_list.value) != 1:
        raise ServingError.invalid(f"each tf.Example needs exactly one bytes value under {IMAGE_FEATURE!r}")
    return feature.bytes_list.value[0]


def image_pixels(data: bytes) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ServingError.invalid(f"cannot decode an image ({len(data)} bytes): {error}") from None


def decode_image(data: bytes, image_size: int, max_pixels: int) -> np.ndarray:
    """float32 [S, S, 3] RGB 0-255, bit-identical to training's decode and resize, without TensorFlow."""
    width, height = image_pixels(data)
    if width * height > max_pixels:
        raise ServingError.invalid(f"an image of {width}x{height} pixels is larger than the limit of {max_pixels} "
                                   "pixels (ftx serve --max_image_pixels)")
    from training.data.numpy_decode import ImageDecodeError, load_image, tf_decodes

    if not tf_decodes(data):  # as the SavedModel's serving_bytes under TF Serving: both servers answer alike
        raise ServingError.invalid(f"cannot decode an image ({len(data)} bytes): not a JPEG, PNG, GIF or 24/32-bit "
                                   "BMP file, the formats the export's serving_bytes decodes")
    try:
        return load_image(data, image_size)
    except ImageDecodeError as error:
        raise ServingError.invalid(f"cannot decode an image ({len(data)} bytes): {error}") from None


def read_manifest(version_dir: Path) -> dict:
    path = version_dir / MANIFEST_FILE
    if not path.is_file():
        raise ServingError.invalid(f"{path} is missing: not an ftx export, or a copy still in progress")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ServingError.invalid(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ServingError.invalid(f"{path} is not valid JSON (truncated?): {error}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise ServingError.invalid(f"{path} has no 'files' list: not an ftx export manifest")
    return manifest


def verify_files(version_dir: Path, manifest: dict, needed: tuple[str, ...], also: tuple[str, ...] = ()) -> None:
    """Every manifest file under ``needed`` (which must be listed) and ``also`` (when listed) exists with its
    listed size and sha256; entries that would lead outside the version directory are refused."""
    root = version_dir.resolve()
    entries = []
    for entry in manifest["files"]:
        relative = str(entry.get("path")) if isinstance(entry, dict) else ""
        if any(relative == part or relative.startswith(part + "/") for part in needed + also):
            if relative.startswith("/") or ".." in relative.split("/") or \
                    not (root / relative).resolve().is_relative_to(root):
                raise ServingError.invalid(f"{version_dir / MANIFEST_FILE} lists {relative!r}, outside the version")
            entries.append(entry)
    listed = {str(e["path"]).split("/")[0] for e in entries}
    missing_parts = [part for part in needed if part not in listed]
    if missing_parts:
        raise ServingError.invalid(f"{version_dir / MANIFEST_FILE} lists no {missing_parts}")
    for entry in entries:
        path = version_dir / str(entry["path"])
        if not path.is_file():
            raise ServingError.invalid(f"{path} is missing (the manifest lists it)")
        if path.stat().st_size != entry.get("bytes"):
            raise ServingError.invalid(f"{path} is {path.stat().st_size} bytes, the manifest says {entry.get('bytes')} "
                                       "(a copy in progress or a damaged file)")
        if sha256_file(path) != entry.get("sha256"):
            raise ServingError.invalid(f"{path} does not match its sha256 in the manifest (a damaged file)")


def read_labels(version_dir: Path, manifest: dict, classes: int) -> tuple[str, ...]:
    labels_file = version_dir / LABELS_FILE
    labels = manifest.get("labels")
    if labels_file.is_file():
        labels = [line for line in labels_file.read_text(encoding="utf-8").split("\n") if line]
    if not isinstance(labels, list) or not labels:
        raise ServingError.invalid(f"{version_dir} has no labels ({LABELS_FILE} or the manifest's 'labels')")
    if len(labels) != classes:
        raise ServingError.invalid(f"{labels_file} has {len(labels)} labels but the model has {classes} outputs")
    return tuple(str(label) for label in labels)


def _output_classes(signature_defs: dict) -> tuple[int, int]:
    """(classes, image size) from serving_default's SignatureDef."""
    signature = signature_defs.get(SIGNATURE_TENSOR)
    if signature is None or "probabilities" not in signature.outputs or "images" not in signature.inputs:
        raise ServingError.invalid("the SignatureDefs have no serving_default with images -> probabilities: "
                                   "not an ftx export")
    classes = signature.outputs["probabilities"].tensor_shape.dim[-1].size
    size = signature.inputs["images"].tensor_shape.dim[1].size
    return int(classes), int(size)


def configure_tensorflow_threads(intra: int | None, inter: int | None = None) -> None:
    """--tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism; TensorFlow takes them only before
    its first op runs, so a later version keeps what the first one set."""
    import tensorflow as tf

    for setter, value in ((tf.config.threading.set_intra_op_parallelism_threads, intra),
                          (tf.config.threading.set_inter_op_parallelism_threads, inter)):
        if value:
            try:
                setter(value)
            except RuntimeError:  # TensorFlow is initialised already
                log.info("TensorFlow's thread pools are set already; %d threads not applied", value)


def load_servable(name: str, version: int, version_dir: Path, backend: str, threads: int | None = None,
                  limits: InputLimits = InputLimits()) -> Servable:
    """Load and verify one version directory with ``backend`` (onnx or savedmodel); ``threads`` are ONNX Runtime's
    (TensorFlow's pools are set once per process by configure_tensorflow_threads, before the first load)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    manifest = read_manifest(version_dir)
    needed = (BACKENDS["onnx"],) if backend == "onnx" else (BACKENDS["savedmodel"], "variables")
    verify_files(version_dir, manifest, needed, also=(LABELS_FILE, SIGNATURE_DEFS_FILE, "assets.extra"))
    signature_defs = dict(read_signature_defs(version_dir).signature_def)
    classes, image_size = _output_classes(signature_defs)
    class_names = read_labels(version_dir, manifest, classes)
    if backend == "onnx":
        from serving.onnx_runner import OnnxRunner

        runner = OnnxRunner(version_dir / BACKENDS["onnx"], threads=threads)
        outputs = runner.session.get_outputs()
        produced = outputs[0].shape[-1] if outputs else None
        if isinstance(produced, int) and produced != classes:
            raise ServingError.invalid(f"model.onnx gives {produced} classes, the SignatureDefs say {classes}")
    else:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(version_dir))  # thread pools: configure_tensorflow_threads, first
        function = loaded.signatures[SIGNATURE_TENSOR]
        lock = threading.Lock()  # one call at a time: TF's own intra-op threads use the cores

        def runner(images: np.ndarray) -> np.ndarray:
            with lock:
                return function(images=tf.constant(images))["probabilities"].numpy()

    return Servable(name, version, version_dir, signature_defs, class_names, image_size, runner, limits,
                    runtime=RUNTIMES[backend])
