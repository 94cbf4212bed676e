"""Beam model handlers for ftx's exports: ONNX Runtime (``model.onnx``) and TensorFlow (the SavedModel).

Both take the decoded float32 RGB 0-255 images the export's ``images`` input
takes and give one probability row per image. The ONNX one is Beam's own
``OnnxModelHandlerNumpy``. The TensorFlow one is Beam's ``TFModelHandlerNumpy``
with its loader replaced: that loader calls ``tf.keras.models.load_model``,
which in Keras 3 opens only ``.keras`` and ``.h5`` files, not a SavedModel, so
it loads with ``tf.saved_model.load`` and calls the ``serving_default``
signature that TF Serving calls (``savedmodel_handler``, which imports
TensorFlow; this module does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
FORMATS = ("onnx", "savedmodel")
DEVICES = ("cpu", "cuda")


def onnx_probabilities(session, batch: Sequence[np.ndarray], inference_args: dict[str, Any] | None = None):
    """One ONNX Runtime call for the whole batch: its ``probabilities`` rows."""
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.stack(batch)})[0]


def model_handler(version_dir: Path, model_format: str, device: str, min_batch_size: int, max_batch_size: int,
                  threads: int = 0):
    """The Beam model handler for ``model_format`` of the export in ``version_dir``."""
    if model_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {model_format!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
    if model_format == "onnx":
        from serving.scoring.onnx_handler import OnnxHandler

        providers = (["CUDAExecutionProvider"] if device == "cuda" else []) + ["CPUExecutionProvider"]
        return OnnxHandler(str(version_dir / "model.onnx"), threads, providers=providers,
                           inference_fn=onnx_probabilities, **batching)
    if device == "cuda":
        raise ValueError("--device cuda runs the onnx format (ONNX Runtime's CUDA provider); the SavedModel runs "
                         "wherever TensorFlow finds a GPU")
    from serving.scoring.savedmodel_handler import SavedModelHandler, savedmodel_probabilities

    return SavedModelHandler(str(version_dir), inference_fn=savedmodel_probabilities, **batching)
