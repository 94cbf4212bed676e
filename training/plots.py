"""Figures for a training run: learning curves and the confusion matrix.

Example-prediction grids live in ``training.prediction_plots``.

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


def shorten(name: str, max_chars: int) -> str:
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
    _label_classes(ax, [shorten(str(c), 24) for c in class_names])
    kind = "% of each true class" if normalize else "counts"
    ax.set_title(f"Confusion matrix ({kind})")
    _annotate_cells(ax, values, counts, vmax, fontsize=float(np.clip(110 / n, 6, 10)), percentages=normalize)
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
    ax: Axes, values: np.ndarray, counts: np.ndarray, vmax: float, *, fontsize: float, percentages: bool
) -> None:
    """Write each cell's value, white on dark cells so it stays readable.

    Empty off-diagonal cells stay blank so mistakes stand out. Percentages
    get the count beneath, since on a small
    split "67" may be 2 images; a non-zero share under 1 % is "<1" and one
    short of the whole row is ">99", never a rounded "0" or "100".
    """
    for (row, col), value in np.ndenumerate(values):
        count = int(counts[row, col])
        if count == 0 and row != col:
            continue
        if not percentages:
            text = str(count)
        else:
            share = "<1" if 0 < value < 1 else ">99" if 99 < value < 100 else f"{math.floor(value + 0.5)}"
            text = f"{share}\n({count})"
        color = "white" if value > 0.55 * vmax else "black"
        ax.text(col, row, text, ha="center", va="center", fontsize=fontsize * (0.85 if percentages else 1),
                color=color, linespacing=1.0)


def plot_confusion_matrix(
    cm: CountMatrix, class_names: Sequence[str], path: Path | str, *, normalize: bool = True
) -> Path:
    """Write :func:`confusion_matrix_figure` as a PNG to ``path`` and return the path."""
    return save_png(confusion_matrix_figure(cm, class_names, normalize=normalize), path)


# --------------------------------------------------------------------------- prediction grids
