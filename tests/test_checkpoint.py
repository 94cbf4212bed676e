"""EpochCheckpoint: atomic per-epoch saves and restore of the newest complete one."""

from __future__ import annotations

import keras
import numpy as np

from training.checkpoint import EpochCheckpoint


def _model() -> keras.Model:
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, kernel_initializer="zeros")(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    return model


def test_saves_every_epoch_keeps_only_the_newest_and_resumes(tmp_path):
    x, y = np.ones((8, 3), np.float32), np.ones((8, 2), np.float32)
    first = _model()
    checkpoint = EpochCheckpoint(tmp_path / "ckpt", delete_on_success=False)
    first.fit(x, y, epochs=3, verbose=0, callbacks=[checkpoint])
    assert [epoch for epoch, _ in checkpoint.saved_epochs()] == [3]
    # a kill in the middle of a later save leaves only a temporary file behind: it is ignored
    (tmp_path / "ckpt" / ".partial-00004.weights.h5").write_bytes(b"half a file")
    resumed = _model()
    history = resumed.fit(x, y, epochs=5, verbose=0, callbacks=[EpochCheckpoint(tmp_path / "ckpt")])
    assert len(history.history["loss"]) == 2  # epochs 4 and 5 only
    assert not (tmp_path / "ckpt").exists()  # removed after a successful fit


def test_restored_weights_and_optimizer_state_equal_the_saved_ones(tmp_path):
    x, y = np.ones((8, 3), np.float32), np.ones((8, 2), np.float32)
    trained = _model()
    trained.fit(x, y, epochs=2, verbose=0, callbacks=[EpochCheckpoint(tmp_path / "c", delete_on_success=False)])
    restored = _model()
    callback = EpochCheckpoint(tmp_path / "c")
    callback.set_model(restored)
    callback.on_train_begin()
    np.testing.assert_array_equal(restored.get_layer(index=1).kernel.numpy(), trained.get_layer(index=1).kernel.numpy())
    assert int(restored.optimizer.iterations.numpy()) == int(trained.optimizer.iterations.numpy())
    assert restored._initial_epoch == 2


def _dropout_model() -> keras.Model:
    inputs = keras.Input((16,))
    dense = keras.layers.Dense(16, kernel_initializer=keras.initializers.GlorotUniform(1))(inputs)
    hidden = keras.layers.Dropout(0.5, seed=7)(dense)
    model = keras.Model(inputs, keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(2))(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def test_a_resumed_fit_draws_the_same_dropout_masks_as_an_uninterrupted_one(tmp_path):
    x = np.linspace(0, 1, 8 * 16, dtype=np.float32).reshape(8, 16)
    y = np.ones((8, 2), np.float32)
    keras.utils.set_random_seed(1)
    straight = _dropout_model()
    straight.fit(x, y, epochs=4, batch_size=4, shuffle=False, verbose=0)

    keras.utils.set_random_seed(1)
    first = _dropout_model()
    first.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0,
              callbacks=[EpochCheckpoint(tmp_path / "c", delete_on_success=False)])
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["epoch-00002.rng.npz", "epoch-00002.weights.h5"]
    keras.utils.set_random_seed(1)
    resumed = _dropout_model()  # a new process: its seed generators start from the beginning again
    resumed.fit(x, y, epochs=4, batch_size=4, shuffle=False, verbose=0, callbacks=[EpochCheckpoint(tmp_path / "c")])
    for ours, theirs in zip(resumed.get_weights(), straight.get_weights(), strict=True):
        assert np.all(np.isfinite(ours))
        np.testing.assert_array_equal(ours, theirs)


def test_without_the_random_state_file_the_weights_still_restore_with_a_warning(tmp_path, caplog):
    x, y = np.ones((8, 16), np.float32), np.ones((8, 2), np.float32)
    trained = _dropout_model()
    trained.fit(x, y, epochs=1, verbose=0, callbacks=[EpochCheckpoint(tmp_path / "c", delete_on_success=False)])
    (tmp_path / "c" / "epoch-00001.rng.npz").unlink()  # a checkpoint written before the state was saved
    restored = _dropout_model()
    callback = EpochCheckpoint(tmp_path / "c")
    callback.set_model(restored)
    with caplog.at_level("WARNING", logger="training.checkpoint"):
        callback.on_train_begin()
    np.testing.assert_array_equal(restored.get_weights()[0], trained.get_weights()[0])
    assert "no random-number state saved with epoch 1" in caplog.text
