"""Keras and SavedModel as benchmark runners (these import TensorFlow; the ONNX and LiteRT runners do not)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _tensorflow(threads: int | None):
    import tensorflow as tf

    if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:  # only possible before TensorFlow's runtime starts, which is why ftx bench runs one format per process
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            log.warning("TensorFlow is already running here; its thread pools stay as they are (not %d)", threads)
    return tf


class KerasRunner:
    """The run's ``model.keras`` through ``predict_on_batch`` (a compiled tf.function, as in evaluation)."""

    input_kind = "images"

    def __init__(self, run_dir: Path | str, threads: int | None = None) -> None:
        _tensorflow(threads)
        from export.run_dir import read_run
        from export.savedmodel import load_keras_model

        self.model = load_keras_model(read_run(run_dir))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images))

    def close(self) -> None:
        del self.model


class SavedModelRunner:
    """One serving signature of the exported SavedModel: float images (tensor) or the files' bytes (bytes)."""

    def __init__(self, export_dir: Path | str, signature: str, threads: int | None = None) -> None:
        tf = _tensorflow(threads)
        from export.signatures import SIGNATURE_BYTES

        self.tf = tf
        self.loaded = tf.saved_model.load(str(export_dir))
        self.function = self.loaded.signatures[signature]
        (self.input_name,) = self.function.structured_input_signature[1].keys()
        self.bytes = signature == SIGNATURE_BYTES
        self.input_kind = "encoded" if self.bytes else "images"

    def predict(self, inputs) -> np.ndarray:
        tensor = self.tf.constant(list(inputs), dtype=self.tf.string) if self.bytes else self.tf.constant(inputs)
        return self.function(**{self.input_name: tensor})["probabilities"].numpy()

    def close(self) -> None:
        del self.function, self.loaded
