"""Keras applications as ftx backbones, loaded exactly as Keras loads them.

``weights="imagenet"`` downloads from Keras' servers (online users); a path
loads a local weights file; ``None`` gives random initialisation.
"""

from __future__ import annotations

import keras

# name -> the keras.applications constructor's attribute name
CONSTRUCTORS = {
    "vgg16": "VGG16",
    "keras_mobilenet_v2": "MobileNetV2",
    "efficientnet_b0": "EfficientNetB0",
    "resnet50": "ResNet50",
}


def build(name: str, input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """The application without its top, as a feature extractor (no pooling)."""
    constructor = getattr(keras.applications, CONSTRUCTORS[name])
    # Keras' EfficientNetB0 normalises 0-255 input itself, hence ftx's identity preprocessing for it.
    return constructor(include_top=False, weights=weights, input_shape=input_shape)
