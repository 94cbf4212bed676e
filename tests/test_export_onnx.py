"""ONNX export: tf2onnx from the SavedModel, names, dynamic batch, metadata, parity with Keras."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.onnx_export import ConversionError, convert_saved_model, finish_model, labels_from_metadata
from export.run_dir import read_run
from export.samples import load_samples
from export.savedmodel import load_keras_model


@pytest.fixture(scope="module")
def onnx_model(tiny_run):
    run = read_run(tiny_run)
    model = finish_model(convert_saved_model(run.saved_model_path), run.class_names,
                         {"image_size": run.image_size, "backbone": run.backbone})
    return run, model


def test_onnx_has_stable_names_dynamic_batch_and_metadata(onnx_model):
    run, model = onnx_model
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["probabilities", "class_ids"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [32, 32, 3]
    assert labels_from_metadata(model) == list(run.class_names)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["image_size"]) == 32
    assert model.opset_import[0].version == 17


def test_onnx_runtime_reproduces_the_keras_model(onnx_model):
    run, model = onnx_model
    samples = load_samples(run, 8)
    expected = load_keras_model(run).predict(samples.images, verbose=0)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 8):  # the batch axis really is dynamic
        probabilities, class_ids = session.run(None, {"images": samples.images[:batch]})
        np.testing.assert_allclose(probabilities, expected[:batch], atol=1e-4)  # the fp32 parity bound
        np.testing.assert_array_equal(class_ids, expected[:batch].argmax(axis=1))


def test_conversion_failure_is_reported_with_the_converters_message(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"not a saved model")
    with pytest.raises(ConversionError, match="tf2onnx failed"):
        convert_saved_model(tmp_path)
    with pytest.raises(ValueError, match="opset must be between 7 and 21, got 3"):
        convert_saved_model(tmp_path, opset=3)


def test_finish_model_output_passes_the_full_checker(onnx_model):
    onnx.checker.check_model(onnx_model[1], full_check=True)


@pytest.mark.parametrize("variant", ["fp16", "int8_dynamic", "int8_static"])
def test_onnx_variants_keep_float_io_and_agree_with_fp32(onnx_model, variant):
    from export.onnx_variants import make_variant

    run, model = onnx_model
    samples = load_samples(run, 8)
    fp32 = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected, _ = fp32.run(None, {"images": samples.images})
    # minmax: percentile calibration (the export default) clips real ranges when given only 8 images
    # and the first 2 convolutions in float, as ftx export does by default
    quantized = make_variant(model, variant, calibration_images=samples.images, calibration="minmax", float_convs=2)
    session = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)" and session.get_inputs()[0].name == "images"
    got, class_ids = session.run(None, {"images": samples.images})
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(class_ids, got.argmax(axis=1))
    assert expected.max(axis=1).min() > 0.5  # a confident model, so agreement means something
    assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= 7 / 8
    if variant == "fp16":
        np.testing.assert_allclose(got, expected, atol=0.05)
    else:  # int8 of a 3-class toy model, retrained each session: as with top-1, one image of 8 may move further
        per_image = np.abs(got - expected).max(axis=1)
        assert np.sort(per_image)[-2] <= 0.25 and np.median(per_image) <= 0.1, per_image
    if variant == "int8_static":
        assert any(node.op_type == "QuantizeLinear" for node in quantized.graph.node)


def test_unknown_variant_and_missing_calibration(onnx_model):
    from export.onnx_variants import make_variant

    with pytest.raises(ValueError, match="unknown ONNX variant 'int4'"):
        make_variant(onnx_model[1], "int4")
    with pytest.raises(ValueError, match="needs calibration images"):
        make_variant(onnx_model[1], "int8_static")


def test_int8_static_float_convs_leaves_the_first_convolutions_unquantized(onnx_model):
    from export.onnx_variants import make_variant

    run, model = onnx_model
    samples = load_samples(run, 8)
    quantized = make_variant(model, "int8_static", calibration_images=samples.images, calibration="minmax",
                             float_convs=1)
    producers = {output: node.op_type for node in quantized.graph.node for output in node.output}
    convs = [node for node in quantized.graph.node if node.op_type == "Conv"]
    assert len(convs) >= 2
    # a quantized Conv reads DequantizeLinear outputs; the excluded first one reads float tensors
    assert [producers.get(node.input[1]) == "DequantizeLinear" for node in convs] == [False] + [True] * (len(convs) - 1)
    session = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"images": samples.images})[0]
    got = session.run(None, {"images": samples.images})[0]
    assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= 7 / 8
    with pytest.raises(ValueError, match="float_convs must be >= 0, got -1"):
        make_variant(model, "int8_static", calibration_images=samples.images, float_convs=-1)


def test_the_preprocessing_runs_after_the_transpose_to_nchw_with_bit_identical_outputs(onnx_model, tiny_run):
    run, model = onnx_model
    assert [node.op_type for node in model.graph.node[:3]] == ["Transpose", "Mul", "Add"]
    assert list(model.graph.node[0].input) == ["images"]
    # tf2onnx's own graph, finished without the move, gives exactly the same numbers
    from export import onnx_export

    raw = onnx.load_from_string(convert_saved_model(run.saved_model_path))
    assert [node.op_type for node in raw.graph.node[:3]] == ["Mul", "Add", "Transpose"]
    images = np.random.default_rng(1).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"])
    moved = session.run(["probabilities"], {"images": images})[0]
    unmoved = reference.run(None, {raw.graph.input[0].name: images})[0]
    np.testing.assert_array_equal(moved, unmoved)
    assert onnx_export.preprocessing_after_transpose(model.graph, "images") is False  # already moved: unchanged


def test_a_graph_that_does_not_start_with_channel_preprocessing_is_left_alone():
    from onnx import TensorProto, helper, numpy_helper

    from export.onnx_layout import preprocessing_after_transpose

    def graph(constant: np.ndarray, op: str = "Mul") -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node(op, ["images", "c"], ["scaled"]),
             helper.make_node("Transpose", ["scaled"], ["nchw"], perm=[0, 3, 1, 2])],
            "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4, 4, 3])],
            [helper.make_tensor_value_info("nchw", TensorProto.FLOAT, [1, 3, 4, 4])],
            [numpy_helper.from_array(constant, "c")])

    per_pixel = graph(np.ones((4, 4, 3), np.float32))  # not one value per channel
    assert preprocessing_after_transpose(per_pixel, "images") is False
    assert [n.op_type for n in per_pixel.node] == ["Mul", "Transpose"]
    other_op = graph(np.ones(3, np.float32), op="Pow")
    assert preprocessing_after_transpose(other_op, "images") is False
    # a Sub with the constant first keeps its operand order: c - x, not x - c
    reversed_sub = helper.make_graph(
        [helper.make_node("Sub", ["c", "images"], ["scaled"]),
         helper.make_node("Transpose", ["scaled"], ["nchw"], perm=[0, 3, 1, 2])],
        "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("nchw", TensorProto.FLOAT, [1, 3, 4, 4])],
        [numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32), "c")])
    before = onnx.helper.make_model(reversed_sub, opset_imports=[helper.make_opsetid("", 17)])
    after = onnx.ModelProto()
    after.CopyFrom(before)
    assert preprocessing_after_transpose(after.graph, "images") is True
    x = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        None, {"images": x})[0]
    np.testing.assert_array_equal(run(after), run(before))
