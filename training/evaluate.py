"""Score a trained classifier on a split and draw the pictures people look at."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from training import plots, prediction_plots
from training.metrics import classification_metrics
from training.keras_predict import predict_dataset
from training.phase_inputs import record_images, split_dataset

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


def _decodable(records: list, image_size: int, crop_roi: bool) -> list[bool]:
    """Which records survive the pipeline, one at a time (only after a mismatch, so rarely paid)."""
    return [sum(1 for _ in split_dataset([r], image_size, 1, crop_roi)) == 1 for r in records]


def evaluate_split(model: keras.Model, split: str, records: list, class_names, config, plots_dir: Path) -> tuple[dict, list]:
    """Metrics and plots of one split; returns them with the records that failed to decode.

    Files were decode-checked before training, but one the TF decoder still
    rejects is dropped by the pipeline: find it, report it, score the rest.
    """
    if split == "test" and config.max_test_images and len(records) > config.max_test_images:
        records = [records[i] for i in sample_indices(len(records), config.max_test_images, config.seed)]
    log.info("evaluating on the %s split (%d images)", split, len(records))
    probabilities = predict_dataset(model, split_dataset(records, config.image_size, config.batch_size, config.roi_crop),
                                    len(records), config.batch_size)
    dropped: list = []
    if len(probabilities) != len(records):
        keep = _decodable(records, config.image_size, config.roi_crop)
        dropped = [r for r, ok in zip(records, keep) if not ok]
        records = [r for r, ok in zip(records, keep) if ok]
        log.warning("%d %s image(s) failed to decode and are left out: %s", len(dropped), split,
                    ", ".join(str(r.path) for r in dropped[:10]))
    predictions = Predictions(labels=np.array([r.label for r in records]), probabilities=probabilities)
    metrics = split_metrics(predictions, list(class_names))
    write_split_plots(plots_dir, split, predictions, list(class_names), metrics["confusion_matrix"],
                      lambda idx: record_images([records[i] for i in idx], config.image_size, config.roi_crop),
                      seed=config.seed)
    return metrics, dropped


def split_metrics(predictions: Predictions, class_names: list[str]) -> dict:
    return classification_metrics(predictions.labels, predictions.predicted, class_names)


def sample_indices(count: int, k: int, seed: int) -> np.ndarray:
    """A reproducible, sorted sample of ``k`` indices out of ``count``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=min(k, count), replace=False))


def write_split_plots(plots_dir: Path, split: str, predictions: Predictions, class_names: list[str],
                      confusion: list[list[int]], load_images: Callable[[np.ndarray], np.ndarray],
                      seed: int = 0) -> list[Path]:
    """Confusion matrix, a sample-prediction grid and the worst misclassifications of one split.

    ``load_images(indices)`` returns those records' images as uint8 ``[k, H, W, 3]``.
    """
    written = [plots.plot_confusion_matrix(confusion, class_names, plots_dir / f"confusion_{split}.png")]
    for name, indices in (("predictions", sample_indices(len(predictions.labels), 25, seed)),
                          ("worst", prediction_plots.worst_misclassification_indices(
                              predictions.labels, predictions.predicted, predictions.confidence, 16))):
        images = load_images(indices) if len(indices) else np.zeros((0, 1, 1, 3), np.uint8)
        args = (images, predictions.labels[indices], predictions.predicted[indices],
                predictions.confidence[indices], class_names, plots_dir / f"{name}_{split}.png")
        plot = (prediction_plots.plot_prediction_grid if name == "predictions"
                else prediction_plots.plot_worst_misclassifications)
        written.append(plot(*args))
    return written
