"""The parity gate's arithmetic, threshold overrides, format names and export config checks (no TensorFlow)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from export.config import ExportConfig
from export.formats import DEFAULT_FORMATS, FormatError, parse_formats
from export.parity import ThresholdError, Thresholds, Verdict, compare, parse_overrides, thresholds_for
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


def test_fp16_agreement_and_int8_accuracy_drop_thresholds():
    flipped = REFERENCE.copy()
    flipped[1] = [0.55, 0.45]  # one disagreement out of 4, and one more mistake
    fp16 = compare("onnx-fp16", REFERENCE, flipped, LABELS, thresholds_for("onnx-fp16"))
    assert fp16.failures == ["onnx-fp16: top-1 agreement 0.7500 is below min_top1_agreement 0.995 "
                             "(1 of 4 images differ)"]
    int8 = compare("tflite-int8", REFERENCE, flipped, LABELS, thresholds_for("tflite-int8"))
    assert int8.failures == ["tflite-int8: accuracy 0.5000 is 25.00 points below the Keras model's 0.7500, "
                             "more than max_accuracy_drop 1"]
    relaxed = thresholds_for("tflite-int8", parse_overrides(["int8.max_accuracy_drop=30"]))
    assert compare("tflite-int8", REFERENCE, flipped, LABELS, relaxed).passed


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
