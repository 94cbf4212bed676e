"""Standard TFLite Metadata in ftx's .tflite files: read back with the schema, loaded by LiteRT, regenerated.

The schema classes are flatc's output for tflite-support's metadata_schema.fbs;
one test regenerates them (flatc from Debian's flatbuffers-compiler) and
compares with what is committed, another reads an exported file with
tflite-support's own MetadataDisplayer. ``make tools`` unpacks both outside
the venv (tflite-support pins protobuf<4, so it cannot live beside TensorFlow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from export import tflite_export, tflite_metadata
from export.generated import metadata_schema_generated as meta
from export.generated import regenerate
from export.run_dir import read_run
from export.samples import load_samples


@pytest.mark.skipif(regenerate.flatc_path() is None, reason="flatc regenerates (make tools unpacks it)")
def test_the_generated_schema_classes_are_flatcs_output_for_the_committed_schema(tmp_path):
    generated = regenerate.generate(regenerate.SCHEMA, tmp_path)
    assert generated.read_bytes() == regenerate.GENERATED.read_bytes()


@pytest.fixture(scope="module")
def converted(tiny_run):
    run = read_run(tiny_run)
    return run, load_samples(run, 6), tflite_export.convert(run.saved_model_path, "fp32")


def _describe(run, quantized_input=False):
    return tflite_metadata.ModelDescription("tiny", "a test model", tuple(run.class_names), quantized_input)


def test_metadata_reads_back_with_the_schema_and_the_labels_are_packed(converted):
    run, samples, model = converted
    populated = tflite_metadata.populate(model, _describe(run))
    found = tflite_metadata.read_metadata(populated)
    assert (found.name, found.description, found.author, found.minParserVersion) == \
        (b"tiny", b"a test model", b"ftx", b"1.0.0")
    (subgraph,) = found.subgraphMetadata
    (image,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    assert image.content.contentPropertiesType == meta.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == meta.ColorSpaceType.RGB
    (normalization,) = image.processUnits
    assert normalization.optionsType == meta.ProcessUnitOptions.NormalizationOptions
    assert (list(normalization.options.mean), list(normalization.options.std)) == ([0.0], [1.0])
    assert (list(image.stats.min), list(image.stats.max)) == ([0.0], [255.0])
    (labels,) = scores.associatedFiles
    assert (labels.name, labels.type) == (b"labels.txt", meta.AssociatedFileType.TENSOR_AXIS_LABELS)
    assert tflite_metadata.zip_files(populated) == {"labels.txt": "".join(f"{c}\n" for c in run.class_names).encode()}
    assert tflite_metadata.zip_files(model) == {}


def test_litert_runs_the_file_with_its_metadata_and_packed_labels_unchanged(converted):
    run, samples, model = converted
    populated = tflite_metadata.populate(tflite_export.add_labels(model, run.class_names), _describe(run))
    np.testing.assert_array_equal(tflite_export.run_litert(populated, samples.images),
                                  tflite_export.run_litert(model, samples.images))
    assert tflite_export.read_labels(populated) == list(run.class_names)  # the earlier raw entry stays


def test_quantized_input_has_no_normalization_and_populating_twice_is_refused(converted):
    run, _, model = converted
    populated = tflite_metadata.populate(model, _describe(run, quantized_input=True))
    (image,) = tflite_metadata.read_metadata(populated).subgraphMetadata[0].inputTensorMetadata
    assert image.processUnits is None
    with pytest.raises(ValueError, match="already has packed files"):
        tflite_metadata.populate(populated, _describe(run))
    with pytest.raises(KeyError, match="no TFLITE_METADATA"):
        tflite_metadata.read_metadata(model)


DISPLAY = ("import json, sys\n"
           "from tensorflow_lite_support.metadata.python import metadata\n"
           "shown = metadata.MetadataDisplayer.with_model_file(sys.argv[1])\n"
           "print(json.dumps({'metadata': json.loads(shown.get_metadata_json()),\n"
           "                  'packed': shown.get_packed_associated_file_list(),\n"
           "                  'labels': shown.get_associated_file_buffer('labels.txt').decode()}))\n")


@pytest.mark.skipif(not os.environ.get("FTX_TFLITE_SUPPORT"), reason="tflite-support is unpacked by make tools")
def test_tflite_supports_own_metadata_displayer_reads_an_exported_file(tiny_run, tmp_path):
    from export.config import ExportConfig
    from export.pipeline import export_run

    result = export_run(ExportConfig(run_dir=str(tiny_run), name="tiny", out=str(tmp_path), formats=["tflite"],
                                     parity_images=6).validate())
    env = {**os.environ, "PYTHONPATH": os.environ["FTX_TFLITE_SUPPORT"],
           "LD_LIBRARY_PATH": os.environ.get("FTX_TFLITE_SUPPORT_LIBS", "")}
    shown = subprocess.run([sys.executable, "-c", DISPLAY, str(result.directory / "model.tflite")],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-3000:]
    found = json.loads(shown.stdout.strip().splitlines()[-1])
    run = read_run(tiny_run)
    assert found["packed"] == ["labels.txt"] and found["labels"].splitlines() == list(run.class_names)
    metadata = found["metadata"]
    assert metadata["name"] == "tiny" and metadata["min_parser_version"] == "1.0.0"
    (image,) = metadata["subgraph_metadata"][0]["input_tensor_metadata"]
    assert image["content"] == {"content_properties_type": "ImageProperties",
                                "content_properties": {"color_space": "RGB"}}
    assert image["process_units"] == [{"options_type": "NormalizationOptions",
                                       "options": {"mean": [0.0], "std": [1.0]}}]
    assert image["stats"] == {"max": [255.0], "min": [0.0]}
    (scores,) = metadata["subgraph_metadata"][0]["output_tensor_metadata"]
    assert [(f["name"], f["type"]) for f in scores["associated_files"]] == [("labels.txt", "TENSOR_AXIS_LABELS")]
