"""``train(config)`` end to end on a tiny real-image dataset with the real ported backbone."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.config import ConfigError, TrainConfig
from training.data import DataError
from training.model import build_classifier, unfreeze_last
from training.train import RunLockedError, _class_weights, train

# short phases: the default recipe's 100 + 12 epochs are for real data, not for a 3-class toy
SMALL = {"backbone": "mobilenet_v2", "image_size": 32, "batch_size": 8, "seed": 7, "epochs": 3, "fine_tune_epochs": 2}


def small_config(data: Path, out: Path, **overrides) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), **{**SMALL, **overrides})


def test_two_phase_writes_a_complete_run_directory(tiny_dataset, tmp_path):
    result = train(small_config(tiny_dataset, tmp_path / "run", strategy="two-phase", epochs=2, fine_tune_epochs=2))
    run = result.run_dir
    assert run == tmp_path / "run" and not (tmp_path / "run.partial").exists()
    for name in ("model.keras", "saved_model/saved_model.pb", "labels.txt", "config.json", "history.json",
                 "metrics.json", "plots/history.png", "plots/confusion_test.png", "plots/predictions_test.png",
                 "plots/worst_test.png", "plots/confusion_validation.png"):
        assert (run / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(("backup_", "done_", "history_"))]
    assert (run / "labels.txt").read_text().split() == ["blue", "green", "red"]  # folder names, sorted
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 4 and len(history["val_loss"]) == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fine_tune_start_epoch"] == 2
    assert metrics["test"]["count"] == 12 and metrics["validation"]["count"] == 6
    assert metrics["dataset"] == {"source": str(tiny_dataset), "layout": "split-folders", "classes": 3, "train": 18,
                                  "validation": 6, "test": 12, "skipped": 0, "skipped_by_reason": {}}
    saved = json.loads((run / "config.json").read_text())
    assert saved["strategy"] == "two-phase"
    # the resolved config: defaults filled in with what the run used
    assert saved["learning_rate"] == 1e-3 and saved["image_size"] == 32 and saved["out"] == str(run)

    # the SavedModel and model.keras both reproduce the trained model on raw 0-255 pixels
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    reloaded = keras.models.load_model(run / "model.keras")
    expected = reloaded.predict(images, verbose=0)
    serving = tf.saved_model.load(str(run / "saved_model")).signatures["serving_default"]
    served = list(serving(tf.constant(images)).values())[0].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-5)


def test_cached_feature_extraction_gives_the_same_model(tiny_dataset, tmp_path):
    kwargs = dict(strategy="feature-extraction", epochs=3, dropout=0.0, max_test_images=6)
    cached = train(small_config(tiny_dataset, tmp_path / "cached", cache_features=True, **kwargs))
    uncached = train(small_config(tiny_dataset, tmp_path / "uncached", cache_features=False, **kwargs))
    np.testing.assert_allclose(cached.history["loss"], uncached.history["loss"], rtol=1e-4)
    images = np.random.default_rng(1).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    a = keras.models.load_model(cached.run_dir / "model.keras").predict(images, verbose=0)
    b = keras.models.load_model(uncached.run_dir / "model.keras").predict(images, verbose=0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert not np.allclose(cached.history["loss"][0], cached.history["loss"][-1])  # it did train


def _batchnorm_stats(model: keras.Model) -> list[np.ndarray]:
    return [w.numpy().copy() for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
            for w in (layer.moving_mean, layer.moving_variance)]


def test_fine_tune_keeps_batchnorm_in_inference_mode(tiny_dataset, tmp_path):
    result = train(small_config(tiny_dataset, tmp_path / "ft", strategy="fine-tune", epochs=2, fine_tune_layers=40,
                                learning_rate=1e-3))
    trained = keras.models.load_model(result.run_dir / "model.keras").get_layer("mobilenet_v2")
    fresh = build_classifier("mobilenet_v2", 3, image_size=32).base
    for after, before in zip(_batchnorm_stats(trained), _batchnorm_stats(fresh), strict=True):
        np.testing.assert_array_equal(after, before)
    # but the unfrozen convolutions did move
    last_conv = [l for l in trained.layers if isinstance(l, keras.layers.Conv2D)][-1].name
    assert not np.allclose(trained.get_layer(last_conv).kernel.numpy(), fresh.get_layer(last_conv).kernel.numpy())


def test_lp_ft_converges_the_head_on_cached_features_then_tunes_the_whole_backbone(tiny_dataset, tmp_path, caplog):
    with caplog.at_level("INFO"):
        result = train(small_config(tiny_dataset, tmp_path / "lpft"))
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert (saved["strategy"], saved["fine_tune_layers"], saved["optimizer"], saved["label_smoothing"]) == \
        ("lp-ft", 0, "adamw", 0.1)
    assert saved["augment"] == {"flip": False, "rotation": 0.05, "zoom": 0.1, "contrast": 0.0, "brightness": 0.0}
    assert "phase 'head': 3 epochs at learning rate 0.001 on cached backbone features" in caplog.text
    assert "phase 'fine-tune': 2 epochs at peak learning rate 0.0001 (one epoch of warmup, then cosine decay)" \
        in caplog.text
    assert result.metrics["fine_tune_start_epoch"] == 3 and len(result.history["loss"]) == 5
    trained = keras.models.load_model(result.run_dir / "model.keras").get_layer("mobilenet_v2")
    fresh = build_classifier("mobilenet_v2", 3, image_size=32).base
    assert f"fine-tuning all {len(fresh.layers)} backbone layers (BatchNorm stays frozen)" in caplog.text
    first_conv = [l for l in trained.layers if isinstance(l, keras.layers.Conv2D)][0].name
    assert not np.allclose(trained.get_layer(first_conv).kernel.numpy(), fresh.get_layer(first_conv).kernel.numpy())
    for after, before in zip(_batchnorm_stats(trained), _batchnorm_stats(fresh), strict=True):
        np.testing.assert_array_equal(after, before)


def test_scratch_trains_batchnorm_from_random_init(tiny_dataset, tmp_path):
    result = train(small_config(tiny_dataset, tmp_path / "scratch", strategy="scratch", epochs=1))
    base = keras.models.load_model(result.run_dir / "model.keras").get_layer("mobilenet_v2")
    means = [l.moving_mean.numpy() for l in base.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert any(np.abs(m).max() > 0 for m in means)  # moving means left their zero init


def test_unfreeze_last_counts_and_names():
    base = build_classifier("mobilenet_v2", 3, image_size=32, weights="none").base
    assert unfreeze_last(base, 10) == 10
    assert [l.trainable for l in base.layers[-10:]] == [
        not isinstance(l, keras.layers.BatchNormalization) for l in base.layers[-10:]]
    assert any(l.trainable for l in base.layers[-10:])
    assert not any(l.trainable for l in base.layers[:-10])
    assert unfreeze_last(base, from_layer="features_18_0") == len(base.layers) - [l.name for l in base.layers].index(
        "features_18_0")
    with pytest.raises(ValueError, match="--fine-tune-from 'features_99': no such layer"):
        unfreeze_last(base, from_layer="features_99")


def test_balanced_class_weights():
    weights = _class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    assert weights == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
    assert _class_weights(np.array([0, 1]), 2, "none") is None


def test_refuses_existing_run_and_replaces_a_partial_with_other_options(tiny_dataset, tmp_path, caplog):
    (tmp_path / "done").mkdir()
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        train(small_config(tiny_dataset, tmp_path / "done"))
    partial = tmp_path / "r.partial"
    partial.mkdir()
    resolved = dataclasses.replace(small_config(tiny_dataset, tmp_path / "r").resolved(), out=str(tmp_path / "r"))
    (partial / "config.json").write_text(json.dumps({**resolved.to_dict(), "epochs": 99}))
    (partial / "stale-checkpoint.weights.h5").write_bytes(b"from the other run")
    with caplog.at_level("WARNING", logger="training.train"):
        result = train(small_config(tiny_dataset, tmp_path / "r"))
    assert f"removed the interrupted run in {partial} (other options: epochs); training from the start" in \
        caplog.text
    assert result.run_dir == tmp_path / "r" and not partial.exists()
    assert not (result.run_dir / "stale-checkpoint.weights.h5").exists()


def test_a_run_being_trained_elsewhere_is_refused(tiny_dataset, tmp_path):
    import fcntl

    partial = tmp_path / "busy.partial"
    partial.mkdir()
    with open(partial / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RunLockedError, match="being trained by another process"):
            train(small_config(tiny_dataset, tmp_path / "busy"))


def test_bad_fine_tune_from_fails_before_training(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match="--fine-tune-from 'block_99': no such layer in mobilenet_v2"):
        train(small_config(tiny_dataset, tmp_path / "ftf", strategy="two-phase", fine_tune_from="block_99"))
    assert not (tmp_path / "ftf.partial").exists()


def test_strict_mode_fails_before_training_and_writes_nothing(tiny_dataset, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    (data / "train" / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="broken.png"):
        train(small_config(data, tmp_path / "strict", strict=True))
    assert not (tmp_path / "strict").exists() and not (tmp_path / "strict.partial").exists()
    result = train(small_config(data, tmp_path / "lenient", strategy="feature-extraction", epochs=1))
    assert result.metrics["skipped_count"] == 1
    assert result.metrics["skipped_files"][0]["path"].endswith("broken.png")


def test_killed_run_resumes_where_it_stopped(tiny_dataset, tmp_path):
    out = tmp_path / "resume"
    command = [sys.executable, "-m", "training.cli", "train", "--data", str(tiny_dataset), "--out", str(out),
               "--image-size", "96", "--batch-size", "4", "--epochs", "40", "--strategy", "fine-tune",
               "--max-test-images", "3"]
    epoch_file = out.parent / "resume.partial" / "history_fine-tune.json"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if epoch_file.is_file() and len(json.loads(epoch_file.read_text() or "{}")) >= 2:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert not out.exists(), "a killed run must not look complete"
    before = json.loads(epoch_file.read_text())
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming the interrupted run" in finished.stderr
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 40
    done = sorted(int(k) for k in before)
    # epochs finished before the kill were not trained again: their timings are the first process's
    assert history["epoch_seconds"][: len(done) - 1] == [before[str(e)]["epoch_seconds"] for e in done[:-1]]


def test_mirrored_strategy_trains_on_one_cpu_replica(tiny_dataset, tmp_path):
    result = train(small_config(tiny_dataset, tmp_path / "mirrored", strategy="feature-extraction", epochs=1,
                                distribute="mirrored", max_test_images=3))
    assert (result.run_dir / "saved_model" / "saved_model.pb").is_file()


def test_multi_worker_without_tf_config_is_a_config_error(monkeypatch):
    from training.distribute import distribution_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        distribution_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        distribution_strategy("multi-worker")


def test_mixed_precision_is_refused_without_a_gpu(caplog):
    from training.distribute import mixed_precision_policy

    with mixed_precision_policy(True) as policy:
        assert policy == "float32"
        assert keras.config.dtype_policy().name == "float32"
    assert "needs a GPU" in caplog.text


def test_a_cached_head_phase_logs_a_line_every_fifth_of_its_epochs(caplog):
    from training.fit import EpochSummary

    summary = EpochSummary("head", 100, every=20)
    with caplog.at_level("INFO", logger="training.fit"):
        for epoch in range(100):
            summary.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5, "learning_rate": 1e-3})
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[0] for line in lines] == [f"phase 'head' epoch {e}/100" for e in (20, 40, 60, 80, 100)]
    assert lines[-1] == "phase 'head' epoch 100/100: accuracy 0.5000, loss 0.0100"
