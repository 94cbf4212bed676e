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
