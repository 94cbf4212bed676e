"""Decoding through PIL, for the files TensorFlow's decoders get wrong or cannot read.

``decode.py`` calls ``pil_decode`` through ``tf.numpy_function`` for GTSRB's
PPM, TIFF, WebP and palette or 1-bit BMP. The result matches TensorFlow's own
decoders: whole RGB values 0-255, 16-bit scaled down, alpha dropped.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """``float32 [H, W, 3]`` with whole values 0-255, for any PIL mode.

    16-bit modes are scaled by 1/257 (65535 -> 255) instead of PIL's
    ``convert('RGB')``, which clips them to 255. Alpha is dropped, as
    TensorFlow's decoders do, so both decode paths agree.
    """
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # PIL opens 16-bit PGM as "I" scaled to 0-65535; other "I" images are 16-bit only if they say so.
        sixteen = image.mode.startswith("I;16") or (
            image.mode == "I" and (image.format == "PPM" or values.max(initial=0) > 255))
        if sixteen:
            values = values / 257.0
        grey = np.clip(np.round(values), 0, 255).astype(np.float32)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def pil_decode(path: bytes | str) -> np.ndarray:
    """Decode a file TensorFlow cannot (PPM, TIFF, WebP, palette BMP...) through PIL."""
    with Image.open(os.fsdecode(path)) as image:
        return pil_to_rgb(image)
