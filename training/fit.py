"""Run one training phase: compile, fit (optionally on cached features), log.

Each phase keeps its epoch log and an atomic per-epoch checkpoint in the run's
partial directory, so a killed run resumes mid-phase with its full history.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.atomic import write_json
from training.checkpoint import EpochCheckpoint
from training.config import TrainConfig
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
    steps: int = 0  # optimizer steps this process ran (a resumed phase counts from its checkpoint)


def learning_rate_schedule(phase: Phase, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A number for a constant rate; for ``warmup-cosine`` a schedule on the optimizer's step count.

    The step count is saved with the optimizer in every epoch checkpoint, so a
    resumed phase continues the schedule where it stopped.
    """
    if phase.schedule == "constant":
        return phase.learning_rate
    if phase.schedule != "warmup-cosine":
        raise ValueError(f"unknown learning-rate schedule {phase.schedule!r}")
    total = phase.epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total // 2) if phase.epochs > 1 else 0
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else phase.learning_rate, decay_steps=max(total - warmup, 1),
        warmup_target=phase.learning_rate if warmup else None, warmup_steps=warmup)


def make_optimizer(name: str, learning_rate) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a diverged loss is written as null."""
    return float(value) if np.isfinite(value) else None


def read_epoch_log(path: Path) -> dict[int, dict[str, float | None]]:
    """The epoch log a phase left behind (empty if none)."""
    if not path.is_file():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def epoch_log_history(epochs: dict[int, dict[str, float | None]]) -> dict[str, list[float | None]]:
    """Per-key lists in epoch order; a key an epoch lacks is ``None``."""
    keys = sorted({k for row in epochs.values() for k in row})
    return {k: [epochs[e].get(k) for e in sorted(epochs)] for k in keys}


class EpochLog(keras.callbacks.Callback):
    """Writes every epoch's metrics and wall time to a JSON file (resume-safe history).

    ``epochs`` holds what an interrupted run already logged; the checkpoint
    restarts at the epoch after the last backup and rewrites any later entry.
    """

    def __init__(self, path: Path, num_train: int, epochs: dict[int, dict[str, float | None]]) -> None:
        super().__init__()
        self.path, self.num_train, self.epochs = path, num_train, dict(epochs)
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        seconds = time.perf_counter() - self._started
        row = {k: _finite_or_none(v) for k, v in (logs or {}).items() if np.ndim(v) == 0 and k != "learning_rate"}
        row.update(epoch_seconds=seconds, images_per_second=self.num_train / max(seconds, 1e-9))
        self.epochs[epoch] = row
        write_json(self.path, {str(k): v for k, v in sorted(self.epochs.items())})


class EpochSummary(keras.callbacks.Callback):
    """One log line every ``every`` epochs (and after the last): a head on cached features runs 100 epochs
    in seconds, and Keras' own line per epoch would bury the rest of the output."""

    def __init__(self, phase: str, epochs: int, every: int) -> None:
        super().__init__()
        self.phase, self.epochs, self.every = phase, epochs, max(1, every)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        done = epoch + 1
        if done % self.every and done != self.epochs:
            return
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items())
                          if np.ndim(v) == 0 and k != "learning_rate")
        log.info("phase %r epoch %d/%d: %s", self.phase, done, self.epochs, shown)


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
        total = len(classifier.base.layers)
        log.info("fine-tuning %s backbone layers (BatchNorm stays frozen)",
                 f"all {total}" if count >= total else f"the last {count} of {total}")
    else:
        classifier.base.trainable = True


def run_phase(classifier: Classifier, phase: Phase, data: PhaseData, config: TrainConfig, *, num_classes: int,
              class_weight: dict[int, float] | None, work_dir: Path, check_first_batch: bool) -> PhaseResult:
    """Train ``phase`` to completion; resumes from ``work_dir`` if a checkpoint is there."""
    _set_trainable(classifier, phase, config.fine_tune_layers, config.fine_tune_from)
    target = classifier.head if phase.use_feature_cache else classifier.model
    target.compile(
        optimizer=make_optimizer(config.optimizer, learning_rate_schedule(phase, data.steps_per_epoch)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    log_path = work_dir / f"history_{phase.name}.json"
    logged = read_epoch_log(log_path)
    if logged:
        log.info("resuming phase %r after epoch %d", phase.name, max(logged) + 1)
    epoch_log = EpochLog(log_path, data.num_train, logged)
    first_batch = FirstBatchLoss(num_classes)
    # The epoch log comes first: an epoch is logged before it is checkpointed, never the other way round.
    checkpoint = EpochCheckpoint(work_dir / f"backup_{phase.name}")
    callbacks: list[keras.callbacks.Callback] = [epoch_log, checkpoint]
    if check_first_batch and not logged:
        callbacks.append(first_batch)
    if config.early_stopping_patience and data.valid is None:
        log.warning("early stopping needs a validation split; there is none, so it is off")
    elif config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience,
                                                       restore_best_weights=True, verbose=1))

    def one_hot(x, y):
        return x, tf.one_hot(y, num_classes)

    verbose = 1 if sys.stderr.isatty() else 2
    if phase.use_feature_cache:  # seconds for all epochs: a line every fifth of the phase is enough
        verbose = 0
        callbacks.append(EpochSummary(phase.name, phase.epochs, every=phase.epochs // 5))
    with quiet_unknown_length():
        _fit(target, data, one_hot, phase.epochs, class_weight, callbacks, checkpoint.resume_epoch(), verbose)
    return PhaseResult(history=epoch_log_history(epoch_log.epochs), first_batch_warning=first_batch.warning,
                       steps=int(target.optimizer.iterations.numpy()))


@contextlib.contextmanager
def quiet_unknown_length() -> Iterator[None]:
    """Keras warns "ran out of data" on every dataset of unknown length; ours always are."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        yield


def _fit(target: keras.Model, data: PhaseData, one_hot, epochs: int, class_weight, callbacks,
         resume_epoch: int, verbose: int) -> None:
    # One repeated iterator for all epochs: the epoch order then depends only on the
    # shuffle seed, not on how often Keras re-creates iterators (which differs between
    # datasets of known and unknown length), so cached and uncached paths agree.
    # A resumed phase skips the batches its finished epochs drew, so it sees the
    # same shuffles as a run that was never stopped.
    train = data.train.map(one_hot).repeat()
    if resume_epoch:
        train = train.skip(resume_epoch * data.steps_per_epoch)
    target.fit(
        train,
        steps_per_epoch=data.steps_per_epoch,
        validation_data=data.valid.map(one_hot) if data.valid is not None else None,
        epochs=epochs,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=verbose,
    )
