"""Decode and resize images without TensorFlow, to exactly the pixels of ``decode.py``.

The edge install (ONNX Runtime, no TensorFlow) serves encoded images and
benchmarks test splits, and must feed the model what training fed it. This
module gives bit-identical results to ``decode.load_example``, checked in
``tests/test_numpy_decode.py`` against TensorFlow itself:

- JPEG through libjpeg-turbo (simplejpeg) with the settings of TensorFlow's
  ``decode_jpeg`` defaults: the fast integer IDCT and fancy upsampling. PIL's
  default (the accurate IDCT) differs by up to 20 levels on real photos.
- 16-bit PNG through pypng, scaled as ``tf.image.convert_image_dtype`` does
  (PIL keeps only the high byte of 16-bit colour).
- 8-bit PNG, GIF and BMP through PIL, which gives libpng's, giflib's and
  TensorFlow's BMP reader's pixels; anything else through ``pil_decode``, as
  training does.
- The resize is TensorFlow's ``scale_and_translate`` (triangle kernel,
  antialiased) re-done in float32 in the same order: rows first, then
  columns, each a sum over taps in ascending order.
"""

from __future__ import annotations

import io
import warnings
from functools import lru_cache

import numpy as np
from PIL import Image

from training.data.pil_decode import pil_to_rgb

JPEG, PNG, GIF = b"\xff\xd8\xff", b"\x89PNG", b"GIF8"
_F = np.float32
# PIL suggests converting such palettes to RGBA first; TensorFlow drops alpha, so RGB is what is wanted
warnings.filterwarnings("ignore", "Palette images with Transparency expressed in bytes", UserWarning)


class ImageDecodeError(ValueError):
    """The bytes are not an image this module can decode; the message says why."""


def tf_decodes(data: bytes) -> bool:
    """The same test as ``decode.tf_can_decode``: formats TensorFlow's own decoders read correctly."""
    if data.startswith((JPEG, PNG, GIF)):
        return True
    head = data[:34].ljust(34, b"\0")
    return head[:2] == b"BM" and head[30:34] == b"\0\0\0\0" and head[28:30] in (b"\x18\x00", b"\x20\x00")


def decode_rgb(data: bytes) -> np.ndarray:
    """``float32 [H, W, 3]`` of whole values 0-255, as ``decode.decode_rgb`` makes from the same bytes."""
    try:
        if data.startswith(JPEG):
            return _decode_jpeg(data)
        if data.startswith(PNG) and len(data) > 24 and data[24] == 16:  # IHDR bit depth
            return _decode_png16(data)
        with Image.open(io.BytesIO(data)) as image:
            if data.startswith(GIF):
                return _decode_gif(image)
            if tf_decodes(data):
                return np.asarray(image.convert("RGB"), dtype=np.float32)
            return pil_to_rgb(image)
    except ImageDecodeError:
        raise
    except Image.UnidentifiedImageError:  # PIL's message names its BytesIO object, which says nothing
        raise ImageDecodeError("the data is not in any image format Pillow reads") from None
    except Exception as error:  # PIL, pypng and libjpeg raise many types for damaged data
        raise ImageDecodeError(f"{type(error).__name__}: {error}") from None


