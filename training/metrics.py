"""Classification metrics as plain, JSON-ready dicts, plus a first-batch sanity check.

Written with numpy only (no scikit-learn, no TensorFlow) so that evaluation
reports can be produced, and tested, without loading a model runtime. Every
number returned is a Python ``int`` or ``float`` so ``write_json`` can store the
result next to the run without a custom encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Default ratio by which an initial loss may differ from ln(C) before we warn.
FIRST_LOSS_TOLERANCE = 2.0


def check_labels(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``y_true`` and ``y_pred`` as int64 vectors, or raise ``ValueError``.

    Shared by metrics and plots so that a label outside ``[0, num_classes)`` is
    reported with its value and position instead of surfacing later as an
    ``IndexError`` deep inside numpy or matplotlib.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    arrays = []
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be a 1-D vector of class indices, got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{name}[{i}] = {int(arr[i])} is outside [0, {num_classes}) "
                f"({bad.size} out-of-range label(s) in total)"
            )
        arrays.append(arr)
    y_true, y_pred = arrays
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {y_true.size} and {y_pred.size}"
        )
    return y_true, y_pred


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = truth and columns = prediction, as an int64 [C, C] array."""
    y_true, y_pred = check_labels(y_true, y_pred, num_classes)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ratio that is 0.0 where the denominator is 0 (no NaN, no warning)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _per_class_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix.

    Undefined ratios (a class never predicted, a class absent from truth) are
    0.0, matching scikit-learn's ``zero_division=0``: a report full of NaN is
    harder to read and cannot be stored as strict JSON.
    """
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_ratio(tp, predicted)
    recall = _safe_ratio(tp, support)
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1, support


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> dict:
    """Accuracy, per-class and averaged precision/recall/F1, and the confusion matrix.

    ``y_true`` and ``y_pred`` are integer class indices into ``class_names``.
    Per-class entries keep the order of ``class_names``. The macro average is
    the unweighted mean over *all* listed classes (so a class absent from the
    evaluation data pulls it down, as with scikit-learn given ``labels=``);
    the weighted average weights each class by its support. The confusion
    matrix is nested lists with rows = truth and columns = prediction.
    """
    names = list(class_names)
    if not names:
        raise ValueError("class_names must not be empty")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class_names must be unique, got duplicates {dupes}")
    y_true, y_pred = check_labels(y_true, y_pred, len(names))
    if y_true.size == 0:
        raise ValueError("cannot compute metrics on 0 examples (y_true and y_pred are empty)")

    cm = confusion_matrix(y_true, y_pred, len(names))
    precision, recall, f1, support = _per_class_scores(cm)
    weights = support / support.sum()
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    return {
        "accuracy": float(np.trace(cm) / y_true.size),
        "count": int(y_true.size),
        "per_class": per_class,
        "macro_avg": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "weighted_avg": {
            "precision": float(weights @ precision),
            "recall": float(weights @ recall),
            "f1": float(weights @ f1),
        },
        "class_names": names,
        "confusion_matrix": cm.tolist(),
    }


def first_batch_loss_check(
    loss: float, num_classes: int, tolerance: float = FIRST_LOSS_TOLERANCE
) -> str | None:
    """Return a warning if an initial cross-entropy loss is implausible, else ``None``.

    A freshly initialised classification head predicts roughly uniform
    probabilities, so its cross-entropy should be close to ln(C). A loss above
    ``tolerance * ln(C)`` usually means mislabelled data, logits fed to a loss
    that expects probabilities (or the reverse), or badly scaled inputs; one
    below ``ln(C) / tolerance`` before any training usually means label leakage
    or a head that was already trained. The check is symmetric in ratio: with
    the default tolerance of 2 it warns outside [0.5, 2] x ln(C). A non-finite
    loss always warns.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for a cross-entropy check, got {num_classes}")
    if not tolerance > 1.0:
        raise ValueError(f"tolerance must be > 1 (a ratio to ln(num_classes)), got {tolerance}")
    expected = math.log(num_classes)
    if not math.isfinite(loss):
        message = f"first-batch loss is {loss}; expected about ln({num_classes}) = {expected:.3f}"
    elif loss > tolerance * expected or loss < expected / tolerance:
        message = (
            f"first-batch loss {loss:.4f} is {loss / expected:.2f}x ln({num_classes}) = "
            f"{expected:.3f}, outside [{1 / tolerance:.2f}, {tolerance:.2f}]x; check labels, "
            "from_logits, input scaling and that the head is freshly initialised"
        )
    else:
        return None
    return message  # the caller logs or raises; this module stays silent
