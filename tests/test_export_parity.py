"""The parity gate's arithmetic, threshold overrides, format names and export config checks (no TensorFlow)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from export.config import ExportConfig
from export.formats import DEFAULT_FORMATS, FormatError, parse_formats
from export.parity import ThresholdError, Thresholds, Verdict, compare, parse_overrides, thresholds_for
from export.parity_stats import PairedAccuracy, wilson_interval
from training.config import ConfigError

REFERENCE = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
LABELS = np.array([0, 1, 1, 1])  # the reference is right on 3 of 4


def test_compare_measures_difference_agreement_and_accuracy():
    candidate = np.array([[0.9, 0.1], [0.2, 0.8], [0.45, 0.55], [0.3, 0.7]])  # flips image 2, now correct
    result = compare("onnx", REFERENCE, candidate, LABELS, Thresholds())
    assert result.max_abs_diff == pytest.approx(0.15)
    assert result.mean_abs_diff == pytest.approx(0.3 / 8)
    assert result.top1_agreement == 0.75
    assert result.accuracy == 1.0 and result.reference_accuracy == 0.75
    assert result.accuracy_drop_points == pytest.approx(-25.0)
    assert result.passed  # no thresholds, nothing to fail


def test_default_fp32_thresholds_fail_with_the_format_metric_and_margin():
    candidate = REFERENCE + np.array([[2e-4, -2e-4], [0, 0], [0, 0], [0, 0]])
    result = compare("tflite", REFERENCE, candidate, LABELS, thresholds_for("tflite"))
    assert result.failures == ["tflite: max |Δp| 0.0002 exceeds max_abs_diff 0.0001 (by 0.0001)"]
    close = compare("tflite", REFERENCE, REFERENCE + 5e-5, LABELS, thresholds_for("tflite"))
    assert close.passed


def test_on_four_images_a_miss_that_chance_explains_passes_with_a_warning_that_says_so():
    flipped = REFERENCE.copy()
    flipped[1] = [0.55, 0.45]  # one disagreement out of 4, and one more mistake
    # one disagreement in 4 is already evidence against 99.5% agreement (0.995 ** 4 = 0.98)
    fp16 = compare("onnx-fp16", REFERENCE, flipped, LABELS, thresholds_for("onnx-fp16"))
    assert fp16.failures == ["onnx-fp16: top-1 agreement 0.7500 is below min_top1_agreement 0.995 (1 of 4 images "
                             "differ; 95% interval 0.3006 to 0.9544)"]
    loose = compare("onnx-fp16", REFERENCE, flipped, LABELS, Thresholds(min_top1_agreement=0.9))
    assert loose.passed and loose.warnings == [
        "onnx-fp16 passes on too few images to decide: top-1 agreement 0.7500 is below min_top1_agreement 0.9 "
        "(1 of 4 images differ; 95% interval 0.3006 to 0.9544), which still reaches the limit"]
    int8 = compare("tflite-int8", REFERENCE, flipped, LABELS, thresholds_for("tflite-int8"))
    assert int8.passed and int8.paired == PairedAccuracy(images=4, lost=1, gained=0)
    assert int8.warnings == [
        "tflite-int8 passes on too few images to decide: accuracy 0.5000 is 25.00 points below the Keras model's "
        "0.7500 (1 images lost, 0 gained of 4; 95% interval -27.56 to 60.90 points); that is more than "
        "max_accuracy_drop 1, but chance explains it"]
    verdict = Verdict({"onnx-fp16": loose, "tflite-int8": int8}, {}, 4, "validation")
    assert verdict.blessed
    assert verdict.warnings[0] == ("the parity gate rests on 4 validation images: one image is 25 points, more than "
                                   "max_accuracy_drop 1 points and min_top1_agreement 0.9 allow, so only gross "
                                   "differences can fail; more test images (or --parity-images, when the split has "
                                   "them) make the verdict sharper")
    assert verdict.warnings[1:] == loose.warnings + int8.warnings
    assert verdict.as_dict()["formats"]["tflite-int8"]["accuracy_drop_interval_95"] == pytest.approx([-27.56, 60.90],
                                                                                                     abs=0.01)


def test_fp32_fails_on_a_single_disagreement_however_few_the_images():
    flipped = REFERENCE.copy()
    flipped[2] = [0.4, 0.6]
    result = compare("onnx", REFERENCE, flipped, LABELS, Thresholds(min_top1_agreement=1.0))
    assert result.failures == ["onnx: top-1 agreement 0.7500 is below min_top1_agreement 1 (1 of 4 images differ; "
                               "95% interval 0.3006 to 0.9544)"]


def _outcomes(images: int, reference_right: int, lost: int, gained: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-class probabilities for Keras and a candidate with the given per-image correctness."""
    labels = np.zeros(images, dtype=int)
    reference_ok = np.arange(images) < reference_right
    candidate_ok = reference_ok.copy()
    candidate_ok[:lost] = False  # lost among the images Keras gets right
    candidate_ok[reference_right:reference_right + gained] = True  # gained among those it gets wrong
    as_probabilities = lambda ok: np.where(ok[:, None], [[0.8, 0.2]], [[0.3, 0.7]])  # noqa: E731
    return as_probabilities(reference_ok), as_probabilities(candidate_ok), labels


