"""The versioned SavedModel TF Serving loads: signatures, labels, warmup requests."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from export.run_dir import TrainedRun
from export.samples import Samples
from export.signatures import SIGNATURE_BYTES, SIGNATURE_CLASSIFY, ClassifierServing
from export.warmup import WARMUP_FILE, warmup_records, write_warmup_file

SIGNATURE_DEFS_FILE = "signature_defs.pb"  # read by serving.signature_defs

log = logging.getLogger(__name__)

CLASSIFY_METHOD = "tensorflow/serving/classify"
WARMUP_IMAGES = 4  # per signature; float tensors at 224 px are 0.6 MB a request, so a few are enough to warm up


def load_keras_model(run: TrainedRun):
    """The run's Keras model for inference (its preprocessing layer registers on import)."""
    import keras

    import training.backbones.preprocessing  # noqa: F401 - registers ImagePreprocessing

    return keras.models.load_model(run.keras_path, compile=False)  # no optimizer state in the exports


def _mark_classify_signature(export_dir: Path) -> None:
    """TF 2 saves every signature as a Predict one; TF Serving's Classify RPC wants the classify method.

    The SignatureDef's method name is rewritten in ``saved_model.pb`` and the
    fingerprint regenerated to match the edited file.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = export_dir / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(path.read_bytes())
    for meta_graph in saved.meta_graphs:
        meta_graph.signature_def[SIGNATURE_CLASSIFY].method_name = CLASSIFY_METHOD
    path.write_bytes(saved.SerializeToString())
    fingerprint = export_dir / "fingerprint.pb"
    try:
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

        fingerprint.write_bytes(fingerprinting.CreateFingerprintDef(str(export_dir)))
    except (ImportError, AttributeError):  # older TF: a stale fingerprint is worse than none
        fingerprint.unlink(missing_ok=True)


def write_signature_defs(directory: Path) -> Path:
    """``signature_defs.pb``: the SavedModel's SignatureDefs as a serialized ``SignatureDefMap``, so a server
    without TensorFlow (``ftx serve --backend onnx`` on an edge host) answers GetModelMetadata verbatim."""
    from tensorflow.python.tools import saved_model_utils
    from tensorflow_serving.apis import get_model_metadata_pb2

    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in saved_model_utils.get_meta_graph_def(str(directory), "serve").signature_def.items():
        signatures.signature_def[name].CopyFrom(signature)
    path = directory / SIGNATURE_DEFS_FILE
    path.write_bytes(signatures.SerializeToString(deterministic=True))
    return path


def save_serving_savedmodel(run: TrainedRun, directory: Path, model_name: str, samples: Samples,
                            keras_model=None) -> Path:
    """Write the serving SavedModel (signatures, warmup requests) into the empty or new ``directory``.

    Versioning and the atomic rename into ``EXPORT_ROOT/NAME/<version>`` belong
    to :mod:`export.pipeline`, which stages the whole version directory.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty; a SavedModel is written only into a fresh directory")
    model = keras_model if keras_model is not None else load_keras_model(run)
    module = ClassifierServing(model, run.class_names, run.image_size)
    tf.saved_model.save(module, str(directory), signatures=module.signatures())
    _mark_classify_signature(directory)
    write_signature_defs(directory)
    extra = directory / "assets.extra"
    extra.mkdir()
    count = min(WARMUP_IMAGES, len(samples.images))
    write_warmup_file(extra / WARMUP_FILE, warmup_records(model_name, samples.images[:count], samples.encoded[:count]))
    log.info("serving SavedModel written to %s", directory)
    return directory


def predict_signature(loaded, signature: str, inputs: np.ndarray | Sequence[bytes], batch_size: int = 32) -> np.ndarray:
    """``probabilities`` of a loaded SavedModel's ``signature`` over ``inputs`` in batches.

    Float images go to ``serving_default``; encoded files to ``serving_bytes``.
    """
    function = loaded.signatures[signature]
    (input_name,) = function.structured_input_signature[1].keys()
    outputs = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        tensor = tf.constant(list(chunk), dtype=tf.string) if signature == SIGNATURE_BYTES else tf.constant(chunk)
        outputs.append(function(**{input_name: tensor})["probabilities"].numpy())
    return np.concatenate(outputs).astype(np.float32)
