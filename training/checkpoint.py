"""Resume after a kill: an atomic replacement for ``keras.callbacks.BackupAndRestore``.

Keras' callback overwrites ``latest.weights.h5`` and then a JSON file in
place; a kill during that write left a file h5py cannot open, and the resumed
run crashed (seen in ``tests/test_train.py``). Here each epoch's weights
(optimizer state included) go to a temporary file renamed to
``epoch-NNNNN.weights.h5``: the epoch number lives in the name, so the weights
and the epoch they belong to are published by one atomic rename.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import keras

log = logging.getLogger(__name__)

_NAME = re.compile(r"^epoch-(\d{5})\.weights\.h5$")


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves after every epoch, restores the newest complete save at the start of ``fit``."""

    def __init__(self, directory: Path, *, delete_on_success: bool = True) -> None:
        super().__init__()
        self.directory, self.delete_on_success = Path(directory), delete_on_success

    def saved_epochs(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = ((_NAME.match(p.name), p) for p in self.directory.iterdir())
        return sorted((int(m.group(1)), p) for m, p in found if m)

    def on_train_begin(self, logs=None) -> None:
        saved = self.saved_epochs()
        if not saved:
            return
        epoch, path = saved[-1]
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(path)
        self.model._initial_epoch = epoch  # what Keras' own BackupAndRestore sets
        log.info("restored weights after epoch %d from %s", epoch, path)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        done = epoch + 1
        tmp = self.directory / f".partial-{done:05d}.weights.h5"
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.directory / f"epoch-{done:05d}.weights.h5")
        for older, path in self.saved_epochs():
            if older < done:
                path.unlink(missing_ok=True)

    def on_train_end(self, logs=None) -> None:
        if self.delete_on_success:
            shutil.rmtree(self.directory, ignore_errors=True)
