"""Figures for a training run: learning curves, confusion matrix, example predictions.

Each plot has a ``*_figure`` builder that returns a ``matplotlib.figure.Figure``
(so tests can inspect lines, titles and colours without decoding pixels) and a
``plot_*`` function that renders it to PNG in memory and writes the bytes
atomically. Figures are created with ``Figure`` directly, never through pyplot:
nothing is registered in pyplot's global figure list, no GUI backend is ever
selected, and a figure is freed as soon as it goes out of scope, so there is
nothing to close.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from training.atomic import write_bytes
from training.metrics import check_labels

logger = logging.getLogger(__name__)

DPI = 110
RIGHT_COLOR = "#1b7f3b"
WRONG_COLOR = "#c62828"
FINE_TUNE_LABEL = "fine-tuning starts"
# Keras names the accuracy metric after how it was requested in compile().
ACCURACY_KEYS = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy", "acc")

History = Mapping[str, Sequence[float]]
CountMatrix = Sequence[Sequence[int]] | np.ndarray


def save_png(fig: Figure, path: Path | str) -> Path:
    """Render ``fig`` to PNG bytes and write them atomically to ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    data = buffer.getvalue()
    written = write_bytes(path, data)
    logger.info("wrote %s (%d bytes)", written, len(data))
    return written


def _shorten(name: str, max_chars: int) -> str:
    """Cut long class names (GTSRB has 50-character ones) so labels do not collide."""
    return name if len(name) <= max_chars else name[: max_chars - 1].rstrip() + "\u2026"


# --------------------------------------------------------------------------- history


def _history_epochs(history: History, fine_tune_start_epoch: int | None) -> int:
    """Check the history and return the number of epochs it covers."""
    known = ("loss", "val_loss") + ACCURACY_KEYS + tuple(f"val_{k}" for k in ACCURACY_KEYS)
    lengths = [len(history[k]) for k in known if k in history]
    if not lengths or max(lengths) == 0:
        raise ValueError(
            f"history has no loss or accuracy values to plot; keys: {sorted(history)}"
        )
    epochs = max(lengths)
    if fine_tune_start_epoch is not None and not 0 <= fine_tune_start_epoch <= epochs:
        raise ValueError(
            f"fine_tune_start_epoch must be in [0, {epochs}] (epochs in history), "
            f"got {fine_tune_start_epoch}"
        )
    return epochs


def _draw_curves(ax: Axes, history: History, key: str, title: str) -> None:
    """Plot ``key`` and ``val_<key>`` against 1-based epochs, or say nothing was recorded."""
    drawn = False
    for name, label, style in ((key, "train", "-"), (f"val_{key}", "validation", "--")):
        # None (an epoch that did not log this key) becomes NaN, a gap in the line.
        values = np.asarray(history.get(name, []), dtype=np.float64)
        if values.size:
            epochs = np.arange(1, values.size + 1)
            ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, f"no {title.lower()} recorded", transform=ax.transAxes,
                ha="center", va="center", color="grey")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def history_figure(history: History, *, fine_tune_start_epoch: int | None = None) -> Figure:
    """Loss and accuracy curves, train and validation, against epoch (from 1).

    ``fine_tune_start_epoch`` is the number of epochs trained before the
    backbone was unfrozen, i.e. Keras's ``initial_epoch`` for the fine-tuning
    ``fit`` call. The dashed line is drawn at exactly that x, so every segment
    to its right comes from fine-tuning.
    """
    epochs = _history_epochs(history, fine_tune_start_epoch)
    present = (k for k in ACCURACY_KEYS if k in history or f"val_{k}" in history)
    accuracy_key = next(present, "accuracy")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    _draw_curves(loss_ax, history, "loss", "Loss")
    _draw_curves(acc_ax, history, accuracy_key, "Accuracy")
    left = 0.5 if fine_tune_start_epoch is None else min(0.5, fine_tune_start_epoch - 0.5)
    for ax in (loss_ax, acc_ax):
        if fine_tune_start_epoch is not None:
            ax.axvline(fine_tune_start_epoch, linestyle="--", color="dimgrey", linewidth=1.2,
                       label=FINE_TUNE_LABEL)
        ax.set_xlim(left, epochs + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=9)
    return fig


def plot_history(
    history: History, path: Path | str, *, fine_tune_start_epoch: int | None = None
) -> Path:
    """Write :func:`history_figure` as a PNG to ``path`` and return the path."""
    return save_png(history_figure(history, fine_tune_start_epoch=fine_tune_start_epoch), path)


# --------------------------------------------------------------------------- confusion matrix


def _check_confusion_matrix(cm: CountMatrix, class_names: Sequence[str]) -> np.ndarray:
    """Return ``cm`` as an array after checking it is a square count matrix matching the names."""
    n = len(class_names)
    if n == 0:
        raise ValueError("class_names must not be empty")
    counts = np.asarray(cm)
    if counts.shape != (n, n):
        raise ValueError(
            f"confusion matrix must be {n}x{n} for {n} class names, got shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ValueError(
            f"confusion matrix must hold non-negative counts, got minimum {counts.min()}"
        )
    return counts


