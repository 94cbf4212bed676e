"""Real photos, shipped inside scikit-image, for ImageNet classification checks.

The single place where a test photo becomes a model-sized uint8 RGB array:
``tests/data/make_imagenet_reference.py`` (the PyTorch reference) and the
Keras tests both call :func:`load_photo`, so they see the very same pixels.

Only numpy, PIL and scikit-image are used (no tensorflow, no torch). Every
photo is a file bundled in the scikit-image wheel (no download). ``rocket`` is
the only JPEG; all others are PNG.
"""

from __future__ import annotations

import numpy as np
import skimage.data
from PIL import Image


def _motorcycle() -> np.ndarray:
    return skimage.data.stereo_motorcycle()[0]  # left view of the stereo pair


# name -> loader returning the original full-size photo (uint8, HxWx3 or HxW).
_LOADERS = {
    "chelsea": skimage.data.chelsea,       # tabby cat -> Egyptian cat / tiger cat / tabby
    "coffee": skimage.data.coffee,         # cup of coffee -> espresso
    "motorcycle": _motorcycle,             # motorcycle -> moped / motor scooter
    "camera": skimage.data.camera,         # grayscale cameraman -> tripod
    "rocket": skimage.data.rocket,         # SpaceX rocket on pad -> missile / obelisk / space shuttle
    "astronaut": skimage.data.astronaut,   # Eileen Collins portrait: no ImageNet class (bobsled)
}

PHOTO_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_photo(name: str, size: int = 224) -> np.ndarray:
    """Return photo ``name`` as uint8 ``[size, size, 3]`` RGB.

    Deterministic: grayscale is replicated to 3 channels (alpha, if any, is
    dropped), the centred square of side ``min(H, W)`` is cropped (odd
    leftovers go to the bottom/right), then PIL ``resize((size, size),
    Image.BILINEAR)``.
    """
    if name not in _LOADERS:
        raise KeyError(f"unknown photo {name!r}; choose one of {PHOTO_NAMES}")
    img = np.asarray(_LOADERS[name]())
    if img.dtype != np.uint8:
        raise TypeError(f"photo {name!r} is {img.dtype}, expected uint8")
    if img.ndim == 2:
        img = np.stack([img, img, img], axis=-1)
    img = img[..., :3]
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = np.ascontiguousarray(img[top:top + side, left:left + side])
    out = Image.fromarray(img).resize((size, size), Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)
