"""Standard TFLite Metadata in ftx's .tflite files, the kind MediaPipe Tasks and the TFLite Task Library read.

The metadata flatbuffer (schema ``export/generated/metadata_schema.fbs``,
file identifier ``M001``) goes into the model's ``metadata`` list under the
name ``TFLITE_METADATA``, and the label file is packed after the model as a
zip archive, as tflite-support's ``MetadataPopulator`` does. The input is
described as what ftx models take: RGB pixels 0-255, with normalization
mean 0 and std 1, because the model normalizes inside itself (a float model
given 0-1 or ImageNet-normalized pixels would be wrong). Quantized-input
models carry no normalization: their uint8 input is the pixel itself.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import flatbuffers
import numpy as np

from export.generated import metadata_schema_generated as meta

METADATA_NAME = "TFLITE_METADATA"  # MetadataPopulator.METADATA_FIELD_NAME
METADATA_IDENTIFIER = b"M001"
TFLITE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"  # every field written here is in schema 1.0.0


@dataclass(frozen=True)
class ModelDescription:
    name: str
    description: str
    class_names: tuple[str, ...]
    quantized_input: bool  # uint8/int8 input: no normalization


def _stats(low: float, high: float) -> "meta.StatsT":
    stats = meta.StatsT()
    stats.min, stats.max = [low], [high]
    return stats


def metadata_bytes(model: ModelDescription) -> bytes:
    """The ModelMetadata flatbuffer for an image classifier with one input and one probabilities output."""
    image = meta.TensorMetadataT()
    image.name = "image"
    image.description = "RGB image, pixels 0-255 (the model resizes nothing: give it its input size)"
    image.content = meta.ContentT()
    image.content.contentPropertiesType = meta.ContentProperties.ImageProperties
    image.content.contentProperties = meta.ImagePropertiesT()
    image.content.contentProperties.colorSpace = meta.ColorSpaceType.RGB
    if not model.quantized_input:
        normalization = meta.ProcessUnitT()
        normalization.optionsType = meta.ProcessUnitOptions.NormalizationOptions
        normalization.options = meta.NormalizationOptionsT()
        normalization.options.mean, normalization.options.std = [0.0], [1.0]  # the model normalizes itself
        image.processUnits = [normalization]
    image.stats = _stats(0.0, 255.0)

    labels = meta.AssociatedFileT()
    labels.name = LABELS_FILE
    labels.description = "class names, one per line, in the order of the output's scores"
    labels.type = meta.AssociatedFileType.TENSOR_AXIS_LABELS
    scores = meta.TensorMetadataT()
    scores.name = "probability"
    scores.description = f"probabilities of the {len(model.class_names)} classes"
    scores.content = meta.ContentT()
    scores.content.contentPropertiesType = meta.ContentProperties.FeatureProperties
    scores.content.contentProperties = meta.FeaturePropertiesT()
    scores.stats = _stats(0.0, 1.0)
    scores.associatedFiles = [labels]

    subgraph = meta.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [scores]
    root = meta.ModelMetadataT()
    root.name, root.description = model.name, model.description
    root.author = "ftx"
    root.subgraphMetadata = [subgraph]
    root.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(root.Pack(builder), METADATA_IDENTIFIER)
    return bytes(builder.Output())


def populate(model_bytes: bytes, model: ModelDescription) -> bytes:
    """``model_bytes`` with the metadata buffer added and ``labels.txt`` packed after it."""
    from tensorflow.lite.python import schema_py_generated as schema

    if zip_files(model_bytes):
        raise ValueError("this TFLite file already has packed files; ftx writes its metadata once, on export")
    flat = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata_bytes(model), dtype=np.uint8)
    flat.buffers = [*(flat.buffers or []), buffer]
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(flat.buffers) - 1
    flat.metadata = [m for m in (flat.metadata or []) if m.name.decode() != METADATA_NAME] + [entry]
    builder = flatbuffers.Builder(0)
    builder.Finish(flat.Pack(builder), TFLITE_IDENTIFIER)
    archive = io.BytesIO()
    archive.write(bytes(builder.Output()))
    with zipfile.ZipFile(archive, "a") as packed:  # appended after the flatbuffer, as MetadataPopulator does
        packed.writestr(LABELS_FILE, "".join(f"{name}\n" for name in model.class_names))
    return archive.getvalue()


def read_metadata(model_bytes: bytes) -> "meta.ModelMetadataT":
    """The ModelMetadata of a .tflite file, read with the schema alone."""
    from tensorflow.lite.python import schema_py_generated as schema

    flat = schema.Model.GetRootAsModel(model_bytes, 0)
    for index in range(flat.MetadataLength()):
        entry = flat.Metadata(index)
        if entry.Name().decode() == METADATA_NAME:
            data = bytes(flat.Buffers(entry.Buffer()).DataAsNumpy())
            if not meta.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
                raise ValueError(f"the {METADATA_NAME} buffer lacks the {METADATA_IDENTIFIER.decode()} identifier")
            return meta.ModelMetadataT.InitFromObj(meta.ModelMetadata.GetRootAsModelMetadata(data, 0))
    raise KeyError(f"no {METADATA_NAME} in this TFLite model")


def zip_files(model_bytes: bytes) -> dict[str, bytes]:
    """The files packed after the flatbuffer (empty when there are none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as packed:
            return {name: packed.read(name) for name in packed.namelist()}
    except zipfile.BadZipFile:
        return {}
