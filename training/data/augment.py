"""Training-time augmentation, applied to batches inside the tf.data pipeline.

Keras' preprocessing layers are used with ``value_range=(0, 255)`` so they act
on the raw pixel values the backbones' own preprocessing expects, and each layer
is seeded. The result is clipped back to 0-255 (rotation and zoom interpolate,
contrast and brightness shift values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AugmentConfig:
    """What to vary, as Keras layer factors; 0 (or False) turns one off.

    ``AugmentConfig()`` is no augmentation at all: every factor defaults to
    off, and a run augments only what its config names. Sensible values to
    start from are ``rotation=0.05``, ``zoom=0.1``, ``contrast=0.1`` and
    ``brightness=0.1``. ``rotation`` is a fraction of a full turn (0.05 = up
    to +-18 degrees); ``zoom``, ``contrast`` and ``brightness`` are fractions
    (0.1 = +-10%). ``flip`` mirrors left-right: leave it off for traffic signs,
    where a mirrored sign changes meaning (keep left <-> keep right), and turn
    it on for photos and clothing.
    """

    flip: bool = False
    rotation: float = 0.0
    zoom: float = 0.0
    contrast: float = 0.0
    brightness: float = 0.0

    def __post_init__(self) -> None:
        limits = {"rotation": 0.5, "zoom": 1.0, "contrast": 1.0, "brightness": 1.0}
        for name, upper in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value < upper:
                raise ValueError(f"AugmentConfig.{name} must be a number in [0, {upper}), got {value!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.flip or self.rotation or self.zoom or self.contrast or self.brightness)


def build_augmenter(config: AugmentConfig, seed: int) -> Callable[[Any], Any]:
    """A function ``float32 batch -> float32 batch`` in 0-255, for ``Dataset.map``."""
    import keras  # only runs that augment pay for building the layers
    import tensorflow as tf

    layers: list[Any] = []
    if config.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.rotation:
        layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="reflect", seed=seed + 1))
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed + 2))
    if config.contrast:
        layers.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 3))
    if config.brightness:
        layers.append(keras.layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed + 4))

    def augment(images: Any) -> Any:
        for layer in layers:
            images = layer(images, training=True)
        return tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)

    return augment
