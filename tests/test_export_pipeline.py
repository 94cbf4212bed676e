"""``ftx export`` end to end on the tiny run: layout, manifest, parity gate, failures, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from export.config import ExportConfig
from export.pipeline import export_run
from training.cli import main

ALL_FILES = {"saved_model.pb", "fingerprint.pb", "assets.extra/tf_serving_warmup_requests", "model.onnx",
             "model.fp16.onnx", "model.int8_dynamic.onnx", "model.int8_static.onnx", "model.tflite",
             "model.fp16.tflite", "model.int8_dynamic.tflite", "model.int8.tflite", "labels.txt", "parity.json",
             "BLESSED", "export_manifest.json"}


@pytest.fixture(scope="module")
def full_export(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    config = ExportConfig(run_dir=str(tiny_run), name="tiny", out=str(root), parity_images=12, calibration_images=24)
    return export_run(config, progress=False), root


def test_every_format_lands_in_one_blessed_version(full_export):
    result, root = full_export
    assert result.blessed and result.published, result.verdict.reasons
    assert result.directory == root / "tiny" / "1"
    assert sorted(p.name for p in (root / "tiny").iterdir()) == ["1"]  # no staging directory left
    files = {p.relative_to(result.directory).as_posix() for p in result.directory.rglob("*") if p.is_file()}
    assert ALL_FILES <= files
    assert not any(name.startswith(".") or name == "NOT_BLESSED" for name in files)
    assert (result.directory / "labels.txt").read_text().split() == ["blue", "green", "red"]


def test_manifest_lists_every_file_with_size_and_sha256(full_export, tiny_run):
    result, _ = full_export
    manifest = json.loads((result.directory / "export_manifest.json").read_text())
    on_disk = {p.relative_to(result.directory).as_posix(): p for p in result.directory.rglob("*") if p.is_file()}
    listed = {entry["path"]: entry for entry in manifest["files"]}
    assert set(listed) == set(on_disk) - {"export_manifest.json"}
    for path, entry in listed.items():
        data = on_disk[path].read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest(), path
    assert manifest["status"] == "BLESSED" and manifest["served"] is True and manifest["version"] == 1
    assert manifest["source_run"]["path"] == str(Path(tiny_run).resolve())
    assert manifest["input"]["shape"] == [None, 32, 32, 3] and manifest["input"]["dtype"] == "float32"
    assert manifest["labels"] == ["blue", "green", "red"]
    assert manifest["preprocessing"]["in_model"] is True
    for name in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"):
        assert manifest["versions"][name] == metadata.version(name)
    onnx_artifact = manifest["artifacts"]["onnx"]
    assert onnx_artifact["status"] == "ok" and [f["path"] for f in onnx_artifact["files"]] == ["model.onnx"]
    saved = {f["path"] for f in manifest["artifacts"]["savedmodel"]["files"]}
    assert {"saved_model.pb", "variables/variables.index", "assets.extra/tf_serving_warmup_requests"} <= saved
    assert manifest["parity"] == json.loads((result.directory / "parity.json").read_text())
    search = manifest["artifacts"]["tflite-int8"]["int8_search"]
    assert search["selection_split"] == "validation" and search["selection_images"] == 6
    assert search["max_drop_points"] == 1.0 and search["trials"] and search["most_sensitive"]
    if search["target_met"]:  # the search stops at the first candidate within the target
        assert search["trials"][-1]["passed"] and search["trials"][-1]["float_layers"] == search["float_layers"]
    from ai_edge_litert.interpreter import Interpreter

    dtypes = {t["name"]: t["dtype"] for t in Interpreter(
        model_path=str(result.directory / "model.int8.tflite")).get_tensor_details()}
    assert all(dtypes[name] == np.float32 for name in search["float_layers"])


def test_parity_json_holds_every_format_against_keras(full_export):
    result, _ = full_export
    parity = json.loads((result.directory / "parity.json").read_text())
    assert parity["blessed"] is True and parity["images"] == 12 and parity["split"] == "test"
    assert set(parity["formats"]) == {"savedmodel", "savedmodel-bytes", "onnx", "onnx-bytes", "onnx-fp16", "onnx-int8-dynamic",
                                      "onnx-int8-static", "tflite", "tflite-fp16", "tflite-int8-dynamic",
                                      "tflite-int8"}
    for name, entry in parity["formats"].items():
        assert entry["images"] == 12 and entry["passed"], (name, entry["failures"])
        if entry["precision"] == "fp32":
            assert entry["thresholds"] == {"max_abs_diff": 1e-4, "min_top1_agreement": 1.0, "max_accuracy_drop": None}
            assert entry["max_abs_diff"] <= 1e-4 and entry["top1_agreement"] == 1.0
        elif entry["precision"] == "fp16":
            assert entry["thresholds"]["min_top1_agreement"] == 0.995
        else:
            assert entry["thresholds"]["max_accuracy_drop"] == 1.0


def test_exported_files_carry_labels_and_reproduce_keras(full_export, tiny_run):
    from export import tflite_export
    from export.onnx_runtime import open_session, predict_probabilities, session_labels
    from export.run_dir import read_run
    from export.samples import load_samples
    from export.savedmodel import load_keras_model

    result, _ = full_export
    run = read_run(tiny_run)
    samples = load_samples(run, 12)
    expected = load_keras_model(run).predict(samples.images, verbose=0)
    session = open_session(result.directory / "model.onnx")
    assert session_labels(session) == list(run.class_names)
    np.testing.assert_allclose(predict_probabilities(session, samples.images), expected, atol=1e-4)
    tflite = (result.directory / "model.int8.tflite").read_bytes()
    assert tflite_export.read_labels(tflite) == list(run.class_names)


def test_next_export_takes_the_next_version_and_existing_ones_are_refused(full_export, tiny_run, capsys):
    _, root = full_export
    before = sorted(p.name for p in (root / "tiny").iterdir())
    code = main(["export", str(tiny_run), "--name", "tiny", "--out", str(root), "--version", "1"])
    assert code == 2
    assert "version 1 of tiny already exists" in capsys.readouterr().err
    assert sorted(p.name for p in (root / "tiny").iterdir()) == before


def test_gate_refusal_exits_1_keeps_the_export_unserved_and_allow_unblessed_publishes(tiny_run, tmp_path):
    """A threshold fp16 cannot meet (|Δp| <= 1e-12): the message names format, metric, threshold and value."""
    args = ["export", str(tiny_run), "--name", "tiny", "--out", str(tmp_path), "--formats", "tflite-fp16",
            "--threshold", "tflite-fp16.max_abs_diff=1e-12", "--parity-images", "6"]
    cli = Path(sys.executable).with_name("ftx")
    refused = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1, refused.stderr
    assert "NOT BLESSED" in refused.stderr
    assert "tflite-fp16: max |Δp|" in refused.stderr and "exceeds max_abs_diff 1e-12" in refused.stderr
    kept = tmp_path / "tiny" / "1.not_blessed"
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1.not_blessed"]  # nothing TF Serving loads
    assert "exceeds max_abs_diff 1e-12" in (kept / "NOT_BLESSED").read_text()
    assert not (kept / "BLESSED").exists()
    assert json.loads((kept / "parity.json").read_text())["blessed"] is False
    assert json.loads((kept / "export_manifest.json").read_text())["served"] is False

    assert main([*args, "--allow-unblessed"]) == 0  # the refused number is not reused
    published = tmp_path / "tiny" / "2"
    assert (published / "NOT_BLESSED").is_file() and (published / "saved_model.pb").is_file()
    assert (published / "model.fp16.tflite").is_file()


def test_a_failing_conversion_is_recorded_while_the_other_formats_finish(tiny_run, tmp_path):
    """tf2onnx cannot even import TensorFlow in 1 s: both ONNX formats fail, TFLite and SavedModel finish."""
    config = ExportConfig(run_dir=str(tiny_run), name="tiny", out=str(tmp_path), formats=["onnx", "onnx-fp16", "tflite"],
                          convert_timeout=1, parity_images=6)
    result = export_run(config, progress=False)
    assert not result.blessed and result.directory == tmp_path / "tiny" / "1.not_blessed"
    manifest = result.manifest
    assert manifest["artifacts"]["onnx"]["status"] == "failed"
    assert "did not finish within 1 s" in manifest["artifacts"]["onnx"]["error"]
    assert "the fp32 ONNX model it starts from failed" in manifest["artifacts"]["onnx-fp16"]["error"]
    assert manifest["artifacts"]["tflite"]["status"] == "ok" and manifest["artifacts"]["savedmodel"]["status"] == "ok"
    assert result.verdict.results["tflite"].passed
    assert not (result.directory / "model.onnx").exists() and (result.directory / "model.tflite").is_file()
    assert result.verdict.reasons[0].startswith("onnx: conversion failed: ConversionError: tf2onnx did not finish")


def test_no_int8_search_keeps_the_fixed_rule(tiny_run, tmp_path):
    """--no-int8-search: the first --int8-float-convs convolutions float, no search record in the manifest."""
    from ai_edge_litert.interpreter import Interpreter

    from export.tflite_export import conv_outputs

    assert main(["export", str(tiny_run), "--name", "tiny", "--out", str(tmp_path), "--formats", "tflite-int8",
                 "--no-int8-search", "--int8-float-convs", "1", "--parity-images", "6",
                 "--calibration-images", "12"]) == 0
    version = tmp_path / "tiny" / "1"
    manifest = json.loads((version / "export_manifest.json").read_text())
    assert "int8_search" not in manifest["artifacts"]["tflite-int8"]
    assert manifest["export_config"]["int8_search"] is False
    model = (version / "model.int8.tflite").read_bytes()
    dtypes = {t["name"]: t["dtype"] for t in Interpreter(model_content=model).get_tensor_details()}
    convs = conv_outputs(model)
    assert dtypes[convs[0]] == np.float32 and {dtypes[name] for name in convs[1:]} == {np.int8}


@pytest.mark.parametrize("args, message", [
    (["--formats", "onnx,pdf"], "unknown format(s) 'pdf'"),
    (["--version", "0"], "version must be a positive integer, got 0"),
    (["--threshold", "int8.max_accuracy_drop"], "must look like TARGET.METRIC=VALUE"),
    (["--opset", "99"], "opset must be between 7 and 21"),
    (["--int8-max-drop", "-1"], "int8_max_drop must be between 0 and 100 points, got -1.0"),
])
def test_bad_options_exit_2_and_write_nothing(tiny_run, tmp_path, capsys, args, message):
    assert main(["export", str(tiny_run), "--name", "tiny", "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_run_directories_exit_2(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "nowhere"), "--name", "m", "--out", str(out)]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "run.partial"), "--name", "m", "--out", str(out)]) == 2
    assert "unfinished training run" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    shutil.rmtree(broken / "saved_model")
    assert main(["export", str(broken), "--name", "m", "--out", str(out)]) == 2
    assert "missing saved_model/saved_model.pb" in capsys.readouterr().err
    assert main(["export", "--name", "m", "--out", str(out)]) == 2
    assert "run_dir is required" in capsys.readouterr().err
    assert not out.exists()


def test_config_file_export_table_and_flags_override_it(tiny_run, tmp_path, capsys):
    config = tmp_path / "ftx.toml"
    config.write_text(f'[export]\nrun_dir = "{tiny_run}"\nname = "from-file"\nout = "{tmp_path / "out"}"\n'
                      'formats = ["onnx"]\nopset = 99\n')
    assert main(["export", "--config", str(config)]) == 2
    assert "opset must be between 7 and 21, got 99" in capsys.readouterr().err
    config.write_text(config.read_text().replace("opset = 99", "colour = 1"))
    assert main(["export", "--config", str(config), "--opset", "17"]) == 2
    assert "unknown export key(s) ['colour']" in capsys.readouterr().err


@pytest.mark.parametrize("signum, returncode", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_export_leaves_nothing_behind(tiny_run, tmp_path, signum, returncode):
    """Ctrl-C or `kill` while converting: the staged version directory is removed, no version appears."""
    cli = Path(sys.executable).with_name("ftx")
    process = subprocess.Popen([str(cli), "export", str(tiny_run), "--name", "tiny", "--out", str(tmp_path),
                                "--formats", "onnx", "--parity-images", "4"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               # test runners may ignore SIGINT, and children inherit that; a terminal does not
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    model_dir = tmp_path / "tiny"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        staged = list(model_dir.glob(".1.*.partial")) if model_dir.is_dir() else []
        if staged and (staged[0] / "saved_model.pb").exists():
            break
        time.sleep(0.2)
    assert process.poll() is None, "the export finished before it could be interrupted"
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == returncode, stderr
    assert list(model_dir.iterdir()) == []
