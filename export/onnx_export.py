"""ONNX from the run's SavedModel via tf2onnx, with stable names and metadata.

Conversion runs tf2onnx's own command line in a subprocess: the documented
SavedModel path, and TensorFlow's global graph state stays out of our process.
The result is finished by hand only where tf2onnx has no option: a dynamic
``batch`` axis name, a ``class_ids`` output (ArgMax), ``metadata_props``
carrying labels and preprocessing, and the preprocessing moved behind the
input's transpose to NCHW (``export.onnx_layout``: bit-identical, faster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
from onnx import helper

from export.onnx_layout import preprocessing_after_transpose
from training.children import tied_to_parent

DEFAULT_OPSET = 17
INPUT_NAME = "images"
PROBABILITIES = "probabilities"
CLASS_IDS = "class_ids"


class ConversionError(RuntimeError):
    """A converter failed; the message carries the converter's own last words."""


def convert_saved_model(saved_model_dir: Path, opset: int = DEFAULT_OPSET, timeout_s: int = 1800) -> bytes:
    """tf2onnx on ``saved_model_dir`` (signature ``serving_default``); returns the ONNX bytes."""
    if not 7 <= opset <= 21:
        raise ValueError(f"ONNX opset must be between 7 and 21, got {opset}")
    with tempfile.TemporaryDirectory(prefix="ftx-onnx-") as tmp:
        output = Path(tmp) / "model.onnx"
        command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model_dir),
                   "--signature_def", "serving_default", "--opset", str(opset), "--output", str(output)]
        try:
            result = subprocess.run(tied_to_parent(command), capture_output=True, text=True, timeout=timeout_s,
                                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        except subprocess.TimeoutExpired:
            raise ConversionError(f"tf2onnx did not finish within {timeout_s} s on {saved_model_dir}; "
                                  "raise the conversion timeout if the model is large") from None
        if result.returncode != 0 or not output.is_file():
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise ConversionError(f"tf2onnx failed on {saved_model_dir} (exit {result.returncode}):\n{tail}")
        return output.read_bytes()


def finish_model(model_bytes: bytes, class_names: tuple[str, ...], metadata: dict[str, object]) -> onnx.ModelProto:
    """Name the I/O, make the batch axis dynamic, add ``class_ids`` and metadata; check it fully."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ConversionError(f"expected one input and one output, got {[i.name for i in graph.input]} -> "
                              f"{[o.name for o in graph.output]}")
    _rename_value(graph, graph.input[0].name, INPUT_NAME)
    _rename_value(graph, graph.output[0].name, PROBABILITIES)
    preprocessing_after_transpose(graph, INPUT_NAME)
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    graph.node.append(helper.make_node("ArgMax", [PROBABILITIES], [CLASS_IDS], axis=1, keepdims=0,
                                       name="class_ids_argmax"))
    graph.output.append(helper.make_tensor_value_info(CLASS_IDS, onnx.TensorProto.INT64, ["batch"]))
    props = {"labels": json.dumps(list(class_names)), **{k: json.dumps(v) for k, v in metadata.items()}}
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    return model


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a tensor everywhere it appears (graph I/O and node inputs/outputs)."""
    if old == new:
        return
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def labels_from_metadata(model: onnx.ModelProto) -> list[str]:
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props["labels"])
