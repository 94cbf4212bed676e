"""EfficientNet-Lite0 built in Keras, with TF's ImageNet weights ported from torch.

The weights were trained in TensorFlow and carried to torch in lukemelas'
``efficientnet_pytorch`` key names (layer names here are those keys without
their leading underscores), so this topology is TF's: "same" padding
(asymmetric on stride 2), BatchNorm epsilon 1e-3, ReLU6, no squeeze-excite,
and stem/head widths not scaled (the Lite variant's rules).
"""

from __future__ import annotations

import keras
import numpy as np

from training.backbones import porting

# (repeats, kernel, first stride, expansion, in channels, out channels) of EfficientNet-B0/Lite0.
BLOCK_ARGS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # torch momentum 0.01 in efficientnet_pytorch


def _bn(x, name: str):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _relu6(x, name: str):
    return keras.layers.ReLU(6.0, name=name)(x)


def _mbconv(x, index: int, kernel: int, stride: int, expansion: int, in_channels: int, out_channels: int):
    prefix = f"blocks_{index}"
    shortcut = x
    if expansion != 1:
        x = keras.layers.Conv2D(in_channels * expansion, 1, use_bias=False, name=f"{prefix}_expand_conv")(x)
        x = _relu6(_bn(x, f"{prefix}_bn0"), f"{prefix}_expand_relu6")
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     name=f"{prefix}_depthwise_conv")(x)
    x = _relu6(_bn(x, f"{prefix}_bn1"), f"{prefix}_depthwise_relu6")
    x = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}_project_conv")(x)
    x = _bn(x, f"{prefix}_bn2")
    if stride == 1 and in_channels == out_channels:
        x = keras.layers.Add(name=f"{prefix}_add")([shortcut, x])
    return x


def build(input_shape: tuple[int, int, int] = (224, 224, 3), name: str = "efficientnet_lite0") -> keras.Model:
    """The feature extractor: normalised images in, the 7x7x1280 map (at 224) out."""
    inputs = keras.Input(shape=input_shape, name="normalised_images")
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="conv_stem")(inputs)
    x = _relu6(_bn(x, "bn0"), "stem_relu6")
    index = 0
    for repeats, kernel, first_stride, expansion, in_channels, out_channels in BLOCK_ARGS:
        for repeat in range(repeats):
            x = _mbconv(x, index, kernel, first_stride if repeat == 0 else 1, expansion,
                        in_channels if repeat == 0 else out_channels, out_channels)
            index += 1
    x = keras.layers.Conv2D(1280, 1, use_bias=False, name="conv_head")(x)
    x = _relu6(_bn(x, "bn1"), "head_relu6")
    return keras.Model(inputs, x, name=name)


def _torch_key(layer_name: str) -> str:
    """``blocks_3_expand_conv`` -> ``_blocks.3._expand_conv``; ``conv_stem`` -> ``_conv_stem``.

    Keras layer names may not start with ``_`` (SavedModel rejects such
    variable scopes), so the torch keys' leading underscores are added back here.
    """
    if layer_name.startswith("blocks_"):
        index, rest = layer_name[len("blocks_"):].split("_", 1)
        return f"_blocks.{index}._{rest}"
    return f"_{layer_name}"


def load_torch_weights(model: keras.Model, state: dict[str, np.ndarray]) -> int:
    return porting.assign_by_name(model, state, _torch_key)


def imagenet_head_weights(state: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [state["_fc.weight"].T, state["_fc.bias"]]

