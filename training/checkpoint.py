"""Resume after a kill: an atomic replacement for ``keras.callbacks.BackupAndRestore``.

Keras' callback overwrites ``latest.weights.h5`` and then a JSON file in
place; a kill during that write left a file h5py cannot open, and the resumed
run crashed (seen in ``tests/test_train.py``). Here each epoch's weights
(optimizer state included) go to a temporary file renamed to
``epoch-NNNNN.weights.h5``: the epoch number lives in the name, so the weights
and the epoch they belong to are published by one atomic rename.

Keras' weight files leave out the random-number state (dropout's seed
generators), so it is saved beside them, ``epoch-NNNNN.rng.npz``, before the
weights are renamed into place: a resumed run draws the same dropout masks as
one that was never stopped.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import keras
import numpy as np

log = logging.getLogger(__name__)

_NAME = re.compile(r"^epoch-(\d{5})\.weights\.h5$")
_RNG_STATE = "seed_generator_state"


def _rng_variables(model: keras.Model) -> list:
    """The seed-generator states Keras' save_weights skips, in a fixed order."""
    return [v for v in model.variables if v.path.split("/")[-1] == _RNG_STATE]


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves after every epoch, restores the newest complete save at the start of ``fit``."""

    def __init__(self, directory: Path, *, delete_on_success: bool = True) -> None:
        super().__init__()
        self.directory, self.delete_on_success = Path(directory), delete_on_success

    def resume_epoch(self) -> int:
        """How many epochs the newest complete save holds (0 when there is none)."""
        saved = self.saved_epochs()
        return saved[-1][0] if saved else 0

    def _rng_path(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:05d}.rng.npz"

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
        self._restore_rng(epoch)
        self.model._initial_epoch = epoch  # what Keras' own BackupAndRestore sets
        log.info("restored weights after epoch %d from %s", epoch, path)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        done = epoch + 1
        rng_tmp = self.directory / f".partial-{done:05d}.rng.npz"
        with open(rng_tmp, "wb") as out:  # a file object: np.savez would append ".npz" to a name
            np.savez(out, **{f"{i:04d}": np.asarray(v.numpy())
                             for i, v in enumerate(_rng_variables(self.model))})
        os.replace(rng_tmp, self._rng_path(done))
        tmp = self.directory / f".partial-{done:05d}.weights.h5"
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.directory / f"epoch-{done:05d}.weights.h5")  # the epoch is saved from here on
        for older, path in self.saved_epochs():
            if older < done:
                path.unlink(missing_ok=True)
                self._rng_path(older).unlink(missing_ok=True)

    def _restore_rng(self, epoch: int) -> None:
        path = self._rng_path(epoch)
        variables = _rng_variables(self.model)
        if not path.is_file():
            if variables:
                log.warning("no random-number state saved with epoch %d: dropout after the resume differs "
                            "from an uninterrupted run", epoch)
            return
        with np.load(path, allow_pickle=False) as saved:
            states = [saved[name] for name in sorted(saved.files)]
            # by position: the paths carry Keras' per-process name counters ("seed_generator_1")
            if [state.shape for state in states] != [tuple(v.shape) for v in variables]:
                log.warning("the random-number state saved with epoch %d is for other layers; not restored", epoch)
                return
            for state, variable in zip(states, variables):
                variable.assign(state)

    def on_train_end(self, logs=None) -> None:
        if self.delete_on_success:
            shutil.rmtree(self.directory, ignore_errors=True)
