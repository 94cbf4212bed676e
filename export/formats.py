"""The export formats by name: what each is, its precision and its file in the version directory.

One table drives the CLI's ``--formats``, the converters, the parity gate's
thresholds (chosen by precision) and the manifest, so a format is added in
one place. ``savedmodel`` is always written: the others are converted from it.
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ExportFormat:
    name: str  # what users type in --formats
    family: str  # savedmodel | onnx | tflite
    variant: str  # the converter's own variant name
    precision: str  # fp32 | fp16 | int8: picks the parity thresholds
    filename: str  # inside the version directory
    summary: str


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("savedmodel", "savedmodel", "fp32", "fp32", "saved_model.pb",
                 "TF Serving SavedModel, serving_default checked on float images"),
    ExportFormat("savedmodel-bytes", "savedmodel", "bytes", "fp32", "saved_model.pb",
                 "the same SavedModel through serving_bytes (in-graph decode and resize of the files)"),
    ExportFormat("onnx", "onnx", "fp32", "fp32", "model.onnx", "ONNX via tf2onnx"),
    ExportFormat("onnx-bytes", "onnx", "bytes", "fp32", "model.onnx",
                 "the same ONNX model fed the files' bytes through ftx's TensorFlow-free decode and resize "
                 "(ftx serve's serving_bytes on an edge install)"),
    ExportFormat("onnx-fp16", "onnx", "fp16", "fp16", "model.fp16.onnx", "ONNX, fp16 weights, float32 I/O"),
    ExportFormat("onnx-int8-dynamic", "onnx", "int8_dynamic", "int8", "model.int8_dynamic.onnx",
                 "ONNX, dynamic-range int8 (weights int8, activations at run time)"),
    ExportFormat("onnx-int8-static", "onnx", "int8_static", "int8", "model.int8_static.onnx",
                 "ONNX, static QDQ int8 calibrated on training images"),
    ExportFormat("tflite", "tflite", "fp32", "fp32", "model.tflite", "TFLite fp32"),
    ExportFormat("tflite-fp16", "tflite", "fp16", "fp16", "model.fp16.tflite", "TFLite, fp16 weights"),
    ExportFormat("tflite-int8-dynamic", "tflite", "int8_dynamic", "int8", "model.int8_dynamic.tflite",
                 "TFLite, dynamic-range int8"),
    ExportFormat("tflite-int8", "tflite", "int8", "int8", "model.int8.tflite",
                 "TFLite, int8 from a representative set of training images (full integer with --int8-float-convs 0)"),
)}
ALWAYS = ("savedmodel", "savedmodel-bytes")
RIDES_WITH = {"onnx": "onnx-bytes"}  # asking for a format also checks the way its server feeds it files
DEFAULT_FORMATS = tuple(FORMATS)


class FormatError(ValueError):
    """An unknown or malformed format list."""


def parse_formats(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"onnx,tflite"`` (or a list) -> the checked names in table order, SavedModel always included.

    ``onnx`` brings ``onnx-bytes`` along: the edge server's decode path is checked wherever ONNX ships.

    ``all`` selects every format.
    """
    names = [part.strip() for part in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    if not names:
        raise FormatError(f"no formats given; choose from: all, {', '.join(FORMATS)}")
    if "all" in names:
        return DEFAULT_FORMATS
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise FormatError(f"unknown format(s) {', '.join(map(repr, unknown))}; choose from: all, "
                          f"{', '.join(FORMATS)}")
    wanted = set(names) | set(ALWAYS) | {RIDES_WITH[name] for name in names if name in RIDES_WITH}
    return tuple(name for name in FORMATS if name in wanted)
