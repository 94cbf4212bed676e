"""``train(config) -> RunResult``: a folder of images in, a run directory out.

The run is built in ``RUN_DIR.partial`` and renamed to ``RUN_DIR`` only when
every artifact is written, so an interrupted run never looks complete; run
again with the same options (and the same ``--out``) and it resumes from the
last finished epoch.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from training import data as data_lib
from training.atomic import write_json, write_text
from training.config import ConfigError, TrainConfig
from training.distribute import distribution_strategy, is_chief, mixed_precision_policy, worker_task
from training.evaluate import evaluate_split
from training.fit import epoch_log_history, read_epoch_log, run_phase
from training.interrupts import InterruptWatch
from training.model import Classifier, build_classifier, check_fine_tune_from
from training.phase_inputs import phase_data
from training.plots import plot_history
from training.strategies import plan_phases, weights_for

log = logging.getLogger(__name__)


class RunLockedError(RuntimeError):
    """Another process is training into the same run directory."""


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    history: dict[str, list[float | None]]
    seconds: float


def default_run_dir(config: TrainConfig) -> Path:
    return Path("runs") / f"{config.backbone}-{config.strategy}-{time.strftime('%Y%m%d-%H%M%S')}"


def _prepare_partial(run_dir: Path, config: TrainConfig) -> tuple[Path, int]:
    """Return the locked working directory, resuming an interrupted run with the same config."""
    partial = run_dir.parent / f"{run_dir.name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    lock = os.open(partial / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise RunLockedError(f"{partial} is being trained by another process") from None
    saved = partial / "config.json"
    current = json.loads(json.dumps(config.to_dict()))
    if saved.is_file():
        try:
            previous = json.loads(saved.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = None
        if previous == current:
            log.info("resuming the interrupted run in %s", partial)
        else:  # another run's leftovers (its owner is dead: the lock is ours): start afresh, and say so
            changed = "unreadable config.json" if not isinstance(previous, dict) else "other options: " + ", ".join(
                sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k)))
            log.warning("removed the interrupted run in %s (%s); training from the start", partial, changed)
            for entry in partial.iterdir():
                if entry.name != ".lock":
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    write_json(saved, current)
    return partial, lock


def _class_weights(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    if mode != "balanced":
        return None
    counts = np.bincount(labels, minlength=num_classes)
    return {c: float(len(labels) / (num_classes * counts[c])) if counts[c] else 0.0 for c in range(num_classes)}


def _train_phases(classifier: Classifier, config: TrainConfig, splits, work: Path) -> tuple[dict, list, int | None,
                                                                                         int]:
    """Run every phase (skipping finished ones); return history, warnings, the fine-tune start epoch and steps."""
    history: dict[str, list[float | None]] = {}
    notes: list[str] = []
    steps = 0
    fine_tune_start = None
    feature_cache: dict = {}
    labels = np.array([r.label for r in splits.train])
    class_weight = _class_weights(labels, len(splits.class_names), config.class_weight)
    for index, phase in enumerate(plan_phases(config)):
        done = work / f"done_{phase.name}.weights.h5"
        if done.is_file():
            classifier.model.load_weights(done)
            phase_history = epoch_log_history(read_epoch_log(work / f"history_{phase.name}.json"))
            log.info("phase %r already finished; loaded its weights", phase.name)
        else:
            data = phase_data(classifier, splits, config, phase.use_feature_cache, feature_cache)
            log.info("phase %r: %d epochs at %slearning rate %g%s", phase.name, phase.epochs,
                     "peak " if phase.schedule == "warmup-cosine" else "", phase.learning_rate,
                     " on cached backbone features" if phase.use_feature_cache
                     else " (one epoch of warmup, then cosine decay)" if phase.schedule == "warmup-cosine" else "")
            result = run_phase(classifier, phase, data, config, num_classes=len(splits.class_names),
                               class_weight=class_weight, work_dir=work, check_first_batch=index == 0)
            classifier.model.save_weights(done)
            phase_history = result.history
            steps += result.steps
            if result.first_batch_warning:
                notes.append(result.first_batch_warning)
        if phase.name == "fine-tune" and history:
            fine_tune_start = len(history.get("loss", []))
        for key, values in phase_history.items():
            history.setdefault(key, []).extend(values)
    return history, notes, fine_tune_start, steps


def _local_copy(classifier: Classifier, config: TrainConfig, num_classes: int) -> Classifier:
    """The trained model rebuilt outside the distribution strategy, for the chief to evaluate and save alone."""
    local = build_classifier(config.backbone, num_classes, image_size=config.image_size, weights="none",
                             dropout=config.dropout, dense_units=config.dense_units, seed=config.seed)
    local.model.set_weights(classifier.model.get_weights())
    return local


def _evaluate(classifier: Classifier, splits, config: TrainConfig, work: Path) -> tuple[dict, list]:
    results: dict = {}
    dropped: list = []
    for split_name, records in (("validation", splits.valid), ("test", splits.test)):
        if not records:
            results[split_name] = None
            continue
        results[split_name], lost = evaluate_split(classifier.model, split_name, list(records), splits.class_names,
                                                   config, work / "plots")
        dropped += lost
    return results, dropped


def _write_model(classifier: Classifier, work: Path, class_names: tuple[str, ...]) -> None:
    classifier.model.save(work / "model.keras")
    classifier.model.export(str(work / "saved_model"), format="tf_saved_model", verbose=False)
    write_text(work / "labels.txt", "\n".join(class_names) + "\n")


def _publish(work: Path, run_dir: Path) -> None:
    """Rename the finished run into place, then drop the resume scaffolding.

    Renaming first means a kill in between leaves a finished run with some
    extra files, never a lost one.
    """
    os.replace(work, run_dir)
    for path in run_dir.iterdir():
        if path.name.startswith(("backup_", "done_", "history_", ".lock")):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def train(config: TrainConfig) -> RunResult:
    """Train per ``config`` and write the run directory; see the module docstring."""
    with InterruptWatch() as watch:
        return _train(config, watch)


def _train(config: TrainConfig, watch: InterruptWatch) -> RunResult:
    config = config.validate().resolved()
    started = time.perf_counter()
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    config = dataclasses.replace(config, out=str(run_dir))
    if run_dir.exists():
        raise FileExistsError(f"{run_dir} already holds a finished run; choose another --out")
    strategy = distribution_strategy(config.distribute)  # before any other TensorFlow work (multi-worker)
    splits = data_lib.load_splits(config.data, validation_split=config.validation_split, seed=config.seed,
                                  strict=config.strict, test_csv=Path(config.test_csv) if config.test_csv else None)
    if len(splits.class_names) < 2:
        raise data_lib.DataError(f"{splits.source}: found {len(splits.class_names)} class folder(s); "
                                 "a classifier needs at least 2")
    if config.roi_crop and not any(r.roi for r in splits.train):
        log.warning("--roi-crop: the training images have no Roi boxes (only GT-*.csv tables in class folders "
                    "provide them), so only images that have one are cropped")
    keras.utils.set_random_seed(config.seed)
    with mixed_precision_policy(config.mixed_precision), strategy.scope():
        classifier = build_classifier(config.backbone, len(splits.class_names), image_size=config.image_size,
                                      weights=weights_for(config), dropout=config.dropout,
                                      dense_units=config.dense_units, seed=config.seed)
        if config.strategy in ("fine-tune", "two-phase", "lp-ft"):
            check_fine_tune_from(classifier.base, config.fine_tune_from)
        chief = is_chief(strategy)
        # only the chief writes the run; other workers train into a scratch directory
        work, lock = (_prepare_partial(run_dir, config) if chief
                      else (Path(tempfile.mkdtemp(prefix="ftx-worker-")), -1))
        try:
            history, notes, fine_tune_start, steps = _train_phases(classifier, config, splits, work)
        finally:
            if lock >= 0:
                os.close(lock)
    train_seconds = time.perf_counter() - started
    task = worker_task(strategy)
    if task:
        log.info("%s ran %d training steps in %.1f s%s", task, steps, train_seconds,
                 "" if chief else f"; the chief writes {run_dir}")
    if not chief:
        shutil.rmtree(work, ignore_errors=True)
        return RunResult(run_dir=run_dir, metrics={}, history=history, seconds=train_seconds)
    if task:  # the other workers have left: evaluating or saving the distributed model would wait for them
        classifier = _local_copy(classifier, config, len(splits.class_names))
    evaluation, dropped = _evaluate(classifier, splits, config, work)
    plot_history(history, work / "plots" / "history.png", fine_tune_start_epoch=fine_tune_start)
    _write_model(classifier, work, splits.class_names)
    skipped = [{"path": s.shown_path, "reason": str(s.reason), "detail": s.detail} for s in splits.skipped]
    skipped += [{"path": str(r.path), "reason": "failed to decode during evaluation", "detail": ""} for r in dropped]
    metrics = {
        **evaluation,
        "dataset": splits.summary(),
        "skipped_files": skipped,
        "skipped_count": len(skipped),
        "warnings": notes,
        "fine_tune_start_epoch": fine_tune_start,
        "image_size": config.image_size,
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(work / "history.json", history)
    write_json(work / "metrics.json", metrics)
    watch.raise_if_received()  # an interrupt whose exception something swallowed must not publish the run
    _publish(work, run_dir)
    log.info("run written to %s", run_dir)
    return RunResult(run_dir=run_dir, metrics=metrics, history=history, seconds=metrics["total_seconds"])
