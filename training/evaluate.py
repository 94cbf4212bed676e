"""Score a trained classifier on a split and draw the pictures people look at."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from training import plots, prediction_plots
from training.metrics import classification_metrics

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    labels: np.ndarray  # int [N]
    probabilities: np.ndarray  # float [N, C]

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)


def predict(model: keras.Model, dataset, labels: np.ndarray) -> Predictions:
    """Probabilities for a batched (images, labels) dataset in record order."""
    with warnings.catch_warnings():  # Keras warns "ran out of data" on datasets of unknown length
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        probabilities = model.predict(dataset.map(lambda x, y: x), verbose=0)
    if len(probabilities) != len(labels):
        raise RuntimeError(f"predicted {len(probabilities)} images but the split has {len(labels)}: "
                           "some files failed to decode mid-pipeline (see warnings)")
    return Predictions(labels=labels, probabilities=np.asarray(probabilities, dtype=np.float32))


def split_metrics(predictions: Predictions, class_names: list[str]) -> dict:
    return classification_metrics(predictions.labels, predictions.predicted, class_names)


def sample_indices(count: int, k: int, seed: int) -> np.ndarray:
    """A reproducible, sorted sample of ``k`` indices out of ``count``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=min(k, count), replace=False))


def worst_indices(predictions: Predictions, k: int) -> np.ndarray:
    """Indices of the ``k`` most confident wrong predictions."""
    wrong = np.flatnonzero(predictions.predicted != predictions.labels)
    return wrong[np.argsort(-predictions.confidence[wrong], kind="stable")][:k]


def write_split_plots(plots_dir: Path, split: str, predictions: Predictions, class_names: list[str],
                      confusion: list[list[int]], load_images: Callable[[np.ndarray], np.ndarray],
                      seed: int = 0) -> list[Path]:
    """Confusion matrix, a sample-prediction grid and the worst misclassifications of one split.

    ``load_images(indices)`` returns those records' images as uint8 ``[k, H, W, 3]``.
    """
    written = [plots.plot_confusion_matrix(confusion, class_names, plots_dir / f"confusion_{split}.png")]
    for name, indices in (("predictions", sample_indices(len(predictions.labels), 25, seed)),
                          ("worst", worst_indices(predictions, 16))):
        images = load_images(indices) if len(indices) else np.zeros((0, 1, 1, 3), np.uint8)
        args = (images, predictions.labels[indices], predictions.predicted[indices],
                predictions.confidence[indices], class_names, plots_dir / f"{name}_{split}.png")
        plot = (prediction_plots.plot_prediction_grid if name == "predictions"
                else prediction_plots.plot_worst_misclassifications)
        written.append(plot(*args))
    return written
