"""TFLite variants from the SavedModel, checked in LiteRT against the Keras model."""

from __future__ import annotations

import numpy as np
import pytest

from export import tflite_export
from export.run_dir import read_run
from export.samples import load_samples
from export.savedmodel import load_keras_model


@pytest.fixture(scope="module")
def reference(tiny_run):
    run = read_run(tiny_run)
    samples = load_samples(run, 8)
    return run, samples, load_keras_model(run).predict(samples.images, verbose=0)


def test_fp32_matches_keras_and_carries_labels(reference):
    run, samples, expected = reference
    model = tflite_export.add_labels(tflite_export.convert(run.saved_model_path, "fp32"), run.class_names)
    assert tflite_export.read_labels(model) == list(run.class_names)
    np.testing.assert_allclose(tflite_export.run_litert(model, samples.images), expected,
                               atol=1e-4)  # the fp32 parity bound


@pytest.mark.parametrize("variant", ["fp16", "int8_dynamic"])
def test_reduced_precision_variants_agree_on_the_class(reference, variant):
    run, samples, expected = reference
    model = tflite_export.convert(run.saved_model_path, variant)
    got = tflite_export.run_litert(model, samples.images)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-2)
    assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= 0.75


@pytest.mark.parametrize("uint8_io", [False, True])
def test_full_integer_int8_with_representative_images(reference, uint8_io):
    run, samples, expected = reference
    model = tflite_export.convert(run.saved_model_path, "int8", representative_images=samples.images,
                                  uint8_io=uint8_io)
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_content=model).get_input_details()[0]
    assert detail["dtype"] == (np.uint8 if uint8_io else np.float32)
    got = tflite_export.run_litert(model, samples.images)
    assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= 0.75


def test_bad_variant_and_missing_calibration_are_clear_errors(reference):
    run = reference[0]
    with pytest.raises(ValueError, match="unknown TFLite variant 'int4'"):
        tflite_export.convert(run.saved_model_path, "int4")
    with pytest.raises(ValueError, match="needs representative images"):
        tflite_export.convert(run.saved_model_path, "int8")


def _conv_output_dtypes(model: bytes) -> list:
    from ai_edge_litert.interpreter import Interpreter

    dtypes = {t["name"]: t["dtype"] for t in Interpreter(model_content=model).get_tensor_details()}
    return [dtypes[name] for name in tflite_export.conv_outputs(model)]


@pytest.mark.parametrize("float_convs", [0, 1])
def test_int8_float_convs_keeps_exactly_the_first_convolutions_in_float(reference, float_convs):
    run, samples, expected = reference
    model = tflite_export.convert(run.saved_model_path, "int8", representative_images=samples.images,
                                  float_convs=float_convs)
    dtypes = _conv_output_dtypes(model)
    assert len(dtypes) >= 2
    assert dtypes == [np.float32] * float_convs + [np.int8] * (len(dtypes) - float_convs)
    got = tflite_export.run_litert(model, samples.images)
    assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= 0.75
    with pytest.raises(ValueError, match="float_convs must be >= 0, got -1"):
        tflite_export.convert(run.saved_model_path, "int8", samples.images, float_convs=-1)
