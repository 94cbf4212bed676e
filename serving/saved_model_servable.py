"""Any SavedModel, served as TF Serving serves it: every signature run by TensorFlow, outputs as the graph gives them.

``ftx serve --backend savedmodel`` on a version directory that is not an ftx
export (no ``export_manifest.json``: a ``model.export()`` from Keras, a Model
Garden export, ...) gets this servable, so a TF Serving deployment moves over
unchanged. Inputs are checked against the SignatureDefs before they reach
TensorFlow (serving.inputs), exactly as for ftx exports. Server-side batching
applies to ftx exports only; these run one request at a time per version.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving.errors import ServingError
from serving.request_timing import runtime_call
from serving.servable import RUNTIMES, InputLimits
from serving.signature_defs import read_signature_defs


@dataclass
class SavedModelServable:
    name: str
    version: int
    path: Path
    signature_defs: dict
    functions: dict  # signature name -> concrete function
    limits: InputLimits = InputLimits()
    loaded: object = None  # the restored object: keeps the functions' variables alive
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        function = self.functions.get(signature)
        if function is None:
            raise ServingError.invalid(f"signature {signature!r} has no function in {self.path}")
        arguments = {alias: tf.constant(value, dtype=tf.string if value.dtype == object else None)
                     for alias, value in inputs.items()}
        try:
            with runtime_call(RUNTIMES["savedmodel"]), self.lock:
                outputs = function(**arguments)
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            message = str(getattr(error, "message", error)).strip().splitlines()
            raise ServingError.invalid(message[0] if message else type(error).__name__) from None
        return {alias: np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)
                for alias, tensor in outputs.items()}

    def close(self) -> None:
        """Nothing to release eagerly: a request that took this version just before it was unloaded still
        runs; TensorFlow frees the model when the last reference goes."""


def load_saved_model(name: str, version: int, version_dir: Path,
                     limits: InputLimits = InputLimits()) -> SavedModelServable:
    """TensorFlow's thread pools are the caller's to set first (serving.loader does)."""
    import tensorflow as tf

    signature_defs = dict(read_signature_defs(version_dir).signature_def)
    try:
        loaded = tf.saved_model.load(str(version_dir))
    except Exception as error:  # noqa: BLE001 - TensorFlow raises many kinds for a damaged SavedModel
        text = str(error).strip().splitlines()
        raise ServingError.invalid(f"{version_dir} is not a loadable SavedModel: {text[0] if text else error}") from None
    functions = {name: loaded.signatures[name] for name in loaded.signatures}
    # dim 0 of a general model's input need not be a batch: only the size bound applies
    limits = InputLimits(limits.max_elements, limits.max_elements, limits.max_image_pixels)
    return SavedModelServable(name, version, version_dir, signature_defs, functions, limits, loaded)