def test_on_ten_thousand_images_a_clearly_worse_int8_format_is_still_refused():
    reference, candidate, labels = _outcomes(10_000, 8_100, lost=250, gained=100)  # 1.5 points worse
    result = compare("tflite-int8", reference, candidate, labels, thresholds_for("tflite-int8"))
    low, high = result.paired.drop_interval()
    assert result.accuracy_drop_points == pytest.approx(1.5) and 1.1 < low < 1.2 and 1.8 < high < 1.9
    assert result.failures == [
        f"tflite-int8: accuracy 0.7950 is 1.50 points below the Keras model's 0.8100 (250 images lost, 100 gained of "
        f"10000; 95% interval {low:.2f} to {high:.2f} points), more than max_accuracy_drop 1"]
    within = compare("tflite-int8", *_outcomes(10_000, 8_100, lost=150, gained=100), thresholds_for("tflite-int8"))
    assert within.passed and not within.warnings  # 0.5 points: under the limit, nothing to say
    verdict = Verdict({"tflite-int8": within}, {}, 10_000, "test")
    assert verdict.warnings == []


def test_fp16_agreement_below_the_limit_beyond_chance_fails_on_many_images():
    reference, candidate, labels = _outcomes(10_000, 8_100, lost=40, gained=40)  # 80 disagreements: 0.992
    result = compare("onnx-fp16", reference, candidate, labels, thresholds_for("onnx-fp16"))
    assert result.failures and result.failures[0].startswith(
        "onnx-fp16: top-1 agreement 0.9920 is below min_top1_agreement 0.995 (80 of 10000 images differ; "
        "95% interval 0.9901 to 0.9936)")
    few = compare("onnx-fp16", *_outcomes(256, 200, lost=1, gained=1), thresholds_for("onnx-fp16"))
    assert few.passed and few.warnings  # 254 of 256 agree: the interval reaches 0.995


def test_the_accuracy_drop_interval_covers_the_true_drop_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    for images, p_lost, p_gained in ((256, 0.02, 0.01), (500, 0.03, 0.005), (10_000, 0.025, 0.01)):
        true_drop = 100 * (p_lost - p_gained)
        draws = rng.multinomial(images, [p_lost, p_gained, 1 - p_lost - p_gained], size=2000)
        covered = [low <= true_drop <= high for low, high in
                   (PairedAccuracy(images, int(lost), int(gained)).drop_interval() for lost, gained, _ in draws)]
        assert 0.93 <= np.mean(covered) <= 0.975, (images, np.mean(covered))


def test_wilson_intervals_match_newcombes_published_table():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (score interval without correction)
    for (successes, trials), expected in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                                          (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}.items():
        assert wilson_interval(successes, trials) == pytest.approx(expected, abs=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0) and wilson_interval(5, 5)[1] == 1.0


def test_nan_outputs_and_shape_mismatches_are_failures():
    broken = REFERENCE.copy()
    broken[0, 0] = np.nan
    result = compare("onnx", REFERENCE, broken, LABELS, thresholds_for("onnx"))
    assert not result.passed and math.isinf(result.max_abs_diff)
    assert "onnx: outputs contain NaN or infinity" in result.failures
    with pytest.raises(ValueError, match=r"output shape \(4, 3\) differs"):
        compare("onnx", REFERENCE, np.zeros((4, 3)), LABELS, Thresholds())


