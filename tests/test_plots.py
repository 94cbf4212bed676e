"""Plots: inspected as Figure objects where it matters, and written as real PNGs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import same_color
from matplotlib.figure import Figure
from PIL import Image

from training import plots, prediction_plots

HISTORY = {
    "loss": [1.2, 0.8, 0.6, 0.5, 0.35, 0.3],
    "val_loss": [1.3, 0.9, 0.7, 0.65, 0.5, 0.45],
    "accuracy": [0.5, 0.7, 0.8, 0.82, 0.9, 0.92],
    "val_accuracy": [0.45, 0.65, 0.75, 0.78, 0.85, 0.86],
}
NAMES = [f"class {i}" for i in range(10)]


def _png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def _leftovers(directory: Path) -> list[str]:
    """Temporary files the atomic writer would leave behind if it failed."""
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def _predictions(n: int = 12, size: int = 28, seed: int = 0):
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)
    images = np.repeat(grey, 3, axis=-1)
    y_true = rng.integers(0, 10, n)
    y_pred = y_true.copy()
    y_pred[::3] = (y_true[::3] + 1) % 10  # every third one wrong
    probs = rng.uniform(0.2, 1.0, n)
    return images, y_true, y_pred, probs


def _title_artists(fig: Figure) -> list:
    return [ax.title for ax in fig.axes if ax.get_title()]


def test_plot_modules_import_neither_pyplot_nor_tensorflow() -> None:
    code = (
        "import sys, training.plots, training.prediction_plots, training.metrics; "
        "bad = [m for m in ('matplotlib.pyplot', 'tensorflow') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------ history


def _fine_tune_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_label() == plots.FINE_TUNE_LABEL]


def test_history_figure_has_train_and_val_curves_from_epoch_one() -> None:
    fig = plots.history_figure(HISTORY)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_title() == "Loss" and acc_ax.get_title() == "Accuracy"
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"train", "validation"}
        assert list(lines["train"].get_xdata()) == [1, 2, 3, 4, 5, 6]
        assert list(lines["validation"].get_ydata()) == HISTORY[f"val_{key}"]
        assert not _fine_tune_lines(ax)


def test_history_fine_tune_marker_is_dashed_vertical_line_at_epoch() -> None:
    fig = plots.history_figure(HISTORY, fine_tune_start_epoch=3)
    for ax in fig.axes:
        (line,) = _fine_tune_lines(ax)
        assert list(line.get_xdata()) == [3, 3]
        assert line.get_linestyle() == "--"
        assert plots.FINE_TUNE_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]


def test_history_marker_at_zero_stays_visible() -> None:
    fig = plots.history_figure(HISTORY, fine_tune_start_epoch=0)
    assert fig.axes[0].get_xlim()[0] < 0 < fig.axes[0].get_xlim()[1]


def test_history_gaps_from_none_do_not_break_plotting(tmp_path: Path) -> None:
    history = {"loss": [1.0, None, 0.5], "val_loss": [1.1, 0.9]}
    fig = plots.history_figure(history)
    assert np.isnan(fig.axes[0].get_lines()[0].get_ydata()[1])
    assert _png_size(plots.plot_history(history, tmp_path / "h.png"))[0] > 0


def test_history_with_missing_keys_still_plots() -> None:
    fig = plots.history_figure({"loss": [1.0, 0.5], "sparse_categorical_accuracy": [0.4, 0.6]})
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train"]
    assert [line.get_label() for line in acc_ax.get_lines()] == ["train"]
    fig = plots.history_figure({"val_loss": [1.0, 0.5, 0.4]})
    assert "no accuracy recorded" in [t.get_text() for t in fig.axes[1].texts]


@pytest.mark.parametrize(
    ("history", "epoch", "match"),
    [
        ({}, None, r"no loss or accuracy values.*keys: \[\]"),
        ({"lr": [0.1]}, None, r"keys: \['lr'\]"),
        (HISTORY, -1, r"fine_tune_start_epoch must be in \[0, 6\].*got -1"),
        (HISTORY, 7, "got 7"),
    ],
)
def test_history_rejects_bad_input(history, epoch, match) -> None:
    with pytest.raises(ValueError, match=match):
        plots.history_figure(history, fine_tune_start_epoch=epoch)


def test_plot_history_writes_png(tmp_path: Path) -> None:
    path = plots.plot_history(HISTORY, tmp_path / "sub" / "history.png", fine_tune_start_epoch=4)
    assert path == tmp_path / "sub" / "history.png"
    width, height = _png_size(path)
    assert 800 < width < 2000 and 300 < height < width
    assert _leftovers(path.parent) == []


# ------------------------------------------------------------------ confusion matrix


def _cell_texts(fig: Figure) -> dict[tuple[float, float], str]:
    return {text.get_position(): text.get_text() for text in fig.axes[0].texts}


def test_confusion_matrix_normalised_rows_as_percentages() -> None:
    cm = [[3, 1, 0, 0], [0, 0, 0, 0], [2, 0, 2, 0], [1, 0, 0, 299]]  # "b" has no examples
    texts = _cell_texts(plots.confusion_matrix_figure(cm, ["a", "b", "c", "d"]))
    # Keys are (x, y) = (predicted column, true row). Empty off-diagonal cells are blank, the
    # diagonal is always written, each share has its count beneath, and a real mistake under 1 %
    # shows as "<1", its row's rest as ">99": never a rounded "0" or "100".
    assert texts == {
        (0, 0): "75\n(3)", (1, 0): "25\n(1)", (1, 1): "0\n(0)", (0, 2): "50\n(2)", (2, 2): "50\n(2)",
        (0, 3): "<1\n(1)", (3, 3): ">99\n(299)",
    }


def test_confusion_matrix_shares_round_half_up_and_five_in_a_thousand_is_not_zero() -> None:
    cm = [[995, 5, 0], [1, 1, 0], [0, 3, 997]]
    texts = _cell_texts(plots.confusion_matrix_figure(cm, ["a", "b", "c"]))
    assert texts[(1, 0)] == "<1\n(5)"  # 0.5 %: round-half-even made it "0" beside "<1" for 0.1-0.4 %
    assert texts[(0, 1)] == texts[(1, 1)] == "50\n(1)"
    assert texts[(0, 0)] == ">99\n(995)" and texts[(2, 2)] == ">99\n(997)"
    assert _cell_texts(plots.confusion_matrix_figure([[2, 0], [0, 8]], ["a", "b"]))[(0, 0)] == "100\n(2)"


def test_confusion_matrix_counts() -> None:
    cm = np.array([[3, 1], [0, 12]])
    fig = plots.confusion_matrix_figure(cm, ["a", "b"], normalize=False)
    assert _cell_texts(fig) == {(0, 0): "3", (1, 0): "1", (1, 1): "12"}
    assert "counts" in fig.axes[0].get_title()


def test_confusion_matrix_scales_text_for_many_classes(tmp_path: Path) -> None:
    small = plots.confusion_matrix_figure(np.eye(10, dtype=int) * 5, NAMES)
    names = [f"a rather long traffic sign name {i}" for i in range(43)]
    cm = np.random.default_rng(0).integers(0, 4, (43, 43)) + np.eye(43, dtype=int) * 50
    large = plots.confusion_matrix_figure(cm, names)
    assert large.axes[0].texts[0].get_fontsize() < small.axes[0].texts[0].get_fontsize()
    assert large.axes[0].get_xticklabels()[0].get_rotation() == 90
    assert large.get_size_inches()[1] > small.get_size_inches()[1]
    width, height = _png_size(plots.plot_confusion_matrix(cm, names, tmp_path / "cm.png"))
    assert 1000 < width < 2500 and 1000 < height < 2500


def test_confusion_matrix_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"must be 3x3 for 3 class names, got shape \(2, 2\)"):
        plots.confusion_matrix_figure([[1, 0], [0, 1]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="non-negative counts, got minimum -1"):
        plots.confusion_matrix_figure([[1, -1], [0, 1]], ["a", "b"])


# ------------------------------------------------------------------ prediction grid


def test_prediction_grid_titles_green_when_right_red_when_wrong() -> None:
    images, y_true, y_pred, probs = _predictions()
    fig = prediction_plots.prediction_grid_figure(images, y_true, y_pred, probs, NAMES)
    titles = _title_artists(fig)
    assert len(titles) == 12
    for title, t, p, q in zip(titles, y_true, y_pred, probs):
        assert title.get_text() == prediction_plots.prediction_title(NAMES[t], NAMES[p], q)
        expected = plots.RIGHT_COLOR if t == p else plots.WRONG_COLOR
        assert same_color(title.get_color(), expected)
    assert "8 of 12 right" in fig.get_suptitle()


def test_prediction_title_convention() -> None:
    assert prediction_plots.prediction_title("cat", "dog", 0.876) == "cat:dog (0.88)"
    long = prediction_plots.prediction_title("End of no passing by vehicles over 3.5 metric tons", "Stop", 0.5)
    assert long == "End of no passing by\u2026:\nStop (0.50)"


def test_prediction_grid_limits_images_and_keeps_small_grey_crisp() -> None:
    images, y_true, y_pred, probs = _predictions(n=30)
    fig = prediction_plots.prediction_grid_figure(images[..., 0], y_true, y_pred, probs, NAMES, max_images=7)
    shown = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(shown) == 7
    assert shown[0].get_array().shape == (28, 28, 3)  # grey repeated to RGB, not colour-mapped
    assert shown[0].get_interpolation() == "nearest"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"images": np.zeros((3, 8, 8, 3), np.float32)}, "uint8 .* got dtype float32"),
        ({"images": np.zeros((3, 8, 8, 4), np.uint8)}, r"got \(3, 8, 8, 4\)"),
        ({"y_pred": np.array([0, 1, 10])}, r"y_pred\[2\] = 10 is outside \[0, 10\)"),
        ({"probs": np.array([0.5, 1.5, 0.2])}, r"probs\[1\] = 1.5 is not a probability"),
        ({"probs": np.array([0.5])}, r"shape \(3,\), one per image, got \(1,\)"),
        ({"y_true": np.array([0, 1]), "y_pred": np.array([0, 1])}, "got 3 images but 2 labels"),
    ],
)
def test_prediction_grid_rejects_bad_input(change, match) -> None:
    args = {"images": np.zeros((3, 8, 8, 3), np.uint8), "y_true": np.array([0, 1, 2]),
            "y_pred": np.array([0, 1, 2]), "probs": np.array([0.5, 0.6, 0.7])} | change
    with pytest.raises(ValueError, match=match):
        prediction_plots.prediction_grid_figure(class_names=NAMES, **args)


def test_plot_prediction_grid_writes_png(tmp_path: Path) -> None:
    images, y_true, y_pred, probs = _predictions(n=25)
    path = prediction_plots.plot_prediction_grid(images, y_true, y_pred, probs, NAMES, tmp_path / "grid.png")
    width, height = _png_size(path)
    assert 600 < width < 1600 and 600 < height < 1800
    assert path.stat().st_size < 1_000_000
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------ worst misclassifications


def test_worst_indices_are_wrong_ones_by_descending_confidence() -> None:
    y_true = np.array([0, 1, 2, 3, 4, 5])
    y_pred = np.array([1, 1, 0, 0, 4, 0])  # 0, 2, 3, 5 wrong
    probs = np.array([0.6, 0.99, 0.9, 0.6, 0.95, 0.7])
    worst = prediction_plots.worst_misclassification_indices
    assert worst(y_true, y_pred, probs, k=10).tolist() == [2, 5, 0, 3]
    assert worst(y_true, y_pred, probs, k=2).tolist() == [2, 5]


def test_worst_misclassifications_figure_shows_top_k_in_order() -> None:
    images, y_true, y_pred, probs = _predictions(n=24)  # 8 wrong
    fig = prediction_plots.worst_misclassifications_figure(images, y_true, y_pred, probs, NAMES, k=5)
    titles = _title_artists(fig)
    assert len(titles) == 5
    wrong = np.flatnonzero(y_true != y_pred)
    expected = wrong[np.argsort(-probs[wrong])][:5]
    for title, i in zip(titles, expected):
        caption = prediction_plots.prediction_title(NAMES[y_true[i]], NAMES[y_pred[i]], probs[i])
        assert title.get_text() == caption
        assert same_color(title.get_color(), plots.WRONG_COLOR)
    assert "5 most confident of 8" in fig.get_suptitle()


def test_worst_misclassifications_with_none_wrong_still_writes(tmp_path: Path) -> None:
    images, y_true, _, probs = _predictions(n=6)
    fig = prediction_plots.worst_misclassifications_figure(images, y_true, y_true, probs, NAMES)
    assert "No misclassifications among 6 images" in [t.get_text() for t in fig.axes[0].texts]
    path = prediction_plots.plot_worst_misclassifications(
        images, y_true, y_true, probs, NAMES, tmp_path / "w.png"
    )
    assert _png_size(path)[0] > 100


def test_empty_inputs_still_write_a_figure(tmp_path: Path) -> None:
    empty = np.zeros((0, 1, 1, 3), np.uint8), np.array([], int), np.array([], int), np.array([])
    fig = prediction_plots.worst_misclassifications_figure(*empty, NAMES)
    assert [t.get_text() for t in fig.axes[0].texts] == ["No misclassifications to show"]
    path = prediction_plots.plot_prediction_grid(*empty, NAMES, tmp_path / "grid.png")
    assert _png_size(path)[0] > 100


def test_worst_caption_when_given_only_the_wrong_ones() -> None:
    images, y_true, y_pred, probs = _predictions(n=12)
    wrong = np.flatnonzero(y_true != y_pred)
    fig = prediction_plots.worst_misclassifications_figure(
        images[wrong], y_true[wrong], y_pred[wrong], probs[wrong], NAMES
    )
    assert fig.get_suptitle() == "4 mistakes, most confident first"


def test_one_mistakes_title_fits_in_its_figure() -> None:
    images, y_true, y_pred, probs = _predictions(n=120)
    y_pred = y_true.copy()
    y_pred[7] = (y_true[7] + 1) % len(NAMES)  # a single mistake: a one-image grid under a long title
    fig = prediction_plots.worst_misclassifications_figure(images, y_true, y_pred, probs, NAMES)
    assert fig.get_suptitle() == "The only mistake in 120 images"
    fig.canvas.draw()  # constrained layout places the title; then its extent is known
    title = fig._suptitle.get_window_extent()
    assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1, (title, fig.bbox)
    grid = prediction_plots.prediction_grid_figure(images[:1], y_true[:1], y_pred[:1], probs[:1], NAMES)
    grid.canvas.draw()
    title = grid._suptitle.get_window_extent()
    assert grid.bbox.x0 <= title.x0 and title.x1 <= grid.bbox.x1, (title, grid.bbox)


def test_plot_worst_misclassifications_writes_png(tmp_path: Path) -> None:
    images, y_true, y_pred, probs = _predictions(n=40, size=64)
    path = prediction_plots.plot_worst_misclassifications(
        images, y_true, y_pred, probs, NAMES, tmp_path / "w.png"
    )
    width, height = _png_size(path)
    assert 400 < width < 1600 and 400 < height < 1800
