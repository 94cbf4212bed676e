"""The accuracy-aware tflite-int8 search, run for real: TF's quantizer and debugger, models checked in LiteRT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export import tflite_export
from export.run_dir import read_run
from export.samples import load_samples
from export.savedmodel import load_keras_model
from export.tflite_int8_search import CalibratedModel, search


@pytest.fixture(scope="module")
def calibrated(tiny_run):
    run = read_run(tiny_run)
    calibration = load_samples(run, 24, split="train")
    selection = load_samples(run, 12, split="valid")
    reference = load_keras_model(run).predict(selection.images, verbose=0)
    return CalibratedModel(run.saved_model_path, calibration.images), calibration, selection, reference


def _tensor_dtypes(model: bytes) -> dict[str, type]:
    from ai_edge_litert.interpreter import Interpreter

    return {t["name"]: t["dtype"] for t in Interpreter(model_content=model).get_tensor_details()}


def test_validation_split_is_what_selection_reads(calibrated):
    _, calibration, selection, _ = calibrated
    assert selection.split == "validation" and len(selection.labels) == 6  # the tiny set's 20% held back
    assert not set(selection.paths) & set(calibration.paths)


def test_layer_errors_rank_every_quantized_layer_worst_first(calibrated):
    model, calibration, _, _ = calibrated
    ranking = model.layer_errors(calibration.images[:4])
    errors = [layer.rmse_per_scale for layer in ranking]
    assert len(ranking) >= 10 and errors == sorted(errors, reverse=True) and errors[-1] >= 0
    quantized = _tensor_dtypes(model.quantize())
    convs = set(tflite_export.conv_outputs(model.quantize()))
    assert convs <= {layer.tensor for layer in ranking}  # every convolution is measured and can be kept float
    assert all(layer.tensor in quantized for layer in ranking)
    assert {quantized[name] for name in convs} == {np.int8}


def test_a_loose_target_keeps_the_fully_quantized_model(calibrated):
    model, calibration, selection, reference = calibrated
    choice = search(model, reference, selection.images, selection.labels, max_drop=100.0,
                    debug_images=calibration.images[:4])
    assert choice.met and choice.float_layers == () and len(choice.trials) == 1
    assert choice.trials[0].passed and choice.images == 6 and choice.split == "validation"
    dtypes = _tensor_dtypes(choice.model)
    assert {dtypes[name] for name in tflite_export.conv_outputs(choice.model)} == {np.int8}
    assert np.isclose(choice.reference_accuracy, np.mean(reference.argmax(1) == selection.labels))
    record = json.loads(json.dumps(choice.as_dict()))
    assert record["target_met"] is True and record["selection_images"] == 6 and record["float_layers"] == []


def test_an_unmeetable_target_tries_every_step_and_keeps_the_most_accurate(calibrated):
    """A 'float model' that is always right on labels every real model gets wrong: no candidate can meet it."""
    model, calibration, selection, reference = calibrated
    wrong = (reference.argmax(axis=1) + 1) % reference.shape[1]
    claimed = np.eye(reference.shape[1], dtype=np.float32)[wrong]
    choice = search(model, claimed, selection.images, wrong, max_drop=1.0, steps=(0, 1, 3),
                    debug_images=calibration.images[:4])
    assert not choice.met and [len(t.float_layers) for t in choice.trials] == [0, 1, 3]
    assert all(not t.passed and t.drop_points == 100.0 and t.paired.lost == 6 for t in choice.trials)
    ranked = [layer.tensor for layer in choice.ranking]
    assert all(list(t.float_layers) == ranked[:len(t.float_layers)] for t in choice.trials)
    best = max(t.accuracy for t in choice.trials)
    assert choice.float_layers == next(t.float_layers for t in choice.trials if t.accuracy == best)
    assert "NOT within reach" in choice.summary() and "6 validation images" in choice.summary()
    assert "6 images lost, 0 gained" in choice.summary()


def test_a_drop_the_images_cannot_tell_from_chance_passes_like_the_gate_and_says_so(calibrated):
    """2 of 6 images lost (33 points, over the target) is within chance: the parity gate's rule passes it."""
    model, calibration, selection, _ = calibrated
    int8_top1 = tflite_export.run_litert(model.quantize(), selection.images).argmax(axis=1)
    labels = int8_top1.copy()
    labels[:2] = (labels[:2] + 1) % 3
    claimed = np.eye(3, dtype=np.float32)[labels]  # a 'float model' right on all six
    choice = search(model, claimed, selection.images, labels, max_drop=1.0, steps=(0, 1),
                    debug_images=calibration.images[:4])
    trial = choice.trials[0]
    assert len(choice.trials) == 1 and choice.float_layers == () and choice.met
    assert (trial.paired.lost, trial.paired.gained) == (2, 0) and not trial.within_target and trial.passed
    assert trial.paired.drop_interval()[0] <= 0.0
    assert trial.as_dict()["passed_by"] == "not worse beyond chance"
    assert "too few images to tell" in choice.summary()


def test_kept_layers_run_in_float_and_the_rest_in_int8(calibrated):
    model, calibration, selection, _ = calibrated
    ranking = model.layer_errors(calibration.images[:4])
    kept = [layer.tensor for layer in ranking[:2]]
    quantized = model.quantize(kept)
    dtypes = _tensor_dtypes(quantized)
    assert [dtypes[name] for name in kept] == [np.float32, np.float32]
    convs = set(tflite_export.conv_outputs(quantized))
    assert {dtypes[layer.tensor] for layer in ranking[2:] if layer.tensor in convs} == {np.int8}
    probabilities = tflite_export.run_litert(quantized, selection.images)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)


def test_uint8_io_holds_with_float_layers(tiny_run, calibrated):
    """The selective path used to drop --tflite-uint8-io: the quantizer must be told the I/O types itself."""
    from ai_edge_litert.interpreter import Interpreter

    _, calibration, selection, reference = calibrated
    run = read_run(tiny_run)
    for model in (CalibratedModel(run.saved_model_path, calibration.images, uint8_io=True).quantize(),
                  tflite_export.convert(run.saved_model_path, "int8", calibration.images, uint8_io=True,
                                        float_convs=1)):
        interpreter = Interpreter(model_content=model)
        assert interpreter.get_input_details()[0]["dtype"] == np.uint8
        assert interpreter.get_output_details()[0]["dtype"] == np.uint8
        got = tflite_export.run_litert(model, selection.images)
        assert np.mean(got.argmax(axis=1) == reference.argmax(axis=1)) >= 0.75


def test_bad_arguments_are_clear_errors(tiny_run, calibrated):
    model, _, selection, reference = calibrated
    with pytest.raises(ValueError, match="max_drop must be >= 0 points, got -1"):
        search(model, reference, selection.images, selection.labels, max_drop=-1)
    with pytest.raises(ValueError, match="of one length"):
        search(model, reference[:3], selection.images, selection.labels)
    with pytest.raises(ValueError, match="needs representative images"):
        CalibratedModel(read_run(tiny_run).saved_model_path, np.zeros((0, 32, 32, 3)))
