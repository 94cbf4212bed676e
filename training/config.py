"""``TrainConfig``: every option of ``ftx train`` in one checked dataclass.

The same object comes from flags, from a TOML/YAML file (``--config``) or
from Python, is validated before any work starts, and is written, resolved,
into the run directory so a run can be reproduced or resumed.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.augment import AugmentConfig

STRATEGIES = ("lp-ft", "scratch", "feature-extraction", "fine-tune", "two-phase")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
BUILTIN_DATASETS = ("fashion-mnist",)  # training.data.loader.BUILTIN's names, known here without TensorFlow
DISTRIBUTE = ("auto", "none", "mirrored", "multi-worker")
CLASS_WEIGHTS = ("none", "balanced")


@dataclass(frozen=True)
class StrategyDefaults:
    """What a strategy uses for every option left at ``None``.

    A head alone can learn fast; unfrozen pretrained layers need small steps.
    ``fine_tune_layers`` 0 is the whole backbone (BatchNorm layers stay frozen).
    """

    epochs: int
    learning_rate: float
    optimizer: str = "adam"
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 1e-5
    fine_tune_layers: int = 30
    label_smoothing: float = 0.0
    augment: AugmentConfig = AugmentConfig()  # all off


# lp-ft (Kumar et al., ICLR 2022): the head converges on cached backbone features
# (100 epochs cost seconds), then the whole backbone fine-tunes with AdamW under
# one epoch of warmup and a cosine decay, label smoothing 0.1 (MediaPipe Model
# Maker's default) and mild augmentation that suits digits, signs and clothing
# alike (no flips). Chosen on development images, never on a test split:
# benchmarks/RESULTS.md, "The default recipe".
STRATEGY_DEFAULTS: dict[str, StrategyDefaults] = {
    "lp-ft": StrategyDefaults(epochs=100, learning_rate=1e-3, optimizer="adamw", fine_tune_epochs=12,
                              fine_tune_learning_rate=1e-4, fine_tune_layers=0, label_smoothing=0.1,
                              augment=AugmentConfig(rotation=0.05, zoom=0.1)),
    "scratch": StrategyDefaults(epochs=10, learning_rate=1e-3),
    "feature-extraction": StrategyDefaults(epochs=10, learning_rate=1e-3),
    "fine-tune": StrategyDefaults(epochs=10, learning_rate=1e-4),
    "two-phase": StrategyDefaults(epochs=10, learning_rate=1e-3),
}
DEFAULT_LEARNING_RATE = {name: d.learning_rate for name, d in STRATEGY_DEFAULTS.items()}
# the options a strategy fills in when they are None
STRATEGY_OPTIONS = ("epochs", "learning_rate", "optimizer", "fine_tune_epochs", "fine_tune_learning_rate",
                    "fine_tune_layers", "label_smoothing", "augment")


class ConfigError(ValueError):
    """A configuration value is not allowed."""


@dataclass
class TrainConfig:
    """Options of one training run. ``None`` means "the strategy's or backbone's default"."""

    data: str = "fashion-mnist"
    out: str | None = None
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    image_size: int | None = None
    strategy: str = "lp-ft"
    fine_tune_layers: int | None = None  # 0: the whole backbone
    fine_tune_from: str | None = None
    epochs: int | None = None
    fine_tune_epochs: int | None = None
    batch_size: int = 32
    optimizer: str | None = None
    learning_rate: float | None = None
    fine_tune_learning_rate: float | None = None
    dropout: float = 0.2
    dense_units: int = 0
    label_smoothing: float | None = None
    class_weight: str = "none"
    augment: AugmentConfig | None = None  # None: the strategy's; an AugmentConfig: exactly that
    early_stopping_patience: int = 0
    validation_split: float = 0.2
    test_csv: str | None = None
    roi_crop: bool = False
    max_test_images: int | None = None
    cache_features: bool = True
    seed: int = 42
    mixed_precision: bool = False
    distribute: str = "auto"
    strict: bool = False

    def check_data(self) -> None:
        """The data folder exists (or is a builtin): checked before the seconds-long TensorFlow import."""
        if self.data not in BUILTIN_DATASETS and not Path(self.data).expanduser().is_dir():
            what = "is not a directory" if Path(self.data).expanduser().exists() else "does not exist"
            raise ConfigError(f"data {self.data!r} {what}, and it is not a builtin dataset "
                              f"({', '.join(BUILTIN_DATASETS)})")

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` naming the field, the value and what is allowed."""
        from training.backbones.table import BACKBONES  # keras-free

        check_field_types(self)
        _choice("backbone", self.backbone, tuple(BACKBONES))
        _choice("strategy", self.strategy, STRATEGIES)
        if self.optimizer is not None:
            _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("distribute", self.distribute, DISTRIBUTE)
        _choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        for name in ("epochs", "batch_size", "fine_tune_epochs"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 1)
        for name in ("dense_units", "early_stopping_patience", "seed", "fine_tune_layers"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 0)
        if self.augment is not None and not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"augment must be an AugmentConfig or None, got {self.augment!r}")
        if self.max_test_images is not None:
            _at_least("max_test_images", self.max_test_images, 1)
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            raise ConfigError(f"image_size must be between 32 and 1024, got {self.image_size}")
        for name in ("learning_rate", "fine_tune_learning_rate"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 10:
                raise ConfigError(f"{name} must be in (0, 10), got {value}")
        for name in ("dropout", "label_smoothing"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.validation_split < 1:
            raise ConfigError(f"validation_split must be in (0, 1), got {self.validation_split}")
        if self.strategy == "scratch" and self.weights not in ("imagenet", "none"):
            raise ConfigError(f"strategy 'scratch' trains from random init; --weights {self.weights!r} "
                              "would be ignored: drop it")
        if self.weights not in ("imagenet", "none") and not Path(self.weights).expanduser().is_file():
            raise ConfigError(f"weights must be 'imagenet', 'none' or an existing file; got {self.weights!r}")
        if self.test_csv is not None and not Path(self.test_csv).expanduser().is_file():
            raise ConfigError(f"test_csv {self.test_csv!r}: no such file")
        return self

    def resolved(self) -> "TrainConfig":
        """A copy with every "default" (``None``) replaced by the value the run will use."""
        from training.backbones.table import get_backbone

        defaults = STRATEGY_DEFAULTS[self.strategy]
        filled = {name: getattr(defaults, name) for name in STRATEGY_OPTIONS if getattr(self, name) is None}
        return dataclasses.replace(
            self, **filled, image_size=self.image_size or get_backbone(self.backbone).default_image_size)

    @property
    def resolved_learning_rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATE[self.strategy]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a plain dict (file contents); unknown keys are an error, not ignored."""
        values = known_keys(cls, values, "config")
        augment = values.pop("augment", None)
        if augment is None:  # the strategy's own augmentation
            return cls(**values)
        if not isinstance(augment, dict):
            raise ConfigError(f"augment must be a table of options, got {augment!r}")
        augment_known = {f.name for f in dataclasses.fields(AugmentConfig)}
        if set(augment) - augment_known:
            raise ConfigError(f"unknown augment key(s) {sorted(set(augment) - augment_known)}; "
                              f"allowed: {sorted(augment_known)}")
        # the keys given change the strategy's augmentation; the others keep its values
        strategy = values.get("strategy", cls.strategy)
        base = STRATEGY_DEFAULTS[strategy].augment if strategy in STRATEGY_DEFAULTS else AugmentConfig()
        try:
            return cls(**values, augment=dataclasses.replace(base, **augment))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"augment: {error}") from None


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def known_keys(cls, values: dict[str, Any], what: str) -> dict[str, Any]:
    """``values`` with dashes in keys turned to underscores; a key that is not a field of ``cls`` is an error."""
    known = {f.name for f in dataclasses.fields(cls)}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {unknown}; allowed: {sorted(known)}")
    return values


def check_field_types(config) -> None:
    """Config files hand over strings for numbers ('1e-3' in YAML) and 'no' for booleans: refuse them by name."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kinds = f.type.replace(" ", "").split("|") if isinstance(f.type, str) else []
        if value is None and "None" in kinds:
            continue
        if "bool" in kinds:
            ok = isinstance(value, bool)
        elif "int" in kinds:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif "float" in kinds:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif "str" in kinds:
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            expected = " or ".join(k for k in kinds)
            raise ConfigError(f"{f.name} must be {expected}, got {value!r} ({type(value).__name__})")


def read_config_file(path: Path | str, table: str = "train") -> dict[str, Any]:
    """Read a TOML, YAML or JSON file into a dict (a ``[table]`` section, e.g. ``[train]``, is unwrapped)."""
    values = read_config_document(path)
    values = values.get(table, values)
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: [{table}] must be a table of options")
    return values


def read_config_document(path: Path | str) -> dict[str, Any]:
    """The whole TOML, YAML or JSON file as a dict; parse errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"config file must be .toml, .yaml, .yml or .json, got {path.name}")
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            values = yaml.safe_load(text) or {}
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot parse: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a table of options at the top level")
    return values
