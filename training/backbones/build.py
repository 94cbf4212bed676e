"""Build backbones from the table: feature extractors and ImageNet classifiers."""

from __future__ import annotations

import importlib
import logging
import pickle
import zipfile
from importlib import resources
from pathlib import Path

import keras
import numpy as np

from training.backbones.porting import WeightPortError
from training.backbones.preprocessing import preprocessing_layer
from training.backbones.table import BackboneSpec, get_backbone
from training.backbones.torch_checkpoint import load_state_dict
from training.backbones.weights import locate_weights

log = logging.getLogger(__name__)


class WeightsFileError(ValueError):
    """A ``--weights`` file is missing or is not weights for this backbone."""


def local_weights_file(weights: str) -> Path:
    """``--weights PATH`` as an existing file (``~`` expanded), or a clear error."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsFileError(f"--weights {weights!r}: no such file")
    return path


def _load_torch_file(spec: BackboneSpec, module, model: keras.Model, path: Path) -> None:
    try:
        state = load_state_dict(path)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as error:
        raise WeightsFileError(f"--weights {str(path)!r}: not a readable torch checkpoint for {spec.name} "
                               f"({error})") from None
    try:
        module.load_torch_weights(model, state)
    except WeightPortError as error:
        raise WeightsFileError(f"--weights {str(path)!r}: does not fit {spec.name}: {error}") from None


def build_feature_extractor(name: str, image_size: int | None = None, weights: str = "imagenet") -> keras.Model:
    """The backbone without head or pooling, taking *normalised* images.

    ``weights``: ``"imagenet"``, ``"none"`` or a local weights file (a torch
    checkpoint for the ported backbones, a Keras weights file for the others).
    """
    spec = get_backbone(name)
    size = image_size or spec.default_image_size
    if size < 32:
        raise ValueError(f"image_size must be at least 32, got {size}")
    shape = (size, size, 3)
    if spec.family == "keras_app":
        keras_weights = weights if weights == "imagenet" else None
        if weights not in ("imagenet", "none"):
            keras_weights = str(local_weights_file(weights))
        constructor = getattr(keras.applications, spec.builder)
        return constructor(include_top=False, weights=keras_weights, input_shape=shape)
    module = importlib.import_module(spec.builder)
    model = module.build(shape, name=name)
    if weights != "none":
        path = locate_weights(spec.packaged_weights) if weights == "imagenet" else local_weights_file(weights)
        _load_torch_file(spec, module, model, path)
        log.info("loaded %s weights from %s", name, path)
    return model


def imagenet_class_names() -> list[str]:
    text = resources.files("training.backbones").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


def build_imagenet_classifier(name: str, image_size: int | None = None) -> keras.Model:
    """A ported backbone with its original 1000-class head: raw RGB 0-255 in, softmax out.

    This is the proof that a port is right: real photos must come out as their
    ImageNet classes with the original framework's probabilities.
    """
    spec = get_backbone(name)
    if spec.packaged_weights is None:
        raise ValueError(f"{name} has no packaged ImageNet head; use keras.applications directly")
    size = image_size or spec.default_image_size
    module = importlib.import_module(spec.builder)
    state = load_state_dict(locate_weights(spec.packaged_weights))
    features = module.build((size, size, 3), name=name)
    module.load_torch_weights(features, state)
    inputs = keras.Input((size, size, 3), name="images")
    x = features(preprocessing_layer(spec.preprocessing)(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = keras.layers.Dense(1000, activation="softmax", name="predictions")
    outputs = head(x)
    head.set_weights([w.astype(np.float32) for w in module.imagenet_head_weights(state)])
    return keras.Model(inputs, outputs, name=f"{name}_imagenet")
