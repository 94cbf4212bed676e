"""Metrics checked against values worked out by hand, and the input checks."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from training.metrics import classification_metrics, confusion_matrix, first_batch_loss_check

NAMES = ["cat", "dog", "bird", "fish"]
# bird is never predicted; fish never occurs in the truth (but is predicted once).
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 3, 1, 0, 1])


@pytest.fixture(scope="module")
def report() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 must not warn
        return classification_metrics(Y_TRUE, Y_PRED, NAMES)


def test_confusion_matrix_rows_are_truth(report: dict) -> None:
    expected = [[2, 1, 0, 0], [0, 1, 0, 1], [1, 2, 0, 0], [0, 0, 0, 0]]
    assert report["confusion_matrix"] == expected
    assert confusion_matrix(Y_TRUE, Y_PRED, 4).tolist() == expected


def test_accuracy_and_count(report: dict) -> None:
    assert report["accuracy"] == pytest.approx(3 / 8)
    assert report["count"] == 8


def test_per_class_values_and_order(report: dict) -> None:
    per_class = report["per_class"]
    assert list(per_class) == NAMES
    expected = {  # (precision, recall, f1, support)
        "cat": (2 / 3, 2 / 3, 2 / 3, 3),
        "dog": (1 / 4, 1 / 2, 1 / 3, 2),
        "bird": (0.0, 0.0, 0.0, 3),  # never predicted: precision 0, not NaN
        "fish": (0.0, 0.0, 0.0, 0),  # absent from truth: recall 0, not NaN
    }
    for name, (precision, recall, f1, support) in expected.items():
        got = per_class[name]
        assert got["precision"] == pytest.approx(precision), name
        assert got["recall"] == pytest.approx(recall), name
        assert got["f1"] == pytest.approx(f1), name
        assert got["support"] == support, name


def test_macro_and_weighted_averages(report: dict) -> None:
    macro = {"precision": 11 / 48, "recall": 7 / 24, "f1": 1 / 4}  # mean over all 4 classes
    weighted = {"precision": 5 / 16, "recall": 3 / 8, "f1": 1 / 3}  # supports 3, 2, 3, 0
    assert report["macro_avg"] == pytest.approx(macro)
    assert report["weighted_avg"] == pytest.approx(weighted)


def test_report_is_strict_json_with_python_numbers(report: dict) -> None:
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert type(report["count"]) is int and type(report["accuracy"]) is float
    assert all(type(v) is int for row in report["confusion_matrix"] for v in row)


def test_perfect_predictions_score_one() -> None:
    y = np.array([0, 1, 2, 2, 1])
    report = classification_metrics(y, y, ["a", "b", "c"])
    assert report["accuracy"] == 1.0
    assert report["macro_avg"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 2, 0], [0, 0, 2]]


def test_accepts_lists_and_unsigned_ints() -> None:
    report = classification_metrics([0, 1], np.array([0, 0], dtype=np.uint8), ["a", "b"])
    assert report["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("y_true", "y_pred", "names", "match"),
    [
        ([0, 1, 1], [0, 1], ["a", "b"], "same length, got 3 and 2"),
        ([0, 7], [0, 1], ["a", "b"], r"y_true\[1\] = 7 is outside \[0, 2\)"),
        ([0, 1], [-1, 1], ["a", "b"], r"y_pred\[0\] = -1 is outside"),
        ([[0, 1]], [[0, 1]], ["a", "b"], r"1-D vector .* shape \(1, 2\)"),
        ([0.0, 1.0], [0, 1], ["a", "b"], "integer class indices, got dtype float64"),
        ([], [], ["a", "b"], "0 examples"),
        ([0], [0], [], "class_names must not be empty"),
        ([0], [0], ["a", "b", "a"], r"duplicates \['a'\]"),
    ],
)
def test_bad_input_is_rejected_with_the_bad_value(y_true, y_pred, names, match) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(np.asarray(y_true), np.asarray(y_pred), names)


def test_first_batch_loss_near_ln_c_passes() -> None:
    assert first_batch_loss_check(math.log(10) * 1.05, 10) is None
    assert first_batch_loss_check(2 * math.log(10), 10) is None  # the bounds are inclusive
    assert first_batch_loss_check(0.5 * math.log(10), 10) is None


@pytest.mark.parametrize("loss", [5.0, 0.9, 0.0, float("nan"), float("inf")])
def test_first_batch_loss_far_from_ln_c_warns(loss: float) -> None:
    message = first_batch_loss_check(loss, 10)
    assert message is not None
    assert "ln(10)" in message and "2.303" in message


def test_first_batch_loss_tolerance_and_arguments() -> None:
    assert first_batch_loss_check(1.5 * math.log(5), 5, tolerance=1.2) is not None
    with pytest.raises(ValueError, match="num_classes must be >= 2.*got 1"):
        first_batch_loss_check(0.1, 1)
    with pytest.raises(ValueError, match="tolerance must be > 1.*got 0.5"):
        first_batch_loss_check(1.0, 3, tolerance=0.5)
