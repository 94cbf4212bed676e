"""torchvision's MobileNetV2 rebuilt in Keras, with its ImageNet weights ported.

The topology follows torchvision, not ``keras.applications.MobileNetV2``:
symmetric padding on stride-2 convolutions and BatchNorm epsilon 1e-5, so the
ported weights compute what they computed in torch. Layers are named after the
torch state-dict keys (dots become underscores), which makes the port a lookup.
"""

from __future__ import annotations

import keras
import numpy as np

from training.backbones import porting

# (expansion t, output channels c, repeats n, first stride s), as in torchvision.
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
BN_EPSILON = 1e-5  # torch's default
BN_MOMENTUM = 0.9  # torch momentum 0.1


def _conv_bn(x, filters: int, kernel: int, stride: int, prefix: str, *, depthwise: bool = False,
             activation: bool = True):
    """Conv (torch ``padding=(k-1)//2``) + BN (+ ReLU6); names ``{prefix}_0`` / ``{prefix}_1``."""
    if kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{prefix}_pad")(x)
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, use_bias=False, name=f"{prefix}_0")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=f"{prefix}_0")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_1")(x)
    if activation:
        x = keras.layers.ReLU(6.0, name=f"{prefix}_relu6")(x)
    return x


def _inverted_residual(x, in_channels: int, out_channels: int, stride: int, expansion: int, index: int):
    prefix = f"features_{index}_conv"
    hidden = in_channels * expansion
    shortcut = x
    part = 0
    if expansion != 1:
        x = _conv_bn(x, hidden, 1, 1, f"{prefix}_{part}")
        part += 1
    x = _conv_bn(x, hidden, 3, stride, f"{prefix}_{part}", depthwise=True)
    part += 1
    x = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}_{part}")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_{part + 1}")(x)
    if stride == 1 and in_channels == out_channels:
        x = keras.layers.Add(name=f"features_{index}_add")([shortcut, x])
    return x


def build(input_shape: tuple[int, int, int] = (224, 224, 3), name: str = "mobilenet_v2") -> keras.Model:
    """The feature extractor: normalised images in, the 7x7x1280 map (at 224) out."""
    inputs = keras.Input(shape=input_shape, name="normalised_images")
    x = _conv_bn(inputs, 32, 3, 2, "features_0")
    channels, index = 32, 1
    for expansion, out_channels, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            x = _inverted_residual(x, channels, out_channels, stride, expansion, index)
            channels, index = out_channels, index + 1
    x = _conv_bn(x, 1280, 1, 1, f"features_{index}")
    return keras.Model(inputs, x, name=name)


def _torch_key(layer_name: str) -> str:
    return layer_name.replace("_", ".")


def load_torch_weights(model: keras.Model, state: dict[str, np.ndarray]) -> int:
    """Copy a torchvision state dict into ``model``; return the number of layers set."""
    return porting.assign_by_name(model, state, _torch_key)


def imagenet_head_weights(state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The 1000-class classifier (``classifier.1``) as Keras Dense weights."""
    return [state["classifier.1.weight"].T, state["classifier.1.bias"]]

