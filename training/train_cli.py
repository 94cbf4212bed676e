"""``ftx train``: flags (or ``--config FILE``) -> :func:`training.train.train`.

Precedence: built-in defaults < config file < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from training.config import STRATEGIES, STRATEGY_DEFAULTS, ConfigError, TrainConfig, read_config_file
from training.flags import add_flags

log = logging.getLogger(__name__)

DEFAULTS = TrainConfig()

# flag -> (config key, type, help). Every TrainConfig field has exactly one flag.
FLAGS: list[tuple[str, str, type, str]] = [
    ("--data", "data", str, "image folder (folder-per-class, GTSRB layouts) or the builtin 'fashion-mnist'"),
    ("--out", "out", str, "run directory to create (default: runs/BACKBONE-STRATEGY-TIMESTAMP)"),
    ("--backbone", "backbone", str, "backbone name (see `ftx cache info`)"),
    ("--weights", "weights", str, "'imagenet', 'none' (random init) or a local weights file"),
    ("--image-size", "image_size", int, "input side in pixels (default: the backbone's, 224)"),
    ("--strategy", "strategy", str, f"one of {', '.join(STRATEGIES)}; lp-ft: a linear probe on cached features, "
     "then the backbone fine-tuned (see README)"),
    ("--fine-tune-layers", "fine_tune_layers", int, "fine-tune, two-phase, lp-ft: number of last backbone layers "
     "to unfreeze, 0 for all"),
    ("--fine-tune-from", "fine_tune_from", str, "fine-tune, two-phase, lp-ft: unfreeze from this backbone layer "
     "name on"),
    ("--epochs", "epochs", int, "epochs (two-phase, lp-ft: of the head phase)"),
    ("--fine-tune-epochs", "fine_tune_epochs", int, "two-phase, lp-ft: epochs of the fine-tuning phase"),
    ("--batch-size", "batch_size", int, "batch size"),
    ("--optimizer", "optimizer", str, "adam, adamw, sgd (momentum 0.9) or rmsprop"),
    ("--learning-rate", "learning_rate", float, "learning rate (two-phase, lp-ft: of the head phase)"),
    ("--fine-tune-learning-rate", "fine_tune_learning_rate", float,
     "two-phase, lp-ft: learning rate of the fine-tuning phase (lp-ft: its peak, after one epoch of warmup, "
     "then cosine decay)"),
    ("--dropout", "dropout", float, "dropout before the classification layer"),
    ("--dense-units", "dense_units", int, "hidden dense layer in the head (0: none)"),
    ("--label-smoothing", "label_smoothing", float, "label smoothing of the cross-entropy"),
    ("--class-weight", "class_weight", str, "'none' or 'balanced' (inverse class frequency)"),
    ("--early-stopping-patience", "early_stopping_patience", int,
     "stop after this many epochs without val_loss improvement, restoring the best weights (0: off)"),
    ("--validation-split", "validation_split", float, "fraction of train held out when there is no valid folder"),
    ("--test-csv", "test_csv", str, "CSV labelling a test set (GTSRB Test.csv or GT-*.csv)"),
    ("--max-test-images", "max_test_images", int, "evaluate on a seeded sample of this many test images"),
    ("--seed", "seed", int, "random seed (data split, shuffling, init, dropout)"),
    ("--distribute", "distribute", str, "auto, none, mirrored or multi-worker (TF_CONFIG)"),
]
SWITCHES: list[tuple[str, str, str]] = [
    ("--roi-crop", "roi_crop", "crop GTSRB images to their Roi box"),
    ("--cache-features", "cache_features", "feature-extraction: train the head on cached backbone features"),
    ("--mixed-precision", "mixed_precision", "float16 compute (GPU only)"),
    ("--strict", "strict", "fail before training when any file is bad, instead of skipping it"),
]
AUGMENT_FLAGS: list[tuple[str, str, type, str]] = [
    ("--augment-flip", "flip", bool, "random horizontal flips"),
    ("--augment-rotation", "rotation", float, "random rotation, fraction of a full turn"),
    ("--augment-zoom", "zoom", float, "random zoom fraction"),
    ("--augment-contrast", "contrast", float, "random contrast factor"),
    ("--augment-brightness", "brightness", float, "random brightness, fraction of 0-255"),
]


def strategy_default(key: str, value) -> str | None:
    """Help text for a default: the value itself, or per strategy when the strategy decides it."""
    if value is not None:
        return value
    if key.startswith("augment_"):
        values = {name: getattr(d.augment, key[len("augment_"):]) for name, d in STRATEGY_DEFAULTS.items()}
    elif all(hasattr(d, key) for d in STRATEGY_DEFAULTS.values()):
        values = {name: getattr(d, key) for name, d in STRATEGY_DEFAULTS.items()}
    else:
        return None
    shown = {name: ("on" if v else "off") if isinstance(v, bool) else ("all" if key == "fine_tune_layers" and v == 0
                                                                       else v) for name, v in values.items()}
    common = {v for n, v in shown.items() if n != DEFAULTS.strategy}
    first = f"{DEFAULTS.strategy} {shown[DEFAULTS.strategy]}"
    if len(common) == 1 and shown[DEFAULTS.strategy] not in common:
        return f"{first}, others {common.pop()}"
    if len(set(shown.values())) == 1:
        return str(shown[DEFAULTS.strategy])
    return ", ".join(f"{n} {v}" for n, v in shown.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML/YAML/JSON file of options (flags override it)")
    add_flags(parser, FLAGS, SWITCHES, DEFAULTS, show=strategy_default)
    group = parser.add_argument_group("augmentation (training images only; a flag given changes only its own "
                                      "part of the strategy's augmentation)")
    for flag, key, kind, text in AUGMENT_FLAGS:
        default = strategy_default(f"augment_{key}", None)
        if kind is bool:
            group.add_argument(flag, dest=f"augment_{key}", action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=f"{text} (default: {default})")
        else:
            group.add_argument(flag, dest=f"augment_{key}", type=kind, default=argparse.SUPPRESS,
                               help=f"{text} (default: {default})")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def config_from_args(args: argparse.Namespace, base: dict | None = None) -> TrainConfig:
    """Merge defaults, the ``--config`` file, ``base`` and the flags actually given."""
    values: dict = dict(base or {})
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    given = vars(args)
    augment = values.get("augment") or {}
    if not isinstance(augment, dict):
        raise ConfigError(f"augment must be a table of options, got {augment!r}")
    augment = dict(augment)
    for key, value in given.items():
        if key.startswith("augment_"):
            augment[key[len("augment_"):]] = value
        elif key in {f.name for f in dataclasses.fields(TrainConfig)}:
            values[key] = value
    if augment:
        values["augment"] = augment
    return TrainConfig.from_dict(values).validate()


def run(args: argparse.Namespace, base: dict | None = None) -> int:
    try:
        config = config_from_args(args, base)
        config.check_data()
        if config.out and Path(config.out).expanduser().exists():  # train() says the same, after the import
            raise ConfigError(f"{config.out} already holds a finished run; choose another --out")
    except ConfigError as error:
        print(f"ftx train: {error}", file=sys.stderr)
        return 2
    from training.backbones.build import WeightsFileError
    from training.backbones.weights import WeightsUnavailableError
    from training.data import DataError
    from training.train import RunLockedError, train

    try:
        result = train(config)
    except (ConfigError, DataError, FileExistsError, WeightsFileError, WeightsUnavailableError,
            RunLockedError) as error:
        print(f"ftx train: {error}", file=sys.stderr)
        return 2
    _print_summary(result)
    return 0


def _print_summary(result) -> None:
    metrics = result.metrics
    if not metrics:  # a multi-worker run's other workers: the chief evaluates and writes
        rows = [("run directory", f"{result.run_dir} (written by the chief worker)")]
    else:
        rows = [("run directory", str(result.run_dir))]
    for split in ("validation", "test"):
        if metrics.get(split):
            rows.append((f"{split} accuracy", f"{metrics[split]['accuracy']:.4f} on {metrics[split]['count']} images"))
    if metrics:
        rows.append(("skipped files", str(metrics["skipped_count"])))
    rows.append(("wall time", f"{result.seconds:.1f} s"))
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