def _decode_jpeg(data: bytes) -> np.ndarray:
    import simplejpeg

    _, _, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    if colourspace in ("CMYK", "YCCK"):  # libjpeg has no CMYK -> RGB; TensorFlow takes C*K/255 (Adobe's inverted ink)
        cmyk = simplejpeg.decode_jpeg(data, colorspace="CMYK", fastdct=True, fastupsample=False).astype(np.uint16)
        return (cmyk[:, :, :3] * cmyk[:, :, 3:] // 255).astype(np.float32)
    pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
    return pixels.astype(np.float32)


def _decode_gif(image: Image.Image) -> np.ndarray:
    """The first frame, with its transparent pixels black, as TensorFlow's GIF decoder gives them."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    transparent = image.info.get("transparency")
    if image.mode == "P" and isinstance(transparent, int):
        rgb = rgb.copy()
        rgb[np.asarray(image) == transparent] = 0.0
    return rgb


def _decode_png16(data: bytes) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(bytes=data).read()
    planes = info["planes"]
    values = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    values = values[:, :, :3] if planes >= 3 else np.repeat(values[:, :, :1], 3, axis=2)
    # tf.image.convert_image_dtype (x * 1/65535), then decode_native's round(x * 255), all in float32
    return np.round(values.astype(_F) * _F(1.0 / 65535.0) * _F(255.0))


@lru_cache(maxsize=64)
def _spans(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Start index and weights of each output pixel, computed in float32 as TensorFlow's ComputeSpansCore does."""
    scale = _F(out_size) / _F(in_size)
    inv_scale = _F(1.0 / float(scale))
    kernel_scale = max(inv_scale, _F(1.0))  # antialias: widen the kernel when shrinking
    one_over_kernel_scale = _F(1.0) / kernel_scale
    span_size = min(2 * int(np.ceil(kernel_scale)) + 1, in_size)
    starts = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, span_size), np.float32)
    for x in range(out_size):
        sample = _F(_F(x) + _F(0.5)) * inv_scale
        if sample < 0 or sample > in_size:
            continue
        start = min(max(int(np.ceil(sample - kernel_scale - _F(0.5))), 0), in_size - 1)
        end = min(max(int(np.floor(sample + kernel_scale - _F(0.5))), 0), in_size - 1) + 1
        taps, total = [], _F(0.0)
        for source in range(start, end):
            distance = abs((_F(_F(source) + _F(0.5)) - sample) * one_over_kernel_scale)
            weight = _F(1.0) - distance if distance < 1 else _F(0.0)
            total = _F(total + weight)
            taps.append(weight)
        if abs(total) >= _F(1000.0) * np.finfo(np.float32).tiny:
            weights[x, :len(taps)] = np.asarray(taps, np.float32) * (_F(1.0) / total)
        starts[x] = start
    starts.setflags(write=False)
    weights.setflags(write=False)
    return starts, weights


def _gather(image: np.ndarray, axis: int, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One axis resampled: the weighted taps added in ascending order, TensorFlow's summation order."""
    shape = list(image.shape)
    shape[axis] = len(starts)
    out = np.zeros(shape, np.float32)
    term = np.empty_like(out)
    weight_shape = [1] * image.ndim
    weight_shape[axis] = -1
    last = image.shape[axis] - 1
    for tap in range(weights.shape[1]):
        np.take(image, np.minimum(starts + tap, last), axis=axis, out=term)
        term *= weights[:, tap].reshape(weight_shape)
        out += term
    return out


def resize_rounded(image: np.ndarray, image_size: int) -> np.ndarray:
    """float32 ``[S, S, 3]`` of whole values 0-255: ``decode.resize_rounded`` without TensorFlow."""
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    if (height, width) != (image_size, image_size):
        image = _gather(image, 0, *_spans(height, image_size))
        image = _gather(image, 1, *_spans(width, image_size))
        return np.clip(np.round(image, out=image), 0.0, 255.0, out=image)  # in place: the array is our own
    return np.clip(np.round(image), 0.0, 255.0)


def crop_to_roi(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """``decode.crop_to_roi``: (x1, y1, x2, y2) clamped to the image; None or an unusable box keeps it whole."""
    if roi is None or not (roi[0] >= 0 and roi[1] >= 0 and roi[2] > roi[0] and roi[3] > roi[1]):
        return image
    height, width = image.shape[:2]
    x1, y1 = min(max(roi[0], 0), width - 1), min(max(roi[1], 0), height - 1)
    x2, y2 = min(max(roi[2], x1 + 1), width), min(max(roi[3], y1 + 1), height)
    return image[y1:y2, x1:x2]


def load_images(encoded, image_size: int) -> np.ndarray:
    """float32 ``[N, S, S, 3]`` from encoded files: a batch for a model, as ``load_image`` makes each."""
    return np.stack([load_image(bytes(data), image_size) for data in encoded])


def load_image(data: bytes, image_size: int, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """float32 ``[S, S, 3]``: decode, optionally crop, resize, as ``decode.load_example`` does."""
    return resize_rounded(crop_to_roi(decode_rgb(data), roi), image_size)
