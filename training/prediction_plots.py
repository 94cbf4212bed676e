"""Example-prediction figures: a grid of sample predictions and the worst mistakes.

Titles read ``truth:prediction (probability)``, green when right and red when
wrong. Builders return a ``Figure`` for tests; ``plot_*`` writes the PNG
atomically (see ``training.plots``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from training.metrics import check_labels
from training.plots import RIGHT_COLOR, WRONG_COLOR, save_png, shorten

def _as_rgb_uint8(images: np.ndarray) -> np.ndarray:
    """Return [N, H, W, 3] uint8; grey [N, H, W] or [N, H, W, 1] is repeated to RGB.

    Repeating matters: a 2-D array given to imshow is colour-mapped (viridis),
    which would make MNIST-style digits look purple and yellow.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels in [0, 255], got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must have shape [N, H, W, 3] (or grey [N, H, W, 1]), got {images.shape}"
        )
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _check_probs(probs: np.ndarray, count: int) -> np.ndarray:
    """One probability per image; NaN or values outside [0, 1] mean the wrong array was passed."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (count,):
        raise ValueError(f"probs must have shape ({count},), one per image, got {probs.shape}")
    bad = np.flatnonzero(~((probs >= 0) & (probs <= 1 + 1e-6)))
    if bad.size:
        raise ValueError(f"probs[{bad[0]}] = {probs[bad[0]]} is not a probability in [0, 1]")
    return probs


def _check_predictions(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
    class_names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate the per-image arrays together and return them as numpy arrays."""
    images = _as_rgb_uint8(images)
    y_true, y_pred = check_labels(y_true, y_pred, len(class_names))
    if y_true.size != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {y_true.size} labels")
    return images, y_true, y_pred, _check_probs(probs, images.shape[0])


def prediction_title(true_name: str, pred_name: str, prob: float) -> str:
    """The "truth:prediction (prob)" caption used above every image.

    Long names are shortened and the caption breaks after the colon, so that
    neighbouring captions in a grid do not run into each other.
    """
    truth, pred = shorten(true_name, 22), shorten(pred_name, 22)
    separator = ":" if len(truth) + len(pred) <= 22 else ":\n"
    return f"{truth}{separator}{pred} ({prob:.2f})"


SUPTITLE_INCHES_PER_CHAR = 0.095  # 12 pt DejaVu Sans, with room to spare


def _grid_figure(images: np.ndarray, titles: list[str], colors: list[str], suptitle: str = "") -> Figure:
    """Lay images out in a near-square grid, one coloured title each; wide enough for ``suptitle``."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    width = max(2.1 * cols, SUPTITLE_INCHES_PER_CHAR * len(suptitle) + 0.4)  # one image: the title sets it
    fig = Figure(figsize=(width, 2.25 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, title, color in zip(axes, images, titles, colors):
        # Small images (28x28 digits) are upsampled: nearest keeps pixels crisp.
        interpolation = "nearest" if max(image.shape[:2]) <= 96 else "antialiased"
        ax.imshow(image, interpolation=interpolation)
        ax.set_title(title, color=color, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _captioned_grid(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
    class_names: Sequence[str], suptitle: str,
) -> Figure:
    """A grid whose captions follow the "truth:prediction (prob)", green/red convention."""
    names = [str(c) for c in class_names]
    titles = [prediction_title(names[t], names[p], q) for t, p, q in zip(y_true, y_pred, probs)]
    colors = [RIGHT_COLOR if t == p else WRONG_COLOR for t, p in zip(y_true, y_pred)]
    return _grid_figure(images, titles, colors, suptitle)


def prediction_grid_figure(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
    class_names: Sequence[str], *, max_images: int = 25,
) -> Figure:
    """The first ``max_images`` images captioned "truth:prediction (prob)".

    Captions are green when the prediction is right and red when it is wrong,
    so a glance tells how the sample went.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    images, y_true, y_pred, probs = _check_predictions(images, y_true, y_pred, probs, class_names)
    if images.shape[0] == 0:
        return _message_figure("No images to show", color="dimgrey")
    keep = slice(0, max_images)
    right, shown = int(np.sum(y_true[keep] == y_pred[keep])), len(y_true[keep])
    return _captioned_grid(images[keep], y_true[keep], y_pred[keep], probs[keep], class_names,
                           f"Predictions: {right} of {shown} right (captions: true:predicted (confidence))")


def plot_prediction_grid(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
    class_names: Sequence[str], path: Path | str, *, max_images: int = 25,
) -> Path:
    """Write :func:`prediction_grid_figure` as a PNG to ``path`` and return the path."""
    fig = prediction_grid_figure(images, y_true, y_pred, probs, class_names, max_images=max_images)
    return save_png(fig, path)


def worst_misclassification_indices(
    y_true: np.ndarray, y_pred: np.ndarray, probs_of_predicted: np.ndarray, k: int
) -> np.ndarray:
    """Indices of at most ``k`` wrong predictions, most confident first (ties by index).

    Confident mistakes are the ones worth looking at: they are often label
    noise in the data set or a systematic confusion between two classes.
    """
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    order = np.argsort(-np.asarray(probs_of_predicted)[wrong], kind="stable")
    return wrong[order[:k]]


def worst_misclassifications_figure(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs_of_predicted: np.ndarray,
    class_names: Sequence[str], *, k: int = 16,
) -> Figure:
    """The ``k`` most confident wrong predictions; a figure that says so if there are none."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    images, y_true, y_pred, probs = _check_predictions(
        images, y_true, y_pred, probs_of_predicted, class_names
    )
    chosen = worst_misclassification_indices(y_true, y_pred, probs, k)
    if chosen.size == 0:
        among = f" among {y_true.size} images" if y_true.size else " to show"
        return _message_figure(f"No misclassifications{among}", color=RIGHT_COLOR)
    return _captioned_grid(images[chosen], y_true[chosen], y_pred[chosen], probs[chosen], class_names,
                           _worst_caption(chosen.size, int(np.sum(y_true != y_pred)), y_true.size))


def _worst_caption(shown: int, wrong: int, total: int) -> str:
    """Say how the shown mistakes relate to all of them (callers may pass only the wrong ones)."""
    if shown == wrong == 1:
        return "The only mistake" + ("" if total == 1 else f" in {total} images")
    if shown == wrong == total:
        return f"{shown} mistakes, most confident first"
    if shown == wrong:
        return f"All {wrong} mistakes in {total} images, most confident first"
    return f"The {shown} most confident of {wrong} mistakes in {total} images"


def _message_figure(text: str, *, color: str) -> Figure:
    """A small figure holding one sentence, so a report still gets its file when empty."""
    fig = Figure(figsize=(5, 2), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color=color)
    return fig


def plot_worst_misclassifications(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs_of_predicted: np.ndarray,
    class_names: Sequence[str], path: Path | str, *, k: int = 16,
) -> Path:
    """Write :func:`worst_misclassifications_figure` as a PNG to ``path`` and return the path."""
    fig = worst_misclassifications_figure(
        images, y_true, y_pred, probs_of_predicted, class_names, k=k
    )
    return save_png(fig, path)