def confusion_matrix_figure(
    cm: CountMatrix, class_names: Sequence[str], *, normalize: bool = True
) -> Figure:
    """Annotated heatmap, rows = truth, columns = prediction.

    With ``normalize`` each row is shown as the percentage of that true class
    (a class with no examples shows an empty row), which keeps rare classes
    visible; otherwise raw counts. Sizes scale with the number of classes so
    that 10 to 43 classes stay legible; zero off-diagonal cells are left blank
    so the mistakes stand out.
    """
    counts = _check_confusion_matrix(cm, class_names)
    n = len(class_names)
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        values = 100.0 * np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    else:
        values = counts
    side = min(max(6.0, 0.34 * n + 3.0), 19.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    vmax = 100.0 if normalize else max(float(counts.max()), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="% of true class" if normalize else "count")
    _label_classes(ax, [_shorten(str(c), 24) for c in class_names])
    kind = "% of each true class" if normalize else "counts"
    ax.set_title(f"Confusion matrix ({kind})")
    _annotate_cells(ax, values, counts, vmax, fontsize=float(np.clip(110 / n, 6, 10)))
    return fig


def _label_classes(ax: Axes, labels: list[str]) -> None:
    """Class names on both axes; x labels turn vertical once 45 degrees would collide."""
    n = len(labels)
    size = float(np.clip(150 / n, 6, 10))
    if n > 12:
        ax.set_xticks(range(n), labels=labels, fontsize=size, rotation=90)
    else:
        ax.set_xticks(range(n), labels=labels, fontsize=size, rotation=45, ha="right",
                      rotation_mode="anchor")
    ax.set_yticks(range(n), labels=labels, fontsize=size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")


def _annotate_cells(
    ax: Axes, values: np.ndarray, counts: np.ndarray, vmax: float, *, fontsize: float
) -> None:
    """Write each cell's rounded value, white on dark cells so it stays readable.

    Empty off-diagonal cells stay blank so mistakes stand out; a mistake that
    rounds to 0 % is written "<1" rather than hidden.
    """
    for (row, col), value in np.ndenumerate(values):
        if counts[row, col] == 0 and row != col:
            continue
        text = "<1" if 0 < value < 0.5 else f"{value:.0f}"
        color = "white" if value > 0.55 * vmax else "black"
        ax.text(col, row, text, ha="center", va="center", fontsize=fontsize, color=color)


def plot_confusion_matrix(
    cm: CountMatrix, class_names: Sequence[str], path: Path | str, *, normalize: bool = True
) -> Path:
    """Write :func:`confusion_matrix_figure` as a PNG to ``path`` and return the path."""
    return save_png(confusion_matrix_figure(cm, class_names, normalize=normalize), path)


# --------------------------------------------------------------------------- prediction grids


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
    truth, pred = _shorten(true_name, 22), _shorten(pred_name, 22)
    separator = ":" if len(truth) + len(pred) <= 22 else ":\n"
    return f"{truth}{separator}{pred} ({prob:.2f})"


def _grid_figure(images: np.ndarray, titles: list[str], colors: list[str]) -> Figure:
    """Lay images out in a near-square grid, one coloured title each."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    fig = Figure(figsize=(2.1 * cols, 2.25 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, title, color in zip(axes, images, titles, colors):
        # Small images (28x28 digits) are upsampled: nearest keeps pixels crisp.
        interpolation = "nearest" if max(image.shape[:2]) <= 96 else "antialiased"
        ax.imshow(image, interpolation=interpolation)
        ax.set_title(title, color=color, fontsize=8)
    return fig


def _captioned_grid(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
    class_names: Sequence[str],
) -> Figure:
    """A grid whose captions follow the "truth:prediction (prob)", green/red convention."""
    names = [str(c) for c in class_names]
    titles = [prediction_title(names[t], names[p], q) for t, p, q in zip(y_true, y_pred, probs)]
    colors = [RIGHT_COLOR if t == p else WRONG_COLOR for t, p in zip(y_true, y_pred)]
    return _grid_figure(images, titles, colors)


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
    fig = _captioned_grid(images[keep], y_true[keep], y_pred[keep], probs[keep], class_names)
    right, shown = int(np.sum(y_true[keep] == y_pred[keep])), len(y_true[keep])
    fig.suptitle(f"Predictions: {right} of {shown} right (prob = confidence in prediction)")
    return fig


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
    fig = _captioned_grid(
        images[chosen], y_true[chosen], y_pred[chosen], probs[chosen], class_names
    )
    fig.suptitle(_worst_caption(chosen.size, int(np.sum(y_true != y_pred)), y_true.size))
    return fig


def _worst_caption(shown: int, wrong: int, total: int) -> str:
    """Say how the shown mistakes relate to all of them (callers may pass only the wrong ones)."""
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
