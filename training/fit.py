"""Run one training phase: compile, fit (optionally on cached features), log.

Each phase keeps its epoch log and a BackupAndRestore checkpoint in the run's
partial directory, so a killed run resumes mid-phase with its full history.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.atomic import write_json
from training.metrics import first_batch_loss_check
from training.model import Classifier, freeze_base, unfreeze_last
from training.strategies import Phase

log = logging.getLogger(__name__)


@dataclass
class PhaseData:
    """What a phase trains on: a dataset factory and the labels it needs to know about."""

    train: tf.data.Dataset  # (images or features, int labels), batched, shuffled
    valid: tf.data.Dataset | None
    num_train: int
    batch_size: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_train // self.batch_size)


@dataclass
class PhaseResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    first_batch_warning: str | None = None


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


class EpochLog(keras.callbacks.Callback):
    """Writes every epoch's metrics and wall time to a JSON file (resume-safe history)."""

    def __init__(self, path: Path, num_train: int) -> None:
        super().__init__()
        self.path, self.num_train = path, num_train
        self.epochs: dict[int, dict[str, float]] = {}
        if path.is_file():
            self.epochs = {int(k): v for k, v in json.loads(path.read_text()).items()}
            log.info("resuming %s after epoch %d", path.stem.removeprefix("history_"), max(self.epochs) + 1)
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        seconds = time.perf_counter() - self._started
        row = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v) or np.ndim(v) == 0}
        row.update(epoch_seconds=seconds, images_per_second=self.num_train / max(seconds, 1e-9))
        row.pop("learning_rate", None)
        self.epochs[epoch] = row
        write_json(self.path, {str(k): v for k, v in sorted(self.epochs.items())})

    def history(self) -> dict[str, list[float]]:
        keys = sorted({k for row in self.epochs.values() for k in row})
        return {k: [self.epochs[e].get(k, float("nan")) for e in sorted(self.epochs)] for k in keys}


class FirstBatchLoss(keras.callbacks.Callback):
    """Warns when the very first loss is far from ln(C): labels, preprocessing or head are off."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes, self.warning, self._seen = num_classes, None, False

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self._seen or not logs or "loss" not in logs:
            return
        self._seen = True
        self.warning = first_batch_loss_check(float(logs["loss"]), self.num_classes)
        if self.warning:
            log.warning(self.warning)


def _set_trainable(classifier: Classifier, phase: Phase, fine_tune_layers: int, fine_tune_from: str | None) -> None:
    if phase.base == "frozen":
        freeze_base(classifier.base)
    elif phase.base == "last-layers":
        count = unfreeze_last(classifier.base, fine_tune_layers, fine_tune_from)
        log.info("fine-tuning the last %d of %d backbone layers", count, len(classifier.base.layers))
    else:
        classifier.base.trainable = True


def run_phase(classifier: Classifier, phase: Phase, data: PhaseData, *, num_classes: int, optimizer: str,
              label_smoothing: float, class_weight: dict[int, float] | None, early_stopping_patience: int,
              fine_tune_layers: int, fine_tune_from: str | None, work_dir: Path,
              check_first_batch: bool) -> PhaseResult:
    """Train ``phase`` to completion; resumes from ``work_dir`` if a checkpoint is there."""
    _set_trainable(classifier, phase, fine_tune_layers, fine_tune_from)
    target = classifier.head if phase.use_feature_cache else classifier.model
    target.compile(
        optimizer=make_optimizer(optimizer, phase.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    epoch_log = EpochLog(work_dir / f"history_{phase.name}.json", data.num_train)
    first_batch = FirstBatchLoss(num_classes)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.BackupAndRestore(str(work_dir / f"backup_{phase.name}")), epoch_log]
    if check_first_batch and not epoch_log.epochs:
        callbacks.append(first_batch)
    if early_stopping_patience and data.valid is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=early_stopping_patience,
                                                       restore_best_weights=True, verbose=1))

    def one_hot(x, y):
        return x, tf.one_hot(y, num_classes)

    with warnings.catch_warnings():  # Keras warns "ran out of data" on datasets of unknown length
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        _fit(target, data, one_hot, phase.epochs, class_weight, callbacks)
    return PhaseResult(history=epoch_log.history(), first_batch_warning=first_batch.warning)


def _fit(target: keras.Model, data: PhaseData, one_hot, epochs: int, class_weight, callbacks) -> None:
    # One repeated iterator for all epochs: the epoch order then depends only on the
    # shuffle seed, not on how often Keras re-creates iterators (which differs between
    # datasets of known and unknown length), so cached and uncached paths agree.
    target.fit(
        data.train.map(one_hot).repeat(),
        steps_per_epoch=data.steps_per_epoch,
        validation_data=data.valid.map(one_hot) if data.valid is not None else None,
        epochs=epochs,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=1 if sys.stderr.isatty() else 2,
    )
