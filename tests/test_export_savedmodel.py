"""The versioned serving SavedModel: layout, signatures, parity with the Keras model, warmup."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from export.run_dir import RunDirError, read_run
from export.samples import load_samples
from export.savedmodel import CLASSIFY_METHOD, WARMUP_IMAGES, load_keras_model, save_serving_savedmodel
from export.signatures import example_bytes
from export.versions import VersionError, choose_version


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    run = read_run(tiny_run)
    samples = load_samples(run, 8)
    root = tmp_path_factory.mktemp("exports")
    version_dir = save_serving_savedmodel(run, root / "tiny" / "1", "tiny", samples)
    return run, samples, root, version_dir


def test_versions_are_integers_never_overwritten_and_refused_numbers_not_reused(exported, tmp_path):
    root = exported[2]
    with pytest.raises(VersionError, match="version 1 of tiny already exists"):
        choose_version(root / "tiny", 1)
    assert choose_version(root / "tiny", None) == 2
    with pytest.raises(VersionError, match="--version must be a positive integer, got 0"):
        choose_version(root / "tiny", 0)
    model_dir = tmp_path / "m"
    assert choose_version(model_dir, None) == 1  # no directory yet
    for name in ("1", "2.not_blessed", ".3.abc.partial", "notes"):
        (model_dir / name).mkdir(parents=True)
    assert choose_version(model_dir, None) == 3  # a refused export keeps its number; temp dirs do not count
    with pytest.raises(VersionError, match="refused by the parity gate and kept at .*2.not_blessed"):
        choose_version(model_dir, 2)
    assert choose_version(model_dir, 7) == 7


def test_savedmodel_is_written_only_into_a_fresh_directory(exported):
    run, samples, root, _ = exported
    with pytest.raises(FileExistsError, match="is not empty"):
        save_serving_savedmodel(run, root / "tiny" / "1", "tiny", samples)


def test_saved_model_cli_lists_the_four_signatures(exported):
    version_dir = exported[3]
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run([str(cli), "show", "--dir", str(version_dir), "--all"], capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    for name in ("signature_def['serving_default']", "signature_def['serving_bytes']",
                 "signature_def['serving_examples']", "signature_def['classify']", "inputs['images']",
                 "inputs['images_bytes']", "inputs['examples']", "inputs['inputs']", "outputs['probabilities']",
                 "outputs['class_ids']", "outputs['class_names']", "outputs['classes']", "outputs['scores']",
                 CLASSIFY_METHOD):
        assert name in shown.stdout, name


def test_every_signature_reproduces_the_keras_model(exported):
    run, samples, _, version_dir = exported
    expected = load_keras_model(run).predict(samples.images, verbose=0)
    loaded = tf.saved_model.load(str(version_dir))
    tensor = loaded.signatures["serving_default"](images=tf.constant(samples.images))
    np.testing.assert_allclose(tensor["probabilities"].numpy(), expected, atol=1e-5)
    ids = expected.argmax(axis=1)
    np.testing.assert_array_equal(tensor["class_ids"].numpy(), ids)
    assert [n.decode() for n in tensor["class_names"].numpy()] == [run.class_names[i] for i in ids]
    encoded = tf.constant(list(samples.encoded))
    for name, key, value in (("serving_bytes", "images_bytes", encoded),
                             ("serving_examples", "examples", tf.constant([example_bytes(e) for e in samples.encoded]))):
        out = loaded.signatures[name](**{key: value})
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5, err_msg=name)
    classify = loaded.signatures["classify"](inputs=tf.constant([example_bytes(e) for e in samples.encoded]))
    np.testing.assert_allclose(classify["scores"].numpy(), expected, atol=1e-5)
    assert [c.decode() for c in classify["classes"].numpy()[0]] == list(run.class_names)


def test_bytes_signature_converts_grey_and_rgba(exported, tmp_path):
    from PIL import Image

    _, _, _, version_dir = exported
    loaded = tf.saved_model.load(str(version_dir))
    rgb = np.full((40, 40, 3), (200, 40, 40), np.uint8)
    files = {}
    for mode, image in (("RGB", Image.fromarray(rgb)), ("RGBA", Image.fromarray(rgb).convert("RGBA")),
                        ("L", Image.fromarray(rgb).convert("L").convert("RGB").convert("L"))):
        path = tmp_path / f"{mode}.png"
        image.save(path)
        files[mode] = path.read_bytes()
    out = loaded.signatures["serving_bytes"](images_bytes=tf.constant([files["RGB"], files["RGBA"], files["L"]]))
    probabilities = out["probabilities"].numpy()
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=1e-6)  # alpha dropped
    assert probabilities.shape == (3, 3)


def test_warmup_records_cover_every_signature(exported):
    _, samples, _, version_dir = exported
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    count = min(WARMUP_IMAGES, len(samples.images))
    assert count == 4 and len(logs) == 4 * count  # four signatures, a few real images each
    signatures = {log.predict_log.request.model_spec.signature_name for log in logs if log.HasField("predict_log")}
    assert signatures == {"serving_default", "serving_bytes", "serving_examples"}
    assert sum(log.HasField("classify_log") for log in logs) == count


def test_incomplete_runs_are_refused(tiny_run, tmp_path):
    with pytest.raises(RunDirError, match="unfinished training run"):
        read_run(tmp_path / "x.partial")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "labels.txt").unlink()
    with pytest.raises(RunDirError, match="missing labels.txt"):
        read_run(broken)
