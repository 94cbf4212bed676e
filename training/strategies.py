"""The training strategies as plans of phases.

A phase says which part of the backbone trains, for how long and how fast.
``two-phase`` is just two of them: the head alone on a frozen base, then the
last layers unfrozen with a lower learning rate. ``lp-ft`` (the default) is
the same shape done as Kumar et al. (ICLR 2022) advise: a head converged on
cached features first, so fine-tuning starts from a good head instead of
pushing random-head gradients into the backbone, then the backbone under a
warmup and cosine decay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    name: str  # "head", "fine-tune" or "scratch"; also the resume checkpoint's name
    base: str  # "frozen", "last-layers" or "all"
    epochs: int
    learning_rate: float
    use_feature_cache: bool  # train the head on precomputed backbone features
    schedule: str = "constant"  # or "warmup-cosine": one epoch of linear warmup, then cosine decay to 0


def plan_phases(config: TrainConfig) -> list[Phase]:
    """The phases ``config.strategy`` runs, in order; ``config`` is resolved (no ``None`` options)."""
    lr = config.learning_rate
    augmenting = config.augment.enabled
    cache = config.cache_features and not augmenting
    if config.cache_features and augmenting and config.strategy in ("feature-extraction", "two-phase"):
        log.info("augmentation changes every epoch's images, so backbone features are not cached")
    if config.strategy == "lp-ft":
        # the linear probe converges on unaugmented cached features; augmentation is for the fine-tuning
        return [Phase("head", "frozen", config.epochs, lr, config.cache_features),
                Phase("fine-tune", "last-layers", config.fine_tune_epochs, config.fine_tune_learning_rate, False,
                      schedule="warmup-cosine")]
    if config.strategy == "scratch":
        return [Phase("scratch", "all", config.epochs, lr, False)]
    if config.strategy == "feature-extraction":
        return [Phase("head", "frozen", config.epochs, lr, cache)]
    if config.strategy == "fine-tune":
        return [Phase("fine-tune", "last-layers", config.epochs, lr, False)]
    if config.strategy == "two-phase":
        return [Phase("head", "frozen", config.epochs, lr, cache),
                Phase("fine-tune", "last-layers", config.fine_tune_epochs, config.fine_tune_learning_rate, False)]
    raise ValueError(f"unknown strategy {config.strategy!r}")


def weights_for(config: TrainConfig) -> str:
    """Scratch means random init whatever ``--weights`` says."""
    return "none" if config.strategy == "scratch" else config.weights
