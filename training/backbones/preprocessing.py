"""The per-backbone input normalisation, as a Keras layer baked into every model.

Clients of every exported format then send raw RGB pixels 0-255; nobody has to
remember a backbone's mean and std.
"""

from __future__ import annotations

import keras
from keras import ops

from training.backbones.table import Preprocessing


@keras.saving.register_keras_serializable(package="ftx")
class ImagePreprocessing(keras.layers.Layer):
    """Maps raw RGB 0-255 to what a backbone was trained on."""

    def __init__(self, scale: float = 1.0, offset: float = 0.0, mean=(0.0, 0.0, 0.0),
                 std=(1.0, 1.0, 1.0), bgr: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale, self.offset, self.bgr = float(scale), float(offset), bool(bgr)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.bgr:
            x = ops.flip(x, axis=-1)
        # (x * scale + offset - mean) / std as one multiply and one add, and none where they are identities:
        # every elementwise op becomes a requantization step in an int8 export, and each costs accuracy.
        factor = [self.scale / s for s in self.std]
        shift = [(self.offset - m) / s for m, s in zip(self.mean, self.std)]
        if len(set(factor)) == 1:
            factor = factor[:1]
        if factor != [1.0]:
            x = x * ops.convert_to_tensor(factor[0] if len(factor) == 1 else factor, dtype=x.dtype)
        if any(shift):
            x = x + ops.convert_to_tensor(shift[0] if len(set(shift)) == 1 else shift, dtype=x.dtype)
        return x

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset,
                "mean": list(self.mean), "std": list(self.std), "bgr": self.bgr}


def preprocessing_layer(spec: Preprocessing, name: str = "preprocessing") -> ImagePreprocessing:
    return ImagePreprocessing(spec.scale, spec.offset, spec.mean, spec.std, spec.bgr, name=name)
