"""The classifier ftx trains: raw pixels -> preprocessing -> backbone -> head.

The head is its own small ``keras.Model`` fed by the pooled backbone features,
so the cached feature-extraction path can train the very same head object on
precomputed features and the result is the same model as the uncached path.

BatchNorm and fine-tuning: in Keras 3, ``base(x, training=False)`` inside a
functional model is overridden by ``fit``'s ``training=True`` (keras-team/keras
#20285). What keeps a BatchNorm layer in inference mode is ``trainable=False``,
so :func:`unfreeze_last` leaves every BatchNorm layer of the base frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from training.backbones import build_feature_extractor, get_backbone
from training.config import ConfigError
from training.backbones.preprocessing import preprocessing_layer


@dataclass
class Classifier:
    """The trainable model and handles on its parts."""

    model: keras.Model  # images (raw RGB 0-255) -> probabilities
    base: keras.Model  # the backbone
    head: keras.Model  # pooled features -> probabilities
    features: keras.Model  # images -> pooled features (for the feature cache)


def build_head(feature_channels: int, num_classes: int, dropout: float, dense_units: int, seed: int) -> keras.Model:
    inputs = keras.Input((feature_channels,), name="pooled_features")
    x = inputs
    if dense_units:
        x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout_hidden")(x)
        x = keras.layers.Dense(dense_units, activation="relu", name="head_dense",
                               kernel_initializer=keras.initializers.GlorotUniform(seed))(x)
    x = keras.layers.Dropout(dropout, seed=seed + 1, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits",
                           kernel_initializer=keras.initializers.GlorotUniform(seed + 2))(x)
    # float32 softmax keeps probabilities exact under mixed precision
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="head")


def build_classifier(backbone: str, num_classes: int, *, image_size: int | None = None, weights: str = "imagenet",
                     dropout: float = 0.2, dense_units: int = 0, seed: int = 42) -> Classifier:
    """Assemble the classifier: raw RGB 0-255 images in, class probabilities out."""
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    spec = get_backbone(backbone)
    size = image_size or spec.default_image_size
    base = build_feature_extractor(backbone, size, weights)
    head = build_head(base.output_shape[-1], num_classes, dropout, dense_units, seed)
    images = keras.Input((size, size, 3), name="images")
    x = preprocessing_layer(spec.preprocessing)(images)
    x = base(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(images, head(pooled), name=f"ftx_{backbone}")
    return Classifier(model=model, base=base, head=head, features=keras.Model(images, pooled, name="features"))


def freeze_base(base: keras.Model) -> None:
    base.trainable = False


def check_fine_tune_from(base: keras.Model, from_layer: str | None) -> None:
    """Fail before training, not after the head phase, on a layer name the backbone lacks."""
    names = [layer.name for layer in base.layers]
    if from_layer is not None and from_layer not in names:
        close = [n for n in names if from_layer in n][:5]
        raise ConfigError(f"--fine-tune-from {from_layer!r}: no such layer in {base.name}"
                         + (f"; similar: {close}" if close else f"; layers are named like {names[1:4]}"))


def unfreeze_last(base: keras.Model, count: int | None = None, from_layer: str | None = None) -> int:
    """Make the last ``count`` layers (0: all of them; or all from ``from_layer`` on) trainable; return how many.

    BatchNorm layers stay frozen, hence in inference mode with their ImageNet
    statistics: a few hundred images would otherwise overwrite them.
    """
    names = [layer.name for layer in base.layers]
    if from_layer is not None:
        check_fine_tune_from(base, from_layer)
        start = names.index(from_layer)
    else:
        if count is None or count < 0:
            raise ValueError(f"fine-tune layer count must be >= 0 (0: all), got {count}")
        start = 0 if count == 0 else max(0, len(names) - count)
    base.trainable = True
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return len(names) - start
