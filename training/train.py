"""``train(config) -> RunResult``: a folder of images in, a run directory out.

The run is built in ``RUN_DIR.partial`` and renamed to ``RUN_DIR`` only when
every artifact is written, so an interrupted run never looks complete; run
again with the same options and it resumes from the last finished epoch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from training import data as data_lib
from training.atomic import write_json, write_text
from training.backbones import get_backbone
from training.config import ConfigError, TrainConfig
from training.datasets import phase_data, record_images, split_dataset
from training.distribute import distribution_strategy, mixed_precision_policy
from training.evaluate import predict, split_metrics, write_split_plots
from training.fit import PhaseData, run_phase
from training.model import Classifier, build_classifier
from training.plots import plot_history
from training.strategies import plan_phases, weights_for

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    history: dict[str, list[float]]
    seconds: float


def default_run_dir(config: TrainConfig) -> Path:
    return Path("runs") / f"{config.backbone}-{config.strategy}-{time.strftime('%Y%m%d-%H%M%S')}"


def _prepare_partial(run_dir: Path, config: TrainConfig) -> Path:
    """Return the working directory, resuming an interrupted run with the same config."""
    if run_dir.exists():
        raise FileExistsError(f"{run_dir} already holds a finished run; choose another --out")
    partial = run_dir.parent / f"{run_dir.name}.partial"
    saved = partial / "config.json"
    if saved.is_file():
        previous = json.loads(saved.read_text())
        if previous != json.loads(json.dumps(config.to_dict())):
            changed = sorted(k for k in previous if previous.get(k) != config.to_dict().get(k))
            raise ConfigError(f"{partial} holds an interrupted run with other options ({', '.join(changed)}); "
                              "rerun with the same options to resume it, or delete that directory")
        log.info("resuming the interrupted run in %s", partial)
    partial.mkdir(parents=True, exist_ok=True)
    write_json(saved, config.to_dict())
    return partial


def _class_weights(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    if mode != "balanced":
        return None
    counts = np.bincount(labels, minlength=num_classes)
    return {c: float(len(labels) / (num_classes * counts[c])) if counts[c] else 0.0 for c in range(num_classes)}


def _train_phases(classifier: Classifier, config: TrainConfig, splits, image_size: int, work: Path) -> tuple[dict, list]:
    history: dict[str, list[float]] = {}
    notes: list[str] = []
    feature_cache: dict[str, PhaseData] = {}
    labels = np.array([r.label for r in splits.train])
    class_weight = _class_weights(labels, len(splits.class_names), config.class_weight)
    for index, phase in enumerate(plan_phases(config)):
        done = work / f"done_{phase.name}.weights.h5"
        if done.is_file():
            classifier.model.load_weights(done)
            phase_history = json.loads((work / f"history_{phase.name}.json").read_text())
            result_history = {k: [row.get(k) for row in phase_history.values()]
                              for k in sorted({k for row in phase_history.values() for k in row})}
            log.info("phase %r already finished; loaded its weights", phase.name)
        else:
            data = phase_data(classifier, splits, image_size, config, phase.use_feature_cache, feature_cache)
            log.info("phase %r: %d epochs at learning rate %g%s", phase.name, phase.epochs, phase.learning_rate,
                     " on cached backbone features" if phase.use_feature_cache else "")
            result = run_phase(classifier, phase, data, num_classes=len(splits.class_names),
                               optimizer=config.optimizer, label_smoothing=config.label_smoothing,
                               class_weight=class_weight, early_stopping_patience=config.early_stopping_patience,
                               fine_tune_layers=config.fine_tune_layers, fine_tune_from=config.fine_tune_from,
                               work_dir=work, check_first_batch=index == 0)
            classifier.model.save_weights(done)
            result_history = result.history
            if result.first_batch_warning:
                notes.append(result.first_batch_warning)
        if phase.name == "fine-tune" and history:
            history["fine_tune_start_epoch"] = [float(len(history.get("loss", [])))]
        for key, values in result_history.items():
            history.setdefault(key, []).extend(values)
    return history, notes


def _evaluate(classifier: Classifier, splits, image_size: int, config: TrainConfig, work: Path) -> dict:
    results: dict = {}
    for split_name, records in (("validation", splits.valid), ("test", splits.test)):
        if not records:
            results[split_name] = None
            continue
        if split_name == "test" and config.max_test_images and len(records) > config.max_test_images:
            keep = np.random.default_rng(config.seed).choice(len(records), config.max_test_images, replace=False)
            records = [records[i] for i in np.sort(keep)]
        log.info("evaluating on the %s split (%d images)", split_name, len(records))
        labels = np.array([r.label for r in records])
        predictions = predict(classifier.model, split_dataset(records, image_size, config.batch_size, config.roi_crop), labels)
        metrics = split_metrics(predictions, splits.class_names)
        write_split_plots(work / "plots", split_name, predictions, splits.class_names, metrics["confusion_matrix"],
                          lambda idx, recs=records: record_images([recs[i] for i in idx], image_size, config.roi_crop),
                          seed=config.seed)
        results[split_name] = metrics
    return results


def _write_model(classifier: Classifier, work: Path, class_names: list[str]) -> None:
    classifier.model.save(work / "model.keras")
    classifier.model.export(str(work / "saved_model"), format="tf_saved_model", verbose=False)
    write_text(work / "labels.txt", "\n".join(class_names) + "\n")


def _finish(work: Path, run_dir: Path) -> None:
    """Drop resume scaffolding and publish the run with one rename."""
    for path in work.iterdir():
        if path.name.startswith(("backup_", "done_", "history_")):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(work, run_dir)


def train(config: TrainConfig) -> RunResult:
    """Train per ``config`` and write the run directory; see the module docstring."""
    config.validate()
    started = time.perf_counter()
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    if run_dir.exists():
        raise FileExistsError(f"{run_dir} already holds a finished run; choose another --out")
    splits = data_lib.load_splits(config.data, validation_split=config.validation_split, seed=config.seed,
                                  strict=config.strict, test_csv=Path(config.test_csv) if config.test_csv else None)
    work = _prepare_partial(run_dir, config)  # only once the data is known to be usable
    keras.utils.set_random_seed(config.seed)
    image_size = config.image_size or get_backbone(config.backbone).default_image_size
    with mixed_precision_policy(config.mixed_precision), distribution_strategy(config.distribute).scope():
        classifier = build_classifier(config.backbone, len(splits.class_names), image_size=image_size,
                                      weights=weights_for(config), dropout=config.dropout,
                                      dense_units=config.dense_units, seed=config.seed)
        history, notes = _train_phases(classifier, config, splits, image_size, work)
    train_seconds = time.perf_counter() - started
    evaluation = _evaluate(classifier, splits, image_size, config, work)
    fine_tune_start = history.pop("fine_tune_start_epoch", [None])[0]
    plot_history(history, work / "plots" / "history.png",
                 fine_tune_start_epoch=int(fine_tune_start) if fine_tune_start is not None else None)
    _write_model(classifier, work, splits.class_names)
    metrics = {
        **evaluation,
        "dataset": {"source": str(splits.source), "classes": len(splits.class_names),
                    "train": len(splits.train), "validation": len(splits.valid or []),
                    "test": len(splits.test or [])},
        "skipped_files": [{"path": str(s.path), "reason": s.reason} for s in splits.skipped],
        "skipped_count": len(splits.skipped),
        "warnings": notes,
        "fine_tune_start_epoch": fine_tune_start,
        "image_size": image_size,
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(work / "history.json", history)
    write_json(work / "metrics.json", metrics)
    _finish(work, run_dir)
    log.info("run written to %s", run_dir)
    return RunResult(run_dir=run_dir, metrics=metrics, history=history, seconds=metrics["total_seconds"])
