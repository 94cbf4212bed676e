"""Beam's TensorFlow model handler for ftx's SavedModel (imports TensorFlow; see ``handlers``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference import utils
from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

from serving.scoring.handlers import INPUT_NAME, OUTPUT_NAME


def savedmodel_probabilities(model, batch: Sequence[np.ndarray], inference_args: dict[str, Any],
                             model_id: str | None = None):
    """The ``serving_default`` signature over the batch, as Beam's PredictionResults."""
    outputs = model.signatures["serving_default"](**{INPUT_NAME: tf.constant(np.stack(batch))})
    return utils._convert_to_result(batch, outputs[OUTPUT_NAME].numpy(), model_id)


class SavedModelHandler(TFModelHandlerNumpy):
    """Beam's TensorFlow handler loading a TF2 SavedModel with ``tf.saved_model.load``: its own loader calls
    ``tf.keras.models.load_model``, which Keras 3 refuses for a SavedModel directory."""

    def load_model(self):
        return tf.saved_model.load(self._model_uri)