def test_overrides_apply_precision_then_format_and_none_disables():
    overrides = parse_overrides(["fp32.max_abs_diff=1e-3", "onnx.max_abs_diff=none", "fp16.min_top1_agreement=0.9"])
    assert thresholds_for("tflite", overrides) == Thresholds(max_abs_diff=1e-3, min_top1_agreement=1.0)
    assert thresholds_for("onnx", overrides) == Thresholds(max_abs_diff=None, min_top1_agreement=1.0)
    assert thresholds_for("tflite-fp16", overrides) == Thresholds(min_top1_agreement=0.9)
    assert thresholds_for("onnx-int8-static") == Thresholds(max_accuracy_drop=1.0)


@pytest.mark.parametrize("item, message", [
    ("int8", "must look like TARGET.METRIC=VALUE"),
    ("gpu.max_abs_diff=1", "unknown target 'gpu'"),
    ("onnx.speed=1", "unknown metric 'speed'"),
    ("onnx.max_abs_diff=tiny", "'tiny' is not a number"),
    ("fp16.min_top1_agreement=1.5", "must be a finite number >= 0 and <= 1"),
    ("int8.max_accuracy_drop=-1", "must be a finite number >= 0"),
])
def test_malformed_overrides_are_refused(item, message):
    with pytest.raises(ThresholdError, match=message):
        parse_overrides([item])


def test_verdict_blesses_only_when_everything_converted_and_passed():
    good = compare("onnx", REFERENCE, REFERENCE, LABELS, thresholds_for("onnx"))
    assert Verdict({"onnx": good}, {}, 4, "test").blessed
    verdict = Verdict({"onnx": good}, {"tflite": "conversion failed: ConverterError: boom\nstack"}, 4, "test")
    assert not verdict.blessed
    assert verdict.reasons == ["tflite: conversion failed: ConverterError: boom"]
    assert verdict.as_dict()["failures"] == {"tflite": "conversion failed: ConverterError: boom\nstack"}


def test_format_lists():
    assert parse_formats("tflite, onnx") == ("savedmodel", "savedmodel-bytes", "onnx", "onnx-bytes", "tflite")
    assert parse_formats("tflite") == ("savedmodel", "savedmodel-bytes", "tflite")
    assert parse_formats("all") == DEFAULT_FORMATS and len(DEFAULT_FORMATS) == 11
    with pytest.raises(FormatError, match="unknown format.*'coreml'.*choose from: all, savedmodel"):
        parse_formats("onnx,coreml")
    with pytest.raises(FormatError, match="no formats given"):
        parse_formats(" , ")


@pytest.mark.parametrize("changes, message", [
    ({"run_dir": ""}, "run_dir is required"),
    ({"name": ""}, "name is required"),
    ({"name": "../escape"}, "model name '../escape' must be"),
    ({"version": 0}, "version must be a positive integer, got 0"),
    ({"opset": 5}, "opset must be between 7 and 21, got 5"),
    ({"parity_images": 0}, "parity_images must be >= 1"),
    ({"parity_images": "all"}, "parity_images must be int, got 'all'"),
    ({"formats": ["onnx", 3]}, "formats must be a list of strings"),
    ({"onnx_calibration": "kl"}, "onnx_calibration must be one of minmax, percentile, entropy"),
    ({"formats": ["onnx"], "tflite_uint8_io": True}, "tflite_uint8_io applies to the tflite-int8 format"),
    ({"thresholds": ["int8.max_accuracy_drop=x"]}, "is not a number"),
])
def test_export_config_errors_name_the_option(changes, message):
    values = {"run_dir": "runs/x", "name": "model", **changes}
    with pytest.raises(ConfigError, match=message):
        ExportConfig(**values).validate()


def test_export_config_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown export key\(s\) \['format'\]"):
        ExportConfig.from_dict({"run_dir": "r", "name": "m", "format": "onnx"})
    config = ExportConfig.from_dict({"run-dir": "r", "name": "m", "formats": "onnx,tflite"}).validate()
    assert config.formats == ["savedmodel", "savedmodel-bytes", "onnx", "onnx-bytes", "tflite"]
